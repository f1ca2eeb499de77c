"""auto-update (ops/autoupdate.py, runtime/autoupdate.py) with the registry and the container's
systemd faked, the snapshot, the staged tree, its swap, the settings and the rollback real (in
a private root): a new image is put in keeping the settings, an unhealthy one is rolled back and
said, a killed run is finished by the next one and by recover, --dry-run touches nothing, and
--auto-update registry is refused where it cannot work."""

import contextlib
import dataclasses
import json
import os
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from nspawnctl import cli
from nspawnctl.errors import Error
from nspawnctl.ops import autoupdate as op
from nspawnctl.ops import health as health_ops
from nspawnctl.paths import Paths
from nspawnctl.runtime import autoupdate as au
from nspawnctl.runtime import snapshot as runtime_snapshot
from nspawnctl.runtime import upgrade as engine
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.sources.registry.pull import Current
from nspawnctl.store import snapshots
from tests.unit.fakes import context

REF = "reg.test/app:1"
OLD, NEW = "oci-sha256-" + "1" * 64, "oci-sha256-" + "2" * 64


class Guest:
    """The container's systemd: whether it runs, what its start gives (running, degraded, or
    a command that exits at once)."""

    def __init__(self, paths, after="running", exits=False):
        self.paths, self.after, self.exits = paths, after, exits
        self.running, self.starts = False, 0

    def start(self, held, **kw):
        assert not (held.paths.holds / held.name).exists(), "started while held"
        self.starts += 1
        new = content(self.paths) == "new\n"
        self.running = not (new and self.exits)
        return self.after if new else "running"

    def stop(self, ctx, name, **kw):
        self.running = False
        return True


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    p = Paths.from_env()
    (p.tree("c1") / "etc").mkdir(parents=True)
    (p.tree("c1") / "app").write_text("old\n")
    save_config(p, "c1", ContainerConfig(
        boot=False, command=("/app",), env=("MODE=prod",), image=OLD, auto_update="registry",
        made_from=(f"docker://{REF}", "--platform", "linux/arm64", "--no-tls-verify")))
    image = tmp_path / "image"  # the new base tree, as held_image gives it
    (image / "tree/etc").mkdir(parents=True)
    (image / "tree/app").write_text("new\n")
    (image / "tree/etc/hostname").write_text("image's\n")
    return p


@pytest.fixture
def registry(paths, tmp_path, monkeypatch):
    """What the registry says the reference names (key), and what was asked of it."""
    state = SimpleNamespace(key=NEW, asked=[])

    def lookup(paths_, ref, platform=None, tls_verify=None):
        state.asked.append(("lookup", ref, platform, tls_verify))
        return Current(ref, "sha256:" + state.key.split("-", 2)[2])

    def pull(paths_, ref, policy=None, platform=None, tls_verify=None, report=None):
        state.asked.append(("pull", ref, policy, platform, tls_verify))
        return SimpleNamespace(record=None)

    @contextlib.contextmanager
    def held_image(paths_, key, meta, build, report):
        yield tmp_path / "image", True

    monkeypatch.setattr(op, "lookup", lookup)
    monkeypatch.setattr(op, "pull", pull)
    monkeypatch.setattr(op, "pulled_base", lambda *a, **k: SimpleNamespace(
        key=state.key, meta={}, build=None))
    monkeypatch.setattr(op, "held_image", held_image)
    return state


@pytest.fixture
def guest(paths, monkeypatch):
    def make(**kw):
        g = Guest(paths, **kw)
        for module in (engine, au):
            monkeypatch.setattr(module, "is_active", lambda bus, name: g.running)
        for module in (engine, runtime_snapshot):
            monkeypatch.setattr(module, "start", g.start)
            monkeypatch.setattr(module, "stop", g.stop)
        monkeypatch.setattr(au, "guest_state", lambda name: "running")
        monkeypatch.setattr(au, "SETTLE_SECONDS", 0.05)
        return g
    return make


def content(paths) -> str:
    return (paths.tree("c1") / "app").read_text()


def update(paths, names=("c1",), lines=None, **kw) -> list[dict]:
    ctx = context(paths, report=lines.append if lines is not None else lambda _m: None)
    return op.auto_update(ctx, list(names), **kw)


def left(paths) -> list[str]:
    """What no run may leave once it is done: a snapshot, a record, a hold, staging."""
    found = [f"snapshot {m['tag']}" for m in snapshots.list_snapshots(paths, "c1")]
    found += [f"record {n}" for n in engine.interrupted(paths)]
    found += ["hold"] if (paths.holds / "c1").exists() else []
    staging = paths.staging_in(paths.machines)
    found += [f"staging {e}" for e in (os.listdir(staging) if staging.exists() else [])]
    return found


