"""Reading and verifying OCI layouts and docker archives built here, good and bad."""

import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable

import pytest
from imagebuild import (
    OCI_INDEX,
    blob_file,
    dir,
    docker_archive,
    file,
    image_config,
    layer,
    oci_layout,
    sha256,
    symlink,
    tar_tree,
    write_blob,
    write_index,
    write_manifest,
)

from nspawnctl.errors import Error
from nspawnctl.formats import platforms
from nspawnctl.sources import compression, oci
from nspawnctl.sources.oci import ImageConfig, inspect_image, parse_reference, unpack_image

HOST_ARCH, OTHER_ARCH = "amd64", "arm64"


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch):
    """The images built here are amd64 unless told otherwise; so is the host, for the tests."""
    monkeypatch.setattr(platforms, "ARCHES", {platform.machine(): HOST_ARCH})

BASE = layer(dir("bin"), file("bin/sh", b"#!shell", mode=0o755), dir("etc"),
             file("etc/os-release", b"ID=test\n"), dir("srv"))
UPPER = layer(file("etc/.wh.os-release"), file("etc/hostname", b"box\n"),
              symlink("bin/ash", "sh"))


def listing(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = ("l:" + os.readlink(p) if p.is_symlink() else "d" if p.is_dir()
                    else "f:" + p.read_bytes().decode())
    return out


EXPECTED = {"bin": "d", "bin/sh": "f:#!shell", "bin/ash": "l:sh", "etc": "d",
            "etc/hostname": "f:box\n", "srv": "d"}


@pytest.fixture
def dest(tmp_path) -> Path:
    d = tmp_path / "dest"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def sentinel(tmp_path):
    """A directory next to everything; no image may change it."""
    s = tmp_path / "sentinel"
    s.mkdir()
    (s / "passwd").write_text("root:x:0:0")
    yield s
    assert sorted(p.name for p in s.iterdir()) == ["passwd"]
    assert (s / "passwd").read_text() == "root:x:0:0"


# -- good images ------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_oci_dir_layers_in_order(tmp_path, dest, compression):
    built = oci_layout(tmp_path / "img", [BASE, UPPER], compression=compression)
    config = unpack_image("oci", tmp_path / "img", dest)
    assert listing(dest) == EXPECTED
    assert config == ImageConfig(
        digest=built.manifest["digest"], entrypoint=("/bin/sh",), cmd=("-c", "echo hi"),
        env=("PATH=/usr/bin:/bin",), working_dir="/srv", user="1000:1000",
        exposed_ports=("80/tcp",), volumes=("/data",), architecture="amd64", os="linux")


def test_inspect_reads_no_layer(tmp_path, monkeypatch):
    built = oci_layout(tmp_path / "img", [BASE])
    blob_file(tmp_path / "img", built.layers[0]).unlink()  # inspect must not need it
    assert inspect_image("oci", tmp_path / "img").digest == built.manifest["digest"]
    with pytest.raises(Error, match="is missing"):
        unpack_image("oci", tmp_path / "img", tmp_path)


def test_oci_archive(tmp_path, dest):
    oci_layout(tmp_path / "img", [BASE, UPPER])
    archive = tar_tree(tmp_path / "img", tmp_path / "img.tar")
    unpack_image("oci-archive", archive, dest)
    assert listing(dest) == EXPECTED


def test_docker_archive_legacy(tmp_path, dest):
    archive = docker_archive(tmp_path / "d.tar", [BASE, UPPER])
    config = unpack_image("docker-archive", archive, dest)
    assert listing(dest) == EXPECTED
    assert config.digest.startswith("sha256:") and config.cmd == ("-c", "echo hi")


def test_docker_archive_that_is_oci(tmp_path, dest):
    oci_layout(tmp_path / "img", [BASE, UPPER])
    (tmp_path / "img" / "manifest.json").write_text("[]")  # docker >= 25 writes both
    unpack_image("docker-archive", tar_tree(tmp_path / "img", tmp_path / "i.tar"), dest)
    assert listing(dest) == EXPECTED


def test_docker_archive_with_symlinked_layer(tmp_path, dest):
    """docker save stores a repeated layer once and symlinks the others to it."""
    import tarfile
    h = sha256(BASE).split(":")[1]
    docker_archive(tmp_path / "d.tar", [BASE, BASE],
                   layer_names=[f"{h}/layer.tar", "again/layer.tar"])
    with tarfile.open(tmp_path / "d.tar") as src, tarfile.open(tmp_path / "l.tar", "w") as out:
        for m in src.getmembers():
            if m.name == "again/layer.tar":
                m.type, m.linkname, m.size = tarfile.SYMTYPE, f"../{h}/layer.tar", 0
                out.addfile(m)
            else:
                out.addfile(m, src.extractfile(m))
    unpack_image("docker-archive", tmp_path / "l.tar", dest)
    assert (dest / "bin/sh").read_bytes() == b"#!shell"


def test_ref_selection(tmp_path, dest):
    root = tmp_path / "img"
    a = write_manifest(root, [BASE], annotations={oci.REF_ANNOTATION: "a"})
    b = write_manifest(root, [BASE, UPPER], annotations={oci.REF_ANNOTATION: "b"})
    write_index(root, [a.manifest, b.manifest])
    kind, path, ref = parse_reference(f"oci:{root}:b")
    assert inspect_image(kind, path, ref).digest == b.manifest["digest"]
    assert inspect_image("oci", root, "a").digest == a.manifest["digest"]
    with pytest.raises(Error, match="no reference 'c'") as e:
        inspect_image("oci", root, "c")
    assert e.value.hint == "it has: a, b"


def test_nested_index_and_platform(tmp_path, dest):
    root = tmp_path / "img"
    host = write_manifest(root, [BASE], arch=HOST_ARCH,
                          platform={"os": "linux", "architecture": HOST_ARCH})
    other = write_manifest(root, [BASE, UPPER], arch=OTHER_ARCH,
                           platform={"os": "linux", "architecture": OTHER_ARCH})
    nested = write_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": [other.manifest, host.manifest]}).encode(),
                        OCI_INDEX)
    write_index(root, [nested])
    assert inspect_image("oci", root).digest == host.manifest["digest"]
    config = unpack_image("oci", root, dest, platform=f"linux/{OTHER_ARCH}")
    assert config.digest == other.manifest["digest"] and config.architecture == OTHER_ARCH
    assert listing(dest) == EXPECTED
    with pytest.raises(Error, match="no manifest for linux/s390x"):
        inspect_image("oci", root, platform="linux/s390x")


