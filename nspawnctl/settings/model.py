"""A container's settings: one frozen dataclass and the parsers for CLI strings.

The defaults are those of systemd's own systemd-nspawn@.service template
(--boot, -U, --network-veth, no Restart=), so a container with default
settings behaves exactly like one machinectl would start.  Where the settings
are written on disk is nspawnfile.py's and units.py's business.
"""

import math
import re
from dataclasses import dataclass, fields

from ..errors import Error

NETWORK_MODES = ("veth", "host")
RESTART_POLICIES = ("no", "on-failure", "always")

# systemd-nspawn@.service sets no Restart=, so systemd's own default (no)
# applies; a reboot from inside still restarts through RestartForceExitStatus=133.
DEFAULT_RESTART = "no"

# systemd's parse_size(): 1024-based suffixes.
_SIZE_SUFFIXES = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30,
                  "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGTPEB]?)", re.IGNORECASE)
_INFINITY = ("infinity", "max")
# The largest values systemd takes in a unit file: MemoryMax= and TasksMax= are uint64 with
# UINT64_MAX meaning infinity; CPUQuota= is a percentage that must fit an int in 1/10000ths.
_MAX_UINT64_VALUE = (1 << 64) - 2
_MAX_CPUS = 214748

# systemd's env_name_is_valid(): no leading digit, then letters, digits and _.
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A relaxed user name (also numeric UIDs, as OCI images use them).
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
_HOSTNAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


@dataclass(frozen=True)
class Bind:
    """A bind mount from the host: nspawn's Bind= / BindReadOnly=."""

    source: str
    dest: str
    readonly: bool = False

    def __post_init__(self):
        for path in (self.source, self.dest):
            check_bind_path(path, str(self))

    def __str__(self) -> str:
        """The SRC:DST[:ro] form the CLI takes and `parse_bind` reads."""
        return f"{self.source}:{self.dest}" + (":ro" if self.readonly else "")


