"""Root trees from a tarball (`tar:PATH`, like machinectl import-tar) or a directory
(`dir:PATH`, like machinectl import-fs).

Tarballs go through the same safe unpacker and the same limits as image layers (total bytes,
expansion ratio, entries, header sizes): a tarball from the internet is no more trusted than
an image.  They are read to the end, tar's end-of-archive block and the compressed stream's
own end and checksum included, so a truncated or corrupt one fails rather than leaving part
of a tree.

A directory is copied as the tree it names: a symlink given as the source is resolved first
(else the container's tree would be that symlink, and writing its /etc/hostname would write
the source's), and the copy stays on the source's filesystem: what is mounted inside it is
not copied."""

import os
import stat
from pathlib import Path

from ..errors import Error, NotFound, Usage
from ..fs.copy import Rules, copy_path
from . import compression
from .base import Plan, Request, Source
from .readahead import ReadAhead
from .unpack import apply_layer


def import_tar(path: Path, tree: Path, warn=print):
    if not path.is_file():  # before open(): a fifo would block it
        raise NotFound(f"no such tarball: {path}")
    try:
        raw = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"no such tarball: {path}") from None
    with raw:
        st = os.fstat(raw.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"no such tarball: {path}", hint="it is not a regular file")
        kind = compression.sniff(raw.read(8))
        raw.seek(0)
        limit, why = compression.expansion_limit(st.st_size, compression.MAX_TOTAL_BYTES,
                                                 "tarball")
        try:
            stream = compression.Stream(raw, kind, limit, why, what="tarball")
            with ReadAhead(stream) as ahead:  # decompressed in a second thread
                warnings = apply_layer(ahead, tree, whiteouts=False, max_file_bytes=limit)
                # tar stops at its end-of-archive blocks; the compressed stream's checksum
                # (gzip's CRC, xz's, zstd's frame end) comes after them: read on, so that it
                # is checked.
                ahead.drain()
        except Error as e:
            message = e.message  # the unpacker's words are about image layers
            if message.startswith("layer "):
                message = "tarball " + message[len("layer "):]
            raise type(e)(f"cannot import {path}: {message}", hint=e.hint) from None
    for warning in warnings:
        warn(warning)


def import_dir(path: Path, tree: Path):
    """Copy the directory path names (through symlinks) to tree, which must not exist."""
    try:
        source = Path(path).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError, RuntimeError):  # RuntimeError: a loop
        raise NotFound(f"no such directory: {path}") from None
    if not source.is_dir():
        raise NotFound(f"no such directory: {path}")
    if source == Path("/"):
        raise Usage(f"{path} is the host's root directory", hint="import a container's tree")
    # Copied by fs/copy.py, not cp -a: the directory may be a tree someone else writes meanwhile
    # (a running container's, a user's), and cp names each path twice.  Symlinks inside stay
    # symlinks, and mount points are left empty (cp's --one-file-system).
    try:
        copy_path(source, tree, Rules(empty_mounts=True))
    except Error as exc:
        if "No space left" in exc.message:
            raise Error(f"no space left to copy {path}",
                        hint="free some space, e.g. nspawnctl images prune") from None
        raise
    st = os.lstat(tree)
    if not stat.S_ISDIR(st.st_mode):
        raise Error(f"copying {path} did not make a directory")  # cp never does this


class TarballSource(Source):
    kind, syntax = "tar", "tar:PATH"
    summary = "a root tarball (.tar, .tar.gz, .tar.xz, .tar.zst, ...), as machinectl import-tar"

    def plan(self, rest: str, request: Request) -> Plan:
        def build(tree: Path) -> dict:
            tree.mkdir(mode=0o755)
            import_tar(Path(rest), tree, warn=request.report)
            return {"method": "import"}
        return Plan(build=build)


class DirectorySource(Source):
    kind, syntax = "dir", "dir:PATH"
    summary = "a copy of a root directory, as machinectl import-fs"

    def plan(self, rest: str, request: Request) -> Plan:
        def build(tree: Path) -> dict:
            import_dir(Path(rest), tree)
            return {"method": "import"}
        return Plan(build=build)
