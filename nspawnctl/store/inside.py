"""Paths inside a container's tree, resolved as the container would: a symlink in the tree
never leads out of it (openat2 RESOLVE_IN_ROOT: `/`, `..` and absolute links stop at the tree's
root, as in a chroot), so a copy cannot be steered onto the host (CVE-2018-15664 and kin).

Owners are mapped through the container's user namespace: a tree booted with PrivateUsers=pick
is owned on disk by a range of 65536 host UIDs starting at the owner of its root directory;
a tree that never ran in its own range (or one idmapped) is owned by 0 there, and maps 1:1.
"""

import errno
import os
import stat
from pathlib import Path

from ..errors import Error
from ..fsutil import (
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    DirCursor,
    openat2,
    walk,
)

RANGE = 0x10000
NOBODY = 65534
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Not RESOLVE_NO_XDEV: an --overlay container's tree is itself a mount, and nothing inside a
# tree seen from the host is mounted but what the container mounted in its own namespace.
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def uid_base(tree: Path) -> int:
    """The host UID the container's root is (0 for a tree not shifted)."""
    st = os.lstat(tree)
    return st.st_uid - st.st_uid % RANGE


def to_host(base: int, ident: int) -> int:
    """A host UID/GID of a file copied in: the same number inside the container."""
    return base + (ident if ident < RANGE else NOBODY)


def to_container(base: int, ident: int) -> int:
    """A host UID/GID for a file copied out: what the container sees it as."""
    return ident - base if base <= ident < base + RANGE else NOBODY


def open_root(tree: Path) -> int:
    return os.open(tree, _DIR | os.O_NOFOLLOW)


def resolve(rootfd: int, path: str, flags: int) -> int:
    """Open path (absolute inside the container) beneath rootfd; ENOENT etc. as OSError."""
    return openat2(rootfd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, _RESOLVE)


def read_small(tree: Path, path: str, limit: int) -> bytes | None:
    """The content of path (absolute inside the container) as the container sees it, or None
    if it is missing, not a regular file (a FIFO would block the read) or over limit bytes:
    opened once, inside the tree, and read at most limit + 1 bytes, whatever the container
    puts there or changes meanwhile."""
    try:
        rootfd = open_root(tree)
    except OSError:
        return None
    try:
        fd = resolve(rootfd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    finally:
        os.close(rootfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


def split(path: str) -> tuple[str, str]:
    """(parent, last name) of an absolute path inside the container; the last name is never
    '', '.' or '..' (a path like that names a directory to copy into, resolved by the caller)."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or parts[-1] == "..":
        return path, ""
    return "/" + "/".join(parts[:-1]), parts[-1]


def shift_tree(dirfd: int, name: str, convert):
    """chown every entry of the tree name in dirfd (it included) by convert(id), keeping modes
    (chown drops set-user-ID bits).  Iterative and fd-relative: never follows a symlink, never
    leaves the tree, whatever the container does to it meanwhile."""
    _shift(dirfd, name, convert)
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        return
    with DirCursor(dirfd, name, same_fs=True) as cursor:
        for subdirs in walk(cursor):
            with os.scandir(cursor.fd) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    _shift(cursor.fd, entry.name, convert, st)
                    if stat.S_ISDIR(st.st_mode):
                        subdirs.append(entry.name)


def _shift(dirfd: int, name: str, convert, st: os.stat_result | None = None):
    if st is None:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    os.chown(name, convert(st.st_uid), convert(st.st_gid), dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o6000:
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dirfd)


def describe(exc: OSError, where: str) -> Error:
    if exc.errno == errno.EXDEV:
        return Error(f"{where} leads out of the container's tree")
    if exc.errno == errno.ELOOP:
        return Error(f"{where}: too many levels of symbolic links")
    return Error(f"{where}: {exc.strerror}")

