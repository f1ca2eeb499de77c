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

The health checks enter the same way through a small program, helpers/nspawnctl-enter.c, that
the scheduler starts with posix_spawn (spawn_entered): a fork of its Python process was most of
what a check cost.  That program does become()'s steps for the container's root user, in the
same order; tests/unit/test_confine.py proves both.
"""

import ctypes
import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from . import ptyrelay
from .errors import EXEC_CANNOT_RUN, EXEC_FAILED, EXEC_NOT_FOUND, Error

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


@dataclass
class Entry:
    """What entering the container of leader pid takes, read and opened from outside it: the
    leader's bounding set, its namespaces, root and working directory (descriptors, so that
    nothing of the container is looked up by path once inside), the cgroup.procs files of
    its cgroups that take a process (opened for writing, with their hierarchy's name), and
    its limit of open files (ours may be far higher: the health scheduler raises its own to
    follow many containers)."""

    pid: int
    mask: int
    fds: dict[str, int]
    root: int
    cwd: int
    procs: list[tuple[str, int]]
    nofile: tuple[int, int]

    def close(self):
        for fd in [*self.fds.values(), self.root, self.cwd, *(fd for _, fd in self.procs)]:
            os.close(fd)


def opened(pid: int, mounts: dict[frozenset, Path] | None = None) -> Entry:
    """The Entry of leader pid (mounts: the host's cgroup hierarchies, cgroup_mounts(), for a
    caller that enters often); the caller closes it."""
    mask = bounding_set(pid)
    try:
        nofile = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    except OSError as e:
        raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None
    procs = _opened_procs(pid, mounts if mounts is not None else cgroup_mounts())
    fds: dict[str, int] = {}
    try:
        for ns in NAMESPACES:
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            os.close(root)
            raise
    except OSError as e:
        for fd in [*fds.values(), *(fd for _, fd in procs)]:
            os.close(fd)
        raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None
    return Entry(pid, mask, fds, root, cwd, procs, nofile)


# Joining one of these is what puts a process under the container's unit (and limits).
_REQUIRED = frozenset({"unified", "name=systemd"})


def _opened_procs(pid: int, mounts: dict[frozenset, Path]) -> list[tuple[str, int]]:
    """The cgroup.procs files of pid's cgroups (cgroup_procs()) that open for writing: in a
    testbed, cgroup v1 controllers are read-only, and there only the systemd and unified
    hierarchies take a process.  One of those must."""
    procs = []
    for name, path in cgroup_procs(pid, mounts):
        try:
            procs.append((name, os.open(path, os.O_WRONLY | os.O_CLOEXEC)))
        except OSError:
            continue  # read-only (v1 controllers in a container) or not delegated
    try:
        _require_one(procs, pid)
    except Error:
        for _, fd in procs:
            os.close(fd)
        raise
    return procs


def _require_one(procs: list[tuple[str, int]], pid: int):
    """One of procs (hierarchy, cgroup.procs) is the unified or the systemd hierarchy's."""
    if not _REQUIRED & {name for name, _ in procs}:
        raise Error(f"cannot join the cgroup of the container's leader (pid {pid})",
                    hint="is /sys/fs/cgroup mounted read-only here?")


def enter(pid: int, argv: list[str], env: dict[str, str], user: str | None = None,
          group: str | None = None, workdir: str | None = None, tty: bool = False,
          stdin: bool = True) -> int:
    """Run argv inside the container whose leader is pid, as its root user (or user and
    group: names looked up in the container's own /etc/passwd and /etc/group, or numbers),
    in workdir (else the leader's), confined as its own processes are and kept off our
    terminal (see the module docstring; tty and stdin as ptyrelay.spawn takes them); returns
    its exit status (128+N for a signal, as a shell says it; 125 when the user, group or
    directory is not there, 126 or 127 when the command cannot be run or is not found)."""
    entry = opened(pid)
    try:
        join(entry.procs, pid)
        try:
            _setns(entry.fds["pid"])  # takes effect for our children only
        except OSError as e:
            raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None
        return ptyrelay.spawn(lambda: become(entry, argv, env, user, group, workdir),
                              tty=tty, stdin=stdin)
    finally:
        entry.close()


def spawn_entered(entry: Entry, argv: list[str], env: dict[str, str], out: int) -> int:
    """A child of ours that runs argv in the container entry opens, confined as enter() runs
    it, as its root, with /dev/null as stdin, out as stdout and stderr, in a session of its
    own (no terminal); its pid, for the caller to wait for.  For the health checks, so it
    costs little: posix_spawn of HELPER, a small program that does what become() does, not
    a fork of this Python process (which copies its page tables and then, in the child,
    faults in each page Python touches until the exec: most of what a check cost).  Its
    descriptors go to HELPER alone (their numbers on its command line, cleared of
    close-on-exec in that child only), and HELPER closes them before the command runs.
    This process sets the container's PID namespace for its children only for the spawn and
    takes its own back at once (a child cannot be moved into another one later).  The
    entry stays open: a caller that enters often keeps it while the leader lives."""
    pid = entry.pid
    if not os.access(HELPER, os.X_OK):
        raise Error(f"{HELPER} is missing", hint="build it: make venv (or vagrant/provision.sh)")
    must = [str(fd) for name, fd in entry.procs if name in _REQUIRED]
    may = [str(fd) for name, fd in entry.procs if name not in _REQUIRED]
    namespaces = [entry.fds[ns] for ns in NAMESPACES if ns != "pid"]  # the user one last
    passed = [entry.root, entry.cwd, *namespaces, *(fd for _, fd in entry.procs)]
    helper_argv = [str(HELPER), f"{entry.mask:x}", ":".join(map(_limit, entry.nofile)),
                   str(entry.root), str(entry.cwd), ",".join(map(str, namespaces)),
                   ",".join(must), ",".join(may) or "-", "--", *argv]
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(entry.fds["pid"])
        except OSError as e:
            raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None
        try:
            return os.posix_spawn(
                HELPER, helper_argv, env,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                              (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2),
                              *((os.POSIX_SPAWN_DUP2, fd, fd) for fd in passed)],
                setsid=True, setsigmask=(), setsigdef=_ALL_SIGNALS)
        except OSError as e:
            raise Error(f"cannot enter the container (pid {pid}): {e.strerror}") from None
        finally:
            _setns(own)  # an OSError here is fatal: our next child would be the container's
    finally:
        os.close(own)


