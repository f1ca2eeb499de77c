"""The sweep goes on past what it cannot delete (something mounted in a dead command's staging
directory, a name it cannot unlink), never failing the command that sweeps: one warning line
says what and why, and nothing is said when nothing fails.  It never deletes inside a mount."""

import shutil
import subprocess

import hostile
import pytest

tmpfs_in = hostile.tmpfs_in


@pytest.fixture
def store(tmp_path, monkeypatch):
    from nspawnctl.paths import Paths
    from nspawnctl.store.containers import Store
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    return Store(Paths.from_env())


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_sweep_goes_on_past_what_it_cannot_delete(store, caplog):
    """A temporary-file name that is a directory cannot be unlinked: said, then passed."""
    paths, dead = store.paths, dead_pid()
    stuck = paths.nspawn / f".web.nspawn.{dead}.tmp"
    (stuck / "inside").mkdir(parents=True)
    gone = paths.nspawn / f".db.nspawn.{dead}.tmp"
    gone.write_text("half")
    staging = paths.staging_in(paths.machines) / f"create-x.{dead}.abc"
    (staging / "tree").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        store.sweep()
    assert not gone.exists() and not staging.exists() and stuck.exists()
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage().startswith(f"warning: could not delete temporary file {stuck}: ")
    caplog.clear()
    shutil.rmtree(stuck)
    with caplog.at_level("WARNING"):
        store.sweep()
    assert caplog.records == []  # quiet when nothing fails


def test_sweep_never_deletes_inside_a_mount(store, tmpfs_in, caplog):
    paths, dead = store.paths, dead_pid()
    area = paths.staging_in(paths.machines)
    mounted = tmpfs_in(area / f"create-a.{dead}.abc" / "tree" / "proc")
    plain = area / f"create-b.{dead}.abc"
    (plain / "tree/etc").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        store.sweep()  # no exception: the command that sweeps goes on
    assert (mounted / "precious").read_text() == "keep"
    assert not plain.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "a filesystem is mounted there" in messages[0]
    assert str(area / f"create-a.{dead}.abc") in messages[0]


def test_staging_left_with_a_mount_inside_warns(store, tmpfs_in, caplog):
    with caplog.at_level("WARNING"):
        with store.staging(store.paths.machines, "create-x") as stage:
            mounted = tmpfs_in(stage / "tree" / "mnt")
    assert (mounted / "precious").read_text() == "keep"
    assert "could not delete staging directory" in caplog.records[0].getMessage()
