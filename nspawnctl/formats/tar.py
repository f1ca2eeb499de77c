"""A container's tree as one tar stream: what `export` writes, a layer of an image or a tarball.

Streamed: one pass over the tree, headers and small files gathered in a buffer of BUFFER
bytes, big files copied in chunks (or with sendfile(2) when nothing has to see the bytes), so
memory stays bounded whatever the tree holds and nothing is copied to a temporary place.

The walk is fs/walk.py's: iterative, one open directory at a time, never through a symlink,
never into another filesystem mounted inside the tree; each directory's entries in name order,
so the same tree gives the same bytes.

Owners are written as the container sees them.  A container with a private user namespace
(systemd-nspawn -U) may have had its tree chowned into its UID range on disk; systemd-nspawn
takes that range from the owner of the tree's root directory, and so does this: ids inside
the range are shifted back to 0..65535, ids outside it are what the container sees as
"nobody" (65534).  Names are left out (numeric owners), as images carry them.
"""

import errno
import os
import stat
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..fs.copy import map_acl
from ..fs.walk import DirCursor

BUFFER = 1 << 20          # bytes gathered before one write
SMALL_FILE = 64 << 10     # files up to this size are read whole into the buffer
RANGE = 0x10000           # systemd-nspawn's UID range per container
NOBODY = 65534
BLOCK = tarfile.BLOCKSIZE
# xattrs a tar may carry and an unpacker may set; trusted.* and security.selinux belong to
# the host (overlayfs keeps its own state in trusted.overlay.*).
SKIP_XATTR_PREFIXES = ("trusted.", "security.selinux")


def uid_shift(tree_root: os.stat_result) -> int:
    """The base of the UID range a tree is stored in: its root's owner when that is the
    start of a range (systemd-nspawn -U's rule), else 0 (stored as the container sees it)."""
    uid = tree_root.st_uid
    if uid and uid % RANGE == 0 and tree_root.st_gid == uid:
        return uid
    return 0


class Sink:
    """Bytes to a file descriptor: counted, optionally hashed and compressed, buffered.

    When neither hash nor compression has to see the bytes, big files skip the buffer and
    go from file to file in the kernel (sendfile)."""

    def __init__(self, fd: int, compression: str | None = None, hasher: Any = None,
                 level: int | None = None):
        self.fd, self.hasher = fd, hasher
        self.buf = bytearray()
        self.count = 0  # bytes of the uncompressed stream
        self.compressor: Any = None
        if compression == "gzip":
            self.compressor = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)
        elif compression == "zstd":
            import zstandard
            self.compressor = zstandard.ZstdCompressor(
                level=3 if level is None else level).compressobj()
        elif compression is not None:
            raise ValueError(f"unknown compression {compression!r}")
        self.direct = self.compressor is None and hasher is None

    def write(self, data) -> None:
        self.buf += data
        self.count += len(data)
        if len(self.buf) >= BUFFER:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        if self.hasher is not None:
            self.hasher.update(self.buf)
        data = self.compressor.compress(bytes(self.buf)) if self.compressor else self.buf
        _write_all(self.fd, data)
        self.buf = bytearray()

    def copy_file(self, infd: int, size: int) -> int:
        """Up to size bytes of infd; returns how many there were (fewer if it shrank)."""
        done = 0
        if self.direct and size > SMALL_FILE:
            self.flush()
            while done < size:
                try:
                    n = os.sendfile(self.fd, infd, None, size - done)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOSYS):
                        raise
                    break  # a filesystem sendfile cannot read: read below
                if n == 0:
                    self.count += done
                    return done
                done += n
            self.count += done
        while done < size:
            data = os.read(infd, min(size - done, BUFFER))
            if not data:
                break
            self.write(data)
            done += len(data)
        return done

    def close(self) -> None:
        """Flush what is buffered and end the compressed stream (the fd stays open)."""
        self.flush()
        if self.compressor is not None:
            _write_all(self.fd, self.compressor.flush())
            self.compressor = None


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass
class Counts:
    entries: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # sockets: a tar cannot hold them
    # an entry others may not read (/etc/shadow, /root, a key): the archive holds secrets
    private: bool = False


