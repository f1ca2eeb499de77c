"""Apply tar layers to a root tree without ever leaving it: the security boundary.

Images and tarballs come from strangers, so tarfile's extract functions are not
used (their filters either reject what a root tree legitimately holds, such as
absolute symlinks, setuid files and 1777 directories, or resolve paths against
the host).  tarfile only parses headers; every entry is created here, relative
to directory file descriptors, never following a symlink in the final
component.

Decisions (the adversarial tests in tests/unit/test_unpack.py pin them down):
- Entry names are taken relative to the root: a leading "/" is stripped, "."
  components dropped.  A ".." component anywhere rejects the whole layer: no
  legitimate image has one, and refusing is clearer than guessing.
- Parent directories are resolved *inside* the tree, the way the container will
  see them: a symlinked parent (from this layer or a lower one, absolute or
  full of "..") is followed with openat2(RESOLVE_IN_ROOT), so "/" and ".."
  stop at the root.  Without openat2 a component-by-component O_NOFOLLOW walk
  does the same.  Nothing is ever written outside the tree.
- The root itself can only be a directory; any other entry for it rejects.
- Hardlink targets resolve inside the tree like names, must exist and must not
  be directories.
- Whiteouts hide lower layers only: entries this layer wrote survive them,
  whatever the order inside the tar.
- Device nodes are skipped with a warning; fifos are created.
- Owners are the numeric ids of the header (never a name lookup, neither on the
  host nor in the image's /etc/passwd); modes are set after chown so setuid
  and setgid bits stay; xattrs only from an allow-list; directory modes and
  times are set at the end of the layer, once their content is written.
"""

import ctypes
import errno
import io
import os
import platform
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import Error

COPY_CHUNK = 1 << 20
MAX_SYMLINKS = 40

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

XATTR_PAX_PREFIX = "SCHILY.xattr."
ALLOWED_XATTRS = ("security.capability", "system.posix_acl_access", "system.posix_acl_default")
ALLOWED_XATTR_PREFIXES = ("user.",)

# openat2(2): struct open_how and the RESOLVE_* flags from <linux/openat2.h>.
SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437,
               "riscv64": 437}
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# None: not tried yet; tests set it to False to exercise the fallback walk.
HAVE_OPENAT2: bool | None = None if platform.machine() in SYS_OPENAT2 else False


def _openat2_in_root(rootfd: int, path: str) -> int:
    """openat2(rootfd, path, O_PATH|O_DIRECTORY, RESOLVE_IN_ROOT); OSError on failure."""
    how = _OpenHow(O_DIR_PATH, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    encoded = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a concurrent rename raced the lookup; retry
        fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2[platform.machine()]), ctypes.c_int(rootfd),
                           ctypes.c_char_p(encoded), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), path)


