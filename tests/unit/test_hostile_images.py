"""Hostile images: the outer archive is bounded like its layers, a layer thousands of levels
deep unpacks, nested indexes are looked through once per digest however often named, and an
image is unpacked from the one resolution of it.  Compression lives in one module for images
and tarballs alike."""

import json
import sys
from pathlib import Path

import hostile
import pytest
from imagebuild import dir, file, layer, oci_layout, sha256, write_manifest

from nspawnctl.errors import Error
from nspawnctl.formats import platforms
from nspawnctl.fs import walk as fswalk
from nspawnctl.sources import compression, oci, tarball

fast_tmp, few_fds = hostile.fast_tmp, hostile.few_fds


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch):
    import platform
    monkeypatch.setattr(platforms, "ARCHES", {platform.machine(): "amd64"})


GOOD = layer(dir("etc"), file("etc/os-release", b"ID=test\n"))


def test_one_compression_module():
    """Sniffing and error wrapping live in sources/compression.py, for tar: and images."""
    assert tarball.compression is compression and oci.layers.compression is compression
    for module in (tarball, oci.layers, oci.layout, oci):
        source = Path(module.__file__).read_text()
        assert "GzipFile" not in source and "ZstdDecompressor" not in source


def test_oci_archive_headers_are_bounded(tmp_path):
    archive = tmp_path / "img.tar"
    with open(archive, "wb") as f:
        for chunk in hostile.pax_bomb(1 << 30):
            f.write(chunk)
            if f.tell() > 4 << 20:
                break
    with pytest.raises(Error, match="image archive header at byte 0 .* more than the limit"):
        oci.inspect_image("oci-archive", archive)


def test_oci_archive_member_count_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(oci.layout, "MAX_ARCHIVE_MEMBERS", 10)
    archive = tmp_path / "img.tar"
    archive.write_bytes(b"".join(hostile.file_entry(f"f{i}") for i in range(11)) + hostile.end())
    with pytest.raises(Error, match="more than 10 files"):
        oci.inspect_image("oci-archive", archive)


def test_deep_image_unpacks_sizes_and_goes(fast_tmp, few_fds):
    assert 5000 > sys.getrecursionlimit()
    oci_layout(fast_tmp / "img", [hostile.deep_layer(5000)])
    dest = fast_tmp / "dest"
    dest.mkdir()
    oci.unpack_image("oci", fast_tmp / "img", dest)
    assert hostile.listdir_deep(dest, "/".join(["d"] * 5000)) == ["bottom"]
    assert fswalk.tree_size(dest) >= 512  # the bottom's block, 5000 levels down
    fswalk.remove_tree(dest)
    assert not dest.exists()


# -- nested indexes: each digest looked at once ----------------------------------------------

def test_index_fanout_reads_each_blob_once(tmp_path, monkeypatch):
    root = tmp_path / "img"
    host = write_manifest(root, [GOOD], arch="amd64").manifest
    other = write_manifest(root, [GOOD], arch="arm64").manifest
    hostile.index_fanout(root, fanout=20, levels=4, host=host, other=other)
    reads, looks = [], []
    real = oci.layout.read_blob_json
    monkeypatch.setattr(oci.layout, "read_blob_json",
                        lambda layout, desc, what: reads.append(desc.digest) or real(layout, desc,
                                                                                     what))
    # Every look at a document, also one its cache answers: the walk, not only the reads,
    # is bounded (a walk that looked at each index every time it is named would look at the
    # deepest one 20**3 times, reading it once)
    blob_json = oci.layout.Layout.blob_json
    monkeypatch.setattr(oci.layout.Layout, "blob_json",
                        lambda self, desc, what: looks.append(desc.digest) or blob_json(
                            self, desc, what))
    assert oci.inspect_image("oci", root).digest == host["digest"]
    assert len(reads) == len(set(reads)) <= 4 + 2 + 2  # 4 indexes, 2 manifests, 2 configs
    assert len(looks) == len(set(looks)) <= 4 + 2 + 2


def test_image_unpacked_from_its_resolution(tmp_path):
    oci_layout(tmp_path / "img", [GOOD])
    resolved = oci.resolve_image("oci", tmp_path / "img")
    dest = tmp_path / "dest"
    dest.mkdir()
    assert len(oci.unpack_resolved(resolved, dest)) == len(resolved.image.layers)
    assert (dest / "etc/os-release").read_text() == "ID=test\n"
    assert sha256(GOOD) in json.dumps(resolved.image.config)
