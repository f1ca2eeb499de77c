"""nspawnctl unpacks images that podman, skopeo and umoci wrote exactly as umoci does.

Each image is unpacked by nspawnctl and by `umoci unpack` (from an OCI layout
of the same image) and the trees are compared entry by entry: type, mode,
owner, size, content hash, link target and mtime.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import imagetools  # noqa: E402

from nspawnctl.sources.oci import unpack_image  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="podman import and umoci unpack keep owners as root"),
    pytest.mark.skipif(bool(imagetools.missing_tools()),
                       reason=f"needs {', '.join(imagetools.missing_tools())}"),
]


def edit_first_layer(rootfs: Path) -> None:
    """Changes umoci turns into a second layer: whiteouts, replacements, new files."""
    (rootfs / "etc/os-release").unlink()                # whiteout of a file
    shutil.rmtree(rootfs / "home/user")                 # whiteout of a directory
    (rootfs / "bin/ls").unlink()                        # symlink replaced by a file
    (rootfs / "bin/ls").write_text("#!/bin/sh\necho ls\n")
    os.chmod(rootfs / "bin/ls", 0o755)
    (rootfs / "etc/hostname").write_text("layered\n")   # new file
    os.chmod(rootfs / "etc/shadow", 0o600)              # metadata-only change
    (rootfs / "srv/data").mkdir(parents=True)
    os.chown(rootfs / "srv/data", 33, 33)


def edit_second_layer(rootfs: Path) -> None:
    shutil.rmtree(rootfs / "srv")                       # what the last layer added, gone again
    (rootfs / "etc/hostname").write_text("twice\n")
    (rootfs / "var/empty").rmdir()
    (rootfs / "var/empty").write_text("a file now\n")   # directory replaced by a file


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    work = tmp_path_factory.mktemp("images")
    tree = imagetools.make_busybox_tree(work / "tree")
    podman = imagetools.Podman(work)
    try:
        name = podman.import_tree(tree, "localhost/nspawnctl-test:1")
        paths = {
            "oci-archive": podman.save(name, "oci-archive", work / "podman-oci.tar"),
            "docker-archive": podman.save(name, "docker-archive", work / "podman-docker.tar"),
        }
    finally:
        podman.cleanup()
    layout = work / "layout"
    imagetools.skopeo_to_oci_dir(f"oci-archive:{paths['oci-archive']}", layout, "base")
    imagetools.skopeo_to_oci_dir(f"docker-archive:{paths['docker-archive']}", layout, "docker")
    imagetools.umoci_add_layer(layout, "base", "layered", edit_first_layer, work)
    imagetools.umoci_add_layer(layout, "layered", "layered2", edit_second_layer, work)
    imagetools.run("skopeo", "copy", "--quiet", "--dest-compress-format", "zstd",
                   f"oci:{layout}:layered2", f"oci:{work / 'zstd'}:layered2")
    imagetools.run("skopeo", "copy", "--quiet", f"oci:{layout}:layered2",
                   f"oci-archive:{work / 'layered2.tar'}")
    return work, paths, layout


# (nspawnctl source, umoci reference tag in the layout)
CASES = {
    "podman-oci-archive": (lambda w, p, l: ("oci-archive", p["oci-archive"], None), "base"),
    "podman-docker-archive": (lambda w, p, l: ("docker-archive", p["docker-archive"], None),
                              "docker"),
    "skopeo-oci-dir": (lambda w, p, l: ("oci", l, "base"), "base"),
    "umoci-two-layers": (lambda w, p, l: ("oci", l, "layered"), "layered"),
    "umoci-three-layers": (lambda w, p, l: ("oci", l, "layered2"), "layered2"),
    "skopeo-oci-archive-three-layers": (lambda w, p, l: ("oci-archive", w / "layered2.tar",
                                                         None), "layered2"),
    "skopeo-zstd-three-layers": (lambda w, p, l: ("oci", w / "zstd", "layered2"), "layered2"),
}


@pytest.mark.parametrize("source,tag", CASES.values(), ids=CASES.keys())
def test_same_tree_as_umoci(images, source, tag, tmp_path):
    work, paths, layout = images
    kind, path, ref = source(work, paths, layout)
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    config = unpack_image(kind, path, ours, ref=ref)
    theirs = imagetools.umoci_unpack(layout, tag, tmp_path / "bundle")
    diffs = imagetools.compare_trees(ours, theirs)
    # umoci makes its rootfs 0700 when the image has no entry for "/"; podman's have one.
    diffs = [d for d in diffs if not d.startswith(".: ")]
    assert diffs == []
    assert config.cmd == ("/bin/sh",)


def test_layers_did_what_they_say(images, tmp_path):
    work, paths, layout = images
    ours = tmp_path / "ours"
    ours.mkdir()
    unpack_image("oci", layout, ours, ref="layered2")
    assert not (ours / "etc/os-release").exists()
    assert not (ours / "home/user").exists() and (ours / "home").is_dir()
    assert (ours / "bin/ls").read_text() == "#!/bin/sh\necho ls\n"
    assert (ours / "etc/hostname").read_text() == "twice\n"
    assert not (ours / "srv").exists()
    assert (ours / "var/empty").read_text() == "a file now\n"
    assert (ours / "bin/su").stat().st_mode & 0o4000
    assert (ours / "bin/su").stat().st_ino == (ours / "bin/su-hardlink").stat().st_ino
    assert (ours / "tmp").stat().st_mode & 0o1777 == 0o1777
