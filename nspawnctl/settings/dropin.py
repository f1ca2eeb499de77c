"""The unit drop-in: the settings that belong to systemd-nspawn@NAME.service, not to the
container (limits, restart policy, order between containers).

They go into /etc/systemd/system/systemd-nspawn@NAME.service.d/50-nspawnctl.conf (kept across
restarts) and, while the container runs, the live ones are applied at once with
SetUnitProperties (model.live_properties).  Which settings, keys and formats: the `unit=`
declarations in model.py.  Nothing here talks to D-Bus.
"""

from typing import Any

from ..errors import Error, InvalidInput
from ..paths import HOLDS
from ..systemd.unitfiles import render
from . import conffile
from .credentials import DROPIN_NAME as CREDENTIALS_DROPIN_NAME
from .model import UNIT_SETTINGS, ContainerConfig

DROPIN_NAME = "50-nspawnctl.conf"
# The network hook of containers on nspawnctl's networks (units/container-network.conf).
NETWORK_DROPIN_NAME = "60-nspawnctl-network.conf"
# Containers with a --health-cmd want the health checks' scheduler
# (units/container-health.conf).  Before it, each had a health timer with this drop-in of its
# own (removed where it is still there).
HEALTH_DROPIN_NAME = "70-nspawnctl-health.conf"
HEALTH_TIMER_DROPIN_NAME = "50-nspawnctl.conf"
# The wait for the health of the containers of --after/--requires NAME:healthy
# (units/container-wait-healthy.conf).
WAIT_HEALTHY_DROPIN_NAME = "75-nspawnctl-wait-healthy.conf"
# The credentials' (credentials.py): paths to their values, never a value.
OUR_DROPINS = (DROPIN_NAME, NETWORK_DROPIN_NAME, HEALTH_DROPIN_NAME, WAIT_HEALTHY_DROPIN_NAME,
               CREDENTIALS_DROPIN_NAME)
# What systemd writes in /run/systemd/system.control/UNIT.d/ for the live properties nspawnctl
# sets (unit_write_setting: 50-KEY.conf, KEY the unit file's key, CPUQuota for
# CPUQuotaPerSecUSec).  They override the drop-in in /etc until they are deleted.
LIVE_DROPINS = tuple(f"50-{s.unit.name}.conf" for s in UNIT_SETTINGS
                     if s.unit is not None and s.unit.dbus and s.unit.live)


def render_dropin(cfg: ContainerConfig, holds: str = HOLDS) -> str:
    """units/container-settings.conf with the settings that differ from the template's.

    No value here is free text (container names are hostname labels), so nothing needs
    %-escaping (unit files would expand specifiers); the % of CPUQuota= is the percent sign
    it expects.
    """
    sections: dict[str, list[str]] = {"Unit": [], "Service": []}
    for s in UNIT_SETTINGS:
        assert s.unit is not None
        value = getattr(cfg, s.name)
        if value != getattr(ContainerConfig(), s.name):
            sections[s.unit.section].append(f"{s.unit.name}={s.unit.format(value)}")
    return render("container-settings.conf", unit_settings="\n".join(sections["Unit"]),
                  service_settings="\n".join(sections["Service"]), holds=holds)


def parse_dropin(text: str, where: str = "the unit drop-in") -> dict[str, Any]:
    """The drop-in's settings as ContainerConfig field values, for
    `dataclasses.replace(cfg, **parse_dropin(text))`.  Settings the file does not give get
    their defaults: the drop-in is their only source."""
    defaults = ContainerConfig()
    by_key = {s.unit.name: s for s in UNIT_SETTINGS if s.unit is not None}
    values = {s.name: getattr(defaults, s.name) for s in UNIT_SETTINGS}
    for line in conffile.read_lines(text):  # as systemd reads it: see conffile.py
        if line.key is None:
            continue
        key, value = line.key, line.value or ""
        setting = by_key.get(key)
        if setting is None or setting.unit is None or line.section != setting.unit.section:
            continue
        try:
            if setting.multiple:  # After=/Requires= lines add up, as systemd reads them
                values[setting.name] = (tuple(values[setting.name]) + setting.unit.parse(value)
                                        if value else ())
            else:
                values[setting.name] = (setting.unit.parse(value) if value
                                        else values[setting.name])
        except (ValueError, Error):
            raise InvalidInput(f"invalid {key}= value {value!r} in {where}") from None
    try:
        ContainerConfig(**values)  # validates the restart policy and the limits
    except Error as exc:
        raise InvalidInput(f"{exc.message} in {where}") from None
    return values
