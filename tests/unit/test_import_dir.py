"""`dir:` sources that are symlinks, or hold mounts: the tree named is copied (never the
symlink itself, which would make the container's tree the source), on its own filesystem, and
nothing is written outside the new tree."""

import os

import hostile
import pytest

from nspawnctl.sources import tarball

ROOT = os.geteuid() == 0
tmpfs_in = hostile.tmpfs_in


@pytest.fixture
def store(tmp_path, monkeypatch):
    from nspawnctl.paths import Paths
    from nspawnctl.store.containers import Store
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    return Store(Paths.from_env())


@pytest.fixture
def linked_source(tmp_path):
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hostname").write_text("original\n")
    (src / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (src / "bin").mkdir()
    (src / "bin/sh").write_text("#!")
    link = tmp_path / "link"
    link.symlink_to(src)
    return src, link


def test_import_dir_copies_what_a_symlink_names(tmp_path, linked_source):
    from nspawnctl.ops.create import prepare_tree
    src, link = linked_source
    tree = tmp_path / "stage" / "tree"
    tree.parent.mkdir()
    tarball.import_dir(link, tree)
    assert not tree.is_symlink() and tree.is_dir()
    assert (tree / "bin/sh").read_text() == "#!"
    prepare_tree(tree, "copy")
    assert (tree / "etc/hostname").read_text() == "copy\n"
    assert (src / "etc/hostname").read_text() == "original\n"
    assert (src / "etc/machine-id").read_text().strip()


def test_import_dir_stays_on_one_filesystem(tmp_path, linked_source, tmpfs_in):
    src, link = linked_source
    tmpfs_in(src / "mnt")
    tree = tmp_path / "tree"
    tarball.import_dir(link, tree)
    assert (tree / "mnt").is_dir() and os.listdir(tree / "mnt") == []


@pytest.mark.skipif(not ROOT, reason="create needs root")
def test_create_from_a_symlinked_dir_leaves_the_source_alone(tmp_path, linked_source, store):
    from nspawnctl.ops.create import create
    from nspawnctl.settings.model import ContainerConfig
    from nspawnctl.sources.debootstrap import BootstrapSpec
    src, link = linked_source
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    create(store.paths, "fromlink", f"dir:{link}", BootstrapSpec(), ContainerConfig(),
           report=lambda m: None)
    tree = store.paths.tree("fromlink")
    assert not tree.is_symlink() and (tree / "etc/hostname").read_text() == "fromlink\n"
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
