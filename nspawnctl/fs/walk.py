"""The one fd-relative walker (DirCursor, walk) and what is built on it: deleting a tree
(remove_tree, remove_tree_at) and measuring it (tree_size).  One descriptor whatever the
depth, never through a symlink, never into another filesystem; copying a tree is copy.py's."""

import contextlib
import errno
import os
import stat
from pathlib import Path

from .mounts import mounts_under
from .resolve import RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV, openat2

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
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


def empty_dir(path: Path) -> None:
    """Remove what is in path (iteratively, never following a symlink), keeping path."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(fd):
            remove_tree_at(fd, name)
    finally:
        os.close(fd)


def _unlink_files(dirfd: int) -> str | None:
    """Unlink what is not a directory in dirfd until a subdirectory is met; return its name."""
    with os.scandir(dirfd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=dirfd)
    return None


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