def _walk_in_root(rootfd: int, parts: list[str], create: bool) -> int:
    """Resolve parts to a directory the way RESOLVE_IN_ROOT does, one component at a time.

    Every component is opened with O_NOFOLLOW; a symlink is read and its target
    spliced in, "/" restarting at the root and ".." never climbing above it.
    Missing directories are made when create is set.
    """
    stack = [os.dup(rootfd)]
    todo = list(reversed(parts))
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            except FileNotFoundError:
                if not create:
                    raise
                _make_dir(stack[-1], name)
                todo.append(name)
                continue
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/".join(parts))
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    for extra in stack[1:]:
                        os.close(extra)
                    del stack[1:]
                todo.extend(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/".join(parts))
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _make_dir(parentfd: int, name: str) -> None:
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
    if HAVE_OPENAT2 is not False:
        try:
            fd = _openat2_in_root(rootfd, "/".join(parts))
            HAVE_OPENAT2 = True
            return fd
        except OSError as e:
            if e.errno == errno.ENOSYS:
                HAVE_OPENAT2 = False
            elif e.errno != errno.ENOENT or not create:
                raise
    return _walk_in_root(rootfd, parts, create)


def split_name(name: str, what: str = "entry") -> list[str]:
    """Components of a tar name relative to the root; '..' is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Error(f"layer {what} '{name}' contains a '..' component",
                    hint="the image is malformed or malicious; it was not unpacked")
    return parts


@dataclass
class _DirMeta:
    parent: list[str]
    name: str
    mode: int
    mtime: float


@dataclass
class LayerApplier:
    """State of one layer being applied to the tree at rootfd."""

    rootfd: int
    whiteouts: bool = True
    max_file_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)
    # What this layer wrote, by name, so whiteouts can spare it.
    written: set[str] = field(default_factory=set)
    written_parents: set[str] = field(default_factory=set)
    dirs: list[_DirMeta] = field(default_factory=list)
    file_bytes: int = 0
    # The parent directory of the previous entry: most entries share it.
    _cached: tuple[tuple[str, ...], int] | None = None
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    reader: "ForwardReader | None" = None

    # -- parents ---------------------------------------------------------------
    def parent_fd(self, parts: list[str], create: bool = True) -> int:
        key = tuple(parts)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        fd = open_dir_in_root(self.rootfd, parts, create=create)
        self.forget_parent()
        self._cached = (key, fd)
        return fd

    def invalidate_parent(self) -> None:
        """A removal may turn a cached path into something else: resolve it again next time.

        The descriptor stays open: the entry being applied still works in it.
        """
        if self._cached is not None:
            self._cached = (None, self._cached[1])

    def forget_parent(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def parent_or_error(self, parts: list[str], name: str) -> int:
        try:
            return self.parent_fd(parts)
        except OSError as e:
            raise Error(f"cannot create the parent directory of '{name}': "
                        f"{os.strerror(e.errno or 0)}") from None

    # -- removal ---------------------------------------------------------------
    def remove(self, dirfd: int, name: str, st: os.stat_result) -> None:
        self.invalidate_parent()
        if stat.S_ISDIR(st.st_mode):
            # shutil.rmtree with dir_fd works fd-relative and refuses symlinks.
            shutil.rmtree(name, dir_fd=dirfd)
        else:
            os.unlink(name, dir_fd=dirfd)

    def remove_lower(self, dirfd: int, name: str, rel: str) -> None:
        """Remove rel (at dirfd/name) except what this layer wrote at or below it."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if rel not in self.written and rel not in self.written_parents:
            self.remove(dirfd, name, st)
            return
        if not stat.S_ISDIR(st.st_mode):
            return  # this layer's own file
        # A directory of this layer (or holding its entries): keep it, clear what is lower.
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dirfd)
        try:
            for child in os.listdir(fd):
                self.remove_lower(fd, child, f"{rel}/{child}")
        finally:
            os.close(fd)

    def whiteout(self, parts: list[str], wh: str, original: str) -> None:
        parent = parts[:-1]
        if wh == OPAQUE_WHITEOUT:
            target = None
        elif wh.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            self.warnings.append(f"ignored unknown whiteout metadata '{original}'")
            return
        else:
            target = wh[len(WHITEOUT_PREFIX):]
            if target in ("", ".", ".."):
                raise Error(f"layer whiteout '{original}' names no entry",
                            hint="the image is malformed or malicious; it was not unpacked")
        try:
            dirfd = self.parent_fd(parent, create=False)
        except OSError:
            return  # nothing below to hide
        prefix = "/".join(parent)
        join = (lambda n: f"{prefix}/{n}") if prefix else (lambda n: n)
        if target is not None:
            self.remove_lower(dirfd, target, join(target))
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            for child in os.listdir(fd):
                self.remove_lower(fd, child, join(child))
        finally:
            os.close(fd)

    # -- entries ---------------------------------------------------------------
    def note_written(self, parts: list[str]) -> None:
        self.written.add("/".join(parts))
        for i in range(1, len(parts)):
            self.written_parents.add("/".join(parts[:i]))

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split_name(member.name)
        if self.whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, parts[-1], member.name)
            return
        if not parts:
            if not member.isdir():
                raise Error(f"layer entry '{member.name}' would replace the root directory "
                            "with something that is not a directory",
                            hint="the image is malformed or malicious; it was not unpacked")
            self.dirs.append(_DirMeta([], ".", member.mode, member.mtime))
            self.own(self.rootfd, member)
            return
        if member.ischr() or member.isblk():
            self.warnings.append(f"skipped device node '/{'/'.join(parts)}'")
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()
                or member.isfifo()):
            self.warnings.append(f"skipped '/{'/'.join(parts)}' of unknown tar type "
                                 f"{member.type!r}")
            return
        name = parts[-1]
        dirfd = self.parent_or_error(parts[:-1], member.name)
        try:
            existing = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        self.note_written(parts)

        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                self.remove(dirfd, name, existing)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=dirfd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dirfd)
            try:
                self.own(fd, member)
            finally:
                os.close(fd)
            self.dirs.append(_DirMeta(parts[:-1], name, member.mode, member.mtime))
            return

        if member.islnk():
            self.hardlink(dirfd, name, parts, member, existing)
            return

        if existing is not None:
            self.remove(dirfd, name, existing)

        if member.issym():
            os.symlink(member.linkname, name, dir_fd=dirfd)
            self.own_name(dirfd, name, member)
            os.utime(name, (member.mtime, member.mtime), dir_fd=dirfd, follow_symlinks=False)
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dirfd)
            self.own_name(dirfd, name, member)
            # Just made as a fifo in a private tree: chmod by name cannot be redirected.
            os.chmod(name, member.mode & 0o7777, dir_fd=dirfd)
            os.utime(name, (member.mtime, member.mtime), dir_fd=dirfd, follow_symlinks=False)
        else:
            self.write_file(tar, dirfd, name, member)

    def write_file(self, tar: tarfile.TarFile, dirfd: int, name: str,
                   member: tarfile.TarInfo) -> None:
        if self.max_file_bytes is not None:
            self.file_bytes += member.size
            if self.file_bytes > self.max_file_bytes:
                raise Error(f"layer holds more than {self.max_file_bytes} bytes of file data: "
                            "a decompression bomb or a huge sparse file",
                            hint="the image was not unpacked")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dirfd)
        try:
            if member.size:
                if member.issparse() or self.reader is None:
                    copy_to_fd(tar.extractfile(member), fd, member.size)
                else:  # the data follows the header: read it straight, no extra layer
                    self.reader.seek(member.offset_data)
                    copy_to_fd(self.reader, fd, member.size)
            self.own(fd, member)
            os.chmod(fd, member.mode & 0o7777)
            self.set_xattrs(fd, member)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def hardlink(self, dirfd: int, name: str, parts: list[str], member: tarfile.TarInfo,
                 existing: os.stat_result | None) -> None:
        target = split_name(member.linkname, "hardlink target")
        if not target:
            raise Error(f"layer hardlink '{member.name}' points to the root directory")
        try:
            tfd = open_dir_in_root(self.rootfd, target[:-1])
        except OSError:
            raise Error(f"layer hardlink '{member.name}' points to '{member.linkname}', "
                        "which is not in the tree") from None
        try:
            try:
                tst = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise Error(f"layer hardlink '{member.name}' points to '{member.linkname}', "
                            "which is not in the tree") from None
            if stat.S_ISDIR(tst.st_mode):
                raise Error(f"layer hardlink '{member.name}' points to a directory "
                            f"('{member.linkname}')",
                            hint="the image is malformed or malicious; it was not unpacked")
            if existing is not None:
                if os.path.samestat(existing, tst):
                    return  # already the same file
                self.remove(dirfd, name, existing)
            # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself.
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=dirfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    # -- metadata --------------------------------------------------------------
    def own(self, fd: int, member: tarfile.TarInfo) -> None:
        if self.is_root:
            os.chown(fd, member.uid, member.gid)

    def own_name(self, dirfd: int, name: str, member: tarfile.TarInfo) -> None:
        if self.is_root:
            os.chown(name, member.uid, member.gid, dir_fd=dirfd, follow_symlinks=False)

    def set_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            attr = key[len(XATTR_PAX_PREFIX):]
            if not (attr in ALLOWED_XATTRS or attr.startswith(ALLOWED_XATTR_PREFIXES)):
                self.warnings.append(f"dropped xattr {attr} of '/{member.name.lstrip('/')}'")
                continue
            try:
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError as e:
                self.warnings.append(f"could not set xattr {attr} on "
                                     f"'/{member.name.lstrip('/')}': {e.strerror}")

    def finish(self) -> None:
        """Directory modes and times, now that nothing more is written into them."""
        self.forget_parent()
        for meta in reversed(self.dirs):
            try:
                pfd = open_dir_in_root(self.rootfd, meta.parent)
            except OSError:
                continue  # removed or replaced later in this layer
            try:
                fd = os.open(meta.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, dir_fd=pfd)
            except OSError:
                continue
            finally:
                os.close(pfd)
            try:
                os.chmod(fd, meta.mode & 0o7777)
                os.utime(fd, (meta.mtime, meta.mtime))
            finally:
                os.close(fd)