# Built from HELPER.c by `make venv` (and vagrant/provision.sh): see its comment.
HELPER = Path(__file__).parent / "helpers" / "nspawnctl-enter"
# Every signal at its default action in the command: Python ignores SIGPIPE and SIGXFSZ, and
# its handlers must not run in a child that shares its memory.
_ALL_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


def _limit(value: int) -> str:
    return str(2**64 - 1 if value == resource.RLIM_INFINITY else value)


def become(entry: Entry, argv: list[str], env: dict[str, str], user: str | None,
           group: str | None, workdir: str | None) -> NoReturn:  # pragma: no cover
    """In a child of ours that will be the command (its PID namespace the container's, its
    cgroups joined): take the leader's limit of open files, join the other namespaces, drop
    the capabilities the leader lacks, take its root and working directory, become the user
    and exec argv.  Never returns: exec, or _exit with one line on stderr."""
    try:
        _prctl(PR_SET_DUMPABLE, 0)
        resource.setrlimit(resource.RLIMIT_NOFILE, entry.nofile)
        for ns in NAMESPACES:
            if ns != "pid":
                _setns(entry.fds[ns])
        for cap in range(len(CAPABILITIES)):
            if not entry.mask >> cap & 1:
                _prctl(PR_CAPBSET_DROP, cap)
        os.fchdir(entry.root)
        os.chroot(".")
        os.fchdir(entry.cwd)
        # Looked up in the container, by this process inside it: its files are read as the
        # container's root sees them, never resolved from outside.
        uid, gid = ids_in_container(user, group)
    except (OSError, ValueError, Error) as e:
        why = e.strerror if isinstance(e, OSError) else str(e)
        os.write(2, f"nspawnctl: cannot enter the container: {why}\n".encode())
        os._exit(EXEC_FAILED)
    try:
        if workdir is not None:
            os.chdir(workdir)
    except OSError as e:
        os.write(2, f"nspawnctl: cannot change to {workdir} in the container: "
                    f"{e.strerror}\n".encode())
        os._exit(EXEC_FAILED)
    try:
        try:
            os.setgroups([])
        except PermissionError:
            pass  # setgroups denied in this user namespace: there are none to drop
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        os.write(2, f"nspawnctl: cannot become user {uid}:{gid} in the container: "
                    f"{e.strerror}\n".encode())
        os._exit(EXEC_FAILED)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        os.write(2, f"nspawnctl: cannot run {argv[0]} in the container: "
                    f"{e.strerror}\n".encode())
        os._exit(EXEC_NOT_FOUND if isinstance(e, FileNotFoundError) else EXEC_CANNOT_RUN)


