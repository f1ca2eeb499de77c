"""Files written whole or not at all, and read bounded: the commit points of the store.

A settings file, a record or a tree is made under a temporary name and renamed into place
(never replacing what a rename should not: rename_noreplace), synced first so that a power cut
leaves the old one or the new one; small files users may edit are read with a bound."""

import contextlib
import ctypes
import errno
import os
import stat
from pathlib import Path

from ..errors import Error, InvalidInput
from .locks import owner_token

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
        raise InvalidInput(f"{what} {path} is not a regular file")
    with open(fd, "rb") as f:
        data = f.read(limit + 1)  # buffered: reads on until limit + 1 bytes or the end
    if len(data) > limit:
        raise InvalidInput(f"{what} {path} is larger than {limit >> 10} KiB")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def write_atomic(path: Path, text: str | bytes, mode: int = 0o644):
    """Write path so that readers see the old content or the new, never a torn file, also
    after a power cut: the data is synced before the rename, the rename after it.  The
    temporary file is 0600 from its first byte (a secret is never readable by others, not
    even for a moment) and gets mode just before it takes path's place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{owner_token()}.tmp")
    data = text.encode() if isinstance(text, str) else text
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a killed writer's of the same owner token (a reused PID)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
