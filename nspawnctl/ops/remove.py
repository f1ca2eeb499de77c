"""remove: a container's tree, settings and enablement; the tree's rename away is the commit."""

from ..errors import Error
from ..paths import Paths, service_unit
from ..store.containers import Store
from ..systemd.bus import Bus
from .common import Report, require_root
from .inventory import is_enabled
from .lifecycle import is_active, stop


def remove(paths: Paths, name: str, force: bool = False, report: Report = print):
    require_root()
    store = Store(paths)
    store.require(name)
    with store.lock(name):
        store.require(name)
        with Bus() as bus:
            if is_active(bus, name):
                if not force:
                    raise Error(f"{name} is running",
                                hint=f"stop it first, or: nspawnctl remove --force {name}")
                report(f"stopping {name}")
                stop(paths, name, report=report)
            if is_enabled(paths, name):
                bus.disable_units([service_unit(name)])
        store.remove(name)
