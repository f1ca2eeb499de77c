"""cp: files and directories into and out of a container, running or stopped.

The container side is resolved inside its tree (store/inside.py: RESOLVE_IN_ROOT), its parent
directory held open, and the copy made through that descriptor (/proc/PID/fd/N/...), so no
symlink in the container, nor one swapped in meanwhile, leads it onto the host.  The copy is
made under a temporary name beside its destination and renamed over it: a reader (or a kill)
sees the old file or the new one.  Owners are mapped through the container's user namespace.
"""

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import Error
from ..fsutil import pid_alive, remove_tree_at
from ..names import check_name
from ..paths import Paths
from ..run import run
from ..store import inside, overlay
from ..store.containers import Store
from .common import Report, require_root

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
            raise Error(f"the path in {text!r} must be absolute inside the container",
                        hint=f"e.g. {name}:/root/file")
        return Side(name, path)
    return Side(None, text)


def copy(paths: Paths, src: str, dst: str, report: Report = print) -> dict:
    require_root()
    s, d = parse_side(src), parse_side(dst)
    if (s.name is None) == (d.name is None):
        raise Error("one side of cp must be in a container (NAME:/PATH), the other on the host",
                    hint="nspawnctl cp FILE NAME:/DIR or nspawnctl cp NAME:/FILE DIR")
    name = s.name or d.name
    assert name is not None
    store = Store(paths)
    store.require(name)
    tree = paths.tree(name)
    if overlay.is_overlay(paths, name) and not os.path.ismount(tree):
        raise Error(f"the tree of {name} is not mounted",
                    hint=f"start it, or: systemctl start {overlay.mount_unit(paths, name)}")
    base = inside.uid_base(tree)
    rootfd = inside.open_root(tree)
    try:
        if d.name is not None:
            return _copy_in(rootfd, base, s.path, name, d.path)
        return _copy_out(rootfd, base, name, s.path, d.path)
    finally:
        os.close(rootfd)


def _copy_in(rootfd: int, base: int, src: str, name: str, dst: str) -> dict:
    if not os.path.lexists(src):
        raise Error(f"{src}: no such file or directory")
    where = f"{name}:{dst}"
    parentfd, last = _container_target(rootfd, dst, os.path.basename(os.path.normpath(src)),
                                       where)
    try:
        _sweep(parentfd)
        tmp = _tmp_name()
        try:
            _cp(Path(os.path.abspath(src)), _fd_path(parentfd, tmp))
            inside.shift_tree(parentfd, tmp, lambda i: inside.to_host(base, i))
            _commit(parentfd, tmp, last, where)
        except BaseException:
            _discard(parentfd, tmp)
            raise
    finally:
        os.close(parentfd)
    return {"from": src, "to": f"{name}:{_join(dst, last)}"}


def _copy_out(rootfd: int, base: int, name: str, src: str, dst: str) -> dict:
    where = f"{name}:{src}"
    parent, last = inside.split(src)
    try:
        parentfd = inside.resolve(rootfd, parent, _DIR)
        if last:
            os.stat(last, dir_fd=parentfd, follow_symlinks=False)
    except OSError as exc:
        raise inside.describe(exc, where) from None
    try:
        if not last:  # / or a path ending in ..: the directory itself
            last, source = ".", _fd_path(parentfd, ".")
        else:
            source = _fd_path(parentfd, last)
        target = Path(dst)
        if target.is_dir():
            if last == ".":
                raise Error(f"give the new directory's name to copy {where} to: "
                            f"{dst}/NAME")
            target = target / last
        if not target.parent.is_dir():
            raise Error(f"{target.parent}: no such directory")
        hostfd = os.open(target.parent, _DIR | os.O_CLOEXEC)
        try:
            _sweep(hostfd)
            tmp = _tmp_name()
            try:
                _cp(source, _fd_path(hostfd, tmp))
                if base:
                    inside.shift_tree(hostfd, tmp, lambda i: inside.to_container(base, i))
                _commit(hostfd, tmp, target.name, str(target))
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
        fd = inside.resolve(rootfd, dst, _DIR)
        return fd, default
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise inside.describe(exc, where) from None
        if dst.endswith(("/", "/.", "/..")):  # meant as a directory: never a file's name
            raise Error(f"{where}: no such directory in the container") from None
    parent, last = inside.split(dst)
    try:
        fd = inside.resolve(rootfd, parent, _DIR)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise Error(f"{where}: the directory {parent} does not exist in the container",
                        hint="make it first, e.g. nspawnctl exec NAME -- mkdir -p DIR") from None
        raise inside.describe(exc, where) from None
    return fd, last


def _cp(src: Path, dst: Path):
    """cp -a (reflinks where it can) of src to dst, which must not exist: -T keeps cp from
    copying into a directory someone put at dst meanwhile."""
    run(["cp", "-a", "--reflink=auto", "-T", "--", src, dst], what="copying",
        env={**os.environ, "LC_ALL": "C"})


def _commit(dirfd: int, tmp: str, final: str, where: str):
    """Rename tmp over final in dirfd: a file is replaced in one step; a directory only takes
    the place of nothing (or of an empty directory)."""
    st = os.stat(tmp, dir_fd=dirfd, follow_symlinks=False)
    try:
        old = os.stat(final, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode) != stat.S_ISDIR(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(old.st_mode) else "not a directory"
        raise Error(f"{where} exists and is {kind}")
    try:
        os.rename(tmp, final, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise Error(f"{where} exists and is a directory that is not empty",
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


def _fd_path(fd: int, name: str) -> Path:
    # /proc/PID, not /proc/self: cp is another process, and reaches our descriptor by it
    return Path(f"/proc/{os.getpid()}/fd/{fd}/{name}")


def _join(dst: str, last: str) -> str:
    return dst if dst.rstrip("/").endswith("/" + last) else dst.rstrip("/") + "/" + last
