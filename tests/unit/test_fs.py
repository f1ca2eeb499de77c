"""fs/: no-replace rename, atomic writes, tree sizes, owners."""

import errno
import os
import stat
import subprocess

import pytest

from nspawnctl.errors import Error
from nspawnctl.fs import files as fsfiles
from nspawnctl.fs.files import rename_noreplace, write_atomic
from nspawnctl.fs.locks import pid_alive
from nspawnctl.fs.walk import tree_size

# rename_noreplace

def test_rename_moves_to_a_new_name(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("x")
    rename_noreplace(tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "src").exists()
    assert (tmp_path / "dst/f").read_text() == "x"


@pytest.mark.parametrize("existing", ["file", "empty dir", "dangling symlink"])
def test_rename_never_replaces(tmp_path, existing):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "f").write_text("new")
    if existing == "file":
        dst.write_text("old")
    elif existing == "empty dir":
        dst.mkdir()
    else:
        dst.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert (src / "f").read_text() == "new"
    assert os.path.lexists(dst)
    if existing == "file":
        assert dst.read_text() == "old"
    elif existing == "empty dir":
        assert os.listdir(dst) == []


def test_rename_of_a_missing_source_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        rename_noreplace(tmp_path / "missing", tmp_path / "dst")


class _NoRenameat2:
    """A libc whose renameat2 fails like a filesystem without RENAME_NOREPLACE."""

    def renameat2(self, *args):
        return -1


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOSYS])
def test_rename_fallback_without_renameat2(tmp_path, monkeypatch, err):
    monkeypatch.setattr(fsfiles, "_libc", _NoRenameat2())
    monkeypatch.setattr(fsfiles.ctypes, "get_errno", lambda: err)
    (tmp_path / "a").write_text("a")
    rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "a"
    (tmp_path / "c").write_text("c")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "c", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "a"


# write_atomic

def test_write_atomic_creates_parents_and_sets_mode(tmp_path):
    target = tmp_path / "etc/systemd/nspawn/x.nspawn"
    old = os.umask(0o077)
    try:
        write_atomic(target, "[Exec]\nBoot=yes\n")
    finally:
        os.umask(old)
    assert target.read_text() == "[Exec]\nBoot=yes\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not the umask's 0600


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "f"
    target.write_text("old")
    write_atomic(target, "new", mode=0o600)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_write_atomic_replaces_a_symlink_not_its_target(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("precious")
    link = tmp_path / "d/f"
    link.parent.mkdir()
    link.symlink_to(outside)
    write_atomic(link, "new")
    assert outside.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"


def test_write_atomic_leaves_no_temp_file_when_writing_fails(tmp_path):
    # a failed write (here: text that cannot be encoded) leaves no .f.PID.tmp behind
    target = tmp_path / "f"
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "bad \udcff surrogate")
    assert os.listdir(tmp_path) == []


# tree_size

def _data(path, size):
    # random: no filesystem compresses or dedups it; fsync: blocks are allocated, not delayed
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())


def test_tree_size_counts_blocks(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    empty = tree_size(tree)
    _data(tree / "a", 256 * 1024)
    assert tree_size(tree) - empty >= 256 * 1024


def test_tree_size_counts_hardlinks_once(tmp_path):
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    _data(tree / "a", 256 * 1024)
    once = tree_size(tree)
    os.link(tree / "a", tree / "sub/b")
    os.link(tree / "a", tree / "c")
    assert tree_size(tree) == once
    _data(tree / "d", 256 * 1024)
    assert tree_size(tree) >= once + 256 * 1024


def test_tree_size_does_not_follow_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _data(outside / "big", 1024 * 1024)
    tree = tmp_path / "t"
    tree.mkdir()
    before = tree_size(tree)
    (tree / "l").symlink_to(outside)
    (tree / "f").symlink_to(outside / "big")
    assert tree_size(tree) - before < 64 * 1024


def test_tree_size_of_missing_tree_is_zero(tmp_path):
    assert tree_size(tmp_path / "missing") == 0


# pid_alive

def test_pid_alive():
    assert pid_alive(os.getpid())
    assert pid_alive(1)  # PermissionError for a normal user still means alive
    child = subprocess.Popen(["true"])
    child.wait()
    assert not pid_alive(child.pid)


def test_owner_token_names_this_process_and_boot():
    from nspawnctl.fs.locks import boot_id, owner_is_dead, owner_token
    token = owner_token()
    assert token == f"{os.getpid()}-{boot_id()}" and len(boot_id()) == 12
    assert not owner_is_dead(token)
    assert owner_is_dead(f"{os.getpid()}-{'f' * 12}")  # same PID, another boot
    assert not owner_is_dead(str(os.getpid()))          # a bare PID: the PID decides
    with pytest.raises(ValueError):
        owner_is_dead("abc-def")


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    from nspawnctl.fs.files import write_atomic
    write_atomic(tmp_path / "f", "one")
    write_atomic(tmp_path / "f", "two", mode=0o600)
    assert os.listdir(tmp_path) == ["f"] and (tmp_path / "f").read_text() == "two"


def test_read_small_text_names_the_file_instead_of_a_traceback_or_a_hang(tmp_path):
    from nspawnctl.fs.files import read_small_text

    path = tmp_path / "a.nspawn"
    assert read_small_text(path, "a's settings file") is None  # not there
    path.write_text("[Exec]\nBoot=no\n")
    assert read_small_text(path, "a's settings file") == "[Exec]\nBoot=no\n"
    path.write_bytes(b"[Exec]\nBoot=no\xff\n")
    with pytest.raises(Error, match=f"a's settings file {path} is not UTF-8 text"):
        read_small_text(path, "a's settings file")
    path.write_bytes(b"#" * 4097)
    with pytest.raises(Error, match="is larger than 4 KiB"):
        read_small_text(path, "a's settings file", limit=4096)
    path.write_bytes(b"#" * 4096)  # the limit itself is fine
    assert len(read_small_text(path, "x", limit=4096)) == 4096
    path.unlink()
    os.mkfifo(path)  # a plain open() would wait for a writer forever
    with pytest.raises(Error, match="is not a regular file"):
        read_small_text(path, "a's settings file")
    path.unlink()
    path.mkdir()
    with pytest.raises(Error, match="is not a regular file"):
        read_small_text(path, "a's settings file")
