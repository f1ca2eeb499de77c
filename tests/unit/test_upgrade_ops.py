"""ops.upgrade (runtime.upgrade) with the container's commands and its systemd faked, the snapshot, the staged
copy, its swap and the rollback real (in a private root): each failing step leaves or puts the
tree back, and says why."""

import dataclasses
import json
import os

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import upgrade as up_op
from nspawnctl.paths import Paths
from nspawnctl.runtime import snapshot as runtime_snapshot
from nspawnctl.runtime import upgrade as up
from nspawnctl.runtime.context import Held
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.store import snapshots
from tests.unit.fakes import context


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

    def start(self, held, **kw):
        assert not (held.paths.holds / held.name).exists(), "started while held"
        self.running = True
        self.state = self.after if self.commands else self.state
        return self.state

    def stop(self, ctx, name, **kw):
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
        monkeypatch.setattr(up, "is_active", lambda bus, name: g.running)
        for module in (up, runtime_snapshot):
            monkeypatch.setattr(module, "start", g.start)
            monkeypatch.setattr(module, "stop", g.stop)
        monkeypatch.setattr(up, "guest_state", lambda name: g.state)
        monkeypatch.setattr(up, "_stop_step_unit", lambda name: None)
        return g
    return make


def upgrade(paths, g, report=lambda m: None, **kw):
    return up_op.upgrade(context(paths, report=report), "c1", run_inside=g.run_inside,
                         run_in_copy=g.run_in_copy, **kw)


def held(paths, report=lambda m: None) -> Held:
    """c1 as a command holding it would pass it on (the lock itself is not taken here)."""
    return Held(context(paths, report=report), "c1")


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


def test_a_failing_update_on_a_nat_network_says_first_that_forwarding_is_off(
        paths, guest, monkeypatch, tmp_path):
    """apt's "Temporary failure resolving" is far from its cause when the host does not
    forward: the failure says that first, with doctor's fix, then apt's last words."""
    from nspawnctl.network import containers as network
    save_config(paths, "c1", ContainerConfig(boot=True, network="default"))
    (tmp_path / "ip_forward").write_text("0\n")
    monkeypatch.setattr(network, "IP_FORWARD", tmp_path / "ip_forward")
    monkeypatch.setattr(network, "forward_warnings", lambda: [])
    with pytest.raises(Error) as exc:
        upgrade(paths, guest(fail="update"))
    hint = exc.value.hint.splitlines()
    assert hint[0] == f"{network.FORWARDING_OFF}; turn it on: {network.FORWARDING_FIX}"
    assert hint[-1] == "E: the failing step's last words"


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
    runtime_snapshot.take(held(paths), "upgrade-x", False)
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
    assert up.finish_interrupted(held(paths))
    assert content(paths) == "changed since\n"  # not rolled back: the swap never came
    assert g.running  # it was running before the upgrade stopped it
    assert [m["tag"] for m in snapshots.list_snapshots(paths, "c1")] == ["upgrade-x"]
    assert not up.finish_interrupted(held(paths))  # done: no record


def test_recover_rolls_back_an_upgrade_killed_after_its_swap(paths, guest):
    from nspawnctl.ops import host
    guest()
    interrupt(paths, "swapped")
    assert "finished the interrupted upgrade of c1" in host.recover(paths)
    assert content(paths) == "old\n" and up.interrupted(paths) == []


# -- the table of phases --------------------------------------------------------------------------

def test_the_progress_lines_are_numbered_from_the_table(paths, guest):
    g, lines = guest(), []
    upgrade(paths, g, report=lines.append)
    steps = [line for line in lines if line.startswith("[")]
    assert steps[0:2] == ["[1/6] apt-get update", "[2/6] download the upgrade"]
    assert steps[2].startswith("[3/6] stop, snapshot upgrade-")
    assert steps[3:] == ["[4/6] install the upgrade into a copy of the tree", "[5/6] start",
                         "[6/6] health check: running"]


def fake_table(paths, log, fail_at=None, error=Error):
    """Phases a..f that log what they do and undo; fail_at raises in that one's do.  c, d and
    e are held; c and e recorded; e kept (its undo only on a failure)."""
    def do(name):
        def run(u):
            held = (paths.holds / "c1").exists()
            record = paths.state / "upgrades/c1.json"
            word = json.loads(record.read_text())["phase"] if record.exists() else None
            log.append(f"do {name}" + (" held" if held else "") + (f" [{word}]" if word else ""))
            if name == fail_at:
                raise error(f"{name} broke") if error is Error else error()
        return run

    def undo(name):
        def run(u):
            assert not (paths.holds / "c1").exists(), "undone while held"
            log.append(f"undo {name}")
        return run
    return [up.Phase("a", do("a"), undo("a")),
            up.Phase(None, do("b")),
            up.Phase("c", do("c"), undo("c"), record="one", held=True),
            up.Phase("d", do("d"), held=True),
            up.Phase(None, do("e"), undo("e"), record="two", held=True, kept=True),
            up.Phase("f", do("f"), undo("f"))]


