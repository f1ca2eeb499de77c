"""The values of container settings: parsers for what users type, and the checks that keep a
value writable to a systemd file (no line breaks, absolute paths, no ':' in bind paths).

Every parser takes the CLI's text and returns the value a ContainerConfig holds, or raises
Error naming the value; 'infinity' means "no limit" (None) wherever systemd has one.
"""

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from ..errors import InvalidInput, Usage
from ..names import check_volume_name

# systemd's parse_size(): 1024-based suffixes.
_SIZE_SUFFIXES = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30,
                  "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
# The number, one optional blank, then systemd's suffix or podman's (K, KB, KiB; B alone).
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:([KMGTPE])(?:I?B)?|B)?",
                      re.IGNORECASE | re.ASCII)
_PERCENT_RE = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,2})?)%", re.ASCII)
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
    # an idmapped bind (nspawn's idmap option, systemd 250 and later): uid N inside is uid N
    # on the host, in both directions, instead of the container's shifted range
    idmap: bool = False

    def __post_init__(self):
        for path in (self.source, self.dest):
            check_bind_path(path, str(self))

    def __str__(self) -> str:
        """The SRC:DST[:ro][:idmap] form the CLI takes and `parse_bind` reads."""
        return (f"{self.source}:{self.dest}" + (":ro" if self.readonly else "")
                + (":idmap" if self.idmap else ""))


@dataclass(frozen=True)
class VolumeMount:
    """A named volume (store/volumes.py) mounted in a container: --volume NAME:/PATH[:ro]."""

    name: str
    dest: str
    readonly: bool = False
    # idmapped (uid N inside is uid N in the volume): with a user namespace, which is what
    # the bind needs it for; without one uid N already is uid N, and systemd-nspawn 252 then
    # refuses the option ("Failed to map ids for bind mount").  ContainerConfig sets it.
    idmap: bool = True

    def __post_init__(self):
        check_volume_name(self.name)
        check_bind_path(self.dest, str(self))

    def __str__(self) -> str:
        """The NAME:/PATH[:ro] form the CLI takes and `parse_volume` reads."""
        return f"{self.name}:{self.dest}" + (":ro" if self.readonly else "")


def check_user(user: str) -> str:
    if not _USER_RE.fullmatch(user):
        raise Usage(f"invalid user name {user!r}")
    return user


# Characters no value may hold, whatever file it lands in: every control character but the
# tab (C0, DEL and C1, which holds U+0085), the Unicode line and paragraph separators, and
# lone surrogates (not text: they cannot even be written as UTF-8).  systemd ends a line at
# \n, \r and NUL only, but other readers end lines elsewhere (Python's str.splitlines() at
# \v, \f, \x1c-\x1e, U+0085, U+2028 and U+2029), and a value one reader takes as one line
# and another as several can carry lines of its own into a file rewritten from it.  The tab
# is systemd's blank: quoting keeps it inside a word, and no reader ends a line at it.
_NOT_TEXT = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SHOWN = 60  # characters of a refused value the error shows


def check_text(value: str, what: str) -> None:
    """A value that lands in a line of a file (a .nspawn setting, a unit, a record): nothing
    in it may end that line for any reader, or hide in it (see _NOT_TEXT)."""
    bad = _NOT_TEXT.search(value)
    if bad:
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "..."
        raise Usage(f"invalid {what} {shown!r}: it holds U+{ord(bad.group()):04X} at "
                    f"position {bad.start()}; line breaks and control characters are not "
                    "allowed")


def check_path(path: str, what: str) -> None:
    check_text(path, what)
    if not path.startswith("/"):
        raise Usage(f"invalid {what} {path!r}: an absolute path is required")
    if path != path.strip():
        raise Usage(f"invalid {what} {path!r}: leading or trailing whitespace")


def check_bind_path(path: str, spec: str) -> None:
    # nspawn splits Bind= on ':' and treats '\' as an escape: neither may
    # appear inside a path, or the path nspawn sees would differ from ours.
    check_path(path, f"bind mount {spec!r}: path")
    if ":" in path or "\\" in path:
        raise Usage(f"invalid bind mount {spec!r}: paths may not contain ':' or '\\'")