def test_a_new_image_is_put_in_keeping_the_settings(paths, registry, guest):
    g = guest()
    g.running = True
    before = load_config(paths, "c1")
    lines: list[str] = []
    rows = update(paths, lines=lines)
    assert rows == [{"name": "c1", "reference": REF, "image": OLD, "new_image": NEW,
                     "action": "updated", "message": None}]
    assert content(paths) == "new\n" and g.running
    after = load_config(paths, "c1")
    assert after == dataclasses.replace(before, image=NEW)  # only the image record changed
    # the container's identity, as create gives a clone: its hostname, not the image's
    assert (paths.tree("c1") / "etc/hostname").read_text() == "c1\n"
    # the reference, platform and TLS choice create was given
    assert registry.asked == [("lookup", REF, "linux/arm64", False),
                              ("pull", REF, "always", "linux/arm64", False)]
    assert [line for line in lines if line.startswith("[")] == [
        f"[1/4] stop, snapshot {line.split()[-1]}" for line in lines[:1]] + [
        "[2/4] copy the new image's tree", "[3/4] start", "[4/4] health check"]
    assert left(paths) == []


def test_up_to_date_and_dry_run_change_nothing(paths, registry, guest):
    g = guest()
    registry.key = OLD
    assert update(paths)[0]["action"] == "up-to-date"
    registry.key = NEW
    assert update(paths, dry_run=True)[0]["action"] == "would-update"
    assert [a[0] for a in registry.asked] == ["lookup", "lookup"]  # no pull
    assert content(paths) == "old\n" and load_config(paths, "c1").image == OLD
    assert g.starts == 0 and left(paths) == []


@pytest.mark.parametrize("after, exits, why", [
    ("degraded", False, "its systemd is degraded, was running"),
    ("running", True, "its command exited"),
])
def test_an_unhealthy_image_is_rolled_back_and_said(paths, registry, guest, after, exits, why):
    g = guest(after=after, exits=exits)
    g.running = True
    if after == "degraded":  # a booted container: its systemd's state is the health
        save_config(paths, "c1", dataclasses.replace(load_config(paths, "c1"), boot=True))
    lines: list[str] = []
    [row] = update(paths, lines=lines)
    assert row["action"] == "rolled-back"
    assert row["message"].startswith(f"auto-update of c1 failed at health check ({why}); "
                                     "rolled back to snapshot ")
    assert any(line.startswith(f"auto-update failed at health check ({why}): rolling back")
               for line in lines)
    assert content(paths) == "old\n" and load_config(paths, "c1").image == OLD
    assert g.running and left(paths) == []


def test_a_stopped_container_is_updated_and_left_stopped(paths, registry, guest):
    g = guest(exits=True)  # it would not be healthy: nothing starts it to find out
    lines: list[str] = []
    assert update(paths, lines=lines)[0]["action"] == "updated"
    assert content(paths) == "new\n" and not g.running and g.starts == 0
    assert "c1 was stopped: not started, not checked" in lines and left(paths) == []


def test_the_record_names_its_table_and_a_killed_run_is_finished(paths, registry, guest,
                                                                  monkeypatch):
    """Killed after its swap (the health check never ran): the record says auto-update and
    swapped; recover rolls the tree and the image record back, and so does the next run
    before it looks at the tag."""
    g = guest()
    g.running = True
    seen = {}

    def killed(up):
        seen.update(json.loads((paths.state / "upgrades/c1.json").read_text()))
        raise SystemExit("SIGKILL")  # nothing of drive's undo runs, as after a SIGKILL
    table = list(au.AUTO_UPDATE)
    table[-2] = dataclasses.replace(table[-2], do=killed)  # at the start
    monkeypatch.setattr(op, "AUTO_UPDATE", tuple(table))
    with pytest.raises(SystemExit):
        update(paths)
    assert seen["table"] == "auto-update" and seen["phase"] == "swapped"
    assert content(paths) == "new\n" and load_config(paths, "c1").image == NEW  # unchecked
    from nspawnctl.ops import host
    assert "finished the interrupted upgrade of c1" in host.recover(paths)
    assert content(paths) == "old\n" and load_config(paths, "c1").image == OLD
    assert [m["tag"] for m in snapshots.list_snapshots(paths, "c1")] == []


