"""upgrade: the distribution's package upgrade of a booted container, installed into a copy of
its tree and swapped in whole, undone when the upgraded container is not healthy; its steps,
their undos and the recovery of a killed one are runtime/upgrade.py's."""

import os
from collections.abc import Callable

from ..errors import Conflict
from ..runtime import upgrade as steps
from ..runtime.autoupdate import TABLES
from ..runtime.context import Context
from ..runtime.lifecycle import TIMEOUT
from ..runtime.upgrade import Upgrade, in_copy, inside
from ..settings.files import load_config
from .common import require_root


def upgrade(ctx: Context, name: str, check: str | None = None, keep_snapshot: bool = False,
            timeout: float = TIMEOUT, step_timeout: float = 1800,
            run_inside: Callable[..., tuple[int, str]] = inside,
            run_in_copy: Callable[..., tuple[int, str]] = in_copy) -> dict:
    require_root()
    paths = ctx.paths
    ctx.store.require(name)
    cfg = load_config(paths, name)
    if not cfg.boot:
        raise Conflict(f"upgrade does not apply to {name}: it runs a single command, not a "
                       "system with a package manager",
                       hint="rebuild it from a newer image instead")
    if not os.path.lexists(paths.tree(name) / "usr/bin/apt-get"):
        raise Conflict(f"upgrade does not apply to {name}: it has no apt-get",
                       hint="nspawnctl upgrades Debian and Ubuntu containers")
    with ctx.holding(name) as held:
        up = Upgrade(held, check=check, keep_snapshot=keep_snapshot, timeout=timeout,
                     step_timeout=step_timeout, private_users=cfg.private_users,
                     run_inside=run_inside, run_in_copy=run_in_copy)
        steps.finish_interrupted(held, tables=TABLES)  # an auto-update's record too
        steps.drive(up, steps.PHASES)  # looked up now: tests put a table of their own there
    return {"name": name, "state": up.state, "snapshot": up.tag if keep_snapshot else None,
            "snapshot_method": up.method}
