"""overlay.py without mounting: unit names, the mount unit it writes and reads back, and what
removal and the store's sweep take away."""

import os

import pytest

from nspawnctl.paths import Paths
from nspawnctl.store import overlay
from nspawnctl.store.containers import Store


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    return Paths.from_env()


@pytest.mark.parametrize("path, escaped", [
    # what `systemd-escape --path` prints for each
    ("/var/lib/machines/web", "var-lib-machines-web"),
    ("/var/lib/machines/my-app", "var-lib-machines-my\\x2dapp"),
    ("/var/lib/machines/a.b_c:d", "var-lib-machines-a.b_c:d"),
    ("/.hidden/x", "\\x2ehidden-x"),
    ("/srv/with space/é", "srv-with\\x20space-\\xc3\\xa9"),
    ("/", "-"),
    ("/var/lib/machines/", "var-lib-machines"),
])
def test_escape_path_is_systemds(path, escaped):
    assert overlay.escape_path(path) == escaped


def test_unit_mounts_the_layers_over_the_base_and_is_enabled(paths):
    lower = paths.images / "debootstrap-0123/tree"
    overlay.write_unit(paths, "my-app", lower)
    # the unit is named after the tree's path (here below NSPAWNCTL_ROOT)
    assert overlay.mount_unit(paths, "my-app").endswith("-var-lib-machines-my\\x2dapp.mount")
    text = overlay.unit_file(paths, "my-app").read_text()
    layer = paths.overlays / "my-app"
    assert f"Where={paths.tree('my-app')}\n" in text
    assert (f"Options=lowerdir={lower},upperdir={layer}/upper,workdir={layer}/work,"
            "metacopy=on\n") in text
    assert f"RequiresMountsFor={lower} {layer}\n" in text
    assert "WantedBy=local-fs.target" in text
    link = overlay.wants_link(paths, "my-app")
    # enabled only once the tree is committed: an enabled unit would make its mount point at
    # boot, and the leftovers of a create cut short would look like a whole container
    assert not os.path.lexists(link)
    assert overlay.is_ours(paths, "my-app")
    overlay.enable(paths, "my-app")
    overlay.enable(paths, "my-app")  # twice is once
    assert link.parent.name == "local-fs.target.wants"
    assert os.readlink(link) == str(overlay.unit_file(paths, "my-app"))
    assert overlay.is_overlay(paths, "my-app")
    assert overlay.lower_of(paths, "my-app") == lower
    assert overlay.lower_of(paths, "other") is None


def test_make_layers_copies_another_containers_changes(tmp_path):
    src = tmp_path / "src"
    (src / "upper/etc").mkdir(parents=True)
    (src / "upper/etc/hostname").write_text("src\n")
    overlay.make_layers(tmp_path / "new", upper_from=src / "upper")
    assert (tmp_path / "new/upper/etc/hostname").read_text() == "src\n"
    assert (tmp_path / "new/work").is_dir()
    overlay.make_layers(tmp_path / "empty")
    assert os.listdir(tmp_path / "empty/upper") == []


def test_remove_files_keeps_a_unit_that_is_not_ours_when_sweeping(paths):
    unit = overlay.unit_file(paths, "theirs")
    unit.parent.mkdir(parents=True)
    unit.write_text("[Mount]\nWhat=/dev/sdb1\n")
    overlay.remove_files(paths, "theirs", only_ours=True)
    assert unit.exists()
    overlay.remove_files(paths, "theirs")
    assert not unit.exists()


def test_sweep_removes_layers_and_unit_of_a_container_that_never_committed(paths):
    # What a create killed after writing its settings but before its commit leaves.
    overlay.write_unit(paths, "half", paths.images / "k/tree")
    paths.overlays.mkdir(parents=True)
    overlay.make_layers(paths.overlays / "half")
    Store(paths).sweep()
    assert not overlay.unit_file(paths, "half").exists()
    assert not os.path.lexists(overlay.wants_link(paths, "half"))
    assert not (paths.overlays / "half").exists()


def test_prepare_tree_writes_the_identity_to_the_upper_layer_only(tmp_path):
    from nspawnctl.ops.create import prepare_tree
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc").chmod(0o751)
    (lower / "etc/machine-id").write_text("0123456789abcdef\n")
    (lower / "etc/machine-id").chmod(0o444)
    (lower / "etc/hostname").write_text("base\n")
    upper.mkdir()
    prepare_tree(lower, "web", upper=upper)
    assert (upper / "etc/hostname").read_text() == "web\n"
    assert (upper / "etc/machine-id").read_text() == ""
    # as overlayfs copies up: the directory and files keep the base's modes
    assert (upper / "etc").stat().st_mode & 0o7777 == 0o751
    assert (upper / "etc/machine-id").stat().st_mode & 0o7777 == 0o444
    assert (lower / "etc/hostname").read_text() == "base\n"
    assert (lower / "etc/machine-id").read_text() == "0123456789abcdef\n"
    # a clone's upper already has them: rewritten in place
    prepare_tree(lower, "web2", upper=upper)
    assert (upper / "etc/hostname").read_text() == "web2\n"
    assert (upper / "etc/hostname").stat().st_mode & 0o7777 == 0o644
