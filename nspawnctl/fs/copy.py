"""Copying a tree (or one file) that someone else may be changing meanwhile: the one copier of
nspawnctl, for `cp` both ways, clones, snapshots and upgrades.

A running container's root can rename anything in its tree at any moment, and put a symlink to
a host path where a directory was.  A copier that names a path twice (GNU cp checks
`dst/a/b`, then writes `dst/a/b/c`) can be steered onto the host between the two.  So this one
resolves every name exactly once, one component at a time, below a directory it holds open,
and then works on what it opened:

- a source entry is opened once (openat2 O_PATH|O_NOFOLLOW, RESOLVE_NO_SYMLINKS|NO_XDEV:
  never through a symlink, never into another mount); its type, owner, mode, times, extended
  attributes and data all come from that descriptor (a regular file is reopened for reading
  through /proc/self/fd, which names the same inode, not the path again);
- a directory is made with mkdirat, then opened by its name once, refusing a symlink, and
  filled through that descriptor; files are created O_CREAT|O_EXCL|O_NOFOLLOW; symlinks,
  FIFOs and device nodes are made by name and then opened once (O_PATH|O_NOFOLLOW), and their
  metadata set through that descriptor;
- owner, mode, extended attributes and times are set on descriptors (fchown, fchmod,
  fsetxattr, futimens; /proc/self/fd/N for an O_PATH one, which lands on the entry itself, a
  symlink included), never by path.

What a racing container can still do is move things around inside its own tree: the copy then
holds a moved directory or fails (a walk up through ".." checks the inode it came down from),
but nothing outside the tree is read or written.

Iterative, one descriptor per tree whatever the depth (walk.DirCursor): trees 20,000 levels
deep copy like any other.  Hard links inside the copied tree stay hard links, as cp -a keeps
them; symlinks are copied as symlinks, never followed.  Rules decide how owners, set-ID bits,
extended attributes and device nodes come across (cp's policies live in store/inside.py).
"""

import ctypes
import errno
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..errors import Error, InvalidInput
from ..run import run
from .resolve import RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV, openat2
from .walk import DirCursor, remove_tree

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_BELOW = RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV | RESOLVE_BENEATH
_ACLS = ("system.posix_acl_access", "system.posix_acl_default")


def _same(ident: int) -> int:
    return ident


def _always(_ident: int) -> bool:
    return True


def _any_xattr(_name: str) -> bool:
    return True


@dataclass(frozen=True)
class Rules:
    """How what is copied comes across; the defaults are cp -a's (everything as it is).

    uid, gid: the copy's owner and group from the source's (named users and groups of POSIX
    ACLs are mapped too).  setuid_ok, setgid_ok: whether a set-user-ID (set-group-ID) bit may
    stay, given the copy's uid (gid).  xattr_ok: which extended attributes are copied.
    devices: whether device nodes are copied (else the copy fails, naming the first).
    empty_mounts: a filesystem mounted inside is copied as an empty directory (cp -a
    --one-file-system), instead of stopping the copy."""
    uid: Callable[[int], int] = _same
    gid: Callable[[int], int] = _same
    setuid_ok: Callable[[int], bool] = _always
    setgid_ok: Callable[[int], bool] = _always
    xattr_ok: Callable[[str], bool] = _any_xattr
    devices: bool = True
    empty_mounts: bool = False


PLAIN = Rules()


@dataclass
class _Level:
    """One directory of the walk: its stat as it was opened, its subdirectories still to
    copy, and its node (parent node, name) in the copy, for hard links made later."""
    st: os.stat_result
    node: tuple | None
    subdirs: list[str] | None = None


@dataclass
class _Copy:
    rules: Rules
    dst_top: int = -1  # the top of the copy, for finding the first of a set of hard links
    links: dict = field(default_factory=dict)  # source inode -> [node, name, left, copy's inode]


def copy_at(src_dir: int, src_name: str, dst_dir: int, dst_name: str,
            rules: Rules = PLAIN, label: str | None = None,
            what: str = "the tree") -> tuple[int, int]:
    """Copy src_name in the directory src_dir (a file, a symlink, a directory with all below
    it; "." is src_dir itself) to dst_name in dst_dir, which must not exist.

    Returns the copy's (st_dev, st_ino), for the caller to check that what it renames into
    place later is still what was made.  Any failure is an Error of one line ("copying
    WHAT failed in PATH: reason"); what was made of dst_name stays for the caller to remove.
    label names the source in PATH.
    """
    label = label or src_name
    copy = _Copy(rules)
    s = d = None
    fd = -1
    try:
        fd = _open_top(src_dir, src_name)
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            return _copy_node(copy, fd, st, dst_dir, dst_name, lambda: label)
        s = DirCursor.of(os.open(".", _DIR, dir_fd=fd), label)
        os.close(fd)
        fd = -1
        os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        d = DirCursor.of(_open_made_dir(dst_dir, dst_name), dst_name)
        copy.dst_top = os.dup(d.fd)
        made = os.fstat(d.fd)
        _walk(copy, s, d, st)
        return made.st_dev, made.st_ino
    except OSError as e:
        raise _failed(e, s, label, what) from None
    finally:
        for cursor in (s, d):
            if cursor:
                cursor.close()
        for held in (fd, copy.dst_top):
            if held >= 0:
                os.close(held)