def test_the_next_run_finishes_a_killed_one_first(paths, registry, guest):
    """A run killed after its swap left the new image's tree unchecked and its record: the next
    run rolls that back first (its record, not the tag, says what to do), then updates."""
    g = guest()
    with context(paths).holding("c1") as held:
        runtime_snapshot.take(held, "upgrade-x", stop_if_needed=False)  # the old tree
    (paths.tree("c1") / "app").write_text("new, unchecked\n")
    save_config(paths, "c1", dataclasses.replace(load_config(paths, "c1"), image=NEW))
    (paths.state / "upgrades").mkdir(parents=True)
    (paths.state / "upgrades/c1.json").write_text(json.dumps(
        {"tag": "upgrade-x", "phase": "swapped", "was_running": False,
         "keep_snapshot": False, "table": "auto-update"}))
    # the tag names the image it was killed putting in: without the record, "up to date"
    assert update(paths)[0]["action"] == "updated"
    assert content(paths) == "new\n" and left(paths) == [] and not g.running


def test_a_record_of_an_unknown_table_is_left_for_recover(paths, guest):
    guest()
    (paths.state / "upgrades").mkdir(parents=True)
    (paths.state / "upgrades/c1.json").write_text(json.dumps(
        {"tag": "t", "phase": "swapped", "table": "auto-update"}))
    with context(paths).holding("c1") as held, pytest.raises(Error, match="not this command"):
        engine.finish_interrupted(held)  # the upgrade's table alone
    assert engine.interrupted(paths) == ["c1"]


def test_both_tables_record_the_same_words_with_the_same_undos():
    """A record is undone by its table; the words of both mean the same undo, so a record
    written before tables were named (an upgrade's) is finished right too."""
    def recorded(table):
        return [(p.record, p.undo, p.kept) for p in table if p.record]
    assert recorded(au.AUTO_UPDATE) == recorded(engine.PHASES)
    assert au.TABLES == {"upgrade": engine.PHASES, "auto-update": au.AUTO_UPDATE}


@pytest.mark.parametrize("made_from, said", [
    (("debootstrap",), "was made from debootstrap"),
    (("scratch", "--cmd", "sleep 1d"), "was made from scratch"),
    ((), "was made before nspawnctl recorded how"),
    (("docker://reg.test/app:1", "--overlay"), "does not replace the base of an --overlay"),
])
def test_auto_update_registry_is_refused_where_it_cannot_work(made_from, said):
    cfg = ContainerConfig(made_from=made_from, auto_update="registry")
    with pytest.raises(Error, match=said):
        au.require_updatable("c1", cfg)
    au.require_updatable("c1", dataclasses.replace(cfg, auto_update=None))  # unmarked: fine


def test_the_source_is_read_from_the_made_from_record():
    cfg = ContainerConfig(made_from=("docker://r.test/a@sha256:" + "a" * 64, "--cmd", "--platform",
                                     "--platform", "linux/arm64", "--tls-verify"))
    assert au.source_of(cfg) == {"ref": "r.test/a@sha256:" + "a" * 64,
                                 "platform": "linux/arm64", "tls_verify": True,
                                 "overlay": False}
    assert au.source_of(ContainerConfig(made_from=("oci-archive:/x.tar",))) is None


def test_an_unmarked_name_is_refused_before_any_is_touched(paths, registry, guest):
    guest()
    save_config(paths, "c2", ContainerConfig())
    (paths.tree("c2")).mkdir(parents=True)
    with pytest.raises(Error, match="c2 is not marked for auto-update") as e:
        update(paths, names=("c1", "c2"))
    assert e.value.exit_code == 2 and registry.asked == []
    assert [r["name"] for r in update(paths, names=(), dry_run=True)] == ["c1"]  # all marked


