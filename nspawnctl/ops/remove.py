"""remove: a container's tree, settings and enablement; the tree's rename away is the commit."""

from ..errors import Conflict, Error
from ..network import containers as network
from ..paths import service_unit
from ..runtime.context import Context
from ..runtime.lifecycle import is_active, stop
from ..settings.files import load_config
from ..store import order
from ..store.containers import is_enabled
from .common import require_root


def remove(ctx: Context, name: str, force: bool = False, along: tuple[str, ...] = ()) -> int:
    """Remove NAME; along: the other containers this command removes (after it), which may
    be ordered after it.  Returns how many of NAME's snapshots went with it."""
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
        if is_active(bus, name):
            if not force:
                raise Conflict(f"{name} is running",
                               hint=f"stop it first, or: nspawnctl remove --force {name}")
            ctx.report(f"stopping {name}")
            stop(ctx, name)
            if is_active(bus, name):  # never delete the tree under a running container
                raise Error(f"{name} is still running after its stop: not removed",
                            hint=f"see: systemctl status {service_unit(name)}")
        if is_enabled(paths, name):
            bus.disable_units([service_unit(name)])
        count = ctx.store.remove(name)  # its leases go with its settings, its snapshots too
        if cfg is not None and network.managed(cfg):
            # its ports are unpublished, its peers forget its name
            network.apply_host(paths)
            network.write_all_hosts(paths)
    return count
