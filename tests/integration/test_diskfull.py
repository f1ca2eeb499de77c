"""Disk full: create and import onto a filesystem too small for the result.

A 40 MB tmpfs is mounted over /var/lib/machines (where containers are staged and installed) or
over /var/lib/nspawnctl/images (where base trees are built and cached), and a create that needs
more is made: a clone of the cached default base (~100 MB), an import of a tarball of it, an
OCI archive with a 60 MB file, and a debootstrap.  Each must fail with one clear line that says
the disk is full, leave no partial tree, settings or cache entry, and give the space back.
"""

import contextlib
import json
import re
import shutil

import pytest

from tests import imagetools
from tests.integration.helpers import MACHINES, STATE, store_problems
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

IMAGES = f"{STATE}/images"
SMALL = "40m"
BIG_FILE = 60 << 20        # more than SMALL, so neither its base tree nor a clone fits
SLACK = 1 << 20            # what may stay used on the small fs: empty staging dir, lock files
FULL = re.compile(r"no space left|disk is full|not enough disk space", re.IGNORECASE)


@pytest.fixture(scope="module")
def tarball(host, nspawnctl):
    """A tarball of the default container's tree (its base is cached from here on)."""
    nspawnctl("create", "dfull-src")
    path = "/root/dfull-tree.tar"
    r = host.run(["tar", "--numeric-owner", "-C", f"{MACHINES}/dfull-src", "-cf", path, "."])
    assert r.returncode == 0, str(r)
    nspawnctl("remove", "dfull-src")
    yield path
    host.run(["rm", "-f", path])


@pytest.fixture(scope="module")
def big_image(host, tmp_path_factory):
    """An OCI archive of busybox plus a 60 MB file (zeros: a small archive, a big tree)."""
    work = tmp_path_factory.mktemp("diskfull")
    layer = ib.layer(
        ib.dir("bin"), ib.file("bin/busybox", imagetools.BUSYBOX.read_bytes(), 0o755),
        ib.symlink("bin/sh", "busybox"),
        ib.dir("etc"), ib.file("etc/os-release", b"ID=busybox\n"),
        ib.dir("srv"), ib.file("srv/big", bytes(BIG_FILE)))
    config = ib.image_config([ib.sha256(layer)], User=None,
                             Entrypoint=["/bin/sh", "-c", "sleep 1000"], Cmd=None)
    ib.oci_layout(work / "big", [layer], config=config)
    archive = ib.tar_tree(work / "big", work / "big.tar")
    inside = "/root/dfull-big.tar"
    shutil.copyfile(archive, host.path(inside))
    yield inside
    host.run(["rm", "-f", inside])


def used_bytes(host, path) -> int:
    return int(host.run(["df", "--output=used", "-B1", path]).stdout.split()[-1])


@contextlib.contextmanager
def small_fs(host, path):
    """A 40 MB tmpfs over path for the with-block.

    What path held is hidden meanwhile, so only `create` runs under it: any command that
    sweeps the whole store (list, status...) would take the hidden containers' settings for
    leftovers without a tree."""
    assert host.run(["mountpoint", "-q", path]).returncode != 0, f"{path} is mounted already"
    r = host.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL},mode=0700", "tmpfs", path])
    assert r.returncode == 0, str(r)
    try:
        yield
    finally:
        r = host.run(["umount", path])
        assert r.returncode == 0, str(r)


def fails_for_full_disk(host, nspawnctl, figures, what, path, name, *args):
    """create NAME ARGS on the small fs at path: one clear line saying the disk is full, no
    trace of NAME, everything but an empty staging directory and lock files gone."""
    before = used_bytes(host, path)
    r = nspawnctl.fails("create", name, *args)
    assert FULL.search(r.error), r.stderr
    left = host.run(["find", path, "-mindepth", "1",
                     "!", "-path", f"{path}/.nspawnctl-staging", "!", "-name", ".*.lock"]).stdout
    assert left == "", f"left on the full fs:\n{left}"
    for settings in (f"/etc/systemd/nspawn/{name}.nspawn",
                     f"/etc/systemd/system/systemd-nspawn@{name}.service.d"):
        assert host.run(["test", "-e", settings]).returncode != 0, settings
    after = used_bytes(host, path)
    assert after <= before + SLACK, f"{after - before} bytes not given back"
    figures(f"disk full: {what}", f"{r.error!r}; {after - before} bytes kept")
    return r


@pytest.fixture
def unchanged(host, nspawnctl):
    """The store is consistent afterwards and has the same containers and base trees."""
    def snapshot():
        return (host.run(["ls", "-A", MACHINES]).stdout,
                sorted(row["key"] for row in json.loads(nspawnctl("images", "--json").stdout)))
    before = snapshot()
    yield
    assert store_problems(host, nspawnctl) == []
    assert snapshot() == before


def test_clone_of_the_cached_base(host, nspawnctl, tarball, unchanged, figures):
    with small_fs(host, MACHINES):
        r = fails_for_full_disk(host, nspawnctl, figures, "clone of the cached base",
                                MACHINES, "dfull-clone")
        assert "using cached base tree" in r.stderr  # a cache hit: no bootstrap was tried


def test_tarball_import(host, nspawnctl, tarball, unchanged, figures):
    with small_fs(host, MACHINES):
        fails_for_full_disk(host, nspawnctl, figures, "create --from tar:", MACHINES,
                            "dfull-tar", "--from", f"tar:{tarball}")


def test_oci_base_tree_does_not_fit(host, nspawnctl, big_image, unchanged, figures):
    # The image's base tree is unpacked into the cache first: that is what runs out of space.
    with small_fs(host, IMAGES):
        fails_for_full_disk(host, nspawnctl, figures, "OCI base tree unpack", IMAGES,
                            "dfull-oci", "--from", f"oci-archive:{big_image}")


def test_bootstrap_does_not_fit(host, nspawnctl, tarball, unchanged, figures):
    # The cached default base is hidden by the mount: this create bootstraps a new one there.
    with small_fs(host, IMAGES):
        fails_for_full_disk(host, nspawnctl, figures, "debootstrap of a base tree", IMAGES,
                            "dfull-boot")


def test_oci_clone_does_not_fit(host, nspawnctl, big_image, figures):
    # The base tree fits in the cache (the real disk), the container's copy of it does not.
    keys_before = {row["key"] for row in json.loads(nspawnctl("images", "--json").stdout)}
    with small_fs(host, MACHINES):
        fails_for_full_disk(host, nspawnctl, figures, "OCI container clone", MACHINES,
                            "dfull-oci", "--from", f"oci-archive:{big_image}")
    assert store_problems(host, nspawnctl) == []
    # What stays is the whole base tree, a cache entry like any other: the next create of
    # the image is a cache hit.  It is dropped here so as not to weigh on later tests.
    new = {row["key"] for row in json.loads(nspawnctl("images", "--json").stdout)} - keys_before
    assert len(new) == 1, new
    key = new.pop()
    assert host.run(["test", "-f", f"{IMAGES}/{key}/meta.json"]).returncode == 0
    host.run(["rm", "-rf", f"{IMAGES}/{key}", f"{IMAGES}/.{key}.lock"])
