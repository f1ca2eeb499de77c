"""Layers read in one pass (issue 16): the compressed blob is hashed on its way to the
decoder, the decoder runs in a second thread (readahead.py), and whatever fails mid-stream
(digest, truncation, limits, the decoder) is one Error line and leaves dest empty."""

import gzip
import io
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from imagebuild import (
    blob_file,
    dir,
    file,
    image_config,
    layer,
    oci_layout,
    sha256,
    tar_tree,
    write_blob,
    write_index,
)

from nspawnctl.errors import Error
from nspawnctl.formats import platforms
from nspawnctl.sources import compression, readahead, unpack
from nspawnctl.sources.oci import layout as oci_layout_mod
from nspawnctl.sources.oci import unpack_image
from nspawnctl.sources.unpack import apply_layer

BIG = layer(dir("usr"), *[file(f"usr/f{i}", bytes([i]) * 300_000) for i in range(20)])


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch):
    import platform

    monkeypatch.setattr(platforms, "ARCHES", {platform.machine(): "amd64"})


@pytest.fixture
def dest(tmp_path) -> Path:
    d = tmp_path / "dest"
    d.mkdir(mode=0o700)
    return d


def no_worker_left() -> bool:
    return not any(t.name == "nspawnctl-readahead" for t in threading.enumerate())


