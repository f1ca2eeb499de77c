"""`create --overlay`: containers that share their base tree read-only and keep only their own
changes, in an overlayfs upper directory.

    /var/lib/machines/NAME                         the mount point: the container's tree
    /var/lib/machines/.nspawnctl-overlays/NAME/    its layers: upper/ (its changes) and work/
    /etc/systemd/system/var-lib-machines-NAME.mount

The mount unit is what makes the tree appear: enabled for local-fs.target, so it is mounted at
boot, and systemd-nspawn@.service's RequiresMountsFor=/var/lib/machines/%i mounts it before the
container starts, whatever happened since.  nspawnctl mounts it itself right after create (a
mount(2) call; systemd sees it appear and tracks it as that unit).  The layers stay on the
machines filesystem (overlayfs needs upper and work on one filesystem, and the store's renames
never cross one); the leading dot keeps them out of machinectl's and nspawnctl's lists.
"""

import contextlib
import os
import stat
from pathlib import Path

from ..errors import Error
from ..fs.copy import clone_tree
from ..fs.files import write_atomic
from ..fs.mounts import mount, unmount
from ..fs.walk import remove_tree
from ..paths import Paths
from ..systemd.unitfiles import render, template

WANTED_BY = "local-fs.target"  # as units/overlay.mount says


def escape_path(path: Path) -> str:
    """systemd's path escaping for unit names (systemd-escape --path)."""
    out = []
    for i, ch in enumerate(os.fsdecode(path).strip("/")):
        if ch == "/":
            out.append("-")
        elif (ch.isascii() and ch.isalnum()) or ch in ":_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out) or "-"


def mount_unit(paths: Paths, name: str) -> str:
    return escape_path(paths.tree(name)) + ".mount"


def unit_file(paths: Paths, name: str) -> Path:
    return paths.units / mount_unit(paths, name)


def wants_link(paths: Paths, name: str) -> Path:
    return paths.units / f"{WANTED_BY}.wants" / mount_unit(paths, name)


def layers(paths: Paths, name: str) -> Path:
    return paths.overlays / name


def is_overlay(paths: Paths, name: str) -> bool:
    return unit_file(paths, name).exists()


def options(lower: Path, layer_dir: Path) -> str:
    # Names are hostname labels and base keys are hex, so no path here holds the , or : that
    # overlayfs options would need escaped.
    return (f"lowerdir={lower},upperdir={layer_dir}/upper,workdir={layer_dir}/work,"
            "metacopy=on")


def make_layers(layer_dir: Path, lower: Path, upper_from: Path | None = None):
    """An empty pair of layers, or (for clone, upgrade) a copy of another container's changes;
    either way with lower's device nodes hidden (hide_device_nodes)."""
    layer_dir.mkdir(mode=0o700)
    if upper_from is None:
        (layer_dir / "upper").mkdir(mode=0o755)
    else:
        clone_tree(upper_from, layer_dir / "upper")
    hide_device_nodes(lower, layer_dir / "upper")
    (layer_dir / "work").mkdir(mode=0o700)


# overlayfs's whiteout: a character device numbered 0:0 in the upper layer.
WHITEOUT = os.makedev(0, 0)


def hide_device_nodes(lower: Path, upper: Path):
    """Whiteouts in upper for the device nodes under lower/dev (debootstrap's; OCI layers'
    are skipped at unpack), where upper has nothing of its own yet.

    The container never sees them: systemd-nspawn mounts a /dev of its own over them.  But
    its first start chowns the whole tree into the container's UID range, and overlayfs copies
    a chowned device node up with mknod(2), which the unit's DevicePolicy=closed forbids on a
    host whose cgroup v2 device controller enforces it: EPERM, "Failed to adjust UID/GID shift
    of OS tree", and the container never started.  (Found in the VM tier, on Debian's 6.1
    kernel; the testbed does not enforce device policy.)  nspawnctl makes the whiteouts as
    root outside any unit, where mknod is allowed."""
    dev = lower / "dev"
    if dev.is_symlink() or not dev.is_dir():
        return
    for top, _, files in os.walk(dev):  # a device node is never among the directories
        rel = Path(top).relative_to(lower)
        for name in files:
            st = os.lstat(Path(top) / name)
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            target = upper / rel / name
            if os.path.lexists(target):
                continue  # the container's own (or an earlier whiteout)
            _upper_dirs(lower, upper, rel)
            os.mknod(target, stat.S_IFCHR | 0o600, WHITEOUT)


def _upper_dirs(lower: Path, upper: Path, rel: Path):
    """upper/rel and its parents, each with its lower directory's owner and mode, as
    overlayfs would copy them up."""
    for part in [*reversed(rel.parents[:-1]), rel]:
        target = upper / part
        if not os.path.lexists(target):
            st = os.lstat(lower / part)
            target.mkdir()
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))


def write_unit(paths: Paths, name: str, lower: Path):
    """The mount unit (units/overlay.mount), written before the tree's commit; not enabled
    yet: see enable()."""
    write_atomic(unit_file(paths, name), render(
        "overlay.mount", name=name, lower=str(lower), layers=str(layers(paths, name)),
        tree=str(paths.tree(name)), options=options(lower, layers(paths, name))))


def enable(paths: Paths, name: str):
    """The symlink `systemctl enable` would make (written here to spare a daemon reload:
    systemd reads new unit files when they are first needed).  Only after the tree's commit:
    at boot, an enabled mount unit makes its mount point, which would turn the leftovers of a
    create cut short into a tree that looks whole."""
    link = wants_link(paths, name)
    link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.symlink(unit_file(paths, name), link)


def is_ours(paths: Paths, name: str) -> bool:
    try:
        with open(unit_file(paths, name)) as f:
            # its first line, as units/overlay.mount has it, says whose it is
            return f.readline() == template("overlay.mount").splitlines(keepends=True)[0]
    except OSError:
        return False


def lower_of(paths: Paths, name: str) -> Path | None:
    """The base tree an overlay container's unit mounts below its changes."""
    try:
        text = unit_file(paths, name).read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("Options="):
            for option in line[len("Options="):].split(","):
                key, _, value = option.partition("=")
                if key == "lowerdir":
                    return Path(value)
    return None


def mount_tree(paths: Paths, name: str, lower: Path):
    """Mount NAME's tree right after its create (later, the mount unit does it)."""
    tree = paths.tree(name)
    try:
        mount("overlay", tree, "overlay", options(lower, layers(paths, name)))
    except OSError as exc:
        raise Error(f"cannot mount the overlay on {tree}: {exc.strerror}",
                    hint="--overlay needs a kernel with overlayfs") from None


def release(paths: Paths, name: str):
    """Unmount NAME's tree, before it is renamed away."""
    try:
        unmount(paths.tree(name))
    except OSError as exc:
        raise Error(f"cannot unmount the tree of {name}: {exc.strerror}",
                    hint="a process may still use it: see fuser -vm "
                         f"{paths.tree(name)}") from None


def remove_files(paths: Paths, name: str, only_ours: bool = False):
    """The unit, its enablement and the layers: what is left once the tree is gone."""
    unit = unit_file(paths, name)
    if only_ours and unit.exists() and not is_ours(paths, name):
        return
    for path in (wants_link(paths, name), unit):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    remove_tree(layers(paths, name))
