"""ops.snapshot and store.snapshots in a private root against a fake Bus: what is copied,
what is refused, what rollback swaps back, and that a frozen unit is always thawed."""

import datetime
import os
import re
import time
import types

import pytest
from click.testing import CliRunner

from nspawnctl import cli as cli_module
from nspawnctl.errors import Error
from nspawnctl.ops import remove as remove_op
from nspawnctl.ops import snapshot as snap_op
from nspawnctl.runtime import snapshot as snap_runtime
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.store import images, overlay, snapshots
from nspawnctl.store.containers import Store
from tests.unit.fakes import FakeBus, context


@pytest.fixture
def paths(private_root):
    p = private_root
    (p.tree("c1") / "usr/bin").mkdir(parents=True)
    (p.tree("c1") / "usr/bin/true").write_text("#!/bin/sh\n")
    os.chmod(p.tree("c1") / "usr/bin/true", 0o755)
    save_config(p, "c1", ContainerConfig())
    return p


@pytest.fixture
def bus():
    return FakeBus()


@pytest.fixture
def ctx(paths, bus):
    """The command's context, with the fake bus; its progress lines in ctx.lines."""
    lines: list[str] = []
    c = context(paths, bus, report=lines.append)
    c.lines = lines  # type: ignore[attr-defined]
    return c


def test_snapshot_of_a_stopped_container_copies_tree_and_settings(paths, bus, ctx):
    info = snap_op.snapshot(ctx, "c1", "before")
    assert info["method"] in ("copy", "reflink") and info["running"] is False
    where = snapshots.snapshot_dir(paths, "c1", "before")
    assert (where / "tree/usr/bin/true").read_text() == "#!/bin/sh\n"
    assert (where / "settings/nspawn").read_text() == paths.nspawn_file("c1").read_text()
    assert [r["tag"] for r in snap_op.list_snapshots(ctx, "c1")] == ["before"]
    assert not any(bus.calls)  # nothing frozen: it was not running


def test_default_tag_is_a_utc_timestamp_and_never_clashes(paths, bus, ctx):
    first = snap_op.snapshot(ctx, "c1")["tag"]
    second = snap_op.snapshot(ctx, "c1")["tag"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", first), first
    # the same second: the same stamp with -2; the next one: a stamp of its own
    assert second == f"{first}-2" or (re.fullmatch(r"\d{8}T\d{6}Z", second) and
                                      second > first), (first, second)
    stamp = datetime.datetime.strptime(first, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc)
    assert abs(stamp.timestamp() - time.time()) < 60  # UTC: local time would be hours off
    assert [r["tag"] for r in snap_op.list_snapshots(ctx, "c1")] == [first, second]


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "a/b", "..", "a" * 65, "x y"])
def test_invalid_tags_are_refused(paths, bus, ctx, tag):
    with pytest.raises(Error, match="invalid snapshot tag"):
        snap_op.snapshot(ctx, "c1", tag)


def test_an_existing_tag_and_an_unknown_tag_are_refused(paths, bus, ctx):
    snap_op.snapshot(ctx, "c1", "t1")
    with pytest.raises(Error, match="already has a snapshot 't1'"):
        snap_op.snapshot(ctx, "c1", "t1")
    with pytest.raises(Error, match="has no snapshot 'nope'"):
        snap_op.rollback(ctx, "c1", "nope")
    with pytest.raises(Error, match="has no snapshot 'nope'"):
        snap_op.remove_snapshot(ctx, "c1", "nope")


def test_rollback_swaps_the_tree_and_settings_back_and_keeps_the_snapshot(paths, bus, ctx):
    snap_op.snapshot(ctx, "c1", "good")
    nspawn = paths.nspawn_file("c1").read_text()
    (paths.tree("c1") / "usr/bin/true").unlink()
    os.rmdir(paths.tree("c1") / "usr/bin")
    paths.nspawn_file("c1").write_text(nspawn + "# changed\n")
    info = snap_op.rollback(ctx, "c1", "good")
    assert info["restarted"] is False and info["settings_changed"] is True
    assert (paths.tree("c1") / "usr/bin/true").read_text() == "#!/bin/sh\n"
    assert paths.nspawn_file("c1").read_text() == nspawn
    assert snapshots.read_meta(snapshots.snapshot_dir(paths, "c1", "good"))  # still there
    assert not os.listdir(paths.staging_in(paths.machines))  # the old tree is gone


