"""Taking a snapshot of a container and putting one back, for the callers holding its lock
(the snapshot commands, upgrade); the store side is store/snapshots.py.

A running container is copied frozen (systemd's FreezeUnit on its unit, ThawUnit always
after), so the copy is one moment of it.  systemd freezes only on the unified cgroup
hierarchy (cgroup v2); where it cannot, the snapshot of a running container is refused, or with
stop=True the container is stopped for the copy and started again.
"""

import contextlib
import time
from collections.abc import Iterator

from ..errors import Conflict, Error
from ..paths import service_unit
from ..store import overlay, snapshots
from ..store.hold import hold, require_stopped, running_dependents
from .context import Context, Held
from .lifecycle import running_for_copy, start, stop


def take(held: Held, tag: str | None, stop_if_needed: bool) -> dict:
    """A snapshot of the container held (the snapshot command, upgrade)."""
    ctx, name = held.ctx, held.name
    paths, bus, report = ctx.paths, ctx.bus, ctx.report
    tag = tag or snapshots.default_tag(paths, name)
    snapshots.require_absent(paths, name, tag)
    with ctx.store.staging(paths.machines, f"snapshot-{name}") as stage:
        (stage / "snapshot").mkdir(mode=0o700)
        running = running_for_copy(ctx, name)
        info: dict = {"running": running}
        if not running:
            with hold(paths, bus, name):  # stays stopped, and its tree still, for the copy
                require_stopped(bus, name)
                info["method"] = snapshots.copy_content(paths, name, stage / "snapshot")
        else:
            why = bus.freeze_unit(service_unit(name))
            if why is None:
                t0 = time.monotonic()
                try:
                    info["method"] = snapshots.copy_content(paths, name, stage / "snapshot")
                finally:
                    bus.thaw_unit(service_unit(name))
                    info["frozen_seconds"] = round(time.monotonic() - t0, 3)
                report(f"{name} was frozen for {info['frozen_seconds']:.2f} s")
            elif not stop_if_needed:
                raise Conflict(f"cannot freeze running container {name} for a consistent "
                               f"snapshot: {why}",
                               hint="systemd freezes units only on the unified cgroup "
                                 "hierarchy (cgroup v2); stop it first, or: nspawnctl "
                                 f"snapshot --stop {name}")
            else:
                report(f"cannot freeze {name} ({why}): stopping it for the copy")
                t0 = time.monotonic()
                dependents = running_dependents(bus, name)
                try:
                    # held: nothing starts it, and changes the tree, while it is copied
                    with hold(paths, bus, name):
                        stop(ctx, name)
                        require_stopped(bus, name)
                        info["method"] = snapshots.copy_content(paths, name,
                                                                stage / "snapshot")
                finally:
                    start(held)
                    restart_dependents(ctx, dependents)
                    info["stopped_seconds"] = round(time.monotonic() - t0, 3)
                report(f"{name} was stopped for {info['stopped_seconds']:.2f} s")
        return snapshots.commit(paths, name, tag, stage, info)


@contextlib.contextmanager
def _held_stopped(ctx: Context, name: str, at_boot: bool) -> Iterator[bool]:
    """NAME held stopped (store/hold.py) for the with-block; at boot nothing to hold back
    (yields whether it holds)."""
    if at_boot:
        yield False
        return
    with hold(ctx.paths, ctx.bus, name):
        yield True


def restart_dependents(ctx: Context, units: list[str]):
    """Start again the units a stop of the container took down (they require it)."""
    if not units:
        return
    ctx.report("starting again what requires it: " + " ".join(units))
    for unit in units:
        ctx.bus.start_unit(unit)


def restore(held: Held, tag: str, start_after: bool | None = None,
            running: bool | None = None) -> dict:
    """The container held, put back as snapshot TAG holds it; start_after: start it again
    (default: when it was running); running=False: the caller knows it is stopped (recover at
    boot, which may run before the system bus is up)."""
    ctx, name = held.ctx, held.name
    paths, report = ctx.paths, ctx.report
    meta = snapshots.require(paths, name, tag)
    is_overlay = overlay.is_overlay(paths, name)
    if bool(meta.get("lower")) != is_overlay:
        raise Conflict(f"snapshot {tag!r} of {name} is of another kind of tree "
                       "(overlay or not) than the container is now")
    # running=False comes from recover at boot, before any container starts and maybe before
    # the bus is up: there is nothing to hold back then
    dependents: list[str] = []
    with _held_stopped(ctx, name, at_boot=running is False) as holding:
        if holding:
            running = running_for_copy(ctx, name)  # one stopping is waited for
            if running:
                dependents = running_dependents(ctx.bus, name)
                report(f"stopping {name}")
                stop(ctx, name)
            require_stopped(ctx.bus, name)
        with ctx.store.staging(paths.machines, f"rollback-{name}") as stage:
            lower = overlay.lower_of(paths, name) if is_overlay else None
            if lower is not None:
                overlay.release(paths, name)
            try:
                method = snapshots.restore_tree(paths, name, tag, stage)
            finally:
                if lower is not None:
                    overlay.mount_tree(paths, name, lower)
        changed = snapshots.restore_settings(paths, name, tag)
    if changed:
        try:
            ctx.bus.reload()  # the drop-in the unit runs with may be another now
        except Error:
            if running is not False:
                raise
            # at boot (recover), maybe before the bus: systemd has not started the container,
            # and an auto-update's rollback changed only its .nspawn file, read at its start
    state = None
    again = running if start_after is None else start_after
    if again:
        report(f"starting {name}")
        state = start(held)
        restart_dependents(ctx, dependents)
    return {"name": name, "tag": tag, "method": method, "restarted": again, "state": state,
            "settings_changed": changed}
