"""Locks and owners: flock() locks that die with their process, and the PID-BOOT token that
says who owns a staging directory, a temporary file or a hold, so that what a killed command
left is known for a dead one's (a PID reused after a reboot included)."""

import contextlib
import fcntl
import functools
import os
from collections.abc import Callable
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def boot_id() -> str:
    """This boot's id, short: 12 hex digits are plenty to tell two boots apart.  Read once:
    a process lives in one boot, and the sweep asks for each entry it looks at."""
    try:
        return _BOOT_ID.read_text().strip().replace("-", "")[:12]
    except OSError:
        return "noboot"


def owner_token() -> str:
    """PID-BOOT: who owns a staging directory or temporary file.  The boot id is part of it
    because after a reboot (or a power cut) PIDs start again from 1: a dead command's PID may
    well belong to a live process of the next boot."""
    return f"{os.getpid()}-{boot_id()}"


def owner_is_dead(token: str) -> bool:
    """For an owner_token(): is its process gone (or from another boot)?  A bare PID (the
    token of nspawnctl before boot ids) is judged by the PID alone."""
    pid, _, boot = token.partition("-")
    if not (pid.isascii() and pid.isdigit()):
        raise ValueError(f"not an owner token: {token!r}")
    if boot and boot != boot_id():
        return True
    return not pid_alive(int(pid))


@contextlib.contextmanager
def flocked(path: Path, on_busy: Callable[[], None], shared: bool = False):
    """Hold an exclusive (or with shared, a shared) flock() on path (made 0600 if missing)
    for the with-block.

    When another process holds it, on_busy() is called first: raise there to give up at once,
    or return to wait for it.  flock() locks die with their process, so a killed nspawnctl
    never leaves a stale one.  The holder may delete the file before it lets go (see
    unlink_lock): whoever got the lock on a file that is no longer at path opens it again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                on_busy()
                fcntl.flock(fd, mode)
            if _same_file(fd, path):
                yield
                return
        finally:
            os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def unlink_lock(path: Path):
    """Delete a lock file while holding its lock (flocked above makes that safe), so that
    names used once do not leave a file each behind."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
