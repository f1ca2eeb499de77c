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
- Headers are parsed, and file data read, in a worker thread a bounded number of entries
  ahead (readahead.Ahead); files are made in the calling thread, in the tar's order.
- Every read and every header is bounded (Go's archive/tar limits, since CVE-2022-2879):
  pax, GNU long-name and sparse-map headers at MAX_HEADER_BYTES each, at most
  MAX_HEADER_CHAIN of them before an entry, at most MAX_ENTRIES entries and as many
  distinct paths per layer, at most MAX_WARNINGS warnings kept.  The stream must end with
  tar's end-of-archive block, or it is truncated.
- Nothing recurses and nothing holds a descriptor per level: parents are reached from the
  previous entry's directory (up through "..", down by name), removals and whiteouts walk
  iteratively (fs/walk.py DirCursor), and what the layer wrote is a tree of path components, so
  a layer thousands of directories deep costs what a flat one does.
"""

import io
import os
import stat
import tarfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from ..errors import Error, InvalidInput
from ..fs import resolve
from ..fs.walk import DirCursor, remove_tree_at
from .readahead import Ahead, Readable

COPY_CHUNK = 1 << 20

MAX_HEADER_BYTES = 1 << 20     # one pax, GNU long name/link or sparse map header; Go's limit
MAX_HEADER_CHAIN = 16          # extension headers before one entry (a real one has 1 to 3)
MAX_ENTRIES = 1_000_000        # entries of one layer, and distinct paths it writes
MAX_WARNINGS = 100
MAX_READ = 2 * COPY_CHUNK      # no read of the stream asks for more, whatever a header says

MALICIOUS = "the image is malformed or malicious; it was not unpacked"

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

XATTR_PAX_PREFIX = "SCHILY.xattr."
ALLOWED_XATTRS = ("security.capability", "system.posix_acl_access", "system.posix_acl_default")
ALLOWED_XATTR_PREFIXES = ("user.",)


# None: not tried yet; tests set it to False to exercise the fallback walk.


# -- tar headers, bounded -------------------------------------------------------------------

EXTENSION_HEADERS = {tarfile.GNUTYPE_LONGNAME: "GNU long name",
                     tarfile.GNUTYPE_LONGLINK: "GNU long link name",
                     tarfile.XHDTYPE: "pax extended", tarfile.XGLTYPE: "pax global",
                     tarfile.SOLARIS_XHDTYPE: "Solaris extended"}


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parser, with every size a header declares checked before it is read.

    tarfile reads a pax or GNU long-name header in one read(size), and chains of them
    recursively: unchecked, a few bytes of gzip declaring a 1 GB header cost 1-2 GB of memory.
    """

    @classmethod
    def fromtarfile(cls, tar):
        buf = tar.fileobj.read(tarfile.BLOCKSIZE)
        tar.end_marker = len(buf) == tarfile.BLOCKSIZE and not buf.strip(b"\0")
        obj = cls.frombuf(buf, tar.encoding, tar.errors)
        obj.offset = tar.fileobj.tell() - tarfile.BLOCKSIZE
        return obj._proc_member(tar)

    def _where(self, tar) -> str:
        return f"{tar.what} header at byte {self.offset} ({self.name[:100]!r})"

    def _proc_member(self, tar):
        kind = EXTENSION_HEADERS.get(self.type)
        if kind is None:
            tar.chain = 0
            return super()._proc_member(tar)
        if self.size > MAX_HEADER_BYTES:
            raise InvalidInput(f"{self._where(tar)} declares a {kind} header of {self.size} bytes, "
                               f"more than the limit of {MAX_HEADER_BYTES}", hint=MALICIOUS)
        tar.chain += 1
        if tar.chain > MAX_HEADER_CHAIN:
            raise InvalidInput(
                f"{self._where(tar)} is the {tar.chain}th extension header in a row, "
                f"more than the limit of {MAX_HEADER_CHAIN}", hint=MALICIOUS)
        if self.type == tarfile.XGLTYPE:
            tar.global_bytes += self.size
            if tar.global_bytes > MAX_HEADER_BYTES:
                raise InvalidInput(f"{self._where(tar)} brings pax global headers to more than the "
                                   f"limit of {MAX_HEADER_BYTES} bytes", hint=MALICIOUS)
        return super()._proc_member(tar)

    def _proc_sparse(self, tar):
        """Old GNU sparse headers: tarfile's own loop, with a bound on extension blocks."""
        structs, isextended, origsize = self._sparse_structs
        del self._sparse_structs
        blocks = 0
        while isextended:
            blocks += 1
            if blocks * tarfile.BLOCKSIZE > MAX_HEADER_BYTES:
                raise InvalidInput(f"{self._where(tar)} has a GNU sparse map of more than "
                                   f"{MAX_HEADER_BYTES} bytes, the limit", hint=MALICIOUS)
            buf = tar.fileobj.read(tarfile.BLOCKSIZE)
            if len(buf) != tarfile.BLOCKSIZE:
                raise tarfile.ReadError("unexpected end of data in a sparse header")
            for pos in range(0, 21 * 24, 24):
                try:
                    offset = tarfile.nti(buf[pos:pos + 12])
                    numbytes = tarfile.nti(buf[pos + 12:pos + 24])
                except ValueError:
                    break
                if offset and numbytes:
                    structs.append((offset, numbytes))
            isextended = bool(buf[504])
        self.sparse = structs
        self.offset_data = tar.fileobj.tell()
        tar.offset = self.offset_data + self._block(self.size)
        self.size = origsize
        return self

    def _proc_gnusparse_10(self, next, pax_headers, tar):
        """GNU sparse 1.0: the map leads the file's data; read at most MAX_HEADER_BYTES of it."""
        numbers, buf, taken = [], b"", 0
        count = None
        while count is None or len(numbers) < 2 * count:
            if b"\n" not in buf:
                if len(buf) > 40 or taken >= MAX_HEADER_BYTES:
                    raise InvalidInput(f"{self._where(tar)} has a GNU sparse map of more than "
                                       f"{MAX_HEADER_BYTES} bytes, the limit", hint=MALICIOUS)
                more = tar.fileobj.read(tarfile.BLOCKSIZE)
                if len(more) != tarfile.BLOCKSIZE:
                    raise tarfile.ReadError("unexpected end of data in a sparse map")
                buf += more
                taken += len(more)
                continue
            line, buf = buf.split(b"\n", 1)
            try:
                value = int(line)
            except ValueError:
                raise tarfile.ReadError("invalid GNU sparse map") from None
            if value < 0:
                raise tarfile.ReadError("invalid GNU sparse map")
            if count is None:
                count = value
            else:
                numbers.append(value)
        next.offset_data = tar.fileobj.tell()
        next.sparse = list(zip(numbers[::2], numbers[1::2]))


class SafeTarFile(tarfile.TarFile):
    """A TarFile whose headers are bounded (see _TarInfo); it records whether the archive
    ended with its end-of-archive block (end_marker) rather than just stopping."""

    tarinfo = _TarInfo

    def __init__(self, *args, what: str = "layer", **kwargs):
        self.what = what  # what errors call the archive
        self.chain = 0
        self.global_bytes = 0
        self.end_marker = False
        super().__init__(*args, **kwargs)


# -- finding directories inside the tree: fs/resolve.py, and the cursor below ------------

def _common_prefix(a: list[str], b: list[str]) -> int:
    """How many leading components a and b share (list slices compare in C: deep paths too)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Cursor:
    """The directory the last entry went into, kept open for the next one.

    Entries come mostly in tree order, so the next parent is usually the same directory or
    a few steps up and down from it.  While the path that led here went through no symlink
    (plain), ".." from here is the path's own parent, and the next path is reached by going
    up and down from here: one descriptor, a few syscalls, whatever the depth, and no
    PATH_MAX.  A symlink on the way (which must resolve in the root), or a removal (which
    may have changed what a path names), sends the next lookup back to the root.
    """

    def __init__(self, rootfd: int):
        self.rootfd = rootfd
        self.fd = os.dup(rootfd)
        self.key: list[str] | None = []
        self.plain = True

    def invalidate(self) -> None:
        """Resolve again next time; the descriptor stays open for the entry being applied."""
        self.key = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def goto(self, parts: list[str], create: bool) -> int:
        key = self.key
        if key is not None and key == parts:
            return self.fd
        if key is not None and self.plain:
            common = _common_prefix(key, parts)
            ups = len(key) - common
        else:
            common = ups = -1
        if common < 0 or ups > common:  # from the root is as near
            start, common = os.dup(self.rootfd), 0
        else:
            start = resolve.up(self.fd, ups)
        plain = True
        try:
            fd = resolve.down(start, parts, common, create)
        except resolve.Symlink:
            fd = resolve.open_dir_in_root(self.rootfd, parts, create)
            plain = False
        os.close(self.fd)
        self.fd, self.key, self.plain = fd, list(parts), plain
        return fd




def split_name(name: str, what: str = "entry") -> list[str]:
    """Components of a tar name relative to the root; '..' is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"layer {what} '{name[:200]}' contains a '..' component", hint=MALICIOUS)
    return parts