def test_foreign_single_image(tmp_path):
    oci_layout(tmp_path / "img", [BASE], arch=OTHER_ARCH)
    with pytest.raises(Error, match=f"no manifest for linux/{HOST_ARCH}"):
        inspect_image("oci", tmp_path / "img")
    assert inspect_image("oci", tmp_path / "img", platform=f"linux/{OTHER_ARCH}")


def test_sha512_blobs(tmp_path, dest, monkeypatch):
    oci_layout(tmp_path / "img", [BASE], algorithm="sha512")
    unpack_image("oci", tmp_path / "img", dest)
    assert (dest / "bin/sh").read_bytes() == b"#!shell"


@pytest.mark.parametrize("spec,expected", [
    ("oci-archive:/x/img.tar", ("oci-archive", Path("/x/img.tar"), None)),
    ("docker-archive:rel/d.tar", ("docker-archive", Path("rel/d.tar"), None)),
    ("oci:/no/such/dir:v1.2", ("oci", Path("/no/such/dir"), "v1.2")),
    ("oci:/no/such/dir", ("oci", Path("/no/such/dir"), None)),
])
def test_parse_reference(spec, expected):
    assert parse_reference(spec) == expected


@pytest.mark.parametrize("spec", ["oci", "oci:", "docker:x", "tar-archive:/x", "/x.tar",
                                  "oci::ref"])