def write_tree(tree: str | os.PathLike, sink: Sink) -> Counts:
    """The whole tree under tree as a tar archive into sink (end-of-archive included)."""
    counts = Counts()
    path = os.path.abspath(tree)
    parentfd = os.open(os.path.dirname(path) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        cursor = DirCursor(parentfd, os.path.basename(path), path, same_fs=False)
    finally:
        os.close(parentfd)
    with cursor:
        root = os.fstat(cursor.fd)
        writer = _Writer(sink, uid_shift(root), counts)
        writer.header("./", root, cursor.fd)
        pending: list[list[str]] = [_names(cursor.fd)]
        while pending:
            if not pending[-1]:
                pending.pop()
                if pending:
                    cursor.up()
                continue
            name = pending[-1].pop()
            try:
                st = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone meanwhile (a stopped container's tree does not change)
            arcname = "./" + "/".join(cursor.names[1:] + [name])
            if stat.S_ISDIR(st.st_mode):
                try:
                    cursor.down(name)
                except OSError as e:
                    if e.errno != errno.EXDEV:
                        raise
                    writer.header(arcname, st, None)  # a mount point: its own dir only
                    continue
                writer.header(arcname, os.fstat(cursor.fd), cursor.fd)
                pending.append(_names(cursor.fd))
            else:
                writer.entry(cursor.fd, name, arcname, st)
        sink.write(b"\0" * (2 * BLOCK))
    return counts


def _names(dirfd: int) -> list[str]:
    """A directory's names, in reverse order: pop() gives them sorted."""
    return sorted(os.listdir(dirfd), reverse=True)


_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")
_TYPES_WITH_DEVICE = (tarfile.CHRTYPE, tarfile.BLKTYPE)


def _ustar(info: tarfile.TarInfo) -> bytes | None:
    """The one-block ustar header tarfile would write for info, made directly (tarfile's
    tobuf costs more than reading a small file); None when it needs more than one block."""
    if info.pax_headers:
        return None
    name = os.fsencode(info.name)
    if info.type == tarfile.DIRTYPE and not name.endswith(b"/"):
        name += b"/"
    link = os.fsencode(info.linkname)
    if (len(name) > 100 or len(link) > 100 or not name.isascii() or not link.isascii()
            or info.uid >= 0o7777777 or info.gid >= 0o7777777 or info.size >= 0o77777777777
            or not 0 <= info.mtime < 0o77777777777):
        return None
    device = info.type in _TYPES_WITH_DEVICE
    buf = _USTAR.pack(
        name, b"%07o\0" % info.mode, b"%07o\0" % info.uid, b"%07o\0" % info.gid,
        b"%011o\0" % info.size, b"%011o\0" % int(info.mtime), b"        ", info.type, link,
        b"ustar\0", b"00", b"", b"",
        b"%07o\0" % info.devmajor if device else b"", b"%07o\0" % info.devminor if device else b"",
        b"")
    return b"%s%06o\0%s" % (buf[:148], sum(buf), buf[155:])


class _Writer:
    def __init__(self, sink: Sink, shift: int, counts: Counts):
        self.sink, self.shift, self.counts = sink, shift, counts
        self.links: dict[tuple[int, int], str] = {}

    def _id(self, value: int) -> int:
        if self.shift <= value < self.shift + RANGE:
            return value - self.shift
        return NOBODY

    def _info(self, arcname: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        if not st.st_mode & stat.S_IROTH and not stat.S_ISLNK(st.st_mode):
            self.counts.private = True
        info.uid, info.gid = self._id(st.st_uid), self._id(st.st_gid)
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        return info

    def _put(self, info: tarfile.TarInfo) -> None:
        header = _ustar(info)
        if header is None:  # long names, xattrs, big numbers: tarfile's pax headers
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self.sink.write(header)
        self.counts.entries += 1

    def header(self, arcname: str, st: os.stat_result, fd: int | None) -> None:
        """A directory's entry (fd: the directory, for its xattrs)."""
        info = self._info(arcname, st)
        info.type = tarfile.DIRTYPE
        if fd is not None:
            self._xattrs(info, fd)
        self._put(info)

    def entry(self, dirfd: int, name: str, arcname: str, st: os.stat_result) -> None:
        info = self._info(arcname, st)
        mode = st.st_mode
        if st.st_nlink > 1:
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._put(info)
                return
            self.links[(st.st_dev, st.st_ino)] = arcname
        if stat.S_ISREG(mode):
            self._file(dirfd, name, info)
            return
        if stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dirfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:  # a socket
            self.counts.skipped.append(arcname[1:])
            return
        self._put(info)

    def _file(self, dirfd: int, name: str, info: tarfile.TarInfo) -> None:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dirfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced meanwhile: not worth a second look
                return
            info.size = st.st_size
            info.type = tarfile.REGTYPE
            self._xattrs(info, fd)
            self._put(info)
            done = self.sink.copy_file(fd, st.st_size)
        finally:
            os.close(fd)
        if done < info.size:  # it shrank while read: the header's size still holds
            self.sink.write(b"\0" * (info.size - done))
        self.sink.write(b"\0" * (-info.size % BLOCK))
        self.counts.bytes += info.size

    def _xattrs(self, info: tarfile.TarInfo, fd: int) -> None:
        try:
            names = os.listxattr(fd)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
                return
            raise
        pax: dict[str, str] = {}
        for key in names:
            if key.startswith(SKIP_XATTR_PREFIXES):
                continue
            try:
                value = os.getxattr(fd, key)
            except OSError:
                continue  # gone meanwhile, or not readable here
            if self.shift and key in _ID_XATTRS:
                value = _ID_XATTRS[key](value, self._id, self.shift)
            pax["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        if pax:
            info.pax_headers = pax


def _shift_acl(value: bytes, to_inside, shift: int) -> bytes:
    """A POSIX ACL xattr with the ids of its named users and groups shifted back like the
    owners."""
    return map_acl(value, to_inside, to_inside)


def _shift_caps(value: bytes, to_inside, shift: int) -> bytes:
    """File capabilities of revision 3 name the namespace root they hold for (the tree's
    UID range once chowned): written as revision 2, which holds for whoever is root."""
    if len(value) == 24 and struct.unpack_from("<I", value)[0] & 0xFF000000 == 0x03000000:
        magic = (struct.unpack_from("<I", value)[0] & 0x00FFFFFF) | 0x02000000
        return struct.pack("<I", magic) + value[4:20]
    return value


_ID_XATTRS = {"system.posix_acl_access": _shift_acl, "system.posix_acl_default": _shift_acl,
              "security.capability": _shift_caps}
