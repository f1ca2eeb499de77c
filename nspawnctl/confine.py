"""Confining a process entered into a running container from outside (`exec` into a container
that runs a single command, which has no systemd inside to start it for us).

nsenter alone gives the container's namespaces but keeps the caller's cgroup and full
capability bounding set: the command would escape the container's limits and could use
capabilities systemd-nspawn dropped.  So the caller first joins the cgroups of the container's
leader (each hierarchy whose cgroup.procs it may write: in a testbed, cgroup v1 controllers
are read-only, and there only the systemd and unified hierarchies take it), and the command
runs under the leader's bounding set (setpriv).  systemd-nspawn's seccomp filter cannot be
put on from outside; with a user namespace (the default), the capabilities it guards are
those of that namespace only, and without one `exec` is refused (ops/lifecycle.py).
"""

import os
from pathlib import Path

from .errors import Error

# linux/capability.h, by bit number: the names setpriv(1) takes.
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin",
    "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace",
    "sys_pacct", "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
    "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read",
    "perfmon", "bpf", "checkpoint_restore")
_MAX_LINE = 4096  # /proc lines read here are short; a longer one is not what we look for


def bounding_set(pid: int) -> int:
    """The capability bounding set of process pid (CapBnd of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in iter(lambda: f.readline(_MAX_LINE), ""):
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    raise Error(f"cannot read the capabilities of the container's leader (pid {pid})")


def setpriv_bounding(mask: int) -> str:
    """mask as setpriv's --bounding-set argument: -all, then each capability it keeps."""
    kept = [name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]
    return ",".join(["-all", *(f"+{name}" for name in kept)])


def join_cgroups_of(pid: int, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Move this process into pid's cgroup in every hierarchy that takes it; returns the
    hierarchies joined (the unified or systemd one must be among them, or it is an error)."""
    mounts = _cgroup_mounts(mountinfo)
    joined = []
    for line in _lines(f"/proc/{pid}/cgroup"):
        _id, controllers, path = line.split(":", 2)
        key = frozenset(controllers.split(",")) if controllers else frozenset()
        root = mounts.get(key)
        if root is None:
            continue
        try:
            with open(root / path.lstrip("/") / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            continue  # read-only (v1 controllers in a container) or not delegated
        joined.append(controllers or "unified")
    if not {"unified", "name=systemd"} & set(joined):
        raise Error(f"cannot join the cgroup of the container's leader (pid {pid})",
                    hint="is /sys/fs/cgroup mounted read-only here?")
    return joined


def _cgroup_mounts(mountinfo: str) -> dict[frozenset, Path]:
    """Mount point of each cgroup hierarchy, keyed by what /proc/PID/cgroup names it with:
    no name for cgroup2, else the controllers (or name=...) of the v1 hierarchy."""
    mounts: dict[frozenset, Path] = {}
    for line in _lines(mountinfo):
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        fstype, options = extra[0], extra[2].split(",")
        point = Path(fields[4].replace("\\040", " "))
        if fstype == "cgroup2":
            mounts.setdefault(frozenset(), point)
        elif fstype == "cgroup":
            names = frozenset(o for o in options if o not in ("rw", "ro")
                              and ("=" not in o or o.startswith("name=")))
            mounts.setdefault(names, point)
    return mounts


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in iter(lambda: f.readline(_MAX_LINE), "")]
    except OSError:
        return []
