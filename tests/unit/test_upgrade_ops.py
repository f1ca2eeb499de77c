"""ops.upgrade with the container's commands and its systemd faked, the snapshot, the staged
copy, its swap and the rollback real (in a private root): each failing step leaves or puts the
tree back, and says why."""

import json
import os

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import upgrade as up
from nspawnctl.paths import Paths
from nspawnctl.runtime import snapshot as runtime_snapshot
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.store import snapshots
from tests.unit.test_snapshot_ops import FakeBus


class Guest:
    """The container: its systemd's state, and what each command run in it does."""

    def __init__(self, paths, before="running", after="running", fail=None):
        self.paths, self.state, self.after, self.fail = paths, before, after, fail
        self.commands = []
        self.running = False

    def run_inside(self, name, command, timeout, report):
        assert self.running, "a step inside needs the container running"
        self.commands.append(command)
        word = {"update": "update", "full-upgrade": "download"}.get(command[-1], "check")
        return self._result(word)

    def run_in_copy(self, root, name, private_users, command, timeout, report,
                    overlay_options=None):
        assert not self.running, "the copy is made of a stopped tree"
        # held stopped (store/hold.py): systemd starts it for nobody until the swap
        assert (self.paths.holds / name).exists(), "the container is not held"
        assert root != self.paths.tree(name) and root.is_dir()
        self.commands.append(command)
        (root / "usr/bin/true").write_text("new\n")  # the install changes the copy only
        assert (self.paths.tree(name) / "usr/bin/true").read_text() == "old\n"
        return self._result("install")

    def _result(self, word):
        if self.fail == word:
            return 100, "line 1\nE: the failing step's last words"
        return 0, "ok"

    def start(self, paths, name, **kw):
        assert not (paths.holds / name).exists(), "started while held"
        self.running = True
        self.state = self.after if self.commands else self.state
        return self.state

    def stop(self, paths, name, **kw):
        self.running = False
        return True


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    p = Paths.from_env()
    (p.tree("c1") / "usr/bin").mkdir(parents=True)
    (p.tree("c1") / "usr/bin/true").write_text("old\n")
    (p.tree("c1") / "usr/bin/apt-get").write_text("")
    save_config(p, "c1", ContainerConfig(boot=True))
    return p


@pytest.fixture
def guest(paths, monkeypatch):
    def make(**kw):
        g = Guest(paths, **kw)
        monkeypatch.setattr(runtime_snapshot, "Bus", lambda: FakeBus())
        monkeypatch.setattr(up, "Bus", lambda: FakeBus())
        monkeypatch.setattr(up, "is_active", lambda bus, name: g.running)
        for module in (up, runtime_snapshot):
            monkeypatch.setattr(module, "start", g.start)
            monkeypatch.setattr(module, "stop", g.stop)
        monkeypatch.setattr(up, "guest_state", lambda name: g.state)
        monkeypatch.setattr(up, "_stop_step_unit", lambda name: None)
        return g
    return make


def upgrade(paths, g, **kw):
    return up.upgrade(paths, "c1", report=lambda m: None, run_inside=g.run_inside,
                      run_in_copy=g.run_in_copy, **kw)


def content(paths):
    return (paths.tree("c1") / "usr/bin/true").read_text()


def test_success_upgrades_and_drops_the_snapshot(paths, guest):
    g = guest()
    info = upgrade(paths, g)
    assert info["state"] == "running" and content(paths) == "new\n"
    assert [c[-1] for c in g.commands][:2] == ["update", "full-upgrade"]
    assert "--download-only" in g.commands[1] and "--no-download" in g.commands[2][2]
    assert snapshots.list_snapshots(paths, "c1") == []
    assert g.running is False  # it was stopped before: stopped after


def test_keep_snapshot(paths, guest):
    info = upgrade(paths, guest(), keep_snapshot=True)
    assert [m["tag"] for m in snapshots.list_snapshots(paths, "c1")] == [info["snapshot"]]


@pytest.mark.parametrize("step,said", [("update", "apt-get update (exit 100)"),
                                       ("download", "download the upgrade (exit 100)")])