# -- what a layer wrote ----------------------------------------------------------------------

class _PathTree:
    """The paths a layer wrote and their parents, as a tree of components.

    Whiteouts spare what the layer itself wrote, so it must be remembered; as strings, every
    prefix of a path 100,000 levels deep would be a string of its own.  Here a path costs one
    node per component it does not share, and the number of nodes is bounded.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.children: dict[tuple[int, str], int] = {}
        self.parent = array("q", [-1])
        self.depth = array("q", [0])
        self.names = [""]
        self._last: list[str] = []   # the last path added, and its nodes (root first)
        self._nodes = [0]

    def add(self, parts: list[str]) -> int:
        common = _common_prefix(self._last, parts)
        nodes = self._nodes
        del nodes[common + 1:]
        node = nodes[-1]
        for name in parts[common:]:
            child = self.children.get((node, name))
            if child is None:
                child = len(self.names)  # the root is node 0: this is the child-th path
                if child > self.limit:
                    raise InvalidInput(f"layer writes more than {self.limit} distinct paths (the "
                                       f"limit), at '{'/'.join(parts)[:200]}'", hint=MALICIOUS)
                self.children[(node, name)] = child
                self.parent.append(node)
                self.depth.append(self.depth[node] + 1)
                self.names.append(name)
            nodes.append(child)
            node = child
        self._last = parts
        return node

    def find(self, parts: list[str]) -> int | None:
        node: int | None = 0
        for name in parts:
            node = self.children.get((cast(int, node), name))
            if node is None:
                return None
        return node

    def child(self, node: int | None, name: str) -> int | None:
        return None if node is None else self.children.get((node, name))

    def path_to(self, node: int, path: list[str], nodes: list[int]) -> None:
        """Make path (components) and nodes (root first) name node, keeping what they share."""
        chain = []
        while not (self.depth[node] < len(nodes) and nodes[self.depth[node]] == node):
            chain.append(node)
            node = self.parent[node]
        depth = self.depth[node]
        del nodes[depth + 1:]
        del path[depth:]
        for n in reversed(chain):
            nodes.append(n)
            path.append(self.names[n])


@dataclass
class LayerApplier:
    """State of one layer being applied to the tree at rootfd."""

    rootfd: int
    whiteouts: bool = True
    max_file_bytes: int | None = None
    max_entries: int = MAX_ENTRIES
    warnings: list[str] = field(default_factory=list)
    dropped_warnings: int = 0
    entries: int = 0
    # Directories of this layer, (path node, mode, mtime): set once their content is written.
    dirs: list[tuple[int, int, float]] = field(default_factory=list)
    file_bytes: int = 0
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    def __post_init__(self):
        self.paths = _PathTree(self.max_entries)
        self.cursor = _Cursor(self.rootfd)

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self.dropped_warnings += 1

    def all_warnings(self) -> list[str]:
        more = [f"... and {self.dropped_warnings} more warnings"] if self.dropped_warnings else []
        return self.warnings + more

    # -- parents ---------------------------------------------------------------------------
    def parent_fd(self, parts: list[str], create: bool = True) -> int:
        return self.cursor.goto(parts, create)

    def invalidate_parent(self) -> None:
        """A removal may turn a cached path into something else: resolve it again next time.

        The descriptor stays open: the entry being applied still works in it.
        """
        self.cursor.invalidate()

    def forget_parent(self) -> None:
        self.cursor.close()

    def parent_or_error(self, parts: list[str], name: str) -> int:
        try:
            return self.parent_fd(parts)
        except OSError as e:
            raise Error(f"cannot create the parent directory of '{name[:200]}': "
                        f"{os.strerror(e.errno or 0)}") from None

    # -- removal ---------------------------------------------------------------------------
    def remove(self, dirfd: int, name: str, st: os.stat_result) -> None:
        self.invalidate_parent()
        if stat.S_ISDIR(st.st_mode):
            remove_tree_at(dirfd, name)  # iterative, fd-relative, refuses symlinks
        else:
            os.unlink(name, dir_fd=dirfd)

    def remove_lower(self, dirfd: int, name: str, node: int | None) -> None:
        """Remove dirfd/name except what this layer wrote at or below it; node is its path
        in self.paths (None: the layer wrote nothing there)."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if node is None:
            self.remove(dirfd, name, st)
            return
        if not stat.S_ISDIR(st.st_mode):
            return  # this layer's own file
        # A directory of this layer (or holding its entries): keep it, clear what is lower,
        # level by level with one directory open.
        self.invalidate_parent()
        with DirCursor(dirfd, name) as cursor:
            stack: list[tuple[int, list[tuple[str, int]] | None]] = [(node, None)]
            while stack:
                node, todo = stack[-1]
                if todo is None:
                    todo = []
                    with os.scandir(cursor.fd) as entries:
                        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                    for child, is_dir in names:
                        child_node = self.paths.child(node, child)
                        if child_node is None:
                            remove_tree_at(cursor.fd, child)
                        elif is_dir:
                            todo.append((child, child_node))
                    stack[-1] = (node, todo)
                if todo:
                    child, child_node = todo.pop()
                    cursor.down(child)
                    stack.append((child_node, None))
                else:
                    stack.pop()
                    if stack:
                        cursor.up()

    def whiteout(self, parts: list[str], wh: str, original: str) -> None:
        parent = parts[:-1]
        if wh == OPAQUE_WHITEOUT:
            target = None
        elif wh.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            self.warn(f"ignored unknown whiteout metadata '{original[:200]}'")
            return
        else:
            target = wh[len(WHITEOUT_PREFIX):]
            if target in ("", ".", ".."):
                raise InvalidInput(
                    f"layer whiteout '{original[:200]}' names no entry", hint=MALICIOUS)
        try:
            dirfd = self.parent_fd(parent, create=False)
        except OSError:
            return  # nothing below to hide
        node = self.paths.find(parent)
        if target is not None:
            self.remove_lower(dirfd, target, self.paths.child(node, target))
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            for child in os.listdir(fd):
                self.remove_lower(fd, child, self.paths.child(node, child))
        finally:
            os.close(fd)

    # -- entries ---------------------------------------------------------------------------
    def apply(self, member: tarfile.TarInfo, data: Readable) -> None:
        """Apply one entry; data reads a regular file's member.size bytes of content."""
        self.entries += 1
        if self.entries > self.max_entries:
            raise InvalidInput(f"layer has more than {self.max_entries} entries (the limit), at "
                               f"'{member.name[:200]}'", hint=MALICIOUS)
        parts = split_name(member.name)
        if self.whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, parts[-1], member.name)
            return
        if not parts:
            if not member.isdir():
                raise InvalidInput(f"layer entry '{member.name}' would replace the root directory "
                                   "with something that is not a directory", hint=MALICIOUS)
            self.dirs.append((0, member.mode, member.mtime))
            self.own(self.rootfd, member)
            return
        if member.ischr() or member.isblk():
            self.warn(f"skipped device node '/{'/'.join(parts)[:200]}'")
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()
                or member.isfifo()):
            self.warn(f"skipped '/{'/'.join(parts)[:200]}' of unknown tar type "
                      f"{member.type!r}")
            return
        name = parts[-1]
        dirfd = self.parent_or_error(parts[:-1], member.name)
        try:
            existing = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        node = self.paths.add(parts)

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
            self.dirs.append((node, member.mode, member.mtime))
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
            self.write_file(data, dirfd, name, member)

    def write_file(self, data: Readable, dirfd: int, name: str,
                   member: tarfile.TarInfo) -> None:
        if self.max_file_bytes is not None:
            self.file_bytes += member.size
            if self.file_bytes > self.max_file_bytes:
                raise InvalidInput(
                    f"layer holds more than {self.max_file_bytes} bytes of file data: "
                    "a decompression bomb or a huge sparse file",
                    hint="the image was not unpacked")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dirfd)
        try:
            copy_to_fd(data, fd, member.size)
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
            raise InvalidInput(f"layer hardlink '{member.name[:200]}' points to the root directory")
        missing = InvalidInput(f"layer hardlink '{member.name[:200]}' points to "
                               f"'{member.linkname[:200]}', which is not in the tree")
        try:
            tfd = resolve.open_dir_in_root(self.rootfd, target[:-1])
        except OSError:
            raise missing from None
        try:
            try:
                tst = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise missing from None
            if stat.S_ISDIR(tst.st_mode):
                raise InvalidInput(f"layer hardlink '{member.name[:200]}' points to a directory "
                                   f"('{member.linkname[:200]}')", hint=MALICIOUS)
            if existing is not None:
                if os.path.samestat(existing, tst):
                    return  # already the same file
                self.remove(dirfd, name, existing)
            # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself.
            os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=dirfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    # -- metadata --------------------------------------------------------------------------
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
            where = member.name.lstrip('/')[:200]
            if not (attr in ALLOWED_XATTRS or attr.startswith(ALLOWED_XATTR_PREFIXES)):
                self.warn(f"dropped xattr {attr[:100]} of '/{where}'")
                continue
            try:
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError as e:
                self.warn(f"could not set xattr {attr[:100]} on '/{where}': {e.strerror}")

    def finish(self) -> None:
        """Directory modes and times, now that nothing more is written into them.

        The last directory first, each reached from the one before (path_to and the cursor
        move by what two paths do not share), so a deep layer costs no more than a flat one.
        """
        path: list[str] = []
        nodes = [0]
        for node, mode, mtime in reversed(self.dirs):
            if node == 0:
                pfd, name = self.rootfd, "."
            else:
                self.paths.path_to(self.paths.parent[node], path, nodes)
                try:
                    pfd = self.cursor.goto(path, create=False)
                except OSError:
                    continue  # removed or replaced later in this layer
                name = self.paths.names[node]
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=pfd)
            except OSError:
                continue
            try:
                os.chmod(fd, mode & 0o7777)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
        self.forget_parent()


