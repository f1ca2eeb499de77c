"""A base tree built on the cached tree of an image whose layers are its first ones
(store/chains.py): the same tree as unpacking every layer, only the new layers unpacked, and
the earlier tree never changed by it."""

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest
from imagebuild import dir, file, hardlink, layer, oci_layout, symlink

from nspawnctl.formats import platforms
from nspawnctl.paths import Paths
from nspawnctl.sources.oci.source import image_base
from nspawnctl.store import chains
from nspawnctl.store.images import ensure_image


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch):
    import platform
    monkeypatch.setattr(platforms, "ARCHES", {platform.machine(): "amd64"})


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    return Paths.from_env()


# A scratch-like base (no /usr: make_runnable adds one), a runtime on it, then apps.
BASE = layer(dir("bin"), file("bin/app", b"base app\n", mode=0o755), file("etc/motd", b"hi\n"),
             file("etc/gone", b"removed later\n"))
RUNTIME = layer(dir("lib"), file("lib/runtime.so", b"runtime\n"), symlink("lib/link", "runtime.so"))
APP = layer(file("bin/app", b"new app\n", mode=0o700), file("etc/.wh.gone"),
            dir("usr", mode=0o750), file("usr/own", b"the image's own /usr\n"))


def build(paths: Paths, tmp_path: Path, name: str, layers: list[bytes],
          reuse: bool = True) -> tuple[Path, list[str]]:
    oci_layout(tmp_path / name, layers)
    said: list[str] = []
    base = image_base(f"oci:{tmp_path / name}", None, said.append, boot=False,
                      cmd=("/bin/app",), paths=paths if reuse else None)
    entry, _ = ensure_image(paths, base.key, base.meta, base.build, said.append)
    return entry / "tree", said


def snapshot(tree: Path) -> dict:
    """Everything a tree says about itself but inode numbers and times of directories."""
    seen = {}
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(root, name)
            st = path.lstat()
            what = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                what += (path.read_bytes(), st.st_mtime)
            elif stat.S_ISLNK(st.st_mode):
                what += (os.readlink(path),)
            seen[str(path.relative_to(tree))] = what
    return seen


def test_second_image_starts_from_the_first_ones_tree(paths, tmp_path):
    first, _ = build(paths, tmp_path, "first", [BASE, RUNTIME])
    first_before = snapshot(first)
    second, said = build(paths, tmp_path, "second", [BASE, RUNTIME, APP])
    assert "reusing the tree of 2 of its 3 layers" in said
    # the same tree as unpacking every layer of it
    whole, _ = build(Paths.under(tmp_path / "other"), tmp_path, "whole",
                     [BASE, RUNTIME, APP], reuse=False)
    assert snapshot(second) == snapshot(whole)
    assert (second / "usr/own").read_bytes() == b"the image's own /usr\n"
    assert stat.S_IMODE((second / "usr").stat().st_mode) == 0o750  # the image's, not added
    # files shared, and the first tree as it was (the app replaced, the whiteout applied in
    # the second only)
    assert (second / "lib/runtime.so").stat().st_ino == (first / "lib/runtime.so").stat().st_ino
    assert (second / "bin/app").stat().st_ino != (first / "bin/app").stat().st_ino
    assert snapshot(first) == first_before
    assert (first / "etc/gone").exists() and not (second / "etc/gone").exists()
    # its own chain, for the next image
    assert (second.parent / chains.CHAIN).is_file()


def test_an_image_sharing_some_of_a_trees_layers_starts_from_those(paths, tmp_path):
    first, _ = build(paths, tmp_path, "first", [BASE, RUNTIME])
    other = layer(file("lib/other", b"other\n"))
    second, said = build(paths, tmp_path, "second", [BASE, other])
    assert "reusing the tree of 1 of its 2 layers" in said  # the one kept while first unpacked
    assert not (second / "lib/runtime.so").exists()
    whole, _ = build(Paths.under(tmp_path / "other"), tmp_path, "whole", [BASE, other],
                     reuse=False)
    assert snapshot(second) == snapshot(whole)
    assert (second / "etc/motd").stat().st_ino == (first / "etc/motd").stat().st_ino


def test_prune_removes_the_kept_layers_of_images_gone(paths, tmp_path):
    from nspawnctl.store.images import prune
    first, _ = build(paths, tmp_path, "first", [BASE, RUNTIME])
    kept = paths.images / (chains.PREFIX + chains.chain_id(
        [json.loads((first.parent / chains.CHAIN).read_text())["diff_ids"][0]]))
    assert (kept / "tree/etc/motd").is_file()
    assert prune(paths, lambda: {first.parent.name: 1}) == []
    assert kept.is_dir()  # still the first layer of an image that stays
    assert prune(paths, lambda: {}) == [first.parent.name]
    assert not kept.exists()
    assert [e for e in os.listdir(paths.images) if not e.startswith(".nspawnctl")] == []


def test_a_tree_locked_by_prune_or_a_build_is_not_waited_for(paths, tmp_path):
    first, _ = build(paths, tmp_path, "first", [BASE])
    fd = os.open(paths.images / f".{first.parent.name}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        second, said = build(paths, tmp_path, "second", [BASE, APP])
    finally:
        os.close(fd)
    assert not any("reusing" in s for s in said)
    assert (second / "usr/own").is_file() and (second / "etc/motd").is_file()


def test_when_linking_fails_every_layer_is_unpacked(paths, tmp_path, monkeypatch):
    build(paths, tmp_path, "first", [BASE])
    def no_links(argv, **kw):
        raise chains.Error("cp: cannot create hard link: Too many links")
    monkeypatch.setattr(chains, "run", no_links)
    second, said = build(paths, tmp_path, "second", [BASE, APP])
    assert not any("reusing" in s for s in said)
    assert (second / "bin/app").read_bytes() == b"new app\n"
    assert (second / "etc/motd").read_bytes() == b"hi\n"


def test_a_broken_chain_record_is_not_used(paths, tmp_path):
    first, _ = build(paths, tmp_path, "first", [BASE])
    (first.parent / chains.CHAIN).write_text('{"diff_ids": ["x"], "bytes": "many"}')
    _, said = build(paths, tmp_path, "second", [BASE, APP])
    assert not any("reusing" in s for s in said)


def test_a_failed_unpack_keeps_no_layers(paths, tmp_path):
    bad = layer(hardlink("bin/other", "nowhere"))
    with pytest.raises(chains.Error, match="not in the tree"):
        build(paths, tmp_path, "bad", [BASE, RUNTIME, bad])
    assert [e for e in os.listdir(paths.images) if not e.startswith(".")] == []
    assert os.listdir(paths.images / ".nspawnctl-staging") == []
