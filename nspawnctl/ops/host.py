"""nspawnctl's own units on the host, and `recover`, the boot-time one's work.

units/nspawnctl-recover.service runs `nspawnctl recover` early at boot (before machines.target
and nspawnctl's networks), and units/nspawn-recover.conf, a drop-in of the
systemd-nspawn@.service template, orders every container's start after it: whatever a crash
or power cut interrupted is finished or rolled back before any container starts.

What there can be to do (store/containers.py has the commit points):
- staging directories and temporary files of commands that died (their owner token names a
  PID of another boot, or a dead one): deleted, so a cut-short create, clone, remove or image
  build is rolled back;
- settings, drop-ins, overlay layers and address leases of a name that has no tree: a create
  cut before its commit, or a remove cut after it; deleted (only what nspawnctl wrote);
- an --overlay container whose tree was committed but whose mount unit was not enabled yet:
  enabled (rolled forward), so it is mounted from the next boot on as from this start on;
- an upgrade or auto-update killed after it swapped the new tree in, before its health check:
  rolled back to the snapshot it took (runtime/upgrade.py, runtime/autoupdate.py), so no
  container boots an unchecked upgrade or image.
Commands do the same for the names they touch (the sweep); this does it for all of them before
anything else can look.
"""

import os

from ..errors import Error
from ..paths import Paths
from ..runtime.autoupdate import TABLES
from ..runtime.context import Context
from ..runtime.upgrade import finish_interrupted, interrupted
from ..store import overlay
from ..store.hold import drop_stale


def recover(paths: Paths) -> list[str]:
    """Make the store whole (see the module docstring); lines saying what was done.  At boot
    the bus may not be up yet: nothing here needs it."""
    ctx = Context(paths, report=lambda _line: None)
    store = ctx.store
    done = [f"removed {what}" for what in store.sweep()]
    for name in store.names():
        if overlay.is_overlay(paths, name) and overlay.is_ours(paths, name) \
                and not os.path.islink(overlay.wants_link(paths, name)):
            overlay.enable(paths, name)
            done.append(f"enabled the mount unit of overlay container {name}")
    for name in store.names():
        if drop_stale(paths, name):
            done.append(f"removed the hold of a killed command on {name}")
    for name in interrupted(paths):
        try:
            with ctx.holding(name) as held:  # held by an upgrade still running: not ours
                if finish_interrupted(held, start_after=False, running=False, tables=TABLES):
                    done.append(f"finished the interrupted upgrade of {name}")
        except Error as exc:
            done.append(f"left the upgrade record of {name}: {exc.message}")
    return done
