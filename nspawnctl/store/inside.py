"""A container's owners, seen from the host (paths inside its tree are resolved by
fs/resolve.py, as the container would resolve them).

Owners are mapped through the container's user namespace: a tree booted with PrivateUsers=pick
is owned on disk by a range of 65536 host UIDs starting at the owner of its root directory;
a tree that never ran in its own range (or one idmapped) is owned by 0 there, and maps 1:1.
What a copy in or out keeps of owners, set-ID bits, attributes and device nodes is decided
here (rules_in, rules_out), and done by fs/copy.py's copy_at.
"""

import os
from pathlib import Path

from ..fs.copy import Rules

RANGE = 0x10000
NOBODY = 65534


def uid_base(tree: Path) -> int:
    """The host UID the container's root is (0 for a tree not shifted)."""
    st = os.lstat(tree)
    return st.st_uid - st.st_uid % RANGE


def to_host(base: int, ident: int) -> int:
    """A host UID/GID of a file copied in: the same number inside the container."""
    return base + (ident if ident < RANGE else NOBODY)


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
