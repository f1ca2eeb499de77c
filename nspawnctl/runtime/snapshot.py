"""Taking a snapshot of a container and putting one back, for the callers holding its lock
(the snapshot commands, upgrade); the store side is store/snapshots.py.

A running container is copied frozen (systemd's FreezeUnit on its unit, ThawUnit always
after), so the copy is one moment of it.  systemd freezes only on the unified cgroup
hierarchy (cgroup v2); where it cannot, the snapshot of a running container is refused, or with
stop=True the container is stopped for the copy and started again.
"""

import contextlib
import time
from collections.abc import Callable, Iterator

from ..errors import Error
from ..paths import Paths, service_unit
from ..store import overlay, snapshots
from ..store.containers import Store
from ..store.hold import hold, require_stopped, running_dependents
from ..systemd.bus import Bus
from .lifecycle import running_for_copy, start, stop

Report = Callable[[str], None]


def take(paths: Paths, name: str, tag: str | None, stop_if_needed: bool,
         report: Report) -> dict:
    """snapshot, for a caller holding NAME's lock (snapshot, upgrade)."""
    store = Store(paths)
    tag = tag or snapshots.default_tag(paths, name)
    snapshots.require_absent(paths, name, tag)
    with Bus() as bus, store.staging(paths.machines, f"snapshot-{name}") as stage:
        (stage / "snapshot").mkdir(mode=0o700)
        running = running_for_copy(bus, name, report)
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
                raise Error(f"cannot freeze running container {name} for a consistent "
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
                        stop(paths, name, report=report)
                        require_stopped(bus, name)
                        info["method"] = snapshots.copy_content(paths, name,
                                                                stage / "snapshot")
                finally:
                    start(paths, name, report=report, locked=True)
                    restart_dependents(dependents, report)
                    info["stopped_seconds"] = round(time.monotonic() - t0, 3)
                report(f"{name} was stopped for {info['stopped_seconds']:.2f} s")
        return snapshots.commit(paths, name, tag, stage, info)


@contextlib.contextmanager
def _held(paths: Paths, name: str, at_boot: bool) -> Iterator[Bus | None]:
    """NAME held stopped (store/hold.py) for the with-block, and the bus; at boot neither."""
    if at_boot:
        yield None
        return
    with Bus() as bus, hold(paths, bus, name):
        yield bus


def restart_dependents(units: list[str], report: Report):
    """Start again the units a stop of the container took down (they require it)."""
    if not units:
        return
    report("starting again what requires it: " + " ".join(units))
    with Bus() as bus:
        for unit in units:
            bus.start_unit(unit)


def restore(paths: Paths, name: str, tag: str, report: Report,
            start_after: bool | None = None, running: bool | None = None) -> dict:
    """rollback, for a caller holding NAME's lock; start_after: start it again (default:
    when it was running); running=False: the caller knows it is stopped (recover at boot,
    which may run before the system bus is up)."""
    store = Store(paths)
    meta = snapshots.require(paths, name, tag)
    is_overlay = overlay.is_overlay(paths, name)
    if bool(meta.get("lower")) != is_overlay:
        raise Error(f"snapshot {tag!r} of {name} is of another kind of tree "
                    "(overlay or not) than the container is now")
    # running=False comes from recover at boot, before any container starts and maybe before
    # the bus is up: there is nothing to hold back then
    dependents: list[str] = []
    with _held(paths, name, at_boot=running is False) as bus:
        if bus is not None:
            running = running_for_copy(bus, name, report)  # one stopping is waited for
            if running:
                dependents = running_dependents(bus, name)
                report(f"stopping {name}")
                stop(paths, name, report=report)
            require_stopped(bus, name)
        with store.staging(paths.machines, f"rollback-{name}") as stage:
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
        with Bus() as bus:
            bus.reload()  # the drop-in the unit runs with may be another now
    state = None
    again = running if start_after is None else start_after
    if again:
        report(f"starting {name}")
        state = start(paths, name, report=report, locked=True)
        restart_dependents(dependents, report)
    return {"name": name, "tag": tag, "method": method, "restarted": again, "state": state,
            "settings_changed": changed}