def parse_size(text: str) -> int | str | None:
    """A memory size as systemd's MemoryMax= or podman's --memory takes it -> bytes, or a
    percentage of the host's memory kept as text ('50%'); 'infinity' -> None.

    Bytes: a number (a fraction allowed) with an optional 1024-based suffix, in systemd's
    spelling (K, M, G, T, P, E) or podman's (b, k, m, g, with an optional b or ib: 'kb',
    'MiB'), either case: '512M', '512MB', '1.5g', '4096'.  A percentage has at most two
    decimals (systemd's permyriad), more than 0% and at most 100%; it is kept as one because
    systemd works it out on the host the container runs on."""
    value = text.strip()
    if value.lower() in _INFINITY:
        return None
    percent = _PERCENT_RE.fullmatch(value)
    if percent:
        share = Fraction(percent.group(1))
        if not 0 < share <= 100:
            raise Usage(f"invalid size {text!r}: a percentage must be more than 0% and at "
                        "most 100%")
        return f"{float(share):g}%"
    match = _SIZE_RE.fullmatch(value)
    if not match:
        raise Usage(f"invalid size {text!r}: expected a number with an optional K, M, G, T "
                    "suffix (KB, MiB and podman's b, k, m, g too), a percentage of the "
                    "host's memory such as 50%, or 'infinity'")
    number, suffix = match.group(1), (match.group(2) or "").upper()
    size = int(Fraction(number) * _SIZE_SUFFIXES[suffix]) if len(number) <= 40 else 1 << 64
    if size <= 0:
        raise Usage(f"invalid size {text!r}: must be more than zero")
    if size > _MAX_UINT64_VALUE:
        raise Usage(f"invalid size {text!r}: too large (use 'infinity' for no limit)")
    return size


def size_in_bytes(size: int | str) -> int:
    """A parse_size() value as bytes on this host: a percentage of its physical memory, as
    systemd works MemoryMax=50% out (physical_memory_scale)."""
    if isinstance(size, int):
        return size
    import os
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(Fraction(size.removesuffix("%")) * total / 100)


def format_size(size: int | str) -> str:
    """Bytes -> the largest exact 1024-based unit: 536870912 -> '512M'; lossless.  A
    percentage ('50%') is written as it is: MemoryMax= reads it so."""
    if isinstance(size, str):
        return size
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
        raise Usage(f"invalid CPU count {text!r}: expected a positive number such as 1.5")
    cpus = round(cpus, 4)
    if cpus == 0:
        raise Usage(f"invalid CPU count {text!r}: too small")
    if cpus > _MAX_CPUS:
        raise Usage(f"invalid CPU count {text!r}: more than {_MAX_CPUS} "
                    "(use 'infinity' for no limit)")
    return cpus


def parse_tasks(text: str) -> int | None:
    """'256' -> 256; 'infinity' -> None."""
    value = text.strip()
    if value.lower() in _INFINITY:
        return None
    # isdigit() alone also takes digits int() refuses, like '²'
    if not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise Usage(f"invalid task limit {text!r}: expected a positive integer")
    if int(value) > _MAX_UINT64_VALUE:
        raise Usage(f"invalid task limit {text!r}: too large (use 'infinity' for no limit)")
    return int(value)


# systemd's time spans (parse_sec()): numbers, fractions allowed, each with a unit, as in
# "300", "5min", "1h 30s", "1.5h"; units are case-sensitive (M is a month, m a minute).
_SPAN_UNITS = {
    **dict.fromkeys(("us", "usec", "\u00b5s", "\u03bcs"), Fraction(1, 1_000_000)),
    **dict.fromkeys(("ms", "msec"), Fraction(1, 1000)),
    **dict.fromkeys(("", "s", "sec", "second", "seconds"), Fraction(1)),
    **dict.fromkeys(("m", "min", "minute", "minutes"), Fraction(60)),
    **dict.fromkeys(("h", "hr", "hour", "hours"), Fraction(3600)),
    **dict.fromkeys(("d", "day", "days"), Fraction(86400)),
    **dict.fromkeys(("w", "week", "weeks"), Fraction(7 * 86400)),
    **dict.fromkeys(("M", "month", "months"), Fraction(2629800)),
    **dict.fromkeys(("y", "year", "years"), Fraction(31557600)),
}
_SPAN_RE = re.compile(r"[ \t]*([0-9]+(?:\.[0-9]*)?)[ \t]*([a-zA-Z\u00b5\u03bc]*)")
# Longer numbers are beyond usec_t in any unit; the bound keeps Fraction() small.
_MAX_SPAN_DIGITS = 40
# The most systemd's usec_t holds (UINT64_MAX is its infinity).
_MAX_SPAN_USEC = (1 << 64) - 2
# A day: a longer --start-timeout is a mistake, not a start that is merely slow; 'infinity'
# says "no limit" on purpose.
_MAX_SPAN = 86400