DONE = ["do a", "do b", "do c held [one]", "do d held [one]", "do e held [two]", "do f [two]"]


@pytest.mark.parametrize("fail_at,undone,left", [
    ("a", [], "nothing was changed"),
    ("b", ["undo a"], "nothing was changed"),
    # a recorded phase's undo is owed from its record on: recovery would run it after a kill
    ("c", ["undo c", "undo a"], "its tree was not changed"),
    ("d", ["undo c", "undo a"], "its tree was not changed"),
    ("e", ["undo e", "undo c", "undo a"], "rolled back to snapshot t"),
    ("f", ["undo e", "undo c", "undo a"], "rolled back to snapshot t"),
])
def test_a_failure_at_each_phase_undoes_those_begun_newest_first(paths, guest, fail_at,
                                                                  undone, left):
    guest()  # the bus the hold asks is a fake
    log, lines = [], []
    table = fake_table(paths, log, fail_at)
    with pytest.raises(Error) as exc:
        up.drive(up.Upgrade(held(paths, lines.append), tag="t"), table)
    ran = DONE[:"abcdef".index(fail_at) + 1]
    assert log == ran + undone
    assert exc.value.message == f"upgrade of c1 failed at {fail_at} broke; {left}"
    assert not (paths.state / "upgrades/c1.json").exists()
    assert not (paths.holds / "c1").exists()
    # the labels come from the table: four of the six phases have one
    numbered = {"a": "[1/4] a", "c": "[2/4] c", "d": "[3/4] d", "f": "[4/4] f"}
    assert lines == [numbered[n] for n in "abcdef"[:"abcdef".index(fail_at) + 1]
                     if n in numbered]


def test_a_success_undoes_all_but_the_kept_phase(paths, guest):
    guest()
    log = []
    up.drive(up.Upgrade(held(paths), tag="t"), fake_table(paths, log))
    assert log == DONE + ["undo f", "undo c", "undo a"]  # e (the swap) stays
    assert not (paths.state / "upgrades/c1.json").exists()


def test_an_interrupt_undoes_and_goes_on(paths, guest):
    guest()
    log = []
    with pytest.raises(KeyboardInterrupt):
        up.drive(up.Upgrade(held(paths), tag="t"),
                  fake_table(paths, log, "d", KeyboardInterrupt))
    assert log == DONE[:4] + ["undo c", "undo a"]


def test_recovery_undoes_the_recorded_phases_through_the_records_word(paths):
    table = fake_table(paths, [])
    assert [p.label for p in up.recorded_through("one", table)] == ["c"]
    assert [p.label for p in up.recorded_through("two", table)] == ["c", None]
    assert [p.label for p in up.recorded_through("zzz", table)] == ["c"]  # the least
    assert [p.record for p in up.recorded_through("swapped", up.PHASES)] == \
        ["install", "swapped"]


LEFT = ["nothing was changed"] * 3 + ["its tree was not changed"] * 2 + \
    ["rolled back to snapshot upgrade-"] * 3


@pytest.mark.parametrize("was_running", [False, True])
@pytest.mark.parametrize("at", range(len(up.PHASES)))
def test_a_failure_at_any_phase_leaves_the_container_as_it_was(paths, guest, monkeypatch, at,
                                                                 was_running):
    """Each real phase failing in turn: the tree, the running state, no snapshot, no record
    and no hold left."""
    g = guest()
    g.running = was_running

    def broken(u):
        raise Error("injected")
    phases = list(up.PHASES)
    phases[at] = dataclasses.replace(phases[at], do=broken)
    monkeypatch.setattr(up, "PHASES", tuple(phases))
    with pytest.raises(Error) as exc:
        upgrade(paths, g)
    assert exc.value.message.startswith(f"upgrade of c1 failed at injected; {LEFT[at]}")
    assert content(paths) == "old\n"
    assert g.running is was_running
    assert snapshots.list_snapshots(paths, "c1") == []
    assert not (paths.state / "upgrades/c1.json").exists()
    assert not (paths.holds / "c1").exists()
    staging = paths.staging_in(paths.machines)
    assert not staging.exists() or not os.listdir(staging)


def test_a_failing_snapshot_starts_it_again_and_leaves_no_record(paths, guest, monkeypatch):
    g = guest()
    g.running = True

    def disk_full(*args, **kwargs):
        raise Error("no space left on device")
    monkeypatch.setattr(up, "take", disk_full)
    with pytest.raises(Error) as exc:
        upgrade(paths, g)
    assert exc.value.message == ("upgrade of c1 failed at no space left on device; its tree "
                                 "was not changed")
    assert g.running and content(paths) == "old\n"
    assert not (paths.state / "upgrades/c1.json").exists()
