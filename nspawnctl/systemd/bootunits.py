"""nspawnctl's boot-time units: nspawnctl-recover.service (makes the store whole before any
container starts) and its drop-in for the systemd-nspawn@.service template, with the health
checks' scheduler (nspawnctl-health.service, which a container with a check wants), installed
by `create` and by vagrant/provision.sh (`nspawnctl install-units`)."""

import os
from collections.abc import Callable

from ..errors import Error
from ..paths import Paths
from .bus import Bus
from .unitfiles import install, render

RECOVER_UNIT = "nspawnctl-recover.service"
# A drop-in of the template, so it applies to every container, also ones made before it.
TEMPLATE_DROPINS = "systemd-nspawn@.service.d"
RECOVER_DROPIN = "10-nspawnctl-recover.conf"
WANTED_BY = ("machines.target", "multi-user.target")  # as units/nspawnctl-recover.service says
# The templates of health checks (runtime/health.py): a container's drop-in wants its timer.
# The health checks' scheduler (ops/health.py): a container's drop-in wants it.
HEALTH_UNIT = "nspawnctl-health.service"
# Before it, a timer and a service per container (stop 39): gone, so none of their timers
# starts again.
OBSOLETE = ("nspawnctl-health@.service", "nspawnctl-health@.timer")


def install_units(paths: Paths) -> bool:
    """Install and enable the boot-time units (without a daemon reload: the caller's business,
    see ensure_units).  True when a file changed."""
    changed = install(paths.units, RECOVER_UNIT,
                      render(RECOVER_UNIT, machines=str(paths.machines), state=str(paths.state)))
    changed |= install(paths.units / TEMPLATE_DROPINS, RECOVER_DROPIN,
                       render("nspawn-recover.conf"))
    changed |= install(paths.units, HEALTH_UNIT, render(HEALTH_UNIT, health=str(paths.health)))
    for unit in OBSOLETE:
        try:
            os.unlink(paths.units / unit)
            changed = True
        except FileNotFoundError:
            pass
    for target in WANTED_BY:  # what `systemctl enable` makes, without needing systemd to run
        link = paths.units / f"{target}.wants" / RECOVER_UNIT
        if not os.path.islink(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(paths.units / RECOVER_UNIT, link)
            changed = True
    return changed


def ensure_units(paths: Paths, bus: Callable[[], Bus]):
    """install_units(), and a daemon reload when that changed something and systemd runs.
    bus gives the command's connection (runtime.Context.bus): opened only if needed."""
    if install_units(paths):
        try:
            bus().reload()
        except Error:
            pass  # no systemd here (a tree built for another host): it reads them at boot
