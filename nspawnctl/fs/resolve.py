"""openat2(2), the one way nspawnctl resolves a path below a directory it holds: inside a
container's tree (RESOLVE_IN_ROOT: symlinks, `..` and absolute links stay inside it), or one
name at a time without following anything (RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV)."""

import ctypes
import errno
import os
import stat
from pathlib import Path

from ..errors import Error, InvalidInput, NotFound

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# openat2(2): struct open_how and the RESOLVE_* flags from <linux/openat2.h>.
SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437,
               "riscv64": 437}
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2); OSError on failure, ENOSYS where the kernel or the libc wrapper lacks it."""
    number = SYS_OPENAT2.get(os.uname().machine)  # platform.machine() without its import
    if number is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    how = _OpenHow(flags, 0, resolve)
    encoded = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a concurrent rename raced the lookup; retry
        fd = _libc.syscall(ctypes.c_long(number), ctypes.c_int(dirfd), ctypes.c_char_p(encoded),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), path)


# --- inside a container's tree ----------------------------------------------------------------

MAX_SYMLINKS = 40
PATH_CHUNK = 4000  # bytes of path one openat2 call is given (PATH_MAX is 4096)
O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# Whether openat2 works here (None: not tried yet); without it, directories are resolved one
# component at a time the way RESOLVE_IN_ROOT would (_walk_in_root).
HAVE_OPENAT2: bool | None = None
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Not RESOLVE_NO_XDEV: an --overlay container's tree is itself a mount, and nothing inside a
# tree seen from the host is mounted but what the container mounted in its own namespace.
_IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def open_root(tree: Path) -> int:
    """The tree's root directory, held: every path inside it is resolved below this."""
    return os.open(tree, _DIR | os.O_NOFOLLOW)


def in_root(rootfd: int, path: str, flags: int) -> int:
    """Open path (absolute inside the container) beneath rootfd, as the container would see
    it: `/`, `..` and absolute links stop at the root, as in a chroot (CVE-2018-15664 and
    kin); ENOENT etc. as OSError."""
    return openat2(rootfd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, _IN_ROOT)


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
        fd = in_root(rootfd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
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


def describe(exc: OSError, where: str) -> Error:
    """An in-root resolution's failure as the user sees it."""
    if exc.errno == errno.EXDEV:
        return InvalidInput(f"{where} leads out of the container's tree")
    if exc.errno == errno.ELOOP:
        return InvalidInput(f"{where}: too many levels of symbolic links")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"{where}: {exc.strerror}")
    return Error(f"{where}: {exc.strerror}")


def openat2_dir(dirfd: int, path: str, resolve: int) -> int:
    return openat2(dirfd, path, O_DIR_PATH, resolve)


def _openat2_in_root(rootfd: int, path: str) -> int:
    """openat2(rootfd, path, O_PATH|O_DIRECTORY, RESOLVE_IN_ROOT); OSError on failure."""
    return openat2_dir(rootfd, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def _walk_in_root(rootfd: int, parts: list[str], create: bool) -> int:
    """Resolve parts to a directory the way RESOLVE_IN_ROOT does, one component at a time.

    Every component is opened with O_NOFOLLOW; a symlink is read and its target spliced in,
    "/" restarting at the root and ".." never climbing above it.  Missing directories are
    made when create is set.  One directory is open at a time whatever the depth: ".." goes
    up through the directory's own "..", checked against the inode the walk came down from.
    """
    fd = os.dup(rootfd)
    st = os.fstat(fd)
    inodes = [(st.st_dev, st.st_ino)]
    todo = list(reversed(parts))
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(inodes) > 1:
                    up = os.open("..", O_DIR_PATH, dir_fd=fd)
                    st = os.fstat(up)
                    os.close(fd)
                    fd = up
                    if (st.st_dev, st.st_ino) != inodes[-2]:
                        raise OSError(errno.ESTALE, "the tree changed while it was walked")
                    inodes.pop()
                continue
            nfd = _open_component(fd, name, create)
            st = os.fstat(nfd)
            if stat.S_ISLNK(st.st_mode):
                os.close(nfd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/".join(parts)[:200])
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.dup(rootfd)
                    del inodes[1:]
                todo.extend(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                os.close(nfd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts)[:200])
            os.close(fd)
            fd = nfd
            inodes.append((st.st_dev, st.st_ino))
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def _open_component(fd: int, name: str, create: bool) -> int:
    """An O_PATH descriptor of name in fd, never following it (the caller looks at what it
    is: a symlink, a directory or neither); made as a directory first if it is missing and
    create is set, then looked up again (whatever is there by then is what counts)."""
    try:
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
    make_dir(fd, name)
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)


def make_dir(parentfd: int, name: str) -> None:
    """A parent directory the layer did not list: root-owned 0755, like other unpackers."""
    try:
        os.mkdir(name, 0o755, dir_fd=parentfd)
    except FileExistsError:
        return  # the caller looks it up again and finds what is there
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=parentfd)
    try:
        os.chmod(fd, 0o755)  # whatever the umask
    finally:
        os.close(fd)


def open_dir_in_root(rootfd: int, parts: list[str], create: bool = False) -> int:
    """An O_PATH descriptor of the directory parts names inside rootfd, resolved in the root."""
    global HAVE_OPENAT2
    if not parts:
        return os.dup(rootfd)
    path = "/".join(parts)
    if HAVE_OPENAT2 is not False and len(os.fsencode(path)) < PATH_CHUNK:
        try:
            fd = _openat2_in_root(rootfd, path)
            HAVE_OPENAT2 = True
            return fd
        except OSError as e:
            if e.errno == errno.ENOSYS:
                HAVE_OPENAT2 = False
            elif e.errno != errno.ENOENT or not create:
                raise
    return _walk_in_root(rootfd, parts, create)


class Symlink(Exception):
    """A symlink on the way: the path must be resolved from the root, in the root."""


def up(fd: int, levels: int) -> int:
    """A new descriptor of the directory levels above fd (through "..", never a symlink)."""
    fd = os.dup(fd)
    while levels > 0:
        step = min(levels, PATH_CHUNK // 3)
        try:
            up = os.open("/".join([".."] * step), O_DIR_PATH, dir_fd=fd)
        finally:
            os.close(fd)
        fd, levels = up, levels - step
    return fd


def down(fd: int, parts: list[str], start: int, create: bool) -> int:
    """Go from fd (which this takes over) down parts[start:], through no symlink (Symlink)."""
    global HAVE_OPENAT2
    try:
        rest = parts[start:]
        if not rest:
            result, fd = fd, -1
            return result
        path = "/".join(rest)
        if HAVE_OPENAT2 is not False and len(os.fsencode(path)) < PATH_CHUNK:
            try:
                nfd = openat2_dir(fd, path, RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)
                HAVE_OPENAT2 = True
                return nfd
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise Symlink() from None
                if e.errno == errno.ENOSYS:
                    HAVE_OPENAT2 = False
                elif e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EXDEV):
                    raise
        for name in rest:  # component by component: what is missing is made
            nfd = _open_component(fd, name, create)
            st = os.fstat(nfd)
            if stat.S_ISLNK(st.st_mode):
                os.close(nfd)
                raise Symlink()
            if not stat.S_ISDIR(st.st_mode):
                os.close(nfd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name[:200])
            os.close(fd)
            fd = nfd
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)
