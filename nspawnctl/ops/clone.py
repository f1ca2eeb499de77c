"""clone: a new container from a stopped one; an --overlay container's clone shares its base."""

import dataclasses

from ..errors import Error
from ..fscopy import clone_tree
from ..paths import Paths
from ..settings.files import load_config
from ..store import overlay
from ..store.containers import Store
from ..systemd.bus import Bus
from . import network
from .common import Report, require_root
from .create import finish
from .lifecycle import running_for_copy


def clone(paths: Paths, src: str, dst: str, report: Report = print) -> dict:
    require_root()
    store = Store(paths)
    store.require(src)
    store.require_absent(dst)
    first, second = sorted([src, dst])
    with store.lock(first), store.lock(second):
        store.require(src)
        store.require_absent(dst)
        with Bus() as bus:
            if running_for_copy(bus, src, report):
                raise Error(f"{src} is running", hint=f"stop it first: nspawnctl stop {src}")
        cfg = load_config(paths, src)
        with store.staging(paths.machines, f"clone-{dst}") as stage:
            lower = overlay.lower_of(paths, src)
            if lower is not None:  # an overlay container's clone shares its base too
                (stage / "tree").mkdir(mode=0o755)
                overlay.make_layers(stage / "layers", lower,
                                    upper_from=overlay.layers(paths, src) / "upper")
                method = "overlay"
            else:
                method = clone_tree(paths.tree(src), stage / "tree")
            # Its own name and address; the ports stay with the original, which publishes them.
            cfg = dataclasses.replace(cfg, hostname=None, ports=())
            network.join(paths, dst, cfg)  # given back if the commit fails
            finish(store, stage, dst, cfg, dst, lower, like=src)
    if network.managed(cfg):
        network.joined(paths, dst, cfg)
    return {"name": dst, "from": src, "method": method}
