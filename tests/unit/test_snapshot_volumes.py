"""snapshot --with-volumes and rollback --with-volumes on a private root, the bus a fake that
says which containers run: what the snapshot holds and records, the refusals (one line,
nothing changed), the other containers that mount a volume held stopped for the copy, and a
rollback SIGKILLed at every step leaving each volume whole (old or restored)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from nspawnctl import cli as cli_module
from nspawnctl.cli import jsonview
from nspawnctl.errors import CONFLICT, Conflict
from nspawnctl.ops import snapshot as snap_op
from nspawnctl.paths import Paths
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.values import parse_volume
from nspawnctl.store import snapshots, volumes
from nspawnctl.store.containers import Store
from nspawnctl.store.hold import is_held
from tests.unit.fakes import FakeBus, context

ROOT = os.geteuid() == 0
WORKTREE = Path(__file__).resolve().parents[2]


class Bus(FakeBus):
    """FakeBus, but only the containers named in `running` run, and the hold each unit
    asserts is under this test's root (FakeBus reads it from the environment)."""

    def __init__(self, paths: Paths, running=()):
        super().__init__()
        self.paths, self.running = paths, set(running)

    @staticmethod
    def _name(unit):
        return unit.split("@", 1)[1].rsplit(".", 1)[0]

    def active_state(self, unit):
        return "active" if self._name(unit) in self.running else "inactive"

    def is_active(self, unit):
        return self._name(unit) in self.running

    def unit_asserts(self, unit):
        return [str(self.paths.holds / self._name(unit))]


def container(paths: Paths, name: str, *mounts: str):
    (paths.tree(name) / "etc").mkdir(parents=True)
    (paths.tree(name) / "etc/hostname").write_text(f"{name}\n")
    save_config(paths, name, ContainerConfig(volumes=tuple(map(parse_volume, mounts))))


def fill(paths: Paths, volume: str, files: dict[str, str], owner=(1000, 1001)):
    """VOLUME's data made exactly FILES (name -> text), each owned by OWNER (as root)."""
    data = paths.volume_data(volume)
    for entry in os.listdir(data):
        shutil.rmtree(data / entry) if (data / entry).is_dir() else os.unlink(data / entry)
    for name, text in files.items():
        (data / name).write_text(text)
        if ROOT:
            os.chown(data / name, *owner)


def content(paths: Paths, volume: str) -> dict[str, tuple[str, int, int]]:
    data = paths.volume_data(volume)
    return {n: ((data / n).read_text(), (data / n).stat().st_uid, (data / n).stat().st_gid)
            for n in sorted(os.listdir(data))}


@pytest.fixture
def paths(private_root):
    p = private_root
    volumes.create(p, "data")
    volumes.create(p, "logs")
    volumes.create(p, "other")
    container(p, "c1", "data:/srv", "logs:/var/log/app", "data:/again:ro")
    container(p, "c2", "data:/x:ro")  # shares data with c1
    container(p, "c3", "other:/o")    # mounts none of c1's
    fill(p, "data", {"f": "old\n"})
    fill(p, "logs", {"l": "log 1\n"}, owner=(2000, 2000))
    return p


def ctx_with(paths, running=(), lines=None):
    return context(paths, Bus(paths, running), report=(lines.append if lines is not None
                                                       else lambda line: None))


def state(paths: Paths) -> list[str]:
    """Every path under the root, but locks: what a refused command must not change."""
    return sorted(f"{p.relative_to(paths.machines.parent)}" for p in paths.machines.parent.rglob("*")
                  if not p.name.endswith(".lock"))


def test_with_volumes_copies_each_volume_once_with_its_owners_and_records_them(paths):
    ctx = ctx_with(paths)
    plain = snap_op.snapshot(ctx, "c1", "plain")
    info = snap_op.snapshot(ctx, "c1", "full", with_volumes=True)
    assert info["volumes"] == ["data", "logs"]  # in the settings' order, data once
    assert plain["volumes"] == []
    where = snapshots.snapshot_dir(paths, "c1", "full")
    assert snapshots.read_meta(where)["volumes"] == ["data", "logs"]
    assert sorted(os.listdir(where / "volumes")) == ["data", "logs"]
    assert not (snapshots.snapshot_dir(paths, "c1", "plain") / "volumes").exists()
    saved = where / "volumes/data/f"
    assert saved.read_text() == "old\n"
    if ROOT:  # the owners containers see, kept exactly
        assert (saved.stat().st_uid, saved.stat().st_gid) == (1000, 1001)
        logs = (where / "volumes/logs/l").stat()
        assert (logs.st_uid, logs.st_gid) == (2000, 2000)
    assert info["size"] > plain["size"]  # sizes count the volumes
    # snapshots (and --json) say which volumes each holds
    listed = {r["tag"]: r["volumes"] for r in snap_op.list_snapshots(ctx, "c1")}
    assert listed == {"plain": [], "full": ["data", "logs"]}
    assert not is_held(paths, "c2") and not is_held(paths, "c1")  # holds let go