def _walk(copy: _Copy, s: DirCursor, d: DirCursor, top: os.stat_result):
    """Copy what is below s into d, depth first; a directory's metadata once it is full."""
    levels = [_Level(top, None)]
    while levels:
        level = levels[-1]
        if level.subdirs is None:
            level.subdirs = _copy_entries(copy, s, d, level.node)
        if level.subdirs:
            name = level.subdirs.pop()
            fd = _open_below(s.fd, name)
            try:
                st = os.fstat(fd)
                if not stat.S_ISDIR(st.st_mode):  # replaced since it was listed
                    _copy_node(copy, fd, st, d.fd, name, lambda: s.path(name), level.node)
                    continue
                sub = os.open(".", _DIR, dir_fd=fd)
            finally:
                os.close(fd)
            s.enter(sub, name)
            os.mkdir(name, 0o700, dir_fd=d.fd)
            d.enter(_open_made_dir(d.fd, name), name)
            levels.append(_Level(st, (level.node, name)))
            continue
        _set_meta(copy.rules, d.fd, level.st, s.fd)
        levels.pop()
        if levels:
            s.up()
            d.up()


def _copy_entries(copy: _Copy, s: DirCursor, d: DirCursor, node: tuple | None) -> list[str]:
    """Copy one directory's entries but its subdirectories, whose names are returned."""
    subdirs = []
    with os.scandir(s.fd) as entries:
        for entry in entries:
            try:
                fd = _open_below(s.fd, entry.name)
            except FileNotFoundError:
                continue  # gone meanwhile
            except OSError as e:
                if e.errno != errno.EXDEV or not copy.rules.empty_mounts:
                    raise
                fd = openat2(s.fd, entry.name, _PATH, RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)
                try:
                    _copy_mount_point(copy, fd, d.fd, entry.name, partial(s.path, entry.name))
                finally:
                    os.close(fd)
                continue
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
                else:
                    _copy_node(copy, fd, st, d.fd, entry.name, partial(s.path, entry.name),
                               node)
            finally:
                os.close(fd)
    return subdirs


def _copy_node(copy: _Copy, fd: int, st: os.stat_result, dst_dir: int, name: str,
               where: Callable[[], str], node: tuple | None = None) -> tuple[int, int]:
    """Make name in dst_dir a copy of fd (an O_PATH descriptor of anything but a directory,
    whose stat is st), or a hard link to an earlier copy of the same inode.  where() names
    the source in a message (made only then: a path thousands of levels deep is long)."""
    key = (st.st_dev, st.st_ino)
    first = copy.links.get(key) if st.st_nlink > 1 else None
    if first is not None:
        linked = _link(copy, first, dst_dir, name)
        first[2] -= 1
        if first[2] <= 0:
            del copy.links[key]
        return linked
    mode = st.st_mode
    if stat.S_ISREG(mode):
        src = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
            try:
                _copy_data(src, out, st)
                _set_meta(copy.rules, out, st, src)
                made = os.fstat(out)
            finally:
                os.close(out)
        finally:
            os.close(src)
    else:
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink("", dir_fd=fd), name, dir_fd=dst_dir)
        elif (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and not copy.rules.devices:
            raise InvalidInput(f"{where()} is a device node: not copied",
                               hint="a device file outside the container would open that device "
                                    "for whoever may open the file; copy around it")
        else:  # a FIFO, a socket, or a device node
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dst_dir)
        out = os.open(name, _PATH, dir_fd=dst_dir)
        try:
            made = os.fstat(out)
            if stat.S_IFMT(made.st_mode) != stat.S_IFMT(mode):  # not what was just made
                raise OSError(errno.ESTALE, "replaced while it was copied", name)
            proc = f"/proc/self/fd/{out}"
            _set_meta(copy.rules, proc, st, f"/proc/self/fd/{fd}")
        finally:
            os.close(out)
    if st.st_nlink > 1:
        copy.links[key] = [node, name, st.st_nlink - 1, (made.st_dev, made.st_ino)]
    return made.st_dev, made.st_ino