def test_parse_reference_rejects(spec):
    with pytest.raises(Error, match="image source"):
        parse_reference(spec)


def test_parse_reference_dir_with_colon(tmp_path):
    d = tmp_path / "a:b"
    d.mkdir()
    assert parse_reference(f"oci:{d}") == ("oci", d, None)


# -- bad images: each is rejected with a message that says why ------------------------------

def tamper_json(path: Path, change: Callable[[dict], None]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def rewrite_manifest(root: Path, built, change: Callable[[dict], None]) -> None:
    """Change the manifest, store it as a new blob, point index.json at it."""
    manifest = json.loads(blob_file(root, built.manifest).read_bytes())
    change(manifest)
    desc = write_blob(root, json.dumps(manifest).encode(), built.manifest["mediaType"])
    write_index(root, [desc])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def bad_index_digest(root, b):
    tamper_json(root / "index.json",
                lambda i: i["manifests"][0].update(digest="sha256:../../../sentinel/passwd"))


def bad_layer_digest(root, b):
    rewrite_manifest(root, b, lambda m: m["layers"][0].update(digest="sha256:/etc/passwd"))


def bad_uppercase_digest(root, b):
    tamper_json(root / "index.json", lambda i: i["manifests"][0].update(
        digest=i["manifests"][0]["digest"].upper()))


def bad_algorithm(root, b):
    tamper_json(root / "index.json", lambda i: i["manifests"][0].update(
        digest="md5:" + "0" * 32))


def layer_byte_changed(root, b):
    flip_byte(blob_file(root, b.layers[0]))


def layer_extra_bytes(root, b):
    with open(blob_file(root, b.layers[0]), "ab") as f:
        f.write(b"\0")


def layer_wrong_size(root, b):
    rewrite_manifest(root, b, lambda m: m["layers"][0].update(size=m["layers"][0]["size"] - 1))


def config_byte_changed(root, b):
    flip_byte(blob_file(root, b.config))


def manifest_said_index(root, b):
    tamper_json(root / "index.json", lambda i: i["manifests"][0].update(mediaType=OCI_INDEX))


def manifest_type_mismatch(root, b):
    tamper_json(root / "index.json", lambda i: i["manifests"][0].update(
        mediaType="application/vnd.docker.distribution.manifest.v2+json"))


def layer_unknown_type(root, b):
    rewrite_manifest(root, b, lambda m: m["layers"][0].update(
        mediaType="application/vnd.example.exe"))


def config_unknown_type(root, b):
    rewrite_manifest(root, b, lambda m: m["config"].update(mediaType="text/plain"))


def diff_id_wrong(root, b):
    config = json.loads(blob_file(root, b.config).read_bytes())
    config["rootfs"]["diff_ids"][0] = sha256(b"something else")
    desc = write_blob(root, json.dumps(config).encode(), b.config["mediaType"])
    rewrite_manifest(root, b, lambda m: m.update(config=desc))


def diff_ids_missing(root, b):
    config = json.loads(blob_file(root, b.config).read_bytes())
    config["rootfs"]["diff_ids"] = []
    desc = write_blob(root, json.dumps(config).encode(), b.config["mediaType"])
    rewrite_manifest(root, b, lambda m: m.update(config=desc))


def no_oci_layout(root, b):
    (root / "oci-layout").unlink()


def index_not_json(root, b):
    (root / "index.json").write_text("{not json")


def index_too_large(root, b):
    (root / "index.json").write_text(" " * (oci.MAX_JSON_BYTES + 1))


def index_loop(root, b):
    """An index naming itself (well, its own earlier version) over and over."""
    desc = b.manifest
    for _ in range(oci.MAX_INDEX_DEPTH + 2):
        desc = write_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                            "manifests": [desc]}).encode(), OCI_INDEX)
    write_index(root, [desc])


