"""clone: a new container from a stopped one; an --overlay container's clone shares its base."""

import dataclasses

from ..errors import Conflict
from ..fs.copy import clone_tree
from ..network import containers as network
from ..runtime.context import Context
from ..runtime.lifecycle import running_for_copy
from ..settings.files import load_config
from ..store import overlay
from ..store.commit import finish
from ..store.hold import hold
from ..times import now
from .common import require_root


def clone(ctx: Context, src: str, dst: str) -> dict:
    require_root()
    paths, store = ctx.paths, ctx.store
    store.require_absent(dst)
    # src held (and DST's name reserved: a create of it now is refused as busy)
    with ctx.holding(src), store.lock(dst):
        store.require_absent(dst)
        # src is held stopped while it is copied: started meanwhile (by systemd, for
        # machinectl or a container requiring it), its root could change the tree under the
        # copy (store/hold.py); one stopping is waited for
        with hold(paths, ctx.bus, src), \
                store.staging(paths.machines, f"clone-{dst}") as stage:
            if running_for_copy(ctx, src):
                raise Conflict(f"{src} is running", hint=f"stop it first: nspawnctl stop {src}")
            cfg = load_config(paths, src)
            if network.managed(cfg):  # refused before the copy, not after it
                network.require_host_network(paths)
            lower = overlay.lower_of(paths, src)
            if lower is not None:  # an overlay container's clone shares its base too
                (stage / "tree").mkdir(mode=0o755)
                overlay.make_layers(stage / "layers", lower,
                                    upper_from=overlay.layers(paths, src) / "upper")
                method = "overlay"
            else:
                method = clone_tree(paths.tree(src), stage / "tree")
            # Its own name and address; the ports stay with the original, which publishes them.
            cfg = dataclasses.replace(cfg, hostname=None, ports=(), created=now(), stack=None)
            network.join(paths, dst, cfg)  # given back if the commit fails
            finish(store, stage, dst, cfg, dst, lower, like=src)
    if network.managed(cfg):
        network.joined(paths, ctx.bus, dst, cfg)
    return {"name": dst, "from": src, "method": method}
