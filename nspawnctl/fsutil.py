"""Small filesystem primitives the store is built on: no-replace rename, atomic writes, locks,
mounts, the fd-relative walk (DirCursor) and deleting whole trees (copying them is
fscopy.py's)."""

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import Error

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1


def rename_noreplace(src: Path, dst: Path):
    """rename(2) that fails with FileExistsError instead of replacing an existing dst.

    Plain rename() silently replaces an empty directory, which would let two creates of the
    same name both "succeed"; renameat2(RENAME_NOREPLACE) makes the final move the one place
    that decides.
    """
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst),
                         RENAME_NOREPLACE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL):  # filesystem without RENAME_NOREPLACE
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
            os.rename(src, dst)
            return
        raise OSError(err, os.strerror(err), str(src), None, str(dst))


def mkdir_private(path: Path):
    """Create path 0700 when it is missing (its parents as usual); one that exists is left as
    it is.  For the roots of container trees and of nspawnctl's state: an image's setuid
    binaries must not be reachable by local users."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)


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


def fsync_dir(path: Path):
    """Make the entries of directory path durable (a rename or unlink in it survives a power
    cut once this returns)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path):
    """syncfs(2) of the filesystem holding path: every file written there reaches the disk.
    Called once before a tree is renamed into place, so that after a power cut a committed
    tree is never one whose files are still empty (ext4 writes data lazily)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


# Settings files are a few hundred bytes; a megabyte is a mistake, not a setting.
SMALL_FILE_MAX = 1 << 20


def read_small_text(path: Path, what: str, limit: int = SMALL_FILE_MAX) -> str | None:
    """A small text file users may edit (a container's settings), or None if it is not
    there.  One clear Error, naming `what` and the path, if it is not a regular file (a
    FIFO would block the read), is larger than `limit`, or is not UTF-8 text, instead of a
    traceback, a hang or a read of gigabytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Error(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Error(f"{what} {path} is not a regular file")
    with open(fd, "rb") as f:
        data = f.read(limit + 1)  # buffered: reads on until limit + 1 bytes or the end
    if len(data) > limit:
        raise Error(f"{what} {path} is larger than {limit >> 10} KiB")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise Error(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def write_atomic(path: Path, text: str, mode: int = 0o644):
    """Write path so that readers see the old content or the new, never a torn file, also
    after a power cut: the data is synced before the rename, the rename after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{owner_token()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


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


def tree_size(path: Path) -> int:
    """Bytes used on disk by a tree (st_blocks, hardlinks counted once), like `du -sx`.

    Iterative, one open directory at a time: trees thousands of levels deep are measured like
    any other.  Symlinks are not followed; other filesystems mounted inside are not counted.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    total = top.st_blocks * 512
    if not stat.S_ISDIR(top.st_mode):
        return total
    seen = set()
    parentfd = os.open(os.path.dirname(os.path.abspath(path)), _DIR_FLAGS)
    try:
        cursor = DirCursor(parentfd, os.path.basename(os.path.abspath(path)), str(path),
                           same_fs=False)
    finally:
        os.close(parentfd)
    with cursor:
        for subdirs in walk(cursor, tolerant=True):
            with os.scandir(cursor.fd) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if st.st_dev != cursor.dev:
                        continue  # a mount point: what is mounted there is not this tree
                    if stat.S_ISDIR(st.st_mode):
                        subdirs.append(entry.name)
                    elif st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def remove_tree(path: Path):
    """rm -rf that never follows a symlink and never deletes inside a mounted filesystem.

    Iterative and fd-relative (remove_tree_at), so trees of any depth go.  Something mounted
    at or below path stops it with OSError (EBUSY or EXDEV) before or where it is met: the
    mount, and what is mounted there, stay.  A missing path is not an error.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    parent = Path(os.path.realpath(path.parent))
    try:
        mounted = mounts_under(parent / path.name)
    except OSError:
        mounted = []  # no /proc: the walk's own checks still stop at other filesystems
    if mounted:
        raise OSError(errno.EBUSY, "a filesystem is mounted there", mounted[-1])
    parentfd = os.open(parent, _DIR_FLAGS)
    try:
        remove_tree_at(parentfd, path.name, str(path))
    finally:
        os.close(parentfd)


def remove_tree_at(dirfd: int, name: str, label: str | None = None):
    """Delete name in the directory dirfd, and everything below it, depth first.

    One directory is open at a time: the walk goes down by name (never through a symlink,
    never into another filesystem, bind mounts included where openat2 can tell) and back up
    through "..", checked against the inode it came down from.  label names the tree in
    errors.
    """
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dirfd)
        return
    with DirCursor(dirfd, name, label or name) as cursor:
        while True:
            subdir = _unlink_files(cursor.fd)
            if subdir is not None:
                cursor.down(subdir)
                continue
            if cursor.depth == 0:
                break
            os.rmdir(cursor.up(), dir_fd=cursor.fd)
    os.rmdir(name, dir_fd=dirfd)


def _unlink_files(dirfd: int) -> str | None:
    """Unlink what is not a directory in dirfd until a subdirectory is met; return its name."""
    with os.scandir(dirfd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=dirfd)
    return None


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

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


_libc.syscall.restype = ctypes.c_long
_HAVE_NO_XDEV: bool | None = None


def _open_subdir(dirfd: int, name: str) -> int:
    """Open directory name in dirfd without following a symlink or entering a mount point
    (RESOLVE_NO_XDEV also sees bind mounts of the same filesystem, which st_dev cannot)."""
    global _HAVE_NO_XDEV
    if _HAVE_NO_XDEV is not False:
        try:
            fd = openat2(dirfd, name, _DIR_FLAGS, RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS)
            _HAVE_NO_XDEV = True
            return fd
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter
                raise
            _HAVE_NO_XDEV = False
    return os.open(name, _DIR_FLAGS, dir_fd=dirfd)


class DirCursor:
    """One open directory of a tree, moved down by name and up through "..".

    Holding one descriptor whatever the depth, it walks trees thousands of levels deep,
    where recursion (shutil.rmtree, os.walk) runs out of stack or descriptors.  Each step
    down refuses a symlink and another filesystem (EXDEV); each step up is checked against
    the inode the walk came down from, so a directory moved meanwhile stops the walk.
    """

    def __init__(self, parentfd: int, name: str, label: str | None = None,
                 same_fs: bool = True):
        fd = os.open(name, _DIR_FLAGS, dir_fd=parentfd)
        st = os.fstat(fd)
        if same_fs and st.st_dev != os.fstat(parentfd).st_dev:
            os.close(fd)
            raise OSError(errno.EXDEV, "a filesystem is mounted there", label or name)
        self.fd, self.dev = fd, st.st_dev
        self.inodes = [st.st_ino]
        self.names = [label or name]

    @classmethod
    def of(cls, fd: int, label: str) -> "DirCursor":
        """A cursor on a directory already open as fd (the cursor owns it from here)."""
        cursor = cls.__new__(cls)
        st = os.fstat(fd)
        cursor.fd, cursor.dev = fd, st.st_dev
        cursor.inodes = [st.st_ino]
        cursor.names = [label]
        return cursor

    @property
    def depth(self) -> int:
        return len(self.inodes) - 1

    def path(self, name: str | None = None) -> str:
        return "/".join(self.names + ([name] if name else []))

    def down(self, name: str):
        try:
            fd = _open_subdir(self.fd, name)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise OSError(errno.EXDEV, "a filesystem is mounted there",
                              self.path(name)) from None
            raise
        self.enter(fd, name)

    def enter(self, fd: int, name: str):
        """Go down into fd, the subdirectory name of this one, opened by the caller (the
        cursor owns it from here): for a walk that looked at what it opened first."""
        st = os.fstat(fd)
        if st.st_dev != self.dev:
            os.close(fd)
            raise OSError(errno.EXDEV, "a filesystem is mounted there", self.path(name))
        os.close(self.fd)
        self.fd = fd
        self.inodes.append(st.st_ino)
        self.names.append(name)

    def up(self) -> str:
        """Go to the parent; return the name of the directory left."""
        fd = os.open("..", _DIR_FLAGS, dir_fd=self.fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (self.dev, self.inodes[-2]):
            os.close(fd)
            raise OSError(errno.ESTALE, "the tree was moved while it was walked", self.path())
        os.close(self.fd)
        self.fd = fd
        self.inodes.pop()
        return self.names.pop()

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "DirCursor":
        return self

    def __exit__(self, *exc):
        self.close()


def walk(cursor: DirCursor, tolerant: bool = False):
    """Visit cursor's directory and every one below it, depth first, with cursor on it: at
    each, yields an empty list for the caller to fill with the names of the subdirectories to
    go into (the last first).  One descriptor whatever the depth.  tolerant: a subdirectory
    that cannot be entered (gone, replaced, a mount) is passed over instead of raising."""
    pending: list[list[str]] = []
    subdirs: list[str] = []
    yield subdirs
    pending.append(subdirs)
    while pending:
        if not pending[-1]:
            pending.pop()
            if pending:
                cursor.up()
            continue
        try:
            cursor.down(pending[-1].pop())
        except OSError:
            if tolerant:
                continue
            raise
        subdirs = []
        yield subdirs
        pending.append(subdirs)
