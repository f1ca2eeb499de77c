"""store.Store under NSPAWNCTL_ROOT: names, locks, staging, sweep, install and remove."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nspawnctl.errors import Error
from nspawnctl.fs.locks import owner_token
from nspawnctl.paths import Paths
from nspawnctl.store.containers import OWNED_MARK, Store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    p = Paths.from_env()
    assert str(p.machines).startswith(str(tmp_path))
    return p


@pytest.fixture
def store(paths):
    return Store(paths)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def make_tree(paths, name):
    tree = paths.tree(name)
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text("ID=debian\n")
    return tree


def write_settings(paths, name, ours=True, user_dropin=False):
    nspawn = paths.nspawn_file(name)
    nspawn.parent.mkdir(parents=True, exist_ok=True)
    nspawn.write_text((OWNED_MARK + " (do not remove this line)\n" if ours else "")
                      + "[Exec]\nBoot=yes\n")
    dropin = paths.dropin_dir(name)
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "50-nspawnctl.conf").write_text("[Service]\nMemoryMax=1G\n")
    if user_dropin:
        (dropin / "10-mine.conf").write_text("[Service]\nNice=5\n")
    return nspawn, dropin


# names and existence

def test_paths_follow_nspawnctl_root(paths, tmp_path):
    root = tmp_path / "root"
    assert paths.machines == root / "var/lib/machines"
    assert paths.nspawn_file("x") == root / "etc/systemd/nspawn/x.nspawn"
    assert paths.dropin_dir("x") == root / "etc/systemd/system/systemd-nspawn@x.service.d"
    assert paths.staging_in(paths.machines) == paths.machines / ".nspawnctl-staging"


def test_names_of_an_absent_machines_dir(store):
    assert store.names() == []


def test_names_ignores_dot_entries_and_non_directories(store, paths):
    for name in ("web", "db", "a.b", ".nspawnctl-staging", ".hidden"):
        (paths.machines / name).mkdir(parents=True)
    (paths.machines / "image.raw").write_text("")
    (paths.machines / ".lck-web").write_text("")
    assert store.names() == ["a.b", "db", "web"]


def test_require_and_require_absent(store, paths):
    with pytest.raises(Error, match="no container named 'x'"):
        store.require("x")
    with pytest.raises(Error, match="invalid container name"):
        store.require("../x")
    make_tree(paths, "x")
    assert store.require("x") == "x"
    with pytest.raises(Error, match="already exists"):
        store.require_absent("x")
    store.require_absent("y")
    with pytest.raises(Error, match="invalid container name"):
        store.require_absent("y/z")


# locking

def test_second_lock_in_the_same_process_is_busy(store):
    # flock locks belong to the open file description: a second open conflicts even here.
    with store.lock("x"):
        with pytest.raises(Error, match="busy"):
            with store.lock("x"):
                pass
        with store.lock("y"):  # other names are independent
            pass
    with store.lock("x"):  # released on exit
        pass


def test_lock_held_by_another_process_fails_at_once(store, paths):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from nspawnctl.paths import Paths
            from nspawnctl.store.containers import Store
            with Store(Paths.from_env()).lock("x"):
                print("locked", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(Error) as info:
            with store.lock("x"):
                pass
        assert "busy" in info.value.message
        assert "'x'" in info.value.message
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    with store.lock("x"):  # a lock dies with its process
        pass


def test_lock_dies_with_a_killed_process(store):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import time
            from nspawnctl.paths import Paths
            from nspawnctl.store.containers import Store
            with Store(Paths.from_env()).lock("x"):
                print("locked", flush=True)
                time.sleep(600)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline() == "locked\n"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with store.lock("x"):
        pass


def test_lock_file_is_private_and_goes_with_its_container(store, paths):
    with store.lock("x"):
        assert stat.S_IMODE((paths.locks / "x.lock").stat().st_mode) & 0o077 == 0
    # no container x: its lock file is not kept (names used once would pile up)
    assert not (paths.locks / "x.lock").exists()
    make_tree(paths, "y")
    with store.lock("y"):
        pass
    assert (paths.locks / "y.lock").exists()


def test_a_lock_whose_file_was_deleted_by_its_holder_is_taken_again(tmp_path):
    """A waiter that wakes up holding a deleted file's lock must not go on: the next
    command would lock a new file at the same path, and both would run."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from nspawnctl.fs.locks import flocked, unlink_lock
        path = Path({str(tmp_path / "n.lock")!r})
        with flocked(path, lambda: None):
            print("holding", flush=True)
            time.sleep(0.5)
            unlink_lock(path)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "holding\n"
    from nspawnctl.fs.locks import flocked
    waited = []
    with flocked(tmp_path / "n.lock", lambda: waited.append(True)):
        # the lock held is on the file now at the path, made anew after the holder's unlink
        assert (tmp_path / "n.lock").exists()
        assert holder.poll() is not None or holder.wait(5) == 0
    assert waited == [True]