class ForwardReader:
    """A forward-only seekable view of a stream, so tarfile can run in its cheap "r:" mode.

    tarfile's stream mode ("r|") re-copies its whole buffer on every header read;
    here headers cost a small slice and file data is read in large chunks.
    Seeking backwards is refused: tarfile never needs it when entries are
    consumed in order.
    """

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.pos = 0
        self.buf = b""
        self.off = 0

    def tell(self) -> int:
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(COPY_CHUNK), b""))
        if n <= len(self.buf) - self.off:
            out = self.buf[self.off:self.off + n]
            self.off += n
        else:
            parts = [self.buf[self.off:]] if self.off < len(self.buf) else []
            need = n - (len(self.buf) - self.off)
            self.buf, self.off = b"", 0
            while need > 0:
                chunk = self.raw.read(max(need, COPY_CHUNK))
                if not chunk:
                    break
                if len(chunk) > need:
                    self.buf, self.off = chunk, need
                    chunk = chunk[:need]
                parts.append(chunk)
                need -= len(chunk)
            out = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos += len(out)
        return out

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self.pos
        elif whence != os.SEEK_SET:
            raise io.UnsupportedOperation("layer streams cannot seek from the end")
        if offset < self.pos:
            raise io.UnsupportedOperation("layer streams only go forward")
        while offset > self.pos and self.read(min(offset - self.pos, COPY_CHUNK)):
            pass
        return self.pos


