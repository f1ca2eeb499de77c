"""upgrade: the distribution's package upgrade of a booted container, installed into a copy of
its tree and swapped in whole, undone when the upgraded container is not healthy; its steps,
their undos and the recovery of a killed one are runtime/upgrade.py's."""

import os
from collections.abc import Callable

from ..errors import Error
from ..paths import Paths
from ..runtime import upgrade as steps
from ..runtime.upgrade import Upgrade, in_copy, inside
from ..settings.files import load_config
from ..store.containers import Store
from .common import Report, require_root


def upgrade(paths: Paths, name: str, check: str | None = None, keep_snapshot: bool = False,
            timeout: float = 120, step_timeout: float = 1800, report: Report = print,
            run_inside: Callable[..., tuple[int, str]] = inside,
            run_in_copy: Callable[..., tuple[int, str]] = in_copy) -> dict:
    require_root()
    store = Store(paths)
    store.require(name)
    cfg = load_config(paths, name)
    if not cfg.boot:
        raise Error(f"upgrade does not apply to {name}: it runs a single command, not a "
                    "system with a package manager",
                    hint="rebuild it from a newer image instead")
    if not os.path.lexists(paths.tree(name) / "usr/bin/apt-get"):
        raise Error(f"upgrade does not apply to {name}: it has no apt-get",
                    hint="nspawnctl upgrades Debian and Ubuntu containers")
    up = Upgrade(paths, name, report, check=check, keep_snapshot=keep_snapshot,
                 timeout=timeout, step_timeout=step_timeout, private_users=cfg.private_users,
                 run_inside=run_inside, run_in_copy=run_in_copy)
    with store.lock(name):
        store.require(name)
        steps.finish_interrupted(paths, name, report)
        steps.drive(up, steps.PHASES)  # looked up now: tests put a table of their own there
    return {"name": name, "state": up.state, "snapshot": up.tag if keep_snapshot else None,
            "snapshot_method": up.method}
