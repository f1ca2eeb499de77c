"""Paths inside a container's tree, resolved as the container would: a symlink in the tree
never leads out of it (openat2 RESOLVE_IN_ROOT: `/`, `..` and absolute links stop at the tree's
root, as in a chroot), so a copy cannot be steered onto the host (CVE-2018-15664 and kin).

Owners are mapped through the container's user namespace: a tree booted with PrivateUsers=pick
is owned on disk by a range of 65536 host UIDs starting at the owner of its root directory;
a tree that never ran in its own range (or one idmapped) is owned by 0 there, and maps 1:1.
What a copy in or out keeps of owners, set-ID bits, attributes and device nodes is decided
here (rules_in, rules_out), and done by fscopy.copy_at.
"""

import errno
import os
import stat
from pathlib import Path

from ..errors import Error
from ..fscopy import Rules
from ..fsutil import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

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


def open_root(tree: Path) -> int:
    return os.open(tree, _DIR | os.O_NOFOLLOW)


def resolve(rootfd: int, path: str, flags: int) -> int:
    """Open path (absolute inside the container) beneath rootfd; ENOENT etc. as OSError."""
    return openat2(rootfd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, _RESOLVE)


def read_small(tree: Path, path: str, limit: int) -> bytes | None:
    """At most the first limit bytes of path (absolute inside the container) as the container
    sees it, or None if it is missing or not a regular file (a FIFO would block the read, a
    device could be anything): opened once, inside the tree, whatever the container puts
    there or changes meanwhile."""
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
            return f.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def split(path: str) -> tuple[str, str]:
    """(parent, last name) of an absolute path inside the container; the last name is never
    '', '.' or '..' (a path like that names a directory to copy into, resolved by the caller)."""
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts or parts[-1] == "..":
        return path, ""
    return "/" + "/".join(parts[:-1]), parts[-1]


def rules_in(base: int) -> Rules:
    """A copy into the container: each owner (and each named user and group of an ACL) the
    same number inside it (to_host); modes, set-ID bits included, and every extended attribute
    as cp -a keeps them: what the host's root puts in is its choice."""
    def ident(i: int) -> int:
        return to_host(base, i)
    return Rules(uid=ident, gid=ident)


def rules_out(base: int, owner: tuple[int, int] | None) -> Rules:
    """A copy out of the container, which must hand the host no privilege:

    - owner (uid, gid) given (the default: the invoking user): every entry is owned by it, no
      set-user-ID or set-group-ID bit is kept, POSIX ACLs are dropped (their ids mean nothing
      once the owners changed);
    - owner None (--preserve-owner): ids as they are on disk, ACLs too.  A set-user-ID
      (set-group-ID) bit stays only when the file's owner (group) lies in the container's own
      range of a shifted tree (base > 0): never on an id of 0, never on a host id outside the
      range, never from a tree that is not shifted (base 0, where the range would be the
      host's own users);
    - either way: no file capability (a v2 security.capability is honoured for any user in the
      host's namespace), no security.* or trusted.* attribute (the host's policy and
      overlayfs's own), and no device node (a device file on the host would open the device
      for whoever may open the file): of extended attributes only user.* (and the ACLs above)
      come out.
    """
    if owner is not None:
        uid, gid = owner
        return Rules(uid=lambda _i: uid, gid=lambda _i: gid, setuid_ok=_never, setgid_ok=_never,
                     xattr_ok=_user_xattr, devices=False)

    def in_range(i: int) -> bool:
        return base > 0 and base <= i < base + RANGE
    return Rules(setuid_ok=in_range, setgid_ok=in_range, xattr_ok=_user_or_acl, devices=False)


def _never(_i: int) -> bool:
    return False


def _user_xattr(key: str) -> bool:
    return key.startswith("user.")


def _user_or_acl(key: str) -> bool:
    return key.startswith("user.") or key in ("system.posix_acl_access",
                                              "system.posix_acl_default")


def describe(exc: OSError, where: str) -> Error:
    if exc.errno == errno.EXDEV:
        return Error(f"{where} leads out of the container's tree")
    if exc.errno == errno.ELOOP:
        return Error(f"{where}: too many levels of symbolic links")
    return Error(f"{where}: {exc.strerror}")