def test_the_other_containers_that_mount_a_volume_are_held_stopped_for_the_copy(
        paths, monkeypatch):
    """c1 running is frozen; c2 (mounts data) is held stopped while the volumes are copied,
    inside the freeze; c3 (mounts none of them) is left alone."""
    ctx = ctx_with(paths, running={"c1"})
    seen = []
    copy = snapshots.copy_volumes

    def copy_volumes(paths_, names, stage):
        seen.append((names, is_held(paths, "c2"), is_held(paths, "c3"),
                     [c[0] for c in ctx.bus.calls]))
        return copy(paths_, names, stage)
    monkeypatch.setattr(snapshots, "copy_volumes", copy_volumes)
    snap_op.snapshot(ctx, "c1", "hot", with_volumes=True)
    assert seen == [(["data", "logs"], True, False, ["freeze"])]
    assert [c[0] for c in ctx.bus.calls][-1] == "thaw_unit"
    assert not is_held(paths, "c2")


@pytest.mark.parametrize("verb", ["snapshot", "rollback"])
def test_refused_while_another_running_container_mounts_a_volume(paths, verb):
    ctx = ctx_with(paths)
    snap_op.snapshot(ctx, "c1", "t", with_volumes=True)
    fill(paths, "data", {"f": "changed\n"})
    before, data = state(paths), content(paths, "data")
    ctx = ctx_with(paths, running={"c1", "c2"})
    with pytest.raises(Conflict) as refused:
        if verb == "snapshot":
            snap_op.snapshot(ctx, "c1", "t2", with_volumes=True)
        else:
            snap_op.rollback(ctx, "c1", "t", with_volumes=True)
    what = "no snapshot taken" if verb == "snapshot" else "not rolled back"
    assert refused.value.message == f"volume data is mounted by running container c2 too: {what}"
    assert refused.value.hint == "stop it first: nspawnctl stop c2"
    assert refused.value.exit_code == CONFLICT
    assert state(paths) == before and content(paths, "data") == data
    # c1 was neither frozen nor stopped, and nothing holds c2 any more
    assert not any(c[0] in ("freeze", "stop_unit") for c in ctx.bus.calls), ctx.bus.calls
    assert not is_held(paths, "c2")


def test_rollback_with_volumes_puts_each_back_and_without_leaves_them(paths):
    lines: list[str] = []
    ctx = ctx_with(paths, lines=lines)
    snap_op.snapshot(ctx, "c1", "t", with_volumes=True)
    saved = {v: content(paths, v) for v in ("data", "logs")}
    fill(paths, "data", {"f": "changed\n", "new": "x\n"}, owner=(0, 0))
    os.unlink(paths.volume_data("logs") / "l")
    changed = {v: content(paths, v) for v in ("data", "logs")}

    info = snap_op.rollback(ctx, "c1", "t")  # without: the volumes stay as they are
    assert info["volumes"] == [] and {v: content(paths, v) for v in saved} == changed
    assert lines[-1] == ("snapshot t also holds volumes data, logs: left as they are "
                         "(rollback --with-volumes puts them back)")

    info = snap_op.rollback(ctx, "c1", "t", with_volumes=True)
    assert info["volumes"] == ["data", "logs"]
    assert {v: content(paths, v) for v in saved} == saved  # owners too
    assert os.stat(paths.volume_data("data")).st_mode & 0o777 == 0o755
    # the old data went with the staging directory; the snapshot stays
    assert os.listdir(paths.staging_in(paths.volumes)) == []
    assert (snapshots.snapshot_dir(paths, "c1", "t") / "volumes/data/f").exists()
    assert volumes.names(paths) == ["data", "logs", "other"]


def test_rollback_with_volumes_refuses_a_snapshot_without_them_and_a_volume_gone(paths):
    ctx = ctx_with(paths)
    snap_op.snapshot(ctx, "c1", "plain")
    snap_op.snapshot(ctx, "c1", "full", with_volumes=True)
    before = state(paths)
    with pytest.raises(Conflict, match=r"^snapshot plain of c1 holds no volumes: not rolled "
                                       r"back$"):
        snap_op.rollback(ctx, "c1", "plain", with_volumes=True)
    assert state(paths) == before
    # logs removed (c1's settings changed first, as volume remove asks)
    save_config(paths, "c1", ContainerConfig(volumes=(parse_volume("data:/srv"),)))
    volumes.remove(paths, "logs")
    before = state(paths)
    with pytest.raises(Conflict) as refused:
        snap_op.rollback(ctx, "c1", "full", with_volumes=True)
    assert refused.value.message == ("volume logs, which snapshot full holds, no longer "
                                     "exists: not rolled back")
    assert "nspawnctl volume create logs" in refused.value.hint
    assert state(paths) == before