def copy_to_fd(src: BinaryIO, fd: int, size: int) -> None:
    left = size
    while left > 0:
        chunk = src.read(min(COPY_CHUNK, left))
        if not chunk:
            raise Error("layer is truncated: it ends inside a file", hint="the image is corrupt")
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        left -= len(chunk)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, EOFError) as e:
            raise Error(f"layer is not a valid tar archive: {e}") from None
        if member is None:
            return
        yield member


def apply_layer(stream: BinaryIO, root: int | os.PathLike | str, *, whiteouts: bool = True,
                max_file_bytes: int | None = None) -> list[str]:
    """Apply the uncompressed tar read from stream onto the tree at root; return warnings.

    root is a directory path or descriptor.  whiteouts=False treats '.wh.' names
    as ordinary files (plain root tarballs).  max_file_bytes bounds the file
    data written, sparse files included.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    if isinstance(root, int):
        rootfd = os.open(".", flags, dir_fd=root)
    else:
        rootfd = os.open(root, flags | os.O_NOFOLLOW)
    reader = ForwardReader(stream)
    applier = LayerApplier(rootfd, whiteouts=whiteouts, max_file_bytes=max_file_bytes,
                           reader=reader)
    try:
        try:
            tar = tarfile.open(fileobj=reader, mode="r:")
        except (tarfile.TarError, EOFError) as e:
            raise Error(f"layer is not a valid tar archive: {e}") from None
        with tar:
            for member in _members(tar):
                tar.members.clear()  # tarfile keeps every header; a layer may have millions
                try:
                    applier.apply(tar, member)
                except OSError as e:
                    raise Error(f"cannot unpack '{member.name}': {e.strerror}") from None
                except (tarfile.TarError, EOFError) as e:
                    raise Error(f"layer is truncated or corrupt at '{member.name}': {e}") from None
                except (ValueError, OverflowError) as e:  # NUL in a name, absurd ids or times
                    raise Error(f"layer entry {member.name!r} is invalid: {e}",
                                hint="the image is malformed or malicious; it was not unpacked"
                                ) from None
        applier.finish()
    finally:
        applier.forget_parent()
        os.close(rootfd)
    return applier.warnings
