"""remove: a container's tree, settings and enablement; the tree's rename away is the commit."""

from ..errors import Conflict, Error
from ..network import containers as network
from ..paths import service_unit
from ..runtime.context import Context
from ..runtime.lifecycle import is_active, stop
from ..settings.files import load_config
from ..store import order, snapshots
from ..store.containers import is_enabled
from .common import require_root


def remove(ctx: Context, name: str, force: bool = False, along: tuple[str, ...] = (),
           dry_run: bool = False) -> dict:
    """Remove NAME; along: the other containers this command removes (after it), which may
    be ordered after it.  Returns what went with it: its snapshots (tag, size) and whether it
    was stopped; and the named volumes it mounted, which stay.  With dry_run, the same checks
    and the same answer, and nothing changed: its snapshots go with it, and a user must be
    able to see that before (a trial lost 351 MB of them to a remove that said nothing)."""
    require_root()
    paths = ctx.paths
    with ctx.holding(name):
        left = order.dependents(paths, name, ignoring=along)
        if left:
            raise Conflict(f"{', '.join(left)} {'is' if len(left) == 1 else 'are'} ordered after "
                           f"{name} (--after/--requires): not removed",
                           hint=f"remove {'it' if len(left) == 1 else 'them'} too, or: nspawnctl "
                             f"set {left[0]} --no-requires {name} / --no-after {name}")
        try:
            cfg = load_config(paths, name)
        except Error:
            cfg = None
        if cfg is not None and network.managed(cfg):
            network.require_host_network(paths)  # refused before anything is stopped
        bus = ctx.bus
        running = is_active(bus, name)
        if running and not force:
            raise Conflict(f"{name} is running",
                           hint=f"stop it first, or: nspawnctl remove --force {name}")
        going = {"name": name, "stopped": running,
                 "snapshots": [{"tag": m.get("tag"), "size": m.get("size")}
                               for m in snapshots.list_snapshots(paths, name)],
                 # volumes outlive their containers: said, so that none is forgotten
                 "volumes": list(dict.fromkeys(v.name for v in cfg.volumes)) if cfg else []}
        if dry_run:
            return going
        if running:
            ctx.report(f"stopping {name}")
            stop(ctx, name)
            if is_active(bus, name):  # never delete the tree under a running container
                raise Error(f"{name} is still running after its stop: not removed",
                            hint=f"see: systemctl status {service_unit(name)}")
        if is_enabled(paths, name):
            bus.disable_units([service_unit(name)])
        ctx.store.remove(name)  # its leases go with its settings, its snapshots too
        if cfg is not None and network.managed(cfg):
            # its ports are unpublished, its peers forget its name
            network.apply_host(paths)
            network.write_all_hosts(paths)
    return going