def layer_not_gzip(root, b):
    data = b"not gzip at all" * 10
    path = blob_file(root, b.layers[0])
    path.write_bytes(data)
    rewrite_manifest(root, b, lambda m: m["layers"][0].update(digest=sha256(data),
                                                              size=len(data)))
    (root / "blobs/sha256" / sha256(data).split(":")[1]).write_bytes(data)


BAD = {
    "digest-is-a-path": (bad_index_digest, "invalid digest"),
    "layer-digest-is-a-path": (bad_layer_digest, "invalid digest"),
    "digest-uppercase": (bad_uppercase_digest, "invalid digest"),
    "digest-unknown-algorithm": (bad_algorithm, "invalid digest"),
    "layer-one-byte-changed": (layer_byte_changed, "does not match its digest"),
    "layer-extra-bytes": (layer_extra_bytes, "its descriptor says"),
    "layer-wrong-size": (layer_wrong_size, "its descriptor says"),
    "config-one-byte-changed": (config_byte_changed, "does not match its digest"),
    "manifest-said-to-be-index": (manifest_said_index, "but its descriptor says"),
    "manifest-type-mismatch": (manifest_type_mismatch, "but its descriptor says"),
    "layer-media-type-unknown": (layer_unknown_type, "unknown media type"),
    "config-media-type-unknown": (config_unknown_type, "unknown media type"),
    "diff-id-mismatch": (diff_id_wrong, "does not match its diff_id"),
    "diff-ids-missing": (diff_ids_missing, "0 layer diff_ids for 2 layers"),
    "no-oci-layout": (no_oci_layout, "no oci-layout file"),
    "index-not-json": (index_not_json, "not valid JSON"),
    "index-too-large": (index_too_large, "too large"),
    "index-nesting": (index_loop, "nest deeper"),
    "layer-not-gzip": (layer_not_gzip, "layer is corrupt"),
}


@pytest.mark.parametrize("tamper,message", BAD.values(), ids=BAD.keys())
def test_bad_oci_image(tamper, message, tmp_path, dest, sentinel, monkeypatch):
    root = tmp_path / "img"
    built = oci_layout(root, [BASE, UPPER])
    tamper(root, built)
    with pytest.raises(Error) as e:
        unpack_image("oci", root, dest)
    assert message in e.value.message
    archive = tar_tree(root, tmp_path / "img.tar")  # the same through an archive
    with pytest.raises(Error) as e:
        unpack_image("oci-archive", archive, dest)
    assert message in e.value.message


def zeros_layer(size: int) -> bytes:
    return layer(file("zeros", bytes(size)))


def test_decompression_bomb(tmp_path, dest, sentinel, monkeypatch):
    monkeypatch.setattr(compression, "BOMB_MIN_BYTES", 1 << 20)
    oci_layout(tmp_path / "img", [zeros_layer(16 << 20)])  # 16 MiB of zeros: ~16 KiB gzip
    with pytest.raises(Error, match="decompression bomb"):
        unpack_image("oci", tmp_path / "img", dest)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 2 << 20


def test_zstd_bomb(tmp_path, dest, monkeypatch):
    monkeypatch.setattr(compression, "BOMB_MIN_BYTES", 1 << 20)
    oci_layout(tmp_path / "img", [zeros_layer(16 << 20)], compression="zstd")
    with pytest.raises(Error, match="decompression bomb"):
        unpack_image("oci", tmp_path / "img", dest)


def test_total_size_limit(tmp_path, dest, monkeypatch):
    monkeypatch.setattr(compression, "MAX_TOTAL_BYTES", 64 << 10)
    oci_layout(tmp_path / "img", [layer(file("a", os.urandom(40 << 10))),
                                  layer(file("b", os.urandom(40 << 10)))])
    with pytest.raises(Error, match="beyond the limit"):
        unpack_image("oci", tmp_path / "img", dest)