_MAX_ACCOUNTS = 1 << 20  # bytes of /etc/passwd or /etc/group read: plenty for any container


def ids_in_container(user: str | None, group: str | None,
                     passwd: str = "/etc/passwd", groups: str = "/etc/group") -> tuple[int, int]:
    """(uid, gid) for `exec -u USER[:GROUP]`, read as the container has them (the caller is
    inside it): a number is taken as it is, a name from passwd (its group from there too,
    unless group is given) or groups.  No user: root."""
    if user is None:
        return 0, 0 if group is None else _group_id(group, groups)
    if _is_number(user):
        uid, gid = _number(user), 0
        entry = _account(passwd, user, key=2)
        if entry is not None:
            gid = _number(entry[3])
    else:
        entry = _account(passwd, user, key=0)
        if entry is None:
            raise Error(f"no user {user!r} in the container's {passwd}")
        uid, gid = _number(entry[2]), _number(entry[3])
    return uid, gid if group is None else _group_id(group, groups)


def _group_id(group: str, groups: str) -> int:
    if _is_number(group):
        return _number(group)
    entry = _account(groups, group, key=0, numbers=(2,))
    if entry is None:
        raise Error(f"no group {group!r} in the container's {groups}")
    return _number(entry[2])


def _account(path: str, value: str, key: int,
             numbers: tuple[int, ...] = (2, 3)) -> list[str] | None:
    """The first line of a passwd-like file whose field key is value and whose fields numbers
    are numbers (a container's root wrote it: read bounded, malformed lines skipped)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_ACCOUNTS)
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[key] == value \
                and all(_is_number(fields[n]) for n in numbers):
            return fields
    return None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # not '²': int() refuses what isdigit() takes


def _number(text: str) -> int:
    number = int(text)
    if number >= 2**32 - 1:  # (uid_t)-1 means "unchanged" to setresuid
        raise Error(f"invalid id {text}")
    return number


def _setns(fd: int):
    if _libc.setns(fd, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _prctl(option: int, arg: int):
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        if err != 22:  # EINVAL: a capability this kernel does not know
            raise OSError(err, os.strerror(err))


def cgroup_procs(pid: int, mounts: dict[frozenset, Path]) -> list[tuple[str, Path]]:
    """The cgroup.procs file of pid's cgroup in each hierarchy of mounts, with the
    hierarchy's name ("unified", or its controllers)."""
    procs = []
    for line in _lines(f"/proc/{pid}/cgroup"):
        _id, controllers, path = line.split(":", 2)
        key = frozenset(controllers.split(",")) if controllers else frozenset()
        root = mounts.get(key)
        if root is not None:
            procs.append((controllers or "unified", root / path.lstrip("/") / "cgroup.procs"))
    return procs


def join(procs: list[tuple[str, int]], pid: int) -> list[str]:
    """Move this process into each cgroup of procs (an Entry's, of leader pid) that takes it
    ("0" in cgroup.procs is the writer); the hierarchies joined.  The unified or the systemd
    one must be among them."""
    joined = []
    for name, fd in procs:
        try:
            os.write(fd, b"0")
        except OSError:
            continue
        joined.append((name, fd))
    _require_one(joined, pid)
    return [name for name, _ in joined]


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[frozenset, Path]:
    """Mount point of each cgroup hierarchy of this host, keyed by what /proc/PID/cgroup
    names it with: no name for cgroup2, else the controllers (or name=...) of the v1
    hierarchy (cgroup_procs() takes them)."""
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
