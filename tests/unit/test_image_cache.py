"""The base-tree cache of images: keyed by the full manifest digest, a hit held to the digest
its meta.json records, and the image resolved once: the build unpacks what was resolved, or
fails, whatever archive is at the path by then."""

import json
import os
import shutil
from pathlib import Path

import pytest
from imagebuild import docker_archive, file, layer, oci_layout, tar_tree

from nspawnctl.errors import Error
from nspawnctl.formats import platforms


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch):
    import platform
    monkeypatch.setattr(platforms, "ARCHES", {platform.machine(): "amd64"})


GOOD = layer(file("etc/os-release", b"ID=test\n"))


def image_archive(tmp_path, name: str, layers: list[bytes]) -> Path:
    built = tmp_path / f"{name}-layout"
    oci_layout(built, layers)
    return tar_tree(built, tmp_path / f"{name}.tar")


def test_cache_key_is_the_full_digest(tmp_path):
    from nspawnctl.sources.oci.source import image_base
    oci_layout(tmp_path / "img", [GOOD])
    base = image_base(f"oci:{tmp_path / 'img'}", None, print)
    digest = base.image_config.digest
    assert base.key == "oci-sha256-" + digest.split(":")[1] and len(base.key) == 11 + 64
    assert base.meta["digest"] == digest


@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive"])
def test_archive_swapped_between_inspect_and_unpack(tmp_path, kind):
    """The build unpacks what _image_base resolved, or fails: never the archive now there."""

    from nspawnctl.sources.oci.source import image_base
    first, second = layer(file("which", b"first")), layer(file("which", b"second"))
    if kind == "oci-archive":
        a, b = image_archive(tmp_path, "a", [first]), image_archive(tmp_path, "b", [second])
    else:
        a = docker_archive(tmp_path / "a.tar", [first])
        b = docker_archive(tmp_path / "b.tar", [second])
    path = tmp_path / "img.tar"
    shutil.copy(a, path)
    base = image_base(f"{kind}:{path}", None, print)
    os.replace(b, path)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(Error, match="missing|does not match|has no layer"):
        base.build(dest)
    assert not (dest / "which").exists() or (dest / "which").read_bytes() == b"first"


def test_cache_hit_is_held_to_its_digest(tmp_path, monkeypatch):
    from nspawnctl.paths import Paths
    from nspawnctl.store.images import ensure_image
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    paths = Paths.from_env()
    entry = paths.images / "oci-sha256-aaaa"
    (entry / "tree").mkdir(parents=True)
    (entry / "meta.json").write_text(json.dumps({"digest": "sha256:bbbb"}))
    built = []
    with pytest.raises(Error, match="cached base tree oci-sha256-aaaa is recorded as digest "
                                    "sha256:bbbb, not sha256:aaaa"):
        ensure_image(paths, "oci-sha256-aaaa", {"digest": "sha256:aaaa"}, built.append, print)
    assert built == []
    (entry / "meta.json").write_text(json.dumps({"digest": "sha256:aaaa"}))
    assert ensure_image(paths, "oci-sha256-aaaa", {"digest": "sha256:aaaa"}, built.append,
                        print) == (entry, True)


@pytest.mark.parametrize("check, kept", [({"Test": ["CMD-SHELL", "true"]}, True),
                                         ({"Test": ["NONE"]}, False), (None, False)])
def test_the_base_keeps_whether_the_image_has_a_check(tmp_path, check, kept):
    """For spec (stacks/spec.py): a container made without its image's check says so."""
    from imagebuild import image_config, sha256

    from nspawnctl.sources.oci.source import image_base
    config = image_config([sha256(GOOD)], "amd64", "linux", **(
        {"Healthcheck": check} if check else {}))
    oci_layout(tmp_path / "img", [GOOD], config=config)
    assert image_base(f"oci:{tmp_path / 'img'}", None, print).meta["health_check"] is kept