def test_the_cli_exit_codes_and_one_line(paths, registry, guest, monkeypatch):
    guest()
    monkeypatch.setattr(op, "require_root", lambda: None)
    monkeypatch.setattr("nspawnctl.runtime.context.Context.bus", property(
        lambda self: __import__("tests.unit.fakes", fromlist=["FakeBus"]).FakeBus()))
    runner = CliRunner()
    r = runner.invoke(cli.cli, ["auto-update", "--dry-run"])
    assert r.exit_code == 6 and r.output.startswith(f"c1: would update {OLD} -> {NEW}"), r.output
    registry.key = OLD
    r = runner.invoke(cli.cli, ["auto-update", "--dry-run", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["action"] == "up-to-date"
    save_config(paths, "c1", dataclasses.replace(load_config(paths, "c1"), auto_update=None))
    r = runner.invoke(cli.cli, ["auto-update"])
    assert r.exit_code == 0 and r.output == "no container is marked --auto-update registry\n"
    r = runner.invoke(cli.cli, ["auto-update", "--enable-timer", "--disable-timer"])
    assert isinstance(r.exception, Error) and r.exception.exit_code == 2
    assert "take no names" in r.exception.message


# -- the lookup: what the registry says a reference names, no blob fetched ------------------------

def test_lookup_names_the_image_as_a_pull_would_and_fetches_no_blob(tmp_path, monkeypatch):
    from nspawnctl.sources.registry.pull import lookup, pull
    from tests.unit.imagebuild import dir as d
    from tests.unit.imagebuild import file, layer
    from tests.unit.registryfake import FakeRegistry, image
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path))
    paths = Paths.under(tmp_path)
    registry = FakeRegistry().install(monkeypatch)
    amd = image(layer(d("srv"), file("srv/a", b"a")), arch="amd64")
    arm = image(layer(d("srv"), file("srv/b", b"b")), arch="arm64")
    registry.push_index("reg.test/app", "1", (arm, "linux/arm64"), (amd, "linux/amd64"))
    got = lookup(paths, "reg.test/app:1", platform="linux/arm64")
    assert got.digest == arm["digest"]
    assert all(r.startswith("manifest ") for r in registry.requests)  # no blob
    # the image a pull records, whose digest keys its base tree
    record = pull(paths, "reg.test/app:1", platform="linux/arm64", report=lambda _m: None).record
    assert record.digest == got.digest
    # and what auto-update compares with the container's image record is that tree's key
    from nspawnctl.sources.registry.source import pulled_base
    key = pulled_base(paths, record, lambda _m: None, check_run=False).key
    monkeypatch.setattr(op, "lookup", lambda *a, **k: got)
    save_config(paths, "c1", ContainerConfig(image=key, auto_update="registry",
                                             made_from=("docker://reg.test/app:1",)))
    paths.tree("c1").mkdir(parents=True)
    assert update(paths, dry_run=True)[0]["action"] == "up-to-date"
    registry.manifests[f"reg.test/app@{amd['digest']}"] = arm["manifest"]  # hostile
    with pytest.raises(Error, match="with another manifest"):
        lookup(paths, "reg.test/app:1", platform="linux/amd64")
    with pytest.raises(Error, match="is a short name"):
        lookup(paths, "app:1")


def test_the_health_cmd_gate_decides_after_the_start(paths, registry, guest):
    """A container whose own --health-cmd fails on the new image is rolled back with the
    gate's reason; one whose check passes keeps it.  The gate runs on the started image."""
    g = guest()
    g.running = True
    asked = []

    def failing(name):
        asked.append((name, content(paths)))
        return "its health check failed 3 times in a row (exit 1: no page)"

    [row] = update(paths, gate=failing)
    assert asked == [("c1", "new\n")]  # on the new tree, after its start
    assert row["action"] == "rolled-back" and "no page" in row["message"], row
    assert content(paths) == "old\n" and left(paths) == []
    [row] = update(paths, gate=lambda name: None)
    assert row["action"] == "updated" and content(paths) == "new\n"


@pytest.mark.parametrize("statuses, retries, start_period, expect", [
    ([0], 3, 0, None),
    ([1, 1, 0], 3, 0, None),                       # passes within its retries
    ([1, 1, 1], 3, 0, "failed 3 times in a row (exit 1: bad)"),
    ([None, None], 2, 0, "failed 2 times in a row (timed out: bad)"),
    ([1, 1, 1, 0], 2, 60, None),                   # failures in the start period do not count
])
def test_health_gate(paths, monkeypatch, statuses, retries, start_period, expect):
    cfg = dataclasses.replace(load_config(paths, "c1"), health_cmd=("/bin/sh", "-c", "x"),
                              health_interval=1, health_retries=retries,
                              health_start_period=start_period)
    monkeypatch.setattr(health_ops, "load_config", lambda p, n, dropin=True: cfg)
    runs = iter(statuses)
    monkeypatch.setattr(health_ops, "probe", lambda ctx, name, c, pid, cmd, t: (next(runs), "bad"))
    monkeypatch.setattr(health_ops.time, "sleep", lambda s: None)
    ctx = context(paths)
    monkeypatch.setattr(ctx.bus, "machine_properties", lambda name: {"Leader": 1}, raising=False)
    why = health_ops.health_gate(ctx, "c1", timeout=300)
    assert (why is None) if expect is None else (expect in why), why


def test_health_gate_without_a_check_passes(paths, monkeypatch):
    monkeypatch.setattr(health_ops, "probe", lambda *a: pytest.fail("no check to run"))
    assert health_ops.health_gate(context(paths), "c1", timeout=5) is None
