"""What a running container uses, from the kernel's own files: its cgroup (CPU time, memory,
its processes) and /proc (each process; the bytes its network interfaces moved).

The cgroup is the one systemd made for its unit (ControlGroup, under machine.slice); what
runs in the container is in its `payload` child there (systemd-nspawn itself is in
`supervisor`), and that is what is counted where it exists.  Each figure comes from the
unified hierarchy (cgroup2) when the cgroup there has it (memory.current and pids.current
need their controllers enabled, cpu.stat is always there), else from the v1 hierarchy of
that controller if systemd made the unit's cgroup in it; else it is None, never a figure of
some other cgroup's (in a container host whose v1 controllers are read-only, the
container's processes sit in the root cgroup of those: the whole host's figures).

The container's root can make cgroups below payload (they are delegated to it) and name
them: the walk over them is bounded.  Process names and command lines are its too: shown
escaped by the CLI, and read bounded.
"""

import datetime
import os
from pathlib import Path

from ..confine import cgroup_mounts
from ..errors import Conflict, Error
from ..paths import service_unit
from ..systemd.bus import SERVICE, Bus

MAX_CGROUPS = 4096   # below one container: far more than a booted system makes
MAX_PROCESSES = 65536
CMDLINE_MAX = 4096
SMALL_MAX = 64 << 10  # /proc/PID/status, cpu.stat, net/dev of a few hundred interfaces


def _read(path: Path, limit: int = SMALL_MAX) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return None


class Cgroup:
    """One container's cgroup, found in every hierarchy mounted here."""

    def __init__(self, path: str, mounts: dict[frozenset, Path] | None = None):
        self.mounts = cgroup_mounts() if mounts is None else mounts
        unified = self.mounts.get(frozenset())
        self.path = path.strip("/")
        if unified is not None and (unified / self.path / "payload").is_dir():
            self.path += "/payload"
        self.unified = unified / self.path if unified is not None else None

    def _v1(self, controller: str) -> Path | None:
        """The cgroup in the v1 hierarchy that has controller, if systemd made it there."""
        for names, point in self.mounts.items():
            if controller in names:
                where = point / self.path
                return where if where.is_dir() else None
        return None

    def _number(self, v2: str | None, v1_controller: str, v1: str) -> int | None:
        for where, name in ((self.unified, v2), (self._v1(v1_controller), v1)):
            if where is None or name is None:
                continue
            text = _read(where / name)
            if text is not None and text.strip().isdigit():
                return int(text.strip())
        return None

    def cpu_usec(self) -> int | None:
        """CPU time used since it started, in microseconds."""
        if self.unified is not None:
            for line in (_read(self.unified / "cpu.stat") or "").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec" and value.strip().isdigit():
                    return int(value)
        nsec = self._number(None, "cpuacct", "cpuacct.usage")
        return nsec // 1000 if nsec is not None else None

    def memory(self) -> int | None:
        """Bytes of memory charged to it (what MemoryMax= limits)."""
        return self._number("memory.current", "memory", "memory.usage_in_bytes")

    def pids(self) -> list[int]:
        """Every process in it and in the cgroups below it, as this host numbers them."""
        top = self.unified or self._v1("name=systemd")
        if top is None:
            return []
        found: list[int] = []
        seen = 0
        for directory, subdirs, _files in os.walk(top):
            seen += 1
            if seen > MAX_CGROUPS:
                raise Error(f"more than {MAX_CGROUPS} cgroups in {top}: not read")
            subdirs.sort()
            for line in (_read(Path(directory) / "cgroup.procs", 1 << 20) or "").split():
                if line.isdigit():
                    found.append(int(line))
            if len(found) > MAX_PROCESSES:
                raise Error(f"more than {MAX_PROCESSES} processes in {top}: not read")
        return sorted(set(found))

    def pid_count(self) -> int | None:
        counted = self._number("pids.current", "pids", "pids.current")
        if counted is not None:
            return counted
        return len(self.pids()) if (self.unified or self._v1("name=systemd")) else None


def cgroup_of(bus: Bus, name: str, mounts: dict[frozenset, Path] | None = None) -> Cgroup:
    path = bus.unit_property(service_unit(name), "ControlGroup", b"s", iface=SERVICE)
    if not path:
        raise Conflict(f"{name} is not running", hint=f"start it first: nspawnctl start {name}")
    return Cgroup(path, mounts)


def network_bytes(pid: int, proc: Path = Path("/proc")) -> tuple[int, int] | None:
    """Bytes received and sent by the interfaces of pid's network namespace (loopback left
    out), or None when it is this host's own namespace (a container without a private
    network: the figures would be the host's)."""
    try:
        if os.stat(proc / str(pid) / "ns/net").st_ino == os.stat(proc / "self/ns/net").st_ino:
            return None
    except OSError:
        return None
    text = _read(proc / str(pid) / "net/dev")
    if text is None:
        return None
    rx = tx = 0
    for line in text.splitlines()[2:]:
        interface, sep, counters = line.partition(":")
        fields = counters.split()
        if not sep or interface.strip() == "lo" or len(fields) < 9:
            continue
        if fields[0].isdigit() and fields[8].isdigit():
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def process(pid: int, proc: Path = Path("/proc")) -> dict | None:
    """One process as ps shows it (None when it is gone): its pid here and in the
    container, parent, user id as the container sees it, state, resident memory, CPU time,
    when it started (RFC 3339, UTC) and its command line."""
    base = proc / str(pid)
    stat, status = _read(base / "stat"), _read(base / "status")
    if stat is None or status is None:
        return None
    comm_end = stat.rfind(")")  # the name may hold ")" and spaces: it is the process's
    comm = stat[stat.find("(") + 1:comm_end]
    fields = stat[comm_end + 2:].split()
    if len(fields) < 22:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    info: dict[str, str] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        info[key] = value.strip()
    uid = int(info.get("Uid", "0").split()[0] or 0)
    # its words as it was given them (a word may hold spaces), as a container's command is
    cmdline = (_read(base / "cmdline", CMDLINE_MAX) or "").rstrip("\0")
    return {"pid": pid, "cpid": int(info.get("NSpid", str(pid)).split()[-1]),
            "ppid": int(fields[1]), "uid": _inside(uid, _read(base / "uid_map") or ""),
            "state": fields[0], "rss": int(fields[21]) * os.sysconf("SC_PAGE_SIZE"),
            "cpu_seconds": round((int(fields[11]) + int(fields[12])) / ticks, 2),
            "started": _since_boot(int(fields[19]) / ticks, proc),
            "command": cmdline.split("\0") if cmdline else [f"[{comm}]"]}


def _since_boot(seconds: float, proc: Path) -> str | None:
    """A time given in seconds after the host booted, as RFC 3339 (UTC)."""
    for line in (_read(proc / "stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "btime" and value.strip().isdigit():
            moment = datetime.datetime.fromtimestamp(int(value) + seconds, datetime.timezone.utc)
            return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return None


def _inside(uid: int, uid_map: str) -> int | None:
    """uid as the process's user namespace numbers it (uid_map: inside outside count);
    None when it maps to no user there (the overflow user)."""
    for line in uid_map.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            inside, outside, count = map(int, parts)
            if outside <= uid < outside + count:
                return uid - outside + inside
    return None
