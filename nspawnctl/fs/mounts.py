"""Mounts: mount(2) and umount(2) without their programs, and what is mounted below a path."""

import ctypes
import errno
import os
import re
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: Path, fstype: str, options: str):
    """mount(2), without the mount(8) process: an overlay mount takes a few milliseconds."""
    if _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), 0,
                   options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting {fstype} on {target}: {os.strerror(err)}")


def unmount(target: Path) -> bool:
    """umount(2) target; False if nothing was mounted there.  A busy mount raises OSError."""
    if _libc.umount2(os.fsencode(target), 0) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
            return False
        raise OSError(err, f"unmounting {target}: {os.strerror(err)}")
    return True


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest last, from this process's mount table."""
    prefix = os.fsdecode(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # octal escapes: mountinfo writes a space in a path as \040
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found
