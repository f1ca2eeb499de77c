"""Small filesystem primitives the store is built on: no-replace rename, atomic writes, locks,
mounts, and copying and deleting whole trees."""

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import Error
from .run import run

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


def write_atomic(path: Path, text: str, mode: int = 0o644):
    """Write path so that readers see the old content or the new, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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


@contextlib.contextmanager
def flocked(path: Path, on_busy: Callable[[], None]):
    """Hold an exclusive flock() on path (made 0600 if missing) for the with-block.

    When another process holds it, on_busy() is called first: raise there to give up at once,
    or return to wait for it.  flock() locks die with their process, so a killed nspawnctl
    never leaves a stale one.  The holder may delete the file before it lets go (see
    unlink_lock): whoever got the lock on a file that is no longer at path opens it again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_busy()
                fcntl.flock(fd, fcntl.LOCK_EX)
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
    """Bytes used on disk by a tree (st_blocks, hardlinks counted once), like `du -s`."""
    seen = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_nlink > 1:
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


BTRFS_MAGIC = 0x9123683E
XFS_MAGIC = 0x58465342


def remove_tree(path: Path):
    """rm -rf that never follows symlinks (Python's rmtree is fd-based on Linux)."""
    assert shutil.rmtree.avoids_symlink_attacks
    if os.path.islink(path):
        os.unlink(path)
        return
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


def clone_method(src: Path) -> str:
    """"reflink" where cp --reflink=auto shares extents (btrfs, XFS), else "copy".  Base trees
    are plain directories, never btrfs subvolumes, so a subvolume snapshot is not an option."""
    return "reflink" if _fs_magic(src) in (BTRFS_MAGIC, XFS_MAGIC) else "copy"


def _fs_magic(path: Path) -> int:
    buf = ctypes.create_string_buffer(120)  # struct statfs; f_type is the first long
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return 0
    return int.from_bytes(buf.raw[:8], "little")


def clone_tree(src: Path, dst: Path) -> str:
    """Copy tree src to dst (which must not exist) the cheapest way; returns the method."""
    method = clone_method(src)
    try:
        run(["cp", "-a", "--reflink=auto", "--", src, dst], what="copying the tree")
    except Error as exc:
        if "No space left" in exc.message:
            raise Error(f"no space left on the filesystem of {_mount_point(dst.parent)}",
                        hint="free some space, e.g. nspawnctl images prune") from None
        raise
    return method


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path