class ForwardReader:
    """A forward-only seekable view of a stream, so tarfile can run in its cheap "r:" mode.

    tarfile's stream mode ("r|") re-copies its whole buffer on every header read;
    here headers cost a small slice and file data is read in large chunks.
    Seeking backwards is refused: tarfile never needs it when entries are
    consumed in order.  No read may ask for more than MAX_READ bytes: the headers that
    declare sizes are checked before they are read (_TarInfo), and this is the backstop.
    """

    def __init__(self, raw: Readable):
        self.raw = raw
        self.pos = 0
        self.buf = b""
        self.off = 0

    def tell(self) -> int:
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0 or n > MAX_READ:
            raise InvalidInput(f"layer reader was asked for {n} bytes at once, more than the limit "
                               f"of {MAX_READ}", hint=MALICIOUS)
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


def copy_to_fd(src: Readable, fd: int, size: int) -> None:
    left = size
    while left > 0:
        chunk = src.read(min(COPY_CHUNK, left))
        if not chunk:
            raise InvalidInput(
                "layer is truncated: it ends inside a file", hint="the image is corrupt")
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        left -= len(chunk)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, EOFError, ValueError, IndexError, OverflowError) as e:
            raise InvalidInput(f"layer is not a valid tar archive: {e}") from None
        if member is None:
            return
        yield member


