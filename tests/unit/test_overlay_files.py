"""overlay.py without mounting: unit names, the mount unit it writes and reads back, and what
removal and the store's sweep take away."""

import os
import subprocess

import pytest

from nspawnctl.store import overlay
from nspawnctl.store.containers import Store


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
    overlay.make_layers(tmp_path / "new", tmp_path / "lower", upper_from=src / "upper")
    assert (tmp_path / "new/upper/etc/hostname").read_text() == "src\n"
    assert (tmp_path / "new/work").is_dir()
    overlay.make_layers(tmp_path / "empty", tmp_path / "lower")
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
    overlay.make_layers(paths.overlays / "half", paths.images / "none")
    Store(paths).sweep()
    assert not overlay.unit_file(paths, "half").exists()
    assert not os.path.lexists(overlay.wants_link(paths, "half"))
    assert not (paths.overlays / "half").exists()


def test_prepare_tree_writes_the_identity_to_the_upper_layer_only(tmp_path):
    from nspawnctl.store.commit import prepare_tree
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


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root (CI runs as root)")
def test_make_layers_hides_the_bases_device_nodes(tmp_path):
    """A chown of a device node in the merged tree (systemd-nspawn's first start) would copy
    it up with mknod, which DevicePolicy=closed forbids on a host enforcing it: the layers
    start with whiteouts for them instead."""
    import stat

    lower = tmp_path / "lower"
    (lower / "dev/pts").mkdir(parents=True)
    (lower / "dev/shm").mkdir()
    os.chmod(lower / "dev/pts", 0o711)
    os.mknod(lower / "dev/console", stat.S_IFCHR | 0o600, os.makedev(5, 1))
    os.mknod(lower / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(lower / "dev/loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mknod(lower / "dev/pts/ptmx", stat.S_IFCHR | 0o000, os.makedev(5, 2))
    os.mknod(lower / "dev/initctl", stat.S_IFIFO | 0o600)  # no mknod permission needed
    os.symlink("/proc/self/fd", lower / "dev/fd")
    (lower / "etc").mkdir()
    overlay.make_layers(tmp_path / "a", lower)
    upper = tmp_path / "a/upper"

    def whiteouts(root):
        found = []
        for top, dirs, files in os.walk(root):
            for name in files + dirs:
                st = os.lstat(os.path.join(top, name))
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0):
                    found.append(os.path.relpath(os.path.join(top, name), root))
        return sorted(found)

    assert whiteouts(upper) == ["dev/console", "dev/loop9", "dev/null", "dev/pts/ptmx"]
    assert sorted(os.listdir(upper)) == ["dev"]
    assert stat.S_IMODE(os.stat(upper / "dev/pts").st_mode) == 0o711  # as overlayfs copies up
    # a clone of layers keeps the container's own entries; only what is missing is hidden
    os.unlink(upper / "dev/null")
    (upper / "dev/null").write_text("mine")
    overlay.make_layers(tmp_path / "b", lower, upper_from=upper)
    assert (tmp_path / "b/upper/dev/null").read_text() == "mine"
    assert whiteouts(tmp_path / "b/upper") == ["dev/console", "dev/loop9", "dev/pts/ptmx"]
    # mounted, the merged tree has no device node left for a chown to copy up
    merged = tmp_path / "merged"
    merged.mkdir()
    opts = overlay.options(lower, tmp_path / "b")
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]).returncode:
        pytest.skip("cannot mount an overlay here")
    try:
        nodes = [n for n in os.listdir(merged / "dev")
                 if stat.S_ISCHR(os.lstat(merged / "dev" / n).st_mode)
                 or stat.S_ISBLK(os.lstat(merged / "dev" / n).st_mode)]
        assert nodes == [] and sorted(os.listdir(merged / "dev")) == \
            ["fd", "initctl", "null", "pts", "shm"]
    finally:
        subprocess.run(["umount", str(merged)])