def parse_span(text: str) -> int | float:
    """A time span as systemd reads TimeoutStartSec= (parse_sec_fix_0()) -> whole seconds,
    rounded up; 'infinity', and 0, which systemd has always read there as no limit ->
    math.inf.  For values in unit files, which systemd wrote or a user edited."""
    value = text.strip(" \t")
    if value == "infinity":
        return math.inf
    total, pos = Fraction(0), 0
    while pos < len(value):
        m = _SPAN_RE.match(value, pos)
        if not m or m.end() == pos or m.group(2) not in _SPAN_UNITS:
            raise Usage(f"invalid time span {text!r}: expected seconds, or e.g. 5min")
        if len(m.group(1)) > _MAX_SPAN_DIGITS:
            raise Usage(f"invalid time span {text!r}: too large (use 'infinity' for no limit)")
        total += Fraction(m.group(1)) * _SPAN_UNITS[m.group(2)]
        pos = m.end()
    if not value:
        raise Usage(f"invalid time span {text!r}: expected seconds, or e.g. 5min")
    if total * 1_000_000 > _MAX_SPAN_USEC:
        raise Usage(f"invalid time span {text!r}: too large (use 'infinity' for no limit)")
    return math.inf if total == 0 else math.ceil(total)


def parse_seconds(text: str) -> int | float:
    """What --start-timeout takes: '300', '5min', '1h 30s' -> whole seconds (positive, at most
    a day), or 'infinity' -> math.inf (no limit)."""
    if text.strip(" \t") == "infinity":
        return math.inf
    seconds = parse_span(text)
    if seconds == math.inf:  # a 0 here is a typo more often than systemd's old spelling
        raise Usage(f"invalid time span {text!r}: expected a positive number of seconds "
                    "('infinity' for no limit)")
    if seconds > _MAX_SPAN:
        raise Usage(f"invalid time span {text!r}: more than a day (use 'infinity' for no limit)")
    return seconds


def format_span(seconds: int | float) -> str:
    """Seconds as TimeoutStartSec= takes them; math.inf -> 'infinity'."""
    return "infinity" if seconds == math.inf else str(seconds)


def parse_bind(text: str) -> Bind:
    """'SRC:DST[:ro|:rw][:idmap]' or 'SRC' (mounted at the same path inside)."""
    parts = text.split(":")
    if len(parts) == 1:
        return Bind(text, text)
    options = set(parts[2:])
    if len(parts) > 4 or len(options) != len(parts) - 2 or {"ro", "rw"} <= options \
            or not options <= {"ro", "rw", "idmap"}:
        raise Usage(f"invalid bind mount {text!r}: expected SRC[:DST[:ro][:idmap]]")
    return Bind(parts[0], parts[1], "ro" in options, "idmap" in options)


def parse_volume(text: str) -> VolumeMount:
    """'NAME:/PATH[:ro|:rw]': volume NAME mounted at /PATH inside."""
    parts = text.split(":")
    readonly = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        readonly = parts.pop() == "ro"
    if len(parts) != 2:
        raise Usage(f"invalid volume mount {text!r}: expected NAME:/PATH[:ro]")
    return VolumeMount(parts[0], parts[1], readonly)


def parse_env(text: str) -> str:
    """'K=V' checked the way systemd checks it; returned unchanged."""
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME_RE.fullmatch(name):
        raise Usage(f"invalid environment variable {text!r}: expected NAME=VALUE "
                    "with NAME made of letters, digits and _")
    check_text(text, "environment variable")
    return text


def check_hostname(hostname: str) -> str:
    if not (len(hostname) <= 64 and _HOSTNAME_RE.fullmatch(hostname)):
        raise Usage(f"invalid hostname {hostname!r}")
    return hostname


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise Usage(f"invalid {what} {value!r}: expected one of {', '.join(choices)}")
    return value


def format_cpu_quota(cpus: float) -> str:
    """1.5 CPUs -> '150%'; CPUQuota= takes percentages with two decimals."""
    return f"{cpus * 100:.2f}".rstrip("0").rstrip(".") + "%"


def parse_cpu_quota(value: str) -> float | None:
    """CPUQuota='150%' as a unit file says it -> 1.5 CPUs; an empty percentage is no limit."""
    if not value.endswith("%"):
        raise InvalidInput(f"invalid CPUQuota= value {value!r}: expected a percentage")
    try:
        return parse_cpus(str(float(value[:-1]) / 100)) if value[:-1] else None
    except ValueError:
        raise InvalidInput(f"invalid CPUQuota= value {value!r}") from None
