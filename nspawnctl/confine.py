"""Entering a running container from outside, confined (`exec` into a container that runs a
single command, which has no systemd inside to start it for us).

nsenter(1) gives the container's namespaces but keeps the caller's cgroup, and entering a user
namespace gives a full capability bounding set (the kernel's set_cred_user_ns), so a bounding
set dropped before nsenter does not hold: the command would escape the container's limits and
could use capabilities systemd-nspawn dropped.  So enter() does what nsenter does, in order:
the caller has joined the leader's cgroups (each hierarchy whose cgroup.procs it may write: in
a testbed, cgroup v1 controllers are read-only, and there only the systemd and unified
hierarchies take it); the child joins the other namespaces, the user namespace last, then
drops every capability the leader's bounding set lacks, takes the container's root and working
directory, becomes its root user and runs the command.  systemd-nspawn's seccomp filter cannot
be put on from outside; with a user namespace (the default), the capabilities it guards are
those of that namespace only, and without one `exec` is refused (ops/lifecycle.py).

The child is made non-dumpable before it joins anything: from its first setns until its exec
it holds host file descriptors (the container's root and working directory, the namespaces),
and once in the container's user namespace its root could ptrace it and use them (runc's
CVE-2016-9962).  A non-dumpable process can be traced only with CAP_SYS_PTRACE in the user
namespace its memory was made in, the host's; the exec then gives the command a memory of the
container's own, traceable there as any of its processes.  It runs in a session of its own,
on a pty of its own if our stdin, stdout or stderr is a terminal (ptyrelay.py): never on the
admin's terminal, which it could type into.
"""

import ctypes
import os
from pathlib import Path

from . import ptyrelay
from .errors import Error

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
# The order nsenter uses when it lowers its privileges: the user namespace last.
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt", "user")

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


def enter(pid: int, argv: list[str], env: dict[str, str]) -> int:
    """Run argv inside the container whose leader is pid, as its root user, confined as its
    own processes are and kept off our terminal (see the module docstring); returns its exit
    status (128+N for a signal, as a shell says it)."""
    mask = bounding_set(pid)
    join_cgroups_of(pid)
    fds = {}
    try:
        for ns in NAMESPACES:
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        for fd in fds.values():
            os.close(fd)
        raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None
    try:
        try:
            _setns(fds["pid"])  # takes effect for our children only
        except OSError as e:
            raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None

        def child():  # pragma: no cover (runs in the forked child, ends in exec or _exit)
            try:
                _prctl(PR_SET_DUMPABLE, 0)
                for ns in NAMESPACES:
                    if ns != "pid":
                        _setns(fds[ns])
                for cap in range(len(CAPABILITIES)):
                    if not mask >> cap & 1:
                        _prctl(PR_CAPBSET_DROP, cap)
                os.fchdir(root)
                os.chroot(".")
                os.fchdir(cwd)
                try:
                    os.setgroups([])
                except PermissionError:
                    pass  # setgroups denied in this user namespace: there are none to drop
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
                os.execvpe(argv[0], argv, env)
            except OSError as e:
                os.write(2, f"nspawnctl: cannot run {argv[0]} in the container: "
                            f"{e.strerror}\n".encode())
                os._exit(127 if isinstance(e, FileNotFoundError) else 126)

        return ptyrelay.spawn(child)
    finally:
        for fd in [*fds.values(), root, cwd]:
            os.close(fd)


def _setns(fd: int):
    if _libc.setns(fd, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _prctl(option: int, arg: int):
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        if err != 22:  # EINVAL: a capability this kernel does not know
            raise OSError(err, os.strerror(err))


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