def test_snapshot_rm_takes_the_volumes_copies_with_it(paths):
    ctx = ctx_with(paths)
    snap_op.snapshot(ctx, "c1", "t", with_volumes=True)
    gone = snap_op.remove_snapshot(ctx, "c1", "t")
    assert gone["volumes"] == ["data", "logs"]
    assert not snapshots.snapshot_dir(paths, "c1").exists()
    assert content(paths, "data")["f"][0] == "old\n"  # the volume itself stays


def test_cli_flags_lines_and_json(paths):
    app = cli_module.App()
    app._ctx = ctx_with(paths)

    def run(*args):
        result = CliRunner().invoke(cli_module.cli, list(args), obj=app)
        assert result.exit_code == 0, result.output
        return result.output

    made = json.loads(run("snapshot", "c1", "t", "--with-volumes", "--json"))
    assert jsonview.check(jsonview.schema("snapshot"), made) == []
    assert made["volumes"] == ["data", "logs"]
    listed = json.loads(run("snapshots", "c1", "--json"))
    assert jsonview.check([jsonview.schema("snapshot")], listed) == []
    assert listed[0]["volumes"] == ["data", "logs"]
    table = run("snapshot", "list", "c1").splitlines()
    assert table[0].split()[-1].lower() == "volumes" and table[-1].split()[-1] == "data,logs"
    back = json.loads(run("rollback", "c1", "t", "--with-volumes", "--json"))
    assert jsonview.check(jsonview.schema("rolled_back"), back) == []
    assert back["volumes"] == ["data", "logs"]
    assert run("snapshot", "rollback", "c1", "t", "--with-volumes") == \
        "c1 rolled back to t (" + back["method"] + ", volumes data, logs)\n"
    assert "volumes data, logs)" in run("snapshot", "create", "c1", "t2", "--with-volumes")


# ------------------------------------------------------------ killed while it rolls back

STRACE = shutil.which("strace")
# The calls on the way of a rollback that change the disk once the copies are made: the
# exchanges (one per volume, then the tree), the syncs, and the old data deleted.
CALLS = ("renameat2", "syncfs", "fsync", "unlinkat")
MAX_N = 60
DRIVER = """
from nspawnctl.ops import snapshot
from nspawnctl.paths import Paths
from tests.unit.fakes import context
snapshot.rollback(context(Paths.from_env()), "c1", "t", with_volumes=True)
"""


@pytest.mark.skipif(STRACE is None, reason="needs strace (apt-get install strace)")
def test_a_rollback_killed_at_every_step_leaves_each_volume_whole(tmp_path, private_root):
    """SIGKILL at the N-th call of each kind, for every N up to the last (strace's fault
    injection): each volume is then exactly its old data or exactly the snapshot's, never a
    mix; and the next command's sweep takes the dead one's staging."""
    old = {"data": {"f": "old\n", "g": "old g\n"}, "logs": {"l": "log 1\n"}}
    new = {"data": {"f": "changed\n", "h": "added\n"}, "logs": {}}

    def setup(root: Path) -> Paths:
        p = Paths.under(root)
        for v in ("data", "logs"):
            volumes.create(p, v)
            fill(p, v, old[v])
        container(p, "c1", "data:/srv", "logs:/l")
        snap_op.snapshot(context(p, Bus(p)), "c1", "t", with_volumes=True)
        for v in ("data", "logs"):
            fill(p, v, new[v], owner=(3000, 3000))
        return p

    def which(p: Paths, v: str) -> str:
        seen = {n: text for n, (text, _, _) in content(p, v).items()}
        assert seen in (old[v], new[v]), (v, seen)  # whole: one or the other
        return "restored" if seen == old[v] else "old"

    def every_step_of(call: str) -> list[tuple[str, ...]]:
        outcomes = []
        for n in range(1, MAX_N):
            root = tmp_path / f"{call}-{n}"
            p = setup(root)
            env = {**os.environ, "NSPAWNCTL_ROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
            r = subprocess.run([STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={call}",
                                "-e", f"inject={call}:signal=KILL:when={n}",
                                sys.executable, "-c", DRIVER], env=env, capture_output=True,
                               text=True, timeout=60, cwd=WORKTREE)
            killed = r.returncode == -signal.SIGKILL or "killed by SIGKILL" in r.stderr
            outcome = (which(p, "data"), which(p, "logs"))
            if not killed:  # past the last such call: the rollback finished
                assert r.returncode == 0, r.stderr
                assert outcome == ("restored", "restored")
                shutil.rmtree(root, ignore_errors=True)
                return outcomes
            outcomes.append(outcome)
            Store(p).sweep()  # the next command's: the dead one's staging goes
            assert os.listdir(p.staging_in(p.volumes)) == []
            assert (which(p, "data"), which(p, "logs")) == outcome
            shutil.rmtree(root, ignore_errors=True)
        raise AssertionError(f"rollback made more than {MAX_N} {call} calls")

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = [o for found in pool.map(every_step_of, CALLS) for o in found]
    # the kills landed before, between and after the exchanges: each state was seen
    assert {("old", "old"), ("restored", "old"), ("restored", "restored")} <= set(outcomes), \
        outcomes
