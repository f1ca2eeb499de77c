"""Taking a snapshot of a container and putting one back, for the callers holding its lock
(the snapshot commands, upgrade); the store side is store/snapshots.py.

A running container is copied frozen (systemd's FreezeUnit on its unit, ThawUnit always
after), so the copy is one moment of it.  systemd freezes only on the unified cgroup
hierarchy (cgroup v2); where it cannot, the snapshot of a running container is refused, or with
stop=True the container is stopped for the copy and started again.

With volumes (--with-volumes), the named volumes the container's settings mount are copied
in the same moment as its tree, and put back by a rollback that asks for them.  A volume other
containers mount too is one moment only if they are not writing it: every other container
that mounts one is held stopped (its lock and its hold) for the copy or the restore, and the
command is refused, naming them, while one of them runs.  (The freeze is the container's own
unit: freezing others too would make a snapshot of one container stop a second one's service
without being asked.)
"""

import contextlib
import time
from collections.abc import Iterator

from ..errors import Conflict, Error
from ..paths import service_unit
from ..settings.files import load_config
from ..store import overlay, snapshots, volumes
from ..store.hold import hold, require_stopped, running_dependents
from .context import Context, Held
from .lifecycle import running_for_copy, start, stop


def take(held: Held, tag: str | None, stop_if_needed: bool,
         with_volumes: bool = False) -> dict:
    """A snapshot of the container held (the snapshot command, upgrade); with_volumes: the
    named volumes it mounts too."""
    ctx, name = held.ctx, held.name
    paths, bus, report = ctx.paths, ctx.bus, ctx.report
    tag = tag or snapshots.default_tag(paths, name)
    snapshots.require_absent(paths, name, tag)
    mounted = mounted_volumes(held) if with_volumes else []
    if with_volumes and not mounted:
        report(f"{name} mounts no volumes: the snapshot holds none")
    with ctx.store.staging(paths.machines, f"snapshot-{name}") as stage, \
            volumes_held(held, mounted, "no snapshot taken"):
        (stage / "snapshot").mkdir(mode=0o700)

        def copy() -> str:
            method = snapshots.copy_content(paths, name, stage / "snapshot")
            snapshots.copy_volumes(paths, mounted, stage / "snapshot")
            return method

        running = running_for_copy(ctx, name)
        info: dict = {"running": running, "volumes": mounted}
        if not running:
            with hold(paths, bus, name):  # stays stopped, and its tree still, for the copy
                require_stopped(bus, name)
                info["method"] = copy()
        else:
            why = bus.freeze_unit(service_unit(name))
            if why is None:
                t0 = time.monotonic()
                try:
                    info["method"] = copy()
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
                        info["method"] = copy()
                finally:
                    start(held)
                    restart_dependents(ctx, dependents)
                    info["stopped_seconds"] = round(time.monotonic() - t0, 3)
                report(f"{name} was stopped for {info['stopped_seconds']:.2f} s")
        return snapshots.commit(paths, name, tag, stage, info)


def mounted_volumes(held: Held) -> list[str]:
    """The named volumes the held container's settings mount, each once, in their order."""
    cfg = load_config(held.paths, held.name, dropin=False)
    mounted = list(dict.fromkeys(v.name for v in cfg.volumes))
    for volume in mounted:
        if not volumes.exists(held.paths, volume):
            raise Conflict(f"volume {volume}, which {held.name} mounts, does not exist: "
                           "no snapshot taken",
                           hint=f"make it (nspawnctl volume create {volume}), or: "
                                f"nspawnctl set {held.name} --no-volume {volume}")
    return mounted


