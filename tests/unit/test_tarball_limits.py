"""`tar:` imports get the limits of image layers (total bytes, expansion ratio, entries) and
are read to the end: tar's end-of-archive block, then the compressed stream's own end and
checksum.  A truncated or corrupt tarball fails with one line; it never imports in part."""

import os
import shutil
from pathlib import Path

import hostile
import pytest
from imagebuild import dir, file, layer

from nspawnctl.errors import Error
from nspawnctl.sources import compression, tarball, unpack

# -- tar: the same limits as layers, checked to the end -------------------------------------

def make_tarball(tmp_path, data: bytes, kind: str | None, name="t.tar") -> Path:
    return hostile.compress([data], tmp_path / name, kind)


GOOD = layer(dir("etc"), file("etc/os-release", b"ID=test\n"), file("etc/hostname", b"h\n"))


def import_into(tmp_path, path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    tarball.import_tar(path, tree, warn=lambda w: None)
    return tree


@pytest.mark.parametrize("kind", [None, "gzip", "zstd"])
def test_tarball_good(tmp_path, kind):
    tree = import_into(tmp_path, make_tarball(tmp_path, GOOD, kind))
    assert (tree / "etc/os-release").read_text() == "ID=test\n"


def test_tarball_cut_at_an_entry_boundary(tmp_path):
    """No end-of-archive block: it was cut short, whatever tarfile thinks."""
    cut = GOOD[:GOOD.index(b"etc/hostname") // 512 * 512]
    with pytest.raises(Error, match="truncated: it ends without tar's end-of-archive block"):
        import_into(tmp_path, make_tarball(tmp_path, cut, None))


def test_tarball_with_a_corrupt_header_in_the_middle(tmp_path):
    data = bytearray(GOOD)
    data[GOOD.index(b"etc/hostname") + 1] ^= 1  # breaks that header's checksum
    with pytest.raises(Error, match="tarball is truncated"):
        import_into(tmp_path, make_tarball(tmp_path, bytes(data), "gzip"))


@pytest.mark.parametrize("kind,cut", [("gzip", 4), ("zstd", 4), ("zstd", 20)])
def test_tarball_whose_compressed_stream_is_cut(tmp_path, kind, cut):
    path = make_tarball(tmp_path, GOOD + bytes(10240), kind)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(Error, match="corrupt|truncated"):
        import_into(tmp_path, path)


def test_tarball_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "BOMB_MIN_BYTES", 1 << 20)
    path = make_tarball(tmp_path, layer(file("zeros", bytes(16 << 20))), "gzip")
    with pytest.raises(Error, match=r"tarball (holds|expands) more than .* decompression bomb"):
        import_into(tmp_path, path)


def test_tarball_total_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "MAX_TOTAL_BYTES", 1 << 20)
    path = make_tarball(tmp_path, layer(file("data", os.urandom(2 << 20))), None)
    with pytest.raises(Error, match="tarball (holds|expands) more than 1048576 bytes|tarball "
                                    "expands beyond the limit of 1048576 bytes"):
        import_into(tmp_path, path)


def test_tarball_entry_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(unpack, "MAX_ENTRIES", 10)
    path = make_tarball(tmp_path, layer(*[file(f"f{i}") for i in range(11)]), "gzip")
    with pytest.raises(Error, match="cannot import .*: tarball has more than 10 entries"):
        import_into(tmp_path, path)
