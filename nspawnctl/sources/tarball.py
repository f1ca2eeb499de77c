"""Root trees from a tarball (`tar:PATH`, like machinectl import-tar) or a directory
(`dir:PATH`, like machinectl import-fs).

Tarballs go through the same safe unpacker and the same limits as image layers (total bytes,
expansion ratio, entries, header sizes): a tarball from the internet is no more trusted than
an image.  They are read to the end, tar's end-of-archive block and the compressed stream's
own end and checksum included, so a truncated or corrupt one fails rather than leaving part
of a tree."""

import os
import stat
from pathlib import Path

from ..errors import Error
from ..fsutil import clone_tree
from . import compression
from .unpack import apply_layer


def import_tar(path: Path, tree: Path, warn=print):
    if not path.is_file():  # before open(): a fifo would block it
        raise Error(f"no such tarball: {path}")
    try:
        raw = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise Error(f"no such tarball: {path}") from None
    with raw:
        st = os.fstat(raw.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Error(f"no such tarball: {path}", hint="it is not a regular file")
        kind = compression.sniff(raw.read(8))
        raw.seek(0)
        limit, why = compression.expansion_limit(st.st_size, compression.MAX_TOTAL_BYTES,
                                                 "tarball")
        try:
            stream = compression.Stream(raw, kind, limit, why, what="tarball")
            warnings = apply_layer(stream, tree, whiteouts=False, max_file_bytes=limit)
            # tar stops at its end-of-archive blocks; the compressed stream's checksum (gzip's
            # CRC, xz's, zstd's frame end) comes after them: read on, so that it is checked.
            stream.drain()
        except Error as e:
            message = e.message  # the unpacker's words are about image layers
            if message.startswith("layer "):
                message = "tarball " + message[len("layer "):]
            raise Error(f"cannot import {path}: {message}", hint=e.hint) from None
    for warning in warnings:
        warn(warning)


def import_dir(path: Path, tree: Path):
    if not path.is_dir():
        raise Error(f"no such directory: {path}")
    clone_tree(path, tree)  # the cheapest copy the filesystem has, as for base trees
