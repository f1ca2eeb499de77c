"""Root trees from a tarball (`tar:PATH`, like machinectl import-tar) or a directory
(`dir:PATH`, like machinectl import-fs).  Tarballs go through the same safe unpacker as image
layers: a tarball from the internet is no more trusted than an image."""

import bz2
import gzip
import lzma
from pathlib import Path

from ..errors import Error
from ..fsutil import clone_tree
from .unpack import apply_layer

MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _open_decompressed(path: Path):
    raw = open(path, "rb")
    head = raw.read(6)
    raw.seek(0)
    kind = next((k for magic, k in MAGIC.items() if head.startswith(magic)), None)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise Error("cannot read a zstd tarball: the zstandard module is missing",
                        hint="apt-get install python3-zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


class _Checked:
    """The decompressed bytes of a tarball; a corrupt compressed stream is an Error (the
    decompressors raise OSError, EOFError or errors of their own)."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except Exception as e:  # noqa: BLE001 - gzip, bz2, lzma and zstandard differ
            raise Error(f"compressed data is corrupt: {e}") from None


def import_tar(path: Path, tree: Path, warn=print):
    if not path.is_file():
        raise Error(f"no such tarball: {path}")
    with _open_decompressed(path) as stream:
        checked = _Checked(stream)
        try:
            warnings = apply_layer(checked, tree, whiteouts=False)
            # tar stops at its end-of-archive blocks; the compressed stream's checksum (gzip's
            # CRC, xz's, zstd's) comes after them: read on, so that it is checked.
            while checked.read(1 << 20):
                pass
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