def test_uncompressed_layers_not_held_to_ratio(tmp_path, dest, monkeypatch):
    """Zeros stored plainly are big but no bomb: the ratio is 1."""
    monkeypatch.setattr(compression, "BOMB_MIN_BYTES", 1 << 20)
    oci_layout(tmp_path / "img", [zeros_layer(4 << 20)], compression=None)
    unpack_image("oci", tmp_path / "img", dest)
    assert (dest / "zeros").stat().st_size == 4 << 20


def test_zstd_module_missing(tmp_path, dest, monkeypatch):
    oci_layout(tmp_path / "img", [BASE], compression="zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(Error, match="zstandard module is missing") as e:
        unpack_image("oci", tmp_path / "img", dest)
    assert "python3-zstandard" in e.value.hint


def test_compressed_outer_archive(tmp_path):
    import gzip
    (tmp_path / "x.tar.gz").write_bytes(gzip.compress(docker_archive(
        tmp_path / "d.tar", [BASE]).read_bytes()))
    with pytest.raises(Error, match="not an uncompressed tar"):
        inspect_image("docker-archive", tmp_path / "x.tar.gz")


def test_missing_archive(tmp_path):
    with pytest.raises(Error, match="no such file"):
        inspect_image("oci-archive", tmp_path / "nope.tar")


DOCKER_BAD = {
    "layer-path-dotdot": (dict(layer_names=["../../sentinel/passwd"]), "invalid layer file"),
    "layer-path-absolute": (dict(layer_names=["/etc/passwd"]), "invalid layer file"),
    "config-path-dotdot": (dict(manifest=[{"Config": "../x.json", "Layers": []}]),
                           "invalid config file"),
    "layer-missing": (dict(layer_names=["nope/layer.tar"], store_layers=False),
                      "has no layer 'nope/layer.tar'"),
    "no-images": (dict(manifest=[]), "lists no image"),
    "two-images": (dict(manifest=[{"RepoTags": ["a"]}, {"RepoTags": ["b"]}]), "several images"),
}


@pytest.mark.parametrize("kw,message", DOCKER_BAD.values(), ids=DOCKER_BAD.keys())
def test_bad_docker_archive(kw, message, tmp_path, dest, sentinel, monkeypatch):
    archive = docker_archive(tmp_path / "d.tar", [BASE], **kw)
    with pytest.raises(Error) as e:
        unpack_image("docker-archive", archive, dest)
    assert message in e.value.message


def test_docker_config_not_its_name(tmp_path, dest, monkeypatch):
    name = "0" * 64 + ".json"
    archive = docker_archive(tmp_path / "d.tar", [BASE], manifest=[
        {"Config": name, "RepoTags": [], "Layers": []}])
    import tarfile
    data = json.dumps(image_config([])).encode()
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        import io
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(Error, match="does not match its digest"):
        unpack_image("docker-archive", archive, dest)


def test_docker_layer_tampered(tmp_path, dest, monkeypatch):
    cfg = image_config([sha256(BASE)])
    archive = docker_archive(tmp_path / "d.tar", [UPPER], config=cfg)
    with pytest.raises(Error, match="does not match its digest"):
        unpack_image("docker-archive", archive, dest)
    assert list(dest.iterdir()) == []  # verified before anything was written


def test_corpus_size():
    assert len(BAD) + len(DOCKER_BAD) >= 20


def test_bomb_after_the_tar_end(tmp_path, dest, monkeypatch):
    """Zeros past the end-of-archive marker are still read (for the diff_id): still bounded."""
    monkeypatch.setattr(compression, "BOMB_MIN_BYTES", 1 << 20)
    oci_layout(tmp_path / "img", [BASE + bytes(16 << 20)])
    with pytest.raises(Error, match="decompression bomb"):
        unpack_image("oci", tmp_path / "img", dest)