def _copy_mount_point(copy: _Copy, fd: int, dst_dir: int, name: str,
                      where: Callable[[], str]):
    """What is mounted at name (fd: its root, O_PATH): a directory made empty with its
    metadata, as cp --one-file-system leaves it; a file (a bind mount) copied."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        _copy_node(copy, fd, st, dst_dir, name, where)
        return
    os.mkdir(name, 0o700, dir_fd=dst_dir)
    made = _open_made_dir(dst_dir, name)
    try:
        _set_meta(copy.rules, made, st, f"/proc/self/fd/{fd}")
    finally:
        os.close(made)


def _link(copy: _Copy, first: list, dst_dir: int, name: str) -> tuple[int, int]:
    """Hard link name in dst_dir to the copy made first of the same source inode: found again
    by its names from the top of the copy, and checked to be that very inode."""
    node, first_name, _, made = first
    where = _open_node(copy.dst_top, node) if node is not None else os.dup(copy.dst_top)
    try:
        fd = openat2(where, first_name, _PATH, _BELOW)
    finally:
        os.close(where)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != made:
            raise OSError(errno.ESTALE, "replaced while it was copied", first_name)
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dst_dir, follow_symlinks=True)
    finally:
        os.close(fd)
    return made


def _open_node(top: int, node: tuple) -> int:
    """Open (O_PATH) the directory of the copy a node names, from its top, some names at a
    time (15 names of at most 255 bytes fit in PATH_MAX), never through a symlink."""
    names = []
    while node is not None:
        node, name = node
        names.append(name)
    names.reverse()
    fd = os.dup(top)
    for i in range(0, len(names), 15):
        try:
            nfd = openat2(fd, "/".join(names[i:i + 15]), _PATH | os.O_DIRECTORY, _BELOW)
        finally:
            os.close(fd)
        fd = nfd
    return fd


def _open_top(dirfd: int, name: str) -> int:
    """The source's top: may be a mount point itself (an --overlay container's tree)."""
    return openat2(dirfd, name, _PATH, RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)


def _open_below(dirfd: int, name: str) -> int:
    try:
        return openat2(dirfd, name, _PATH, _BELOW)
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise OSError(errno.EXDEV, "a filesystem is mounted there", name) from None
        raise


def _open_made_dir(dirfd: int, name: str) -> int:
    """The directory just made as name, opened once, never through a symlink put there since
    (a directory put there instead is the racer's own, in its own tree: filled, no harm)."""
    return openat2(dirfd, name, _DIR | os.O_NOFOLLOW, _BELOW)


def _copy_data(src: int, out: int, st: os.stat_result):
    """st.st_size bytes of src (never more, whatever is appended meanwhile), holes kept:
    copy_file_range, which shares extents where the filesystem can (btrfs, XFS)."""
    size = st.st_size
    if st.st_blocks * 512 >= size:
        _copy_range(src, out, 0, size)
        return
    offset = 0
    while offset < size:  # a sparse file: only its data
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: only a hole from offset to the end
                raise
            break
        if start >= size:
            break
        end = min(os.lseek(src, start, os.SEEK_HOLE), size)
        _copy_range(src, out, start, end)
        offset = end
    os.ftruncate(out, size)


def _copy_range(src: int, out: int, start: int, end: int):
    offset = start
    try:
        while offset < end:
            n = os.copy_file_range(src, out, end - offset, offset, offset)
            if n == 0:
                return  # it shrank
            offset += n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while offset < end:
        data = os.pread(src, min(end - offset, 1 << 20), offset)
        if not data:
            return
        view = memoryview(data)
        while view:
            n = os.pwrite(out, view, offset)
            view, offset = view[n:], offset + n


def _set_meta(rules: Rules, target: int | str, st: os.stat_result, source: int | str):
    """Owner, mode, extended attributes and times of the source (its stat st, and source: a
    descriptor or /proc/self/fd path to read its xattrs from) onto target (the same), in
    that order: chown clears set-user-ID bits and file capabilities."""
    uid, gid = rules.uid(st.st_uid), rules.gid(st.st_gid)
    try:
        os.chown(target, uid, gid)
    except OSError as e:  # like cp -a, which keeps owners only for root
        if os.geteuid() == 0 or e.errno not in (errno.EPERM, errno.EINVAL):
            raise
    if not stat.S_ISLNK(st.st_mode):  # a symlink has no mode of its own
        mode = stat.S_IMODE(st.st_mode)
        if mode & stat.S_ISUID and not rules.setuid_ok(uid):
            mode &= ~stat.S_ISUID
        if mode & stat.S_ISGID and not rules.setgid_ok(gid):
            mode &= ~stat.S_ISGID
        os.chmod(target, mode)
    _copy_xattrs(rules, source, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_xattrs(rules: Rules, source: int | str, target: int | str):
    try:
        names = os.listxattr(source)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EPERM):
            raise
        return
    for key in names:
        if not rules.xattr_ok(key):
            continue
        try:
            value = os.getxattr(source, key)
        except OSError as e:
            if e.errno == errno.ENODATA:  # gone meanwhile
                continue
            raise
        if key in _ACLS and (rules.uid is not _same or rules.gid is not _same):
            value = map_acl(value, rules.uid, rules.gid)
        try:
            os.setxattr(target, key, value)
        except OSError as e:  # a filesystem without them, or one only root may set
            if e.errno not in (errno.EOPNOTSUPP, errno.EPERM):
                raise


def map_acl(value: bytes, uid: Callable[[int], int], gid: Callable[[int], int]) -> bytes:
    """A POSIX ACL xattr (a version, then 8-byte entries: tag, permissions, id) with the ids
    of its named users mapped by uid and of its named groups by gid."""
    out = bytearray(value)
    for off in range(4, len(value) - 7, 8):
        tag, _perm, ident = struct.unpack_from("<HHI", value, off)
        if tag == 0x02:  # ACL_USER
            struct.pack_into("<I", out, off + 4, uid(ident))
        elif tag == 0x08:  # ACL_GROUP
            struct.pack_into("<I", out, off + 4, gid(ident))
    return bytes(out)


def _failed(e: OSError, s: DirCursor | None, label: str, what: str) -> Error:
    where = _short(s.names) if s else label
    name = f" ({os.path.basename(e.filename)})" if isinstance(e.filename, str) and \
        e.filename else ""
    return Error(f"copying {what} failed in {where}: {e.strerror}{name}")


def _short(names: list[str]) -> str:
    """A path of many levels shortened for a message of one line."""
    if len(names) <= 6:
        return "/".join(names)
    return "/".join(names[:2] + ["..."] + names[-3:]) + f" ({len(names) - 1} levels down)"


# -- whole trees of the store: clones, snapshots, upgrades ----------------------------------

BTRFS_MAGIC = 0x9123683E
XFS_MAGIC = 0x58465342
_libc = ctypes.CDLL(None, use_errno=True)


def clone_method(src: Path) -> str:
    """"reflink" where the copy shares extents (btrfs, XFS), else "copy".  Base trees are
    plain directories, never btrfs subvolumes, so a subvolume snapshot is not an option."""
    return "reflink" if _fs_magic(src) in (BTRFS_MAGIC, XFS_MAGIC) else "copy"


def _fs_magic(path: Path) -> int:
    buf = ctypes.create_string_buffer(120)  # struct statfs; f_type is the first long
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return 0
    return int.from_bytes(buf.raw[:8], "little")


def clone_tree(src: Path, dst: Path, *, trusted: bool = False) -> str:
    """Copy tree src to dst (which must not exist) the cheapest safe way; returns the method.

    A tree a container can write to (its tree, its overlay upper layer) is copied by copy_at,
    which never resolves a name in it twice: a container running (or started by systemd)
    during the copy cannot steer it out of its tree.  trusted: a tree only nspawnctl writes
    (a base tree, a snapshot) goes through cp -a, which is somewhat faster; cp fails once a
    path passes PATH_MAX (coreutils 9.1: "File name too long", a tree some 2,000 levels
    deep): then what it made is removed and copy_at copies it.
    """
    method = clone_method(src)
    try:
        if trusted:
            try:
                run(["cp", "-a", "--reflink=auto", "--", src, dst], what="copying the tree",
                    env={**os.environ, "LC_ALL": "C"})  # the messages matched below
                return method
            except Error as exc:
                if "File name too long" not in exc.message:
                    raise
            remove_tree(dst)
        copy_path(src, dst)
    except Error as exc:
        if "No space left" in exc.message:
            raise Error(f"no space left on the filesystem of {_mount_point(dst.parent)}",
                        hint="free some space, e.g. nspawnctl images prune") from None
        raise
    return method


def copy_path(src: Path, dst: Path, rules: Rules = PLAIN):
    """copy_at for host paths: the parents are opened as paths (they are the host's), the
    rest as copy_at does it."""
    fds = []
    try:
        for path in (src, dst):
            fds.append(os.open(os.path.dirname(os.path.abspath(path)), _DIR))
        copy_at(fds[0], os.path.basename(os.path.abspath(src)), fds[1],
                os.path.basename(os.path.abspath(dst)), rules, label=str(src))
    except OSError as e:
        raise Error(f"copying the tree failed in {e.filename or src}: {e.strerror}") from None
    finally:
        for fd in fds:
            os.close(fd)


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path