# The parsing thread hands over headers and file data in batches of up to BATCH items or
# about BATCH_BYTES, pieces of DATA_CHUNK bytes at most, and is at most BATCHES_AHEAD
# batches ahead: about 20 MiB.
BATCH, BATCH_BYTES, BATCHES_AHEAD, DATA_CHUNK = 64, 1 << 20, 16, 256 << 10


def _entries(tar: SafeTarFile) -> Iterator[tarfile.TarInfo | bytes | bool]:
    """Run by the worker: each header, then a regular file's data in pieces; at the end
    whether the archive ended with its end-of-archive block."""
    reader = cast(ForwardReader, tar.fileobj)
    for member in _members(tar):
        cast(Any, tar).members.clear()  # tarfile keeps every header; there may be millions
        yield member
        if not (member.isreg() and member.size):
            continue
        data: Readable
        if member.issparse():  # holes to fill in: tarfile's own reader
            data = cast(Readable, tar.extractfile(member))
        else:  # the data follows the header: read it straight, no extra layer
            reader.seek(member.offset_data)
            data = reader
        left = member.size
        while left > 0:
            chunk = data.read(min(DATA_CHUNK, left))
            if not chunk:
                raise InvalidInput("layer is truncated: it ends inside a file",
                                   hint="the image is corrupt")
            yield chunk
            left -= len(chunk)
    yield tar.end_marker


