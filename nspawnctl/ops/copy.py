"""cp: files and directories into and out of a container, running or stopped.

The container side is resolved inside its tree (store/inside.py: RESOLVE_IN_ROOT), its parent
directory held open, and the copy made by fs/copy.py (copy_at) below that descriptor: every name
resolved once, never through a symlink, so neither a symlink in the container nor one it swaps
in while the copy runs leads the copy onto the host, in or out.  The copy is made under a
temporary name beside its destination and renamed over it (once checked to be still what was
made): a reader (or a kill) sees the old file or the new one.

A copy in is owned by the container's users (owners mapped through its user namespace).  A
copy out belongs to the user who ran nspawnctl, without set-ID bits, file capabilities or
device nodes; --preserve-owner keeps the ids as they are on disk (store/inside.py: rules_out
says exactly what comes out).
"""

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import Conflict, Error, NotFound, Usage
from ..fs import resolve
from ..fs.copy import copy_at
from ..fs.locks import pid_alive
from ..fs.walk import remove_tree_at
from ..names import check_name
from ..runtime.context import Context
from ..store import inside, overlay
from .common import require_root

_DIR = os.O_RDONLY | os.O_DIRECTORY


@dataclass(frozen=True)
class Side:
    name: str | None  # the container, or None for the host
    path: str


def parse_side(text: str) -> Side:
    """NAME:PATH (PATH absolute) is in a container; anything else is a host path (write a
    host path with a colon as ./a:b)."""
    name, sep, path = text.partition(":")
    if sep and name and "/" not in name:
        check_name(name)
        if not path.startswith("/"):
            raise Usage(f"the path in {text!r} must be absolute inside the container",
                        hint=f"e.g. {name}:/root/file")
        return Side(name, path)
    return Side(None, text)


def copy(ctx: Context, src: str, dst: str, preserve_owner: bool = False) -> dict:
    require_root()
    s, d = parse_side(src), parse_side(dst)
    if (s.name is None) == (d.name is None):
        raise Usage("one side of cp must be in a container (NAME:/PATH), the other on the host",
                    hint="nspawnctl cp FILE NAME:/DIR or nspawnctl cp NAME:/FILE DIR")
    if preserve_owner and d.name is not None:
        raise Usage("--preserve-owner is for a copy out of a container",
                    hint="a copy in is owned by the container's users, mapped through its "
                         "user namespace")
    owner = None if preserve_owner or d.name is not None else invoking_user()
    name = s.name or d.name
    assert name is not None
    paths = ctx.paths
    ctx.store.require(name)
    tree = paths.tree(name)
    if overlay.is_overlay(paths, name) and not os.path.ismount(tree):
        raise Conflict(f"the tree of {name} is not mounted",
                       hint=f"start it, or: systemctl start {overlay.mount_unit(paths, name)}")
    base = inside.uid_base(tree)
    rootfd = resolve.open_root(tree)
    try:
        if d.name is not None:
            return _copy_in(rootfd, base, s.path, name, d.path)
        return _copy_out(rootfd, base, name, s.path, d.path, owner)
    finally:
        os.close(rootfd)