# staging

def test_staging_is_private_and_removed_on_exit(store, paths):
    with store.staging(paths.machines, "create-x") as stage:
        assert stage.parent == paths.staging_in(paths.machines)
        assert stage.name.startswith(f"create-x.{owner_token()}.")
        assert stat.S_IMODE(stage.stat().st_mode) == 0o700
        (stage / "tree/etc").mkdir(parents=True)
        (stage / "tree/etc/f").write_text("x")
    assert not stage.exists()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_staging_is_removed_on_exception_and_interrupt(store, paths, exc):
    with pytest.raises(exc):
        with store.staging(paths.machines, "create-x") as stage:
            (stage / "tree").mkdir()
            (stage / "tree/f").write_text("x")
            raise exc()
    assert not stage.exists()
    assert os.listdir(paths.staging_in(paths.machines)) == []


def test_what_is_renamed_out_of_staging_survives(store, paths):
    with store.staging(paths.machines, "create-x") as stage:
        (stage / "tree").mkdir()
        store.install(stage / "tree", "x")
    assert paths.tree("x").is_dir()
    assert not stage.exists()


# sweep

def test_staging_of_a_live_pid_from_another_boot_is_swept(store, paths):
    # After a reboot PIDs start again: this process's PID under another boot id is a dead
    # command's directory, whatever runs under that PID now.
    mine = owner_token()
    other_boot = f"{os.getpid()}-{'0' * 12}"
    assert mine != other_boot
    stale = paths.staging_in(paths.machines) / f"create-x.{other_boot}.abc123"
    live = paths.staging_in(paths.machines) / f"create-y.{mine}.abc123"
    stale.mkdir(parents=True)
    live.mkdir()
    temp = paths.nspawn / f".x.nspawn.{other_boot}.tmp"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_text("half")
    store.sweep()
    assert not stale.exists() and not temp.exists()
    assert live.exists()

def _staging_dir(parent: Path, label: str, pid: int) -> Path:
    d = parent / ".nspawnctl-staging" / f"{label}.{pid}.abc123"
    (d / "tree/etc").mkdir(parents=True)
    (d / "tree/etc/f").write_text("x")
    return d


def test_sweep_removes_staging_of_dead_processes_only(store, paths):
    dead = dead_pid()
    gone = _staging_dir(paths.machines, "create-x", dead)
    gone_image = _staging_dir(paths.images, "image-abc", dead)
    live = _staging_dir(paths.machines, "create-y", os.getpid())
    live_image = _staging_dir(paths.images, "image-def", os.getpid())
    other = paths.staging_in(paths.machines) / "not-ours"  # no pid in the name: left alone
    other.mkdir()
    store.sweep()
    assert not gone.exists() and not gone_image.exists()
    assert live.exists() and live_image.exists() and other.exists()


def test_sweep_reads_the_pid_of_dotted_names(store, paths):
    # Container names may contain dots ("web.example"): the pid is the second field from
    # the end, never the first.
    dead = dead_pid()
    live = _staging_dir(paths.machines, f"create-web.{dead}", os.getpid())
    gone = _staging_dir(paths.machines, "create-web.example", dead)
    store.sweep()
    assert live.exists(), "a live command's staging directory was deleted"
    assert not gone.exists(), "a dead command's staging directory was not swept"


def test_sweep_removes_temporary_files_of_killed_writers_only(store, paths):
    """write_atomic's .FILE.PID.tmp, left by a command killed while writing settings (of an
    existing container too, so the name-based sweep would never see it)."""
    make_tree(paths, "web.example")
    nspawn, dropin = write_settings(paths, "web.example")
    dead, live = dead_pid(), os.getpid()
    dead_tmps = [nspawn.parent / f".web.example.nspawn.{dead}.tmp",
                 dropin.parent / f".50-nspawnctl.conf.{dead}.tmp",
                 paths.units / f".var-lib-machines-web.example.mount.{dead}.tmp"]
    live_tmp = nspawn.parent / f".web.example.nspawn.{live}.tmp"
    for f in dead_tmps + [live_tmp]:
        f.write_text("half")
    store.sweep()
    assert [f for f in dead_tmps if f.exists()] == []
    assert live_tmp.exists() and nspawn.exists() and dropin.exists()


def test_sweep_removes_our_settings_without_a_tree(store, paths):
    nspawn, dropin = write_settings(paths, "ghost")
    store.sweep()
    assert not nspawn.exists()
    assert not dropin.exists()