def layout_with_blob(root: Path, blob: bytes, diff_id: str, digest: str | None = None) -> None:
    """A one-layer image whose layer is blob, named by digest (its own by default)."""
    desc = write_blob(root, blob, "application/vnd.oci.image.layer.v1.tar+gzip")
    if digest is not None:
        blob_file(root, desc).rename(blob_file(root, {"digest": digest}))
        desc["digest"] = digest
    config = write_blob(root, json.dumps(image_config([diff_id])).encode(),
                        "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config, "layers": [desc]}
    write_index(root, [write_blob(root, json.dumps(manifest).encode(),
                                  "application/vnd.oci.image.manifest.v1+json")])


def unpack_both(tmp_path: Path, dest: Path, root: Path) -> list[Error]:
    """Unpack the layout and an oci-archive of it; the Error of each (both must fail)."""
    errors = []
    for kind, path in (("oci", root), ("oci-archive", tar_tree(root, tmp_path / "img.tar"))):
        with pytest.raises(Error) as e:
            unpack_image(kind, path, dest)
        errors.append(e.value)
        assert list(dest.iterdir()) == [], f"{kind}: a partial tree was left"
        assert "\n" not in e.value.message
        assert no_worker_left()
    return errors


# -- the digest, checked on the way ------------------------------------------------------------

def test_good_layer_is_read_once(tmp_path, dest, monkeypatch):
    """No pass over the blob before decompressing it: each layer is opened for one read."""
    built = oci_layout(tmp_path / "img", [BIG])
    opened = []
    real = oci_layout_mod.DirLayout.open
    monkeypatch.setattr(oci_layout_mod.DirLayout, "open",
                        lambda self, name: opened.append(name) or real(self, name))
    unpack_image("oci", tmp_path / "img", dest)
    assert (dest / "usr/f19").read_bytes() == bytes([19]) * 300_000
    assert opened.count("blobs/" + built.layers[0]["digest"].replace(":", "/")) == 1
    assert no_worker_left()


def test_wrong_digest_found_after_the_whole_layer(tmp_path, dest):
    """A valid gzip layer stored under another digest: it decompresses and applies to the
    end, then its digest fails, and nothing of it stays."""
    blob = gzip.compress(BIG, mtime=0)
    other = sha256(blob + b"x")
    layout_with_blob(tmp_path / "img", blob, sha256(BIG), digest=other)
    for e in unpack_both(tmp_path, dest, tmp_path / "img"):
        assert e.message == f"image layer blob {other} does not match its digest"


def test_digest_error_wins_over_the_decoders(tmp_path, dest):
    """A byte flipped in the middle: the decoder fails first, the digest is the cause."""
    root = tmp_path / "img"
    built = oci_layout(root, [BIG])
    path = blob_file(root, built.layers[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    for e in unpack_both(tmp_path, dest, root):
        assert "does not match its digest" in e.message


def test_blob_longer_than_its_descriptor_while_read(tmp_path, monkeypatch):
    """The size is checked before reading, and again by the reader: a blob that grows in
    between is read one byte past its size at most, and refused."""
    data = b"x" * 1000
    desc = oci_layout_mod.Descriptor("", sha256(data), len(data))

    class Raw:
        served = 0

        def read(self, n):
            self.served += n
            return b"y" * n  # endless

    raw = Raw()
    blob = oci_layout_mod.BlobReader(raw, desc, "layer")  # type: ignore[arg-type]
    with pytest.raises(Error, match="does not match its digest"):
        blob.check()
    assert raw.served == len(data) + 1


# -- truncated, oversized and corrupt streams, found mid-stream --------------------------------

def test_truncated_gzip_stream(tmp_path, dest):
    """Cut in the middle, digest and size matching the cut: the decoder says so mid-stream."""
    blob = gzip.compress(BIG, mtime=0)
    blob = blob[:len(blob) // 2]
    layout_with_blob(tmp_path / "img", blob, sha256(BIG))
    for e in unpack_both(tmp_path, dest, tmp_path / "img"):
        assert e.message in ("layer is corrupt: gzip data ends before the end of its frame",
                             "layer is truncated: it ends inside a file")


def test_truncated_tar_in_a_whole_gzip(tmp_path, dest):
    tar = BIG[:len(BIG) // 2]
    layout_with_blob(tmp_path / "img", gzip.compress(tar, mtime=0), sha256(tar))
    for e in unpack_both(tmp_path, dest, tmp_path / "img"):
        assert e.message.startswith("layer is truncated")


def test_oversized_stream_stops_mid_stream(tmp_path, dest, monkeypatch):
    """Zeros after the tar's end: the tree is written, then the worker, draining the stream
    for the diff_id, stops at the limit; the tree goes."""
    monkeypatch.setattr(compression, "BOMB_MIN_BYTES", 1 << 20)
    data = BIG[:-1024]  # BIG without its end-of-archive blocks, then a lot of them
    oci_layout(tmp_path / "img", [data + bytes(16 << 20)])
    for e in unpack_both(tmp_path, dest, tmp_path / "img"):
        assert e.message.endswith("compressed bytes: a decompression bomb")


def test_decoder_failing_in_the_worker(tmp_path, dest):
    """A second gzip member whose first deflate block has the reserved type: the worker's
    decoder fails mid-stream, after the first member was applied; its error is the reader's,
    one line, no traceback, no thread left, no tree."""
    half = len(BIG) // 2
    bad = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\x07" + bytes(64)
    blob = gzip.compress(BIG[:half], mtime=0) + bad
    layout_with_blob(tmp_path / "img", blob, sha256(BIG))
    for e in unpack_both(tmp_path, dest, tmp_path / "img"):
        assert e.message == "layer is corrupt: Error -3 while decompressing data: " \
                            "invalid block type"


def test_gzip_crc_checked(tmp_path, dest):
    blob = bytearray(gzip.compress(BIG, mtime=0))
    blob[-8] ^= 0xFF
    layout_with_blob(tmp_path / "img", bytes(blob), sha256(BIG))
    for e in unpack_both(tmp_path, dest, tmp_path / "img"):
        assert e.message == "layer is corrupt: CRC check failed"


def test_gzip_members_and_padding(tmp_path, dest):
    """Concatenated gzip members and zero padding after them, as gzip allows."""
    blob = gzip.compress(BIG[:70_000], mtime=0) + gzip.compress(BIG[70_000:], mtime=0)
    layout_with_blob(tmp_path / "img", blob + bytes(1000), sha256(BIG))
    unpack_image("oci", tmp_path / "img", dest)
    assert (dest / "usr/f3").read_bytes() == bytes([3]) * 300_000


# -- the worker thread itself ------------------------------------------------------------------

class Source:
    """count chunks of 1 KiB, then an error if fail; records how far it was read."""

    def __init__(self, count: int, fail: BaseException | None = None):
        self.count, self.fail, self.reads = count, fail, 0

    def read(self, n=-1):
        if self.reads == self.count:
            if self.fail is not None:
                raise self.fail
            return b""
        self.reads += 1
        return bytes([self.reads % 256]) * 1024


def test_readahead_passes_bytes_in_order():
    with readahead.ReadAhead(Source(50), chunk=1024, depth=4) as r:
        data = b""
        while chunk := r.read(700):
            data += chunk
    assert data == b"".join(bytes([i % 256]) * 1024 for i in range(1, 51))
    assert no_worker_left()


def reads_settle_at(source, want, timeout=5.0) -> int:
    """source.reads once it has reached want (the worker got that far), and 0.1 s later
    (it went no further)."""
    deadline = time.monotonic() + timeout
    while source.reads < want and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    return source.reads


def test_readahead_is_bounded():
    """The worker reads depth chunks ahead of the reader, plus the one it holds: that many,
    and no more."""
    source = Source(1000)
    with readahead.ReadAhead(source, chunk=1024, depth=4) as r:
        assert reads_settle_at(source, 4 + 1) == 4 + 1
        r.read(1024)
        assert reads_settle_at(source, 4 + 2) == 4 + 2
    assert no_worker_left()


def test_readahead_error_comes_where_it_happened():
    with readahead.ReadAhead(Source(3, Error("layer is corrupt: boom")), chunk=1024) as r:
        got = b"".join(r.read(1024) for _ in range(3))
        assert len(got) == 3 * 1024
        with pytest.raises(Error, match="boom"):
            r.read(1024)
        with pytest.raises(Error, match="boom"):  # and stays
            r.read(1024)
    assert no_worker_left()


def test_readahead_close_stops_a_blocked_worker():
    source = Source(10 ** 6)
    r = readahead.ReadAhead(source, chunk=1024, depth=2)
    r.read(10)
    r.close()
    assert no_worker_left()
    reads = source.reads
    time.sleep(0.1)
    assert source.reads == reads  # nothing reads the source once close() returned
    # and nothing it had read comes out after: what it still held was dropped
    assert r.read(10) == b""
    assert r.read() == b""


# -- headers parsed in the worker, files made in the caller's thread -----------------------

def test_whiteout_with_data_is_skipped(tmp_path):
    """An entry that does not use its data (a whiteout with content): the data is passed
    over, and the next entry is read where it starts."""
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(io.BytesIO(layer(file("x", b"1"), file("keep", b"k"))), root)
    apply_layer(io.BytesIO(layer(file(".wh.x", b"w" * 300_000), file("y", b"2"))), root)
    assert sorted(p.name for p in root.iterdir()) == ["keep", "y"]
    assert (root / "y").read_bytes() == b"2"


def test_parser_stops_with_the_unpacker(tmp_path, monkeypatch):
    """A bad entry early in a long layer: the worker had parsed a bounded number of headers
    ahead, not the whole layer, and is gone once the Error is raised."""
    parsed = []
    real = unpack._members

    def counting(tar):
        for m in real(tar):
            parsed.append(m.name)
            yield m

    monkeypatch.setattr(unpack, "_members", counting)
    entries = [file("a", b"1"), file("b/../../escape", b"x")]
    entries += [file(f"f{i}") for i in range(5000)]
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(Error, match="contains a '..' component"):
        apply_layer(io.BytesIO(layer(*entries)), root)
    assert len(parsed) <= 2 + (unpack.BATCHES_AHEAD + 2) * unpack.BATCH < 5000
    assert no_worker_left()


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_sparse_file_through_the_worker(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"middle")
        f.seek((8 << 20) - 3)
        f.write(b"end")
    (src / "after").write_bytes(b"after")
    archive = tmp_path / "s.tar"
    subprocess.run(["tar", "--sparse", "-C", str(src), "-cf", str(archive), "sparse", "after"],
                   check=True)
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(io.BytesIO(archive.read_bytes()), root)
    assert (root / "sparse").read_bytes() == (src / "sparse").read_bytes()
    assert (root / "after").read_bytes() == b"after"