@dataclass(frozen=True)
class ContainerConfig:
    """Everything nspawnctl decides about one container.

    `boot` and `command` mirror nspawn's Boot= and Parameters=: with boot the
    command (normally empty) is extra arguments for the tree's init; without
    boot it is the one program to run (OCI images).  Limits and restart live in
    the unit drop-in, everything else in the .nspawn file.
    """

    boot: bool = True
    command: tuple[str, ...] = ()
    private_users: bool = True
    network: str = "veth"
    binds: tuple[Bind, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    memory_max: int | None = None
    cpu_quota: float | None = None
    tasks_max: int | None = None
    restart: str = DEFAULT_RESTART
    image: str | None = None

    def __post_init__(self):
        # Accept lists from callers; store tuples so the object stays hashable.
        for name in ("command", "binds", "env"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for arg in self.command:
            check_text(arg, "command argument")
        for assignment in self.env:
            parse_env(assignment)
        if self.network not in NETWORK_MODES:
            raise Error(f"invalid network mode {self.network!r}: "
                        f"expected one of {', '.join(NETWORK_MODES)}")
        if self.restart not in RESTART_POLICIES:
            raise Error(f"invalid restart policy {self.restart!r}: "
                        f"expected one of {', '.join(RESTART_POLICIES)}")
        if self.working_dir is not None:
            check_path(self.working_dir, "working directory")
        if self.user is not None:
            check_user(self.user)
        if self.hostname is not None and not (
                len(self.hostname) <= 64 and _HOSTNAME_RE.fullmatch(self.hostname)):
            raise Error(f"invalid hostname {self.hostname!r}")
        for name in ("memory_max", "tasks_max"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise Error(f"invalid {name.replace('_', ' ')} {value!r}: expected a positive integer")
        if self.cpu_quota is not None and not (
                math.isfinite(self.cpu_quota) and self.cpu_quota > 0):
            raise Error(f"invalid CPU quota {self.cpu_quota!r}: expected a positive number of CPUs")
        if self.image is not None:
            check_text(self.image, "image name")


NSPAWN_FIELDS = ("boot", "command", "private_users", "network", "binds", "env",
                 "working_dir", "user", "hostname")
UNIT_FIELDS = ("memory_max", "cpu_quota", "tasks_max", "restart")
assert set(NSPAWN_FIELDS + UNIT_FIELDS + ("image",)) == {f.name for f in fields(ContainerConfig)}


def check_user(user: str) -> str:
    if not _USER_RE.fullmatch(user):
        raise Error(f"invalid user name {user!r}")
    return user


def check_text(value: str, what: str) -> None:
    """Neither file format can carry a line break or NUL inside a value."""
    if any(c in value for c in "\n\r\0"):
        raise Error(f"invalid {what} {value!r}: line breaks are not allowed")


def check_path(path: str, what: str) -> None:
    check_text(path, what)
    if not path.startswith("/"):
        raise Error(f"invalid {what} {path!r}: an absolute path is required")
    if path != path.strip():
        raise Error(f"invalid {what} {path!r}: leading or trailing whitespace")


def check_bind_path(path: str, spec: str) -> None:
    # nspawn splits Bind= on ':' and treats '\' as an escape: neither may
    # appear inside a path, or the path nspawn sees would differ from ours.
    check_path(path, f"bind mount {spec!r}: path")
    if ":" in path or "\\" in path:
        raise Error(f"invalid bind mount {spec!r}: paths may not contain ':' or '\\'")


def parse_size(text: str) -> int | None:
    """'512M', '1.5G', '1073741824' -> bytes (1024-based, like systemd); 'infinity' -> None."""
    value = text.strip()
    if value.lower() in _INFINITY:
        return None
    match = _SIZE_RE.fullmatch(value)
    if not match:
        raise Error(f"invalid size {text!r}: expected a number with an optional K, M, G, T suffix")
    size = int(float(match.group(1)) * _SIZE_SUFFIXES[match.group(2).upper()])
    if size <= 0:
        raise Error(f"invalid size {text!r}: must be more than zero")
    if size > _MAX_UINT64_VALUE:
        raise Error(f"invalid size {text!r}: too large (use 'infinity' for no limit)")
    return size


def format_size(size: int) -> str:
    """Bytes -> the largest exact 1024-based unit: 536870912 -> '512M'; lossless."""
    for suffix in "EPTGMK":
        unit = _SIZE_SUFFIXES[suffix]
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def parse_cpus(text: str) -> float | None:
    """'1.5' (CPUs) -> 1.5; 'infinity' -> None.  Kept to 1/10000 CPU, the
    precision CPUQuota= percentages carry."""
    value = text.strip()
    if value.lower() in _INFINITY:
        return None
    try:
        cpus = float(value)
    except ValueError:
        cpus = math.nan
    if not (math.isfinite(cpus) and cpus > 0) or not re.fullmatch(r"[0-9.]+", value):
        raise Error(f"invalid CPU count {text!r}: expected a positive number such as 1.5")
    cpus = round(cpus, 4)
    if cpus == 0:
        raise Error(f"invalid CPU count {text!r}: too small")
    if cpus > _MAX_CPUS:
        raise Error(f"invalid CPU count {text!r}: more than {_MAX_CPUS} "
                    "(use 'infinity' for no limit)")
    return cpus


def parse_tasks(text: str) -> int | None:
    """'256' -> 256; 'infinity' -> None."""
    value = text.strip()
    if value.lower() in _INFINITY:
        return None
    # isdigit() alone also takes digits int() refuses, like '²'
    if not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise Error(f"invalid task limit {text!r}: expected a positive integer")
    if int(value) > _MAX_UINT64_VALUE:
        raise Error(f"invalid task limit {text!r}: too large (use 'infinity' for no limit)")
    return int(value)


def parse_bind(text: str) -> Bind:
    """'SRC:DST[:ro|:rw]' or 'SRC' (mounted at the same path inside)."""
    parts = text.split(":")
    readonly = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        readonly = parts.pop() == "ro"
    if len(parts) not in (1, 2):
        raise Error(f"invalid bind mount {text!r}: expected SRC[:DST[:ro]]")
    return Bind(parts[0], parts[-1], readonly)


def parse_env(text: str) -> str:
    """'K=V' checked the way systemd checks it; returned unchanged."""
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME_RE.fullmatch(name):
        raise Error(f"invalid environment variable {text!r}: expected NAME=VALUE "
                    "with NAME made of letters, digits and _")
    check_text(text, "environment variable")
    return text
