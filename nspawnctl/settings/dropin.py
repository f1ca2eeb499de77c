"""Resource limits and restart policy: the unit drop-in and live D-Bus properties.

These settings belong to systemd-nspawn@NAME.service, not to the container, so
they go into /etc/systemd/system/systemd-nspawn@NAME.service.d/50-nspawnctl.conf
(kept across restarts) and, while the container runs, are applied at once with
SetUnitProperties.  Nothing here talks to D-Bus: bus.py sends what
`unit_properties` returns.
"""

from ..errors import Error
from .model import (
    DEFAULT_RESTART,
    NSPAWN_FIELDS,
    UNIT_FIELDS,
    ContainerConfig,
    format_size,
    parse_cpus,
    parse_size,
    parse_tasks,
)

DROPIN_NAME = "50-nspawnctl.conf"
HEADER = ("# Limits and restart policy of an nspawnctl container, see systemd.resource-control(5).\n"
          "# Written by nspawnctl: change them with `nspawnctl set`.")

# D-Bus spells "no limit" as the largest uint64.
UINT64_INFINITY = 2**64 - 1
# What TasksMax= falls back to when ours is removed: systemd-nspawn@.service's value.
TEMPLATE_TASKS_MAX = 16384
USEC_PER_SEC = 1_000_000


def dropin_path(name: str) -> str:
    """Where the drop-in of container `name` lives, relative to /etc/systemd/system."""
    return f"systemd-nspawn@{name}.service.d/{DROPIN_NAME}"


def format_cpu_quota(cpus: float) -> str:
    """1.5 CPUs -> '150%'; CPUQuota= takes percentages with two decimals."""
    return f"{cpus * 100:.2f}".rstrip("0").rstrip(".") + "%"


def render_dropin(cfg: ContainerConfig) -> str:
    """The [Service] drop-in: only the settings that differ from the template's.

    No value here is free text, so nothing needs %-escaping (unit files would
    expand specifiers); the % of CPUQuota= is the percent sign it expects.
    """
    lines = [HEADER, "", "[Service]"]
    if cfg.memory_max is not None:
        lines.append(f"MemoryMax={format_size(cfg.memory_max)}")
    if cfg.cpu_quota is not None:
        lines.append(f"CPUQuota={format_cpu_quota(cfg.cpu_quota)}")
    if cfg.tasks_max is not None:
        lines.append(f"TasksMax={cfg.tasks_max}")
    if cfg.restart != DEFAULT_RESTART:
        lines.append(f"Restart={cfg.restart}")
    return "\n".join(lines) + "\n"


def _parse_cpu_quota(value: str) -> float | None:
    if not value.endswith("%"):
        raise Error(f"invalid CPUQuota= value {value!r}: expected a percentage")
    return parse_cpus(str(float(value[:-1]) / 100)) if value[:-1] else None


_READERS = {
    "MemoryMax": ("memory_max", parse_size),
    "CPUQuota": ("cpu_quota", _parse_cpu_quota),
    "TasksMax": ("tasks_max", parse_tasks),
    "Restart": ("restart", str),
}


def parse_dropin(text: str) -> dict:
    """The drop-in's settings as ContainerConfig field values, for
    `dataclasses.replace(cfg, **parse_dropin(text))`.  Settings the file does
    not give get their defaults: the drop-in is their only source."""
    values = {"memory_max": None, "cpu_quota": None, "tasks_max": None, "restart": DEFAULT_RESTART}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section == "Service" and key.strip() in _READERS:
            field, read = _READERS[key.strip()]
            value = value.strip()
            try:
                values[field] = read(value) if value else values[field]
            except ValueError:
                raise Error(f"invalid {key.strip()}= value {value!r} in the unit drop-in") from None
    ContainerConfig(**values)  # validates restart and the limits
    return values


def unit_properties(cfg: ContainerConfig) -> list[tuple[str, int]]:
    """(name, value) pairs for SetUnitProperties; all of signature 't'.

    Every limit is given, unset ones as "no limit", so removing a limit while
    the container runs takes effect too.
    """
    cpu = (UINT64_INFINITY if cfg.cpu_quota is None
           else round(cfg.cpu_quota * USEC_PER_SEC))
    return [
        ("MemoryMax", UINT64_INFINITY if cfg.memory_max is None else cfg.memory_max),
        ("CPUQuotaPerSecUSec", cpu),
        ("TasksMax", TEMPLATE_TASKS_MAX if cfg.tasks_max is None else cfg.tasks_max),
    ]


def diff_needs_restart(old: ContainerConfig, new: ContainerConfig) -> list[str]:
    """Names of the changed settings that take effect only at the next start:
    everything in the .nspawn file.  Limits apply live; the restart policy with
    the next daemon-reload; the image name is only a record."""
    assert set(UNIT_FIELDS).isdisjoint(NSPAWN_FIELDS)
    return [name for name in NSPAWN_FIELDS if getattr(old, name) != getattr(new, name)]