def test_running_container_is_frozen_for_the_copy_and_thawed(paths, bus, ctx, monkeypatch):
    """The copy is made between the freeze and the thaw, and the time it said it was frozen is
    the time between them (a clock of the test's: the copy takes 1.5 s of it)."""
    bus.state = "active"
    clock = [1000.0]
    monkeypatch.setattr(snap_runtime, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    copy = snapshots.copy_content

    def logged_copy(*args):
        bus.calls.append(("copy", args[1]))
        clock[0] += 1.5
        return copy(*args)
    monkeypatch.setattr(snapshots, "copy_content", logged_copy)
    info = snap_op.snapshot(ctx, "c1", "hot")
    assert [c[0] for c in bus.calls] == ["freeze", "copy", "thaw_unit"]
    assert info["frozen_seconds"] == 1.5
    assert ctx.lines == ["c1 was frozen for 1.50 s"]
    where = snapshots.snapshot_dir(paths, "c1", "hot")
    assert (where / "tree/usr/bin/true").read_text() == "#!/bin/sh\n"
    assert snapshots.read_meta(where)["frozen_seconds"] == 1.5


def test_thawed_even_when_the_copy_fails(paths, bus, ctx, monkeypatch):
    bus.state = "active"

    def broken(*a):
        raise Error("copying the tree failed")
    monkeypatch.setattr(snapshots, "copy_content", broken)
    with pytest.raises(Error, match="copying the tree failed"):
        snap_op.snapshot(ctx, "c1", "hot")
    assert ("thaw_unit", ("systemd-nspawn@c1.service",)) in bus.calls
    assert snap_op.list_snapshots(ctx, "c1") == []
    assert not os.listdir(paths.staging_in(paths.machines))


def test_running_container_that_cannot_be_frozen_is_refused_without_stop(paths, bus, ctx):
    bus.state = "active"
    bus.freeze_error = "Unit does not support freezing"
    with pytest.raises(Error, match="cannot freeze running container c1"):
        snap_op.snapshot(ctx, "c1", "hot")
    assert snap_op.list_snapshots(ctx, "c1") == []


def test_remove_takes_the_snapshots_and_says_which(paths, bus, ctx):
    snap_op.snapshot(ctx, "c1", "a")
    snap_op.snapshot(ctx, "c1", "b")
    done = remove_op.remove(ctx, "c1")
    assert [(s["tag"], s["size"] > 0) for s in done["snapshots"]] == [("a", True), ("b", True)]
    assert done["stopped"] is False
    assert not snapshots.snapshot_dir(paths, "c1").exists()


def cli_with(ctx):
    """The CLI as a user runs it, with this test's context (its fake bus) as the App's."""
    app = cli_module.App()
    app._ctx = ctx
    return lambda *args: CliRunner().invoke(cli_module.cli, list(args), obj=app)


def test_remove_dry_run_says_what_would_go_and_changes_nothing(paths, bus, ctx):
    snap_op.snapshot(ctx, "c1", "a")
    snap_op.snapshot(ctx, "c1", "b")
    sizes = {s["tag"]: s["size"] for s in snap_op.list_snapshots(ctx, "c1")}
    result = cli_with(ctx)("remove", "--dry-run", "c1")
    assert result.exit_code == 0, result.output
    total = (sizes["a"] + sizes["b"]) / 1e6
    assert result.output == (f"would remove c1 and its 2 snapshots ({total:.1f} MB): "
                             f"a ({sizes['a'] / 1e6:.1f} MB), b ({sizes['b'] / 1e6:.1f} MB)\n")
    assert paths.tree("c1").is_dir() and paths.nspawn_file("c1").exists()
    assert [s["tag"] for s in snap_op.list_snapshots(ctx, "c1")] == ["a", "b"]
    assert not bus.calls  # nothing asked of systemd but whether it runs
    result = cli_with(ctx)("remove", "c1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed c1 and its 2 snapshots (")
    assert not paths.tree("c1").exists()


def test_remove_dry_run_of_a_running_container(paths, ctx):
    """--dry-run refuses what remove would refuse, and says --force would stop it."""
    ctx.bus.state = "active"
    result = cli_with(ctx)("remove", "--dry-run", "c1")
    assert isinstance(result.exception, Error) and result.exception.message == "c1 is running"
    result = cli_with(ctx)("remove", "--dry-run", "--force", "c1")
    assert result.exit_code == 0, result.output
    assert result.output == "would stop c1 and remove it\n"
    assert paths.tree("c1").is_dir() and not ctx.bus.calls


def test_snapshot_rm_says_the_size_it_freed(paths, bus, ctx):
    snap_op.snapshot(ctx, "c1", "a")
    size = snap_op.list_snapshots(ctx, "c1")[0]["size"]
    result = cli_with(ctx)("snapshot", "rm", "c1", "a")
    assert result.output == f"removed snapshot a of c1 ({size / 1e6:.1f} MB)\n"


def test_snapshots_of_a_removed_container_are_swept(paths, bus, ctx):
    snap_op.snapshot(ctx, "c1", "a")
    os.rename(paths.tree("c1"), paths.machines / ".gone")  # a remove killed after its commit
    Store(paths).sweep()
    assert not snapshots.snapshot_dir(paths, "c1").exists()


def test_overlay_snapshot_needs_its_base(paths, bus, ctx):
    """A snapshot of an --overlay container holds only its upper layer: the base tree below
    it counts as in use (prune keeps it) for as long as the snapshot is there, also once the
    container itself is gone."""
    key = "k" * 16
    lower = paths.images / key / "tree"
    (lower / "etc").mkdir(parents=True)
    paths.overlays.mkdir(parents=True)
    overlay.make_layers(overlay.layers(paths, "c2"), lower)
    (overlay.layers(paths, "c2") / "upper/mine").write_text("changed\n")
    overlay.write_unit(paths, "c2", lower)
    paths.tree("c2").mkdir()
    save_config(paths, "c2", ContainerConfig())
    assert images.usage_by_image(paths).get(key) == 1  # the container's own
    info = snap_op.snapshot(ctx, "c2", "t")
    assert info["method"].startswith("overlay+")
    where = snapshots.snapshot_dir(paths, "c2", "t")
    assert (where / "upper/mine").read_text() == "changed\n"
    assert not (where / "tree").exists()
    assert images.usage_by_image(paths).get(key) == 2  # and the snapshot's
    overlay.remove_files(paths, "c2")  # the container's mount unit gone: only the snapshot
    assert images.usage_by_image(paths).get(key) == 1
    snap_op.remove_snapshot(ctx, "c2", "t")
    assert images.usage_by_image(paths).get(key) is None


def test_cli_snapshot_group_defaults_to_create(paths, bus, ctx, monkeypatch):
    seen = []
    monkeypatch.setattr(snap_op, "snapshot", lambda c, n, t, stop_if_needed, with_volumes:
                        seen.append((n, t, stop_if_needed)) or
                        {"tag": t or "x", "method": "copy", "size": 0})
    monkeypatch.setattr(snap_op, "remove_snapshot",
                        lambda p, n, t: seen.append(("rm", n, t)) or {"size": 0})
    runner = CliRunner()
    for args in (["snapshot", "c1"], ["snapshot", "c1", "t1"], ["snapshot", "--stop", "c1"],
                 ["snapshot", "create", "rm"], ["snapshot", "rm", "c1", "t1"]):
        result = runner.invoke(cli_module.cli, args)
        assert result.exit_code == 0, result.output
    assert seen == [("c1", None, False), ("c1", "t1", False), ("c1", None, True),
                    ("rm", None, False), ("rm", "c1", "t1")]


def test_a_stopping_container_is_copied_only_once_it_has_stopped(paths, bus, ctx, monkeypatch):
    """Stopping (deactivating), its processes still write its tree (is_active says it is not
    running): the snapshot waits for it to stop, and copies then; never while it stops."""
    from nspawnctl.runtime import lifecycle
    states = ["deactivating"] * 5 + ["inactive"]
    bus.active_state = lambda unit: states.pop(0) if len(states) > 1 else states[0]
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: None)
    seen = []
    real = snapshots.copy_content

    def copy_content(paths_, name, stage):
        seen.append(states[0])
        return real(paths_, name, stage)
    monkeypatch.setattr(snapshots, "copy_content", copy_content)
    info = snap_op.snapshot(ctx, "c1", "late")
    lines = ctx.lines
    assert seen == ["inactive"] and info["running"] is False
    assert lines == ["c1 is stopping: waiting for it before its tree is read"]
    assert not any(c[0] == "freeze" for c in bus.calls)


def test_a_container_that_never_stops_is_not_copied(paths, bus, ctx, monkeypatch):
    from nspawnctl.runtime import lifecycle
    bus.state = "deactivating"
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(lifecycle.time, "sleep", lambda s: None)
    with pytest.raises(Error, match=r"c1 is still deactivating after 120 s: its tree is not "
                                    r"read while it changes"):
        snap_op.snapshot(ctx, "c1", "never")
    assert snap_op.list_snapshots(ctx, "c1") == []
