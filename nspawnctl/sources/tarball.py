"""Root trees from a tarball (`tar:PATH`, like machinectl import-tar) or a directory
(`dir:PATH`, like machinectl import-fs).  Tarballs go through the same safe unpacker as image
layers: a tarball from the internet is no more trusted than an image."""

import bz2
import gzip
import lzma
from pathlib import Path

from ..errors import Error
from ..images import clone_tree
from ..unpack import apply_layer

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


def import_tar(path: Path, tree: Path, warn=print):
    if not path.is_file():
        raise Error(f"no such tarball: {path}")
    with _open_decompressed(path) as stream:
        for warning in apply_layer(stream, tree, whiteouts=False):
            warn(warning)


def import_dir(path: Path, tree: Path):
    if not path.is_dir():
        raise Error(f"no such directory: {path}")
    clone_tree(path, tree)  # the cheapest copy the filesystem has, as for base trees
