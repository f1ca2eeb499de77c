"""fscopy.copy_at, the one copier: every name resolved once below a held directory, so a
racer that swaps a directory for a symlink (a container's root during `cp`) cannot steer it
onto the host; trees of any depth; hard links, symlinks, special files and xattrs as cp -a
keeps them, or as the Rules say."""

import errno
import os
import stat
import struct
import sys
from pathlib import Path

import hostile
import pytest

from nspawnctl.errors import Error
from nspawnctl.fs import copy as fscopy
from nspawnctl.store import inside

fast_tmp, few_fds = hostile.fast_tmp, hostile.few_fds

CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)  # v2, effective: cap_net_raw
BASE = 0x10000 * 5
needs_root = pytest.mark.skipif(not hostile.ROOT, reason="owners and devices need root")


def copy(src: Path, dst: Path, rules=fscopy.PLAIN):
    sfd = os.open(src.parent, os.O_RDONLY | os.O_DIRECTORY)
    dfd = os.open(dst.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return fscopy.copy_at(sfd, src.name, dfd, dst.name, rules, label=str(src))
    finally:
        os.close(sfd)
        os.close(dfd)


@pytest.fixture
def host(tmp_path):
    """A host directory (0700, empty) a copy must never write into, and host files (with the
    names the copied tree has) it must never read."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    secret = tmp_path / "secret"
    secret.mkdir()
    for name in ("a", "b", "c"):
        (secret / name).write_text("HOST SECRET\n")
    return victim, secret


def unchanged(victim: Path):
    assert os.listdir(victim) == []
    assert stat.S_IMODE(os.lstat(victim).st_mode) == 0o700


def tree_with_abc(top: Path):
    (top / "sub").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (top / "sub" / name).write_text("container's own\n")


def no_secret(top: Path):
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert "SECRET" not in path.read_text(), path


# -- a racer between two steps ---------------------------------------------------------------

def test_a_directory_made_then_swapped_for_a_symlink_is_not_followed(tmp_path, host,
                                                                     monkeypatch):
    """The copy-in race: the racer renames a directory the copy just made and puts a symlink
    to a host directory in its place, before the copy opens it."""
    victim, _ = host
    tree_with_abc(tmp_path / "src")
    real_mkdir = os.mkdir
    swaps = []

    def mkdir_then_swap(name, mode=0o777, *, dir_fd=None):
        real_mkdir(name, mode, dir_fd=dir_fd)
        if name == "sub":
            os.rename(name, "moved", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.symlink(str(victim), name, dir_fd=dir_fd)
            swaps.append(name)
    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(Error) as e:
        copy(tmp_path / "src", tmp_path / "dst")
    assert swaps == ["sub"]
    unchanged(victim)
    # O_DIRECTORY|O_NOFOLLOW on a symlink
    assert e.value.message.endswith("/src/sub: Not a directory (sub)"), e.value.message


def test_the_top_made_then_swapped_is_filled_where_it_was_moved(tmp_path, host, monkeypatch):
    """Once open, a directory is filled through its descriptor wherever it is moved; the
    name it had (a symlink now) is never used again."""
    victim, _ = host
    tree_with_abc(tmp_path / "src")
    real = fscopy.DirCursor.of

    def of_then_swap(fd, label):
        cursor = real(fd, label)
        if label == "dst":
            os.rename(tmp_path / "dst", tmp_path / "moved")
            os.symlink(victim, tmp_path / "dst")
        return cursor
    monkeypatch.setattr(fscopy.DirCursor, "of", of_then_swap)
    made = copy(tmp_path / "src", tmp_path / "dst")
    unchanged(victim)
    moved = os.lstat(tmp_path / "moved")
    assert made == (moved.st_dev, moved.st_ino)  # what cp's commit checks before its rename
    assert (tmp_path / "moved/sub/c").read_text() == "container's own\n"


def test_a_special_file_made_then_swapped_is_refused(tmp_path, host, monkeypatch):
    """A FIFO is made by name and then opened once: a symlink put there instead (to a host
    file whose mode the copy would set) is seen, and nothing is done through it."""
    victim, secret = host
    (tmp_path / "src").mkdir()
    os.mkfifo(tmp_path / "src/fifo", 0o666)
    os.chmod(secret / "a", 0o600)
    real_mknod = os.mknod

    def mknod_then_swap(name, mode=0o600, device=0, *, dir_fd=None):
        real_mknod(name, mode, device, dir_fd=dir_fd)
        os.unlink(name, dir_fd=dir_fd)
        os.symlink(str(secret / "a"), name, dir_fd=dir_fd)
    monkeypatch.setattr(os, "mknod", mknod_then_swap)
    with pytest.raises(Error, match=r"replaced while it was copied \(fifo\)$"):
        copy(tmp_path / "src", tmp_path / "dst")
    assert stat.S_IMODE(os.lstat(secret / "a").st_mode) == 0o600
    unchanged(victim)


def test_a_source_directory_swapped_before_it_is_entered_is_copied_as_the_link(
        tmp_path, host, monkeypatch):
    """The copy-out race, first form: listed as a directory, a symlink to the host when the
    copy goes into it.  The entry is opened once, without following: a link is copied."""
    _, secret = host
    tree_with_abc(tmp_path / "src")
    real = fscopy.openat2

    def swap_then_open(dirfd, name, flags, resolve):
        if name == "sub" and not os.path.islink(tmp_path / "src/sub"):
            os.rename(tmp_path / "src/sub", tmp_path / "src/moved")
            os.symlink(secret, tmp_path / "src/sub")
        return real(dirfd, name, flags, resolve)
    monkeypatch.setattr(fscopy, "openat2", swap_then_open)
    copy(tmp_path / "src", tmp_path / "dst")
    assert os.readlink(tmp_path / "dst/sub") == str(secret)
    no_secret(tmp_path / "dst")


def test_a_source_directory_swapped_once_opened_is_read_through_what_was_opened(
        tmp_path, host, monkeypatch):
    """Swapped right after the copy opened it to go in (as what it was: a directory): the
    copy goes into the directory it opened, never the name again."""
    _, secret = host
    tree_with_abc(tmp_path / "src")
    real = fscopy.openat2
    opens, swaps = [], []

    def open_then_swap(dirfd, name, flags, resolve):
        fd = real(dirfd, name, flags, resolve)
        opens.append(name)
        if opens.count("sub") == 2 and not swaps:  # once listed, when it is gone into
            os.rename(tmp_path / "src/sub", tmp_path / "src/moved")
            os.symlink(secret, tmp_path / "src/sub")
            swaps.append(name)
        return fd
    monkeypatch.setattr(fscopy, "openat2", open_then_swap)
    copy(tmp_path / "src", tmp_path / "dst")
    assert swaps
    no_secret(tmp_path / "dst")


def test_a_source_directory_swapped_while_it_is_copied_is_read_where_it_was_moved(
        tmp_path, host, monkeypatch):
    """The copy-out race, GNU cp's: the copy is inside sub when sub becomes a symlink to a
    host directory with the same names.  The rest of sub is read through the descriptor the
    copy holds, never through the name."""
    _, secret = host
    tree_with_abc(tmp_path / "src")
    real = fscopy.openat2
    swaps = []

    def swap_then_open(dirfd, name, flags, resolve):
        if name in ("b", "c") and not swaps:
            os.rename(tmp_path / "src/sub", tmp_path / "src/moved")
            os.symlink(secret, tmp_path / "src/sub")
            swaps.append(name)
        return real(dirfd, name, flags, resolve)
    monkeypatch.setattr(fscopy, "openat2", swap_then_open)
    copy(tmp_path / "src", tmp_path / "dst")
    assert swaps
    assert sorted(os.listdir(tmp_path / "dst/sub")) == ["a", "b", "c"]
    no_secret(tmp_path / "dst")


def test_a_directory_moved_while_walked_stops_the_copy(tmp_path, monkeypatch):
    """Moved to another parent while the copy is below it: the walk back up through ".."
    would reach another directory, and stops instead."""
    (tmp_path / "src/a/b").mkdir(parents=True)
    (tmp_path / "src/other").mkdir()
    (tmp_path / "src/a/b/f").write_text("x")
    real = fscopy.openat2

    def move_then_open(dirfd, name, flags, resolve):
        if name == "f":
            os.rename(tmp_path / "src/a/b", tmp_path / "src/other/b")
        return real(dirfd, name, flags, resolve)
    monkeypatch.setattr(fscopy, "openat2", move_then_open)
    with pytest.raises(Error, match="the tree was moved while it was walked"):
        copy(tmp_path / "src", tmp_path / "dst")


# -- what comes across --------------------------------------------------------------------

def test_symlinks_pointing_out_are_copied_as_symlinks(tmp_path, host):
    victim, secret = host
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(secret, src / "abs")
    os.symlink("../../../../../../../../" + str(secret), src / "dots")
    os.symlink(str(secret / "a"), src / "file")
    os.symlink(victim, src / "todir")
    copy(src, tmp_path / "dst")
    for name in ("abs", "dots", "file", "todir"):
        assert os.readlink(tmp_path / "dst" / name) == os.readlink(src / name)
    unchanged(victim)
    # a symlink at the top is copied as itself too
    copy(src / "file", tmp_path / "toplink")
    assert os.readlink(tmp_path / "toplink") == str(secret / "a")


def test_hard_links_in_the_tree_stay_links_and_links_out_of_it_do_not(tmp_path):
    src = tmp_path / "src"
    (src / "x/y").mkdir(parents=True)
    (src / "f").write_text("one")
    os.link(src / "f", src / "x/y/g")
    os.link(src / "f", src / "x/h")
    (tmp_path / "outside").write_text("two")
    os.link(tmp_path / "outside", src / "x/linked-out")
    os.symlink("f", src / "s")
    os.link(src / "s", src / "x/s2", follow_symlinks=False)
    copy(src, tmp_path / "dst")
    dst = tmp_path / "dst"
    inodes = {os.lstat(dst / p).st_ino for p in ("f", "x/y/g", "x/h")}
    assert len(inodes) == 1 and os.lstat(dst / "f").st_nlink == 3
    assert os.lstat(dst / "x/linked-out").st_nlink == 1
    assert os.lstat(dst / "s").st_ino == os.lstat(dst / "x/s2").st_ino
    assert os.readlink(dst / "x/s2") == "f"


def test_a_hard_link_whose_first_copy_was_replaced_is_refused(tmp_path, monkeypatch):
    """The second link is made to the inode the first copy made, found again and checked:
    a racer's file put in its place meanwhile is not linked to."""
    src = tmp_path / "src"
    (src / "z").mkdir(parents=True)
    (src / "a").write_text("one")
    os.link(src / "a", src / "z/b")
    real = fscopy._link

    def replace_first(copy_, first, dst_dir, name):
        os.rename(tmp_path / "dst/a", tmp_path / "dst/moved")  # kept: its inode is not reused
        (tmp_path / "dst/a").write_text("racer's")
        return real(copy_, first, dst_dir, name)
    monkeypatch.setattr(fscopy, "_link", replace_first)
    with pytest.raises(Error, match=r"replaced while it was copied \(a\)$"):
        copy(src, tmp_path / "dst")


def test_fifos_sockets_and_devices(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo", 0o640)
    os.mknod(src / "sock", stat.S_IFSOCK | 0o755)
    copy(src, tmp_path / "dst")  # a FIFO is never opened: no hang
    assert stat.S_ISFIFO(os.lstat(tmp_path / "dst/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(tmp_path / "dst/fifo").st_mode) == 0o640
    assert stat.S_ISSOCK(os.lstat(tmp_path / "dst/sock").st_mode)
    if not hostile.ROOT:
        return
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "disk", stat.S_IFBLK | 0o660, os.makedev(8, 0))
    copy(src, tmp_path / "dst2")
    assert os.lstat(tmp_path / "dst2/disk").st_rdev == os.makedev(8, 0)
    assert stat.S_ISCHR(os.lstat(tmp_path / "dst2/null").st_mode)
    with pytest.raises(Error, match=r"/src/(disk|null) is a device node: not copied$"):
        copy(src, tmp_path / "dst3", fscopy.Rules(devices=False))


def test_xattrs_and_set_id_bits_by_the_rules(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "prog").write_text("#!/bin/sh\n")
    os.chmod(src / "prog", 0o6755)
    os.setxattr(src / "prog", "user.note", b"kept")
    caps = hostile.ROOT
    if caps:
        os.setxattr(src / "prog", "security.capability", CAPABILITY)
        os.setxattr(src / "prog", "trusted.overlay.redirect", b"/etc")
    copy(src, tmp_path / "plain")
    plain = tmp_path / "plain/prog"
    assert stat.S_IMODE(os.lstat(plain).st_mode) == 0o6755
    assert os.getxattr(plain, "user.note") == b"kept"
    if caps:
        assert os.getxattr(plain, "security.capability") == CAPABILITY
    out = fscopy.Rules(setuid_ok=lambda _i: False, setgid_ok=lambda _i: False,
                       xattr_ok=lambda key: key.startswith("user."))
    copy(src, tmp_path / "out", out)
    prog = tmp_path / "out/prog"
    assert stat.S_IMODE(os.lstat(prog).st_mode) == 0o755
    assert os.listxattr(prog) == ["user.note"]


def test_sparse_files_keep_their_holes_and_data(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(64 << 20)
        f.write(b"tail")
    copy(src, tmp_path / "dst")
    st = os.lstat(tmp_path / "dst/sparse")
    assert st.st_size == (64 << 20) + 4
    assert st.st_blocks * 512 < 1 << 20  # not 64 MiB of zeros
    with open(tmp_path / "dst/sparse", "rb") as f:
        assert f.read(4) == b"head"
        f.seek(64 << 20)
        assert f.read() == b"tail"


def test_a_file_is_copied_up_to_the_size_it_had_when_opened(tmp_path, monkeypatch):
    """A racer appending forever to a file being copied out cannot make the copy endless."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "grows").write_bytes(b"x" * 1000)
    real = fscopy._copy_data

    def append_then_copy(fin, fout, st):
        with open(src / "grows", "ab") as f:
            f.write(b"y" * 5000)
        return real(fin, fout, st)
    monkeypatch.setattr(fscopy, "_copy_data", append_then_copy)
    copy(src, tmp_path / "dst")
    assert (tmp_path / "dst/grows").read_bytes() == b"x" * 1000


def test_twenty_thousand_levels_with_few_descriptors(fast_tmp, few_fds):
    """The depth tests/unit/hostile.py's figures go to: no recursion, one descriptor per tree,
    and a hard link from the top to the bottom still a link."""
    depth = 20_000
    assert depth > sys.getrecursionlimit()
    src = fast_tmp / "src"
    src.mkdir()
    (src / "top").write_text("linked")
    level = 0

    def fill(fd):
        nonlocal level
        level += 1
        if level == depth:
            os.link(src / "top", "bottom", dst_dir_fd=fd)
            os.mkfifo("fifo", dir_fd=fd)
            os.symlink("/etc/shadow", "link", dir_fd=fd)
    hostile.deep_dirs(src, depth, "d", fill)
    copy(src, fast_tmp / "dst")
    rel = "/".join(["d"] * depth)
    assert sorted(hostile.listdir_deep(fast_tmp / "dst", rel)) == ["bottom", "fifo", "link"]
    assert os.lstat(fast_tmp / "dst/top").st_nlink == 2


def test_a_mount_inside_is_not_crossed(tmp_path, tmp_path_factory):
    if not hostile.ROOT:
        pytest.skip("mounting needs root")
    import subprocess
    src = tmp_path / "src"
    (src / "m").mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "m")]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(Error, match=r"a filesystem is mounted there \(m\)$"):
            copy(src, tmp_path / "dst")
    finally:
        subprocess.run(["umount", str(src / "m")])


# -- cp's rules (store/inside.py) --------------------------------------------------------------

@needs_root
def test_copy_out_by_default_hands_out_no_privilege(tmp_path):
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    os.chmod(src / "dir", 0o2775)
    for name, mode in (("suid", 0o4755), ("sgid", 0o2755)):
        (src / name).write_text("x")
        os.chmod(src / name, mode)
    (src / "capped").write_text("x")
    os.setxattr(src / "capped", "security.capability", CAPABILITY)
    os.setxattr(src / "capped", "user.keep", b"1")
    os.setxattr(src / "capped", "system.posix_acl_access", ACL)
    os.mknod(src / "dir/disk", stat.S_IFBLK | 0o666, os.makedev(8, 0))
    for path in [src, *src.rglob("*")]:
        os.chown(path, BASE, BASE, follow_symlinks=False)
    with pytest.raises(Error, match=r"dir/disk is a device node: not copied$"):
        copy(src, tmp_path / "refused", inside.rules_out(BASE, (1234, 2345)))
    os.unlink(src / "dir/disk")
    copy(src, tmp_path / "out", inside.rules_out(BASE, (1234, 2345)))
    out = tmp_path / "out"
    for path in [out, *out.rglob("*")]:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (1234, 2345), path
        assert not st.st_mode & 0o6000, path
        assert "security.capability" not in os.listxattr(path), path
    assert os.listxattr(out / "capped") == ["user.keep"]


@needs_root
def test_copy_out_preserving_owners_keeps_set_id_bits_only_in_the_containers_range(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {"suid-root": (0o4755, BASE, BASE), "suid-user": (0o4755, BASE + 1000, BASE),
             "sgid-user": (0o2755, BASE, BASE + 100), "suid-host0": (0o4755, 0, 0),
             "suid-other": (0o6755, 1000, 1000), "capped": (0o755, BASE, BASE)}
    for name, (mode, uid, gid) in files.items():
        (src / name).write_text("x")
        os.chown(src / name, uid, gid)
        os.chmod(src / name, mode)
    os.setxattr(src / "capped", "security.capability", CAPABILITY)
    os.chown(src, BASE, BASE)
    copy(src, tmp_path / "kept", inside.rules_out(BASE, None))
    got = {name: (stat.S_IMODE(os.lstat(tmp_path / "kept" / name).st_mode),
                  os.lstat(tmp_path / "kept" / name).st_uid,
                  os.lstat(tmp_path / "kept" / name).st_gid) for name in files}
    assert got == {"suid-root": (0o4755, BASE, BASE), "suid-user": (0o4755, BASE + 1000, BASE),
                   "sgid-user": (0o2755, BASE, BASE + 100), "suid-host0": (0o755, 0, 0),
                   "suid-other": (0o755, 1000, 1000), "capped": (0o755, BASE, BASE)}
    assert "security.capability" not in os.listxattr(tmp_path / "kept/capped")
    # a tree that is not shifted (base 0): its ids are the host's, so no set-ID bit at all
    copy(src, tmp_path / "unshifted", inside.rules_out(0, None))
    for name in files:
        assert not os.lstat(tmp_path / "unshifted" / name).st_mode & 0o6000, name


@needs_root
def test_copy_in_maps_owners_and_acl_ids_into_the_range(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.chown(src / "f", 33, 44)
    os.chmod(src / "f", 0o4750)
    try:
        os.setxattr(src / "f", "system.posix_acl_access", ACL)
    except OSError as e:
        if e.errno != errno.EOPNOTSUPP:
            raise
    mode = stat.S_IMODE(os.lstat(src / "f").st_mode)  # an ACL's mask is the group's bits
    copy(src, tmp_path / "in", inside.rules_in(BASE))
    st = os.lstat(tmp_path / "in/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (BASE + 33, BASE + 44, mode)
    assert mode & stat.S_ISUID
    if "system.posix_acl_access" in os.listxattr(src / "f"):
        acl = os.getxattr(tmp_path / "in/f", "system.posix_acl_access")
        named = [struct.unpack_from("<HHI", acl, off) for off in range(4, len(acl), 8)]
        assert (0x02, 7, BASE + 1234) in named and (0x08, 5, BASE + 4321) in named


# u::rwx, u:1234:rwx, g::r-x, g:4321:r-x, m::rwx, o::r-x
ACL = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [
    (1, 7, 2**32 - 1), (2, 7, 1234), (4, 5, 2**32 - 1), (8, 5, 4321), (0x10, 7, 2**32 - 1),
    (0x20, 5, 2**32 - 1)])
