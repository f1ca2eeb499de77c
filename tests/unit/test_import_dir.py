"""`dir:` sources that are symlinks, or hold mounts: the tree named is copied (never the
symlink itself, which would make the container's tree the source), on its own filesystem, and
nothing is written outside the new tree."""

import os

import hostile
import pytest

from nspawnctl.errors import Error
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
    from nspawnctl.store.commit import prepare_tree
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
    from nspawnctl.sources.base import Request
    from tests.unit.fakes import context
    src, link = linked_source
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    create(context(store.paths), "fromlink", f"dir:{link}", ContainerConfig(),
           Request(store.paths))
    tree = store.paths.tree("fromlink")
    assert not tree.is_symlink() and (tree / "etc/hostname").read_text() == "fromlink\n"
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


def test_import_dir_racing_a_writer_never_reads_outside_the_source(tmp_path):
    """dir: may name a tree someone writes meanwhile (a running container's): a thread flips
    a directory of it with a symlink to other files of the same names (renameat2
    RENAME_EXCHANGE, so no name is ever missing) while the import runs; nothing of those
    files may come in.  (cp -a, which resolves each path again, read them.)"""
    import ctypes
    import threading
    libc = ctypes.CDLL(None, use_errno=True)
    src, secret = tmp_path / "src", tmp_path / "secret"
    (src / "sub").mkdir(parents=True)
    secret.mkdir()
    for i in range(2000):
        (src / "sub" / f"f{i}").write_text("the source's\n")
        (secret / f"f{i}").write_text("SECRET\n")
    os.symlink(secret, src / "link")
    stop, flips = threading.Event(), [0]

    def flip():
        a, b = os.fsencode(src / "sub"), os.fsencode(src / "link")
        while not stop.is_set():
            flips[0] += libc.renameat2(-100, a, -100, b, 2) == 0  # RENAME_EXCHANGE
    thread = threading.Thread(target=flip)
    thread.start()
    failed = []
    try:
        for n in range(5):
            try:
                tarball.import_dir(src, tmp_path / f"tree{n}")
            except Error as e:
                failed.append(e.message)
    finally:
        stop.set()
        thread.join()
    assert flips[0] > 0
    leaked = [path for n in range(5) for path in (tmp_path / f"tree{n}").rglob("*")
              if path.is_file() and not path.is_symlink() and path.read_text() == "SECRET\n"]
    assert leaked == []
    assert failed == []