def test_a_failing_download_changes_nothing(paths, guest, step, said):
    g = guest(fail=step)
    with pytest.raises(Error) as exc:
        upgrade(paths, g)
    assert said in exc.value.message and "nothing was changed" in exc.value.message
    assert "E: the failing step's last words" in exc.value.hint
    assert content(paths) == "old\n" and snapshots.list_snapshots(paths, "c1") == []
    assert not (paths.state / "upgrades/c1.json").exists()


def test_a_failing_install_leaves_the_tree_and_no_snapshot(paths, guest):
    g = guest(fail="install")
    with pytest.raises(Error) as exc:
        upgrade(paths, g)
    assert "apt-get full-upgrade (exit 100)" in exc.value.message
    assert "its tree was not changed" in exc.value.message
    assert content(paths) == "old\n" and snapshots.list_snapshots(paths, "c1") == []
    assert not (paths.state / "upgrades/c1.json").exists()
    assert not os.listdir(paths.staging_in(paths.machines))  # the copy is gone


def test_a_failing_check_rolls_back_and_says_why(paths, guest):
    g = guest(fail="check")
    with pytest.raises(Error) as exc:
        upgrade(paths, g, check="test -x /x")
    assert "--check 'test -x /x' (exit 100)" in exc.value.message
    assert "rolled back to snapshot upgrade-" in exc.value.message
    assert "E: the failing step's last words" in exc.value.hint
    assert content(paths) == "old\n"
    assert snapshots.list_snapshots(paths, "c1") == []  # not asked to keep it
    assert not (paths.state / "upgrades/c1.json").exists()


def test_degraded_after_rolls_back_unless_degraded_before(paths, guest):
    with pytest.raises(Error, match="health check"):
        upgrade(paths, guest(after="degraded"))
    assert content(paths) == "old\n"
    info = upgrade(paths, guest(before="degraded", after="degraded"))
    assert info["state"] == "degraded" and content(paths) == "new\n"


def test_does_not_apply_to_single_command_or_apt_less_containers(paths, guest):
    save_config(paths, "c1", ContainerConfig(boot=False))
    with pytest.raises(Error, match="does not apply to c1: it runs a single command"):
        upgrade(paths, guest())
    save_config(paths, "c1", ContainerConfig(boot=True))
    os.unlink(paths.tree("c1") / "usr/bin/apt-get")
    with pytest.raises(Error, match="does not apply to c1: it has no apt-get"):
        upgrade(paths, guest())


def interrupt(paths, phase, keep=False):
    """What a kill leaves: the snapshot, the record, and (after the swap) the new tree."""
    runtime_snapshot.take(paths, "c1", "upgrade-x", False, lambda m: None)
    if phase == "swapped":
        (paths.tree("c1") / "usr/bin/true").write_text("new, unchecked\n")
    (paths.state / "upgrades").mkdir(parents=True)
    (paths.state / "upgrades/c1.json").write_text(json.dumps(
        {"tag": "upgrade-x", "phase": phase, "was_running": True, "keep_snapshot": keep}))


def test_an_upgrade_killed_after_its_swap_is_rolled_back_by_the_next(paths, guest):
    g = guest(fail="update")
    interrupt(paths, "swapped")
    with pytest.raises(Error):
        upgrade(paths, g)
    assert content(paths) == "old\n"  # the interrupted one's snapshot, not its new tree
    assert snapshots.list_snapshots(paths, "c1") == []


def test_an_upgrade_killed_before_its_swap_has_nothing_to_undo(paths, guest):
    g = guest()
    interrupt(paths, "install", keep=True)
    (paths.tree("c1") / "usr/bin/true").write_text("changed since\n")
    assert up.finish_interrupted(paths, "c1", lambda m: None)
    assert content(paths) == "changed since\n"  # not rolled back: the swap never came
    assert g.running  # it was running before the upgrade stopped it
    assert [m["tag"] for m in snapshots.list_snapshots(paths, "c1")] == ["upgrade-x"]
    assert not up.finish_interrupted(paths, "c1", lambda m: None)  # done: no record


def test_recover_rolls_back_an_upgrade_killed_after_its_swap(paths, guest):
    from nspawnctl.ops import host
    guest()
    interrupt(paths, "swapped")
    assert "finished the interrupted upgrade of c1" in host.recover(paths)
    assert content(paths) == "old\n" and up.interrupted(paths) == []