@contextlib.contextmanager
def volumes_held(held: Held, names: list[str], refused: str) -> Iterator[None]:
    """For the with-block: the volumes' locks (no volume remove or import meanwhile), and
    every other container whose settings mount one held stopped (its lock and its hold:
    neither nspawnctl nor systemd starts it).  Refused (Conflict, REFUSED says what did not
    happen) while one of them runs or is starting or stopping: its writes would make the copy
    no one moment, and a restore would pull the data from under it."""
    ctx, name = held.ctx, held.name
    using = volumes.users(ctx.paths) if names else {}
    others = sorted({c for v in names for c in using.get(v, []) if c != name})
    with contextlib.ExitStack() as stack:
        for volume in names:
            stack.enter_context(volumes.locked(ctx.paths, volume))
        for other in others:
            stack.enter_context(ctx.holding(other))
            stack.enter_context(hold(ctx.paths, ctx.bus, other))
        running = [o for o in others if ctx.bus.has_job(service_unit(o))
                   or ctx.bus.active_state(service_unit(o)) not in ("inactive", "failed")]
        if running:
            shared = [v for v in names if set(using.get(v, [])) & set(running)]
            raise Conflict(
                f"volume{'s' if len(shared) > 1 else ''} {', '.join(shared)} "
                f"{'are' if len(shared) > 1 else 'is'} mounted by running container"
                f"{'s' if len(running) > 1 else ''} {', '.join(running)} too: {refused}",
                hint=f"stop {'them' if len(running) > 1 else 'it'} first: "
                     f"nspawnctl stop {' '.join(running)}")
        yield


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
            running: bool | None = None, with_volumes: bool = False) -> dict:
    """The container held, put back as snapshot TAG holds it; start_after: start it again
    (default: when it was running); running=False: the caller knows it is stopped (recover at
    boot, which may run before the system bus is up); with_volumes: the volumes the snapshot
    holds put back too (each in one exchange), else left as they are."""
    ctx, name = held.ctx, held.name
    paths, report = ctx.paths, ctx.report
    meta = snapshots.require(paths, name, tag)
    is_overlay = overlay.is_overlay(paths, name)
    if bool(meta.get("lower")) != is_overlay:
        raise Conflict(f"snapshot {tag!r} of {name} is of another kind of tree "
                       "(overlay or not) than the container is now")
    held_volumes = snapshots.volumes_of(meta)
    restoring = held_volumes if with_volumes else []
    if with_volumes:
        _check_volumes_to_restore(held, tag, held_volumes)
    # running=False comes from recover at boot, before any container starts and maybe before
    # the bus is up: there is nothing to hold back then
    at_boot = running is False
    dependents: list[str] = []
    with volumes_held(held, restoring, "not rolled back"), \
            _held_stopped(ctx, name, at_boot=at_boot) as holding:
        if holding:
            running = running_for_copy(ctx, name)  # one stopping is waited for
            if running:
                dependents = running_dependents(ctx.bus, name)
                report(f"stopping {name}")
                stop(ctx, name)
            require_stopped(ctx.bus, name)
        if restoring:  # each volume whole, old or restored, whenever this dies
            with ctx.store.staging(paths.volumes, f"rollback-{name}") as stage:
                for volume in restoring:
                    snapshots.restore_volume(paths, name, tag, volume, stage)
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
    if held_volumes and not with_volumes and not at_boot:
        many = len(held_volumes) > 1
        report(f"snapshot {tag} also holds volume{'s' if many else ''} "
               f"{', '.join(held_volumes)}: left as {'they are' if many else 'it is'} "
               f"(rollback --with-volumes puts {'them' if many else 'it'} back)")
    return {"name": name, "tag": tag, "method": method, "restarted": again, "state": state,
            "settings_changed": changed, "volumes": restoring}


def _check_volumes_to_restore(held: Held, tag: str, names: list[str]) -> None:
    """Refusals before anything changes: a snapshot without volumes, a volume gone."""
    if not names:
        raise Conflict(f"snapshot {tag} of {held.name} holds no volumes: not rolled back",
                       hint="it was taken without --with-volumes (or the container mounted "
                            "none); roll back without --with-volumes")
    for volume in names:
        if not volumes.exists(held.paths, volume):
            raise Conflict(f"volume {volume}, which snapshot {tag} holds, no longer exists: "
                           "not rolled back",
                           hint=f"make it again (nspawnctl volume create {volume}) and roll "
                                "back into it")
