"""ops.upgrade with the container's commands and its systemd faked, the snapshot and rollback
real (in a private root): each failing step rolls the tree back, and says why."""

import json
import os

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import snapshot as snap_op
from nspawnctl.ops import upgrade as up
from nspawnctl.paths import Paths
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
        self.commands.append(command)
        word = command[-1] if command[0] != "sh" else "check"
        if word == "full-upgrade":  # the upgrade changes the tree
            (self.paths.tree(name) / "usr/bin/true").write_text("new\n")
        if self.fail == word:
            return 100, "line 1\nE: the failing step's last words"
        return 0, "ok"

    def start(self, paths, name, **kw):
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
        monkeypatch.setattr(snap_op, "Bus", lambda: FakeBus())
        monkeypatch.setattr(up, "Bus", lambda: FakeBus())
        monkeypatch.setattr(up, "is_active", lambda bus, name: g.running)
        for module in (up, snap_op):
            monkeypatch.setattr(module, "start", g.start)
            monkeypatch.setattr(module, "stop", g.stop)
        monkeypatch.setattr(up, "guest_state", lambda name: g.state)
        return g
    return make


def upgrade(paths, g, **kw):
    return up.upgrade(paths, "c1", report=lambda m: None, run_inside=g.run_inside, **kw)


def content(paths):
    return (paths.tree("c1") / "usr/bin/true").read_text()


def test_success_upgrades_and_drops_the_snapshot(paths, guest):
    g = guest()
    info = upgrade(paths, g)
    assert info["state"] == "running" and content(paths) == "new\n"
    assert [c[-1] for c in g.commands] == ["update", "full-upgrade"]
    assert snapshots.list_snapshots(paths, "c1") == []
    assert g.running is False  # it was stopped before: stopped after


def test_keep_snapshot(paths, guest):
    info = upgrade(paths, guest(), keep_snapshot=True)
    assert [m["tag"] for m in snapshots.list_snapshots(paths, "c1")] == [info["snapshot"]]


@pytest.mark.parametrize("step,said", [("update", "apt-get update (exit 100)"),
                                       ("full-upgrade", "apt-get full-upgrade (exit 100)"),
                                       ("check", "--check 'test -x /x' (exit 100)")])
def test_a_failing_step_rolls_back_and_says_why(paths, guest, step, said):
    g = guest(fail=step)
    with pytest.raises(Error) as exc:
        upgrade(paths, g, check="test -x /x")
    assert said in exc.value.message and "rolled back to snapshot upgrade-" in exc.value.message
    assert "E: the failing step's last words" in exc.value.hint
    assert content(paths) == "old\n"
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


def test_an_interrupted_upgrade_is_rolled_back_by_the_next(paths, guest):
    g = guest()
    snap_op.take(paths, "c1", "upgrade-x", False, lambda m: None)
    (paths.tree("c1") / "usr/bin/true").write_text("half\n")  # killed mid-upgrade
    (paths.state / "upgrades").mkdir(parents=True)
    (paths.state / "upgrades/c1.json").write_text(json.dumps({"tag": "upgrade-x", "pid": 1}))
    g.fail = "update"
    with pytest.raises(Error):
        upgrade(paths, g)
    assert content(paths) == "old\n"  # the interrupted one's snapshot, not "half"