class _Data:
    """The data of one entry, as the worker hands it over: at most size bytes."""

    def __init__(self, entries: Ahead, size: int):
        self.entries, self.left = entries, size
        self.buf = b""

    def read(self, n: int = -1, /) -> bytes:
        if not self.buf:
            if self.left <= 0:
                return b""
            self.buf = self.entries.get()
            assert isinstance(self.buf, bytes)  # the worker hands over size bytes or fails
            self.left -= len(self.buf)
        n = len(self.buf) if n is None or n < 0 else n
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def skip(self) -> None:
        while self.read(DATA_CHUNK):
            pass


def open_tar(fileobj: Readable) -> SafeTarFile:
    """A bounded tarfile reading fileobj in order; Error if it is not a tar archive."""
    try:
        return SafeTarFile(fileobj=cast(Any, fileobj))
    except (tarfile.TarError, EOFError, ValueError, IndexError, OverflowError) as e:
        raise InvalidInput(f"layer is not a valid tar archive: {e}") from None


def apply_layer(stream: Readable, root: int | os.PathLike | str, *, whiteouts: bool = True,
                max_file_bytes: int | None = None, max_entries: int | None = None) -> list[str]:
    """Apply the uncompressed tar read from stream onto the tree at root; return warnings.

    root is a directory path or descriptor.  whiteouts=False treats '.wh.' names
    as ordinary files (plain root tarballs).  max_file_bytes bounds the file
    data written, sparse files included; max_entries (default MAX_ENTRIES) the entries.
    The stream is read up to tar's end-of-archive block, which must be there; what follows
    it is the caller's to read (and check).
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    if isinstance(root, int):
        rootfd = os.open(".", flags, dir_fd=root)
    else:
        rootfd = os.open(root, flags | os.O_NOFOLLOW)
    try:
        applier = LayerApplier(rootfd, whiteouts=whiteouts, max_file_bytes=max_file_bytes,
                               max_entries=MAX_ENTRIES if max_entries is None else max_entries)
        tar = open_tar(ForwardReader(stream))
    except BaseException:
        os.close(rootfd)
        raise
    try:
        # Headers are parsed and file data read in a worker thread, a few entries ahead;
        # this thread makes the files.  Only the worker touches tar from here on.
        with tar, Ahead(_entries(tar), BATCHES_AHEAD, BATCH, BATCH_BYTES) as entries:
            while not isinstance(member := entries.get(False), bool):
                data = _Data(entries, member.size if member.isreg() else 0)
                try:
                    applier.apply(member, data)
                    data.skip()  # what the entry did not use (a whiteout's data)
                except OSError as e:
                    raise Error(f"cannot unpack '{member.name[:200]}': {e.strerror}") from None
                except (tarfile.TarError, EOFError) as e:
                    raise InvalidInput(f"layer is truncated or corrupt at '{member.name[:200]}': "
                                       f"{e}") from None
                except (ValueError, OverflowError) as e:  # NUL in a name, absurd ids or times
                    raise InvalidInput(f"layer entry {member.name[:200]!r} is invalid: {e}",
                                       hint=MALICIOUS) from None
            if not member:  # the worker's last item: whether tar's end-of-archive block came
                raise InvalidInput("layer is truncated: it ends without tar's end-of-archive block",
                                   hint="the image is corrupt; it was not unpacked")
        applier.finish()
    finally:
        applier.forget_parent()
        os.close(rootfd)
    return applier.all_warnings()