def invoking_user() -> tuple[int, int]:
    """Whom a copy out belongs to: the user who ran nspawnctl.  Through sudo (root's real
    user id, SUDO_UID and SUDO_GID set) that is sudo's caller; otherwise the real user and
    group ids, root's own when root runs it."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0 and "SUDO_UID" in os.environ and "SUDO_GID" in os.environ:
        return _env_id("SUDO_UID"), _env_id("SUDO_GID")
    return uid, gid


def _env_id(key: str) -> int:
    value = os.environ[key]
    if not (value.isascii() and value.isdigit() and len(value) <= 10
            and int(value) < 0xFFFFFFFF):
        raise Error(f"{key}={value[:20]!r} is not a user or group id",
                    hint="it names whom a copy out belongs to: unset it, or give "
                         "--preserve-owner")
    return int(value)


def _copy_in(rootfd: int, base: int, src: str, name: str, dst: str) -> dict:
    if not os.path.lexists(src):
        raise NotFound(f"{src}: no such file or directory")
    where = f"{name}:{dst}"
    source = os.path.abspath(src)
    if source == "/":
        raise Usage("cannot copy the host's / into a container", hint="copy what is in it")
    hostfd = os.open(os.path.dirname(source), _DIR | os.O_CLOEXEC)
    try:
        parentfd, last = _container_target(rootfd, dst, os.path.basename(source), where)
        try:
            _sweep(parentfd)
            tmp = _tmp_name()
            try:
                made = copy_at(hostfd, os.path.basename(source), parentfd, tmp,
                               inside.rules_in(base), label=source, what=src)
                _commit(parentfd, tmp, last, where, made)
            except BaseException:
                _discard(parentfd, tmp)
                raise
        finally:
            os.close(parentfd)
    finally:
        os.close(hostfd)
    return {"from": src, "to": f"{name}:{_join(dst, last)}"}


def _copy_out(rootfd: int, base: int, name: str, src: str, dst: str,
              owner: tuple[int, int] | None) -> dict:
    where = f"{name}:{src}"
    parent, last = resolve.split(src)
    try:
        parentfd = resolve.in_root(rootfd, parent, _DIR)
        if last:
            os.stat(last, dir_fd=parentfd, follow_symlinks=False)
    except OSError as exc:
        raise resolve.describe(exc, where) from None
    try:
        if not last:  # / or a path ending in ..: the directory itself
            last = "."
        target = Path(dst)
        if target.is_dir():
            if last == ".":
                raise Usage(f"give the new directory's name to copy {where} to: "
                            f"{dst}/NAME")
            target = target / last
        if not target.parent.is_dir():
            raise NotFound(f"{target.parent}: no such directory")
        hostfd = os.open(target.parent, _DIR | os.O_CLOEXEC)
        try:
            _sweep(hostfd)
            tmp = _tmp_name()
            try:
                made = copy_at(parentfd, last, hostfd, tmp, inside.rules_out(base, owner),
                               label=where.rstrip("/"), what=where)
                _commit(hostfd, tmp, target.name, str(target), made)
            except BaseException:
                _discard(hostfd, tmp)
                raise
        finally:
            os.close(hostfd)
    finally:
        os.close(parentfd)
    return {"from": where, "to": str(target)}


def _container_target(rootfd: int, dst: str, default: str, where: str) -> tuple[int, str]:
    """The directory (opened in the tree) and name a copy into the container lands as: DST
    itself, or DST/default when DST is a directory there."""
    try:
        fd = resolve.in_root(rootfd, dst, _DIR)
        return fd, default
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise resolve.describe(exc, where) from None
        if dst.endswith(("/", "/.", "/..")):  # meant as a directory: never a file's name
            raise NotFound(f"{where}: no such directory in the container") from None
    parent, last = resolve.split(dst)
    try:
        fd = resolve.in_root(rootfd, parent, _DIR)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"{where}: the directory {parent} does not exist in the container",
                           hint="make it first, e.g. nspawnctl exec NAME -- mkdir -p DIR") from None
        raise resolve.describe(exc, where) from None
    return fd, last


def _commit(dirfd: int, tmp: str, final: str, where: str, made: tuple[int, int]):
    """Rename tmp over final in dirfd: a file is replaced in one step; a directory only takes
    the place of nothing (or of an empty directory).  tmp must still be the copy made (a
    container may have moved it away and put something else there meanwhile)."""
    try:
        st = os.stat(tmp, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is None or (st.st_dev, st.st_ino) != made:
        raise Conflict(f"{where}: the copy was moved away while it was made; nothing was put "
                       "in place", hint="something in the container renamed it: try again")
    try:
        old = os.stat(final, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode) != stat.S_ISDIR(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(old.st_mode) else "not a directory"
        raise Conflict(f"{where} exists and is {kind}")
    try:
        os.rename(tmp, final, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise Conflict(f"{where} exists and is a directory that is not empty",
                           hint="copy into it instead, or remove it first") from None
        raise Error(f"{where}: {exc.strerror}") from None


def _discard(dirfd: int, tmp: str):
    try:
        remove_tree_at(dirfd, tmp)
    except OSError:
        pass


def _sweep(dirfd: int):
    """The temporary copies of killed cp commands in the directory a copy goes to: the next
    copy there deletes them (they are nowhere else, so nothing else has to look for them)."""
    with os.scandir(dirfd) as entries:
        names = [e.name for e in entries if e.name.startswith(".nspawnctl-cp.")
                 and e.name.endswith(".tmp")]
    for name in names:
        try:
            pid = int(name.split(".")[2])
        except (IndexError, ValueError):
            continue
        if not pid_alive(pid):
            _discard(dirfd, name)


def _tmp_name() -> str:
    return f".nspawnctl-cp.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _join(dst: str, last: str) -> str:
    return dst if dst.rstrip("/").endswith("/" + last) else dst.rstrip("/") + "/" + last