def test_sweep_keeps_a_hand_made_nspawn_file(store, paths):
    nspawn, dropin = write_settings(paths, "mine", ours=False)
    store.sweep()
    assert nspawn.exists()
    assert nspawn.read_text() == "[Exec]\nBoot=yes\n"


def test_sweep_keeps_settings_of_existing_trees(store, paths):
    make_tree(paths, "x")
    nspawn, dropin = write_settings(paths, "x")
    store.sweep()
    store.sweep("x")
    assert nspawn.exists() and (dropin / "50-nspawnctl.conf").exists()


def test_sweep_leaves_settings_of_a_locked_name_alone(store, paths):
    # A create in progress has its settings written just before its tree is renamed in.
    with store.lock("busy"):
        nspawn, _ = write_settings(paths, "busy")
        Store(paths).sweep()  # another command: cannot take the lock, so leaves them
        Store(paths).sweep("busy")
        assert nspawn.exists()
    store.sweep()
    assert not nspawn.exists()


def test_lock_sweeps_the_name_it_takes(store, paths):
    nspawn, dropin = write_settings(paths, "ghost", user_dropin=True)
    with store.lock("ghost"):
        assert not nspawn.exists()
        assert not (dropin / "50-nspawnctl.conf").exists()
        assert (dropin / "10-mine.conf").exists()


# install

def test_install_renames_into_place(store, paths):
    staged = paths.staging_in(paths.machines) / "create-x.1.abc/tree"
    (staged / "etc").mkdir(parents=True)
    store.install(staged, "x")
    assert (paths.tree("x") / "etc").is_dir()
    assert not staged.exists()


@pytest.mark.parametrize("existing", ["tree", "empty dir", "file", "symlink"])
def test_install_refuses_an_existing_name(store, paths, tmp_path, existing):
    staged = paths.staging_in(paths.machines) / "create-x.1.abc/tree"
    (staged / "etc").mkdir(parents=True)
    target = paths.tree("x")
    if existing == "tree":
        make_tree(paths, "x")
    elif existing == "empty dir":
        target.mkdir(parents=True)  # plain rename(2) would replace it
    elif existing == "file":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(tmp_path)
    with pytest.raises(Error, match="already exists"):
        store.install(staged, "x")
    assert (staged / "etc").is_dir()
    if existing == "empty dir":
        assert os.listdir(target) == []


# remove

@pytest.fixture
def sentinel(tmp_path):
    d = tmp_path / "sentinel"
    (d / "sub").mkdir(parents=True)
    (d / "precious").write_text("keep me")
    (d / "sub/also").write_text("keep me too")
    return d


def _sentinel_intact(d):
    return (d / "precious").read_text() == "keep me" and \
        (d / "sub/also").read_text() == "keep me too"


def test_remove_deletes_tree_and_settings(store, paths):
    tree = make_tree(paths, "x")
    (tree / "var/lib").mkdir(parents=True)
    (tree / "var/lib/ro").mkdir(mode=0o555)
    nspawn, dropin = write_settings(paths, "x")
    store.remove("x")
    assert not os.path.lexists(tree)
    assert not nspawn.exists()
    assert not dropin.exists()
    assert os.listdir(paths.staging_in(paths.machines)) == []
    assert store.names() == []


def test_remove_keeps_user_dropins(store, paths):
    make_tree(paths, "x")
    nspawn, dropin = write_settings(paths, "x", user_dropin=True)
    store.remove("x")
    assert not nspawn.exists()
    assert not (dropin / "50-nspawnctl.conf").exists()
    assert (dropin / "10-mine.conf").read_text() == "[Service]\nNice=5\n"


def test_remove_never_follows_symlinks_in_the_tree(store, paths, sentinel):
    tree = make_tree(paths, "x")
    (tree / "escape").symlink_to(sentinel)
    (tree / "etc/escape-file").symlink_to(sentinel / "precious")
    (tree / "etc/abs").symlink_to("/")
    (tree / "etc/rel").symlink_to("../../../../../../../../..")
    store.remove("x")
    assert not os.path.lexists(tree)
    assert _sentinel_intact(sentinel)


def test_remove_of_a_tree_that_is_a_symlink_removes_only_the_link(store, paths, sentinel):
    paths.machines.mkdir(parents=True)
    paths.tree("x").symlink_to(sentinel)
    write_settings(paths, "x")
    store.remove("x")
    assert not os.path.lexists(paths.tree("x"))
    assert _sentinel_intact(sentinel)
    assert not paths.nspawn_file("x").exists()


def test_machines_and_state_are_created_0700(paths, store):
    with store.lock("c1"):
        pass
    with store.staging(paths.machines, "x") as stage:
        (stage / "tree").mkdir()
        store.install(stage / "tree", "c1")
    assert stat.S_IMODE(paths.machines.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.state.stat().st_mode) == 0o700
