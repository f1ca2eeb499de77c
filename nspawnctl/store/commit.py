"""A new container's commit: its staged tree given its identity, its settings written, then the
tree renamed into place (create and clone; store.containers.install is the commit point)."""

import os
from collections.abc import Callable
from pathlib import Path

from ..fs.files import read_small_text, rename_noreplace, write_atomic
from ..settings.files import save_config
from ..settings.model import ContainerConfig
from . import overlay
from .containers import Store
from .identity import Identity, write_identity


def finish(store: Store, stage: Path, name: str, cfg: ContainerConfig, hostname: str,
           lower: Path | None = None, like: str | None = None,
           identity: Identity | None = None):
    """Give the staged tree its identity and commit it: settings first, then the tree's rename,
    from which on the container exists.  With lower (an --overlay container) the tree is an
    empty mount point and stage/layers holds its changes on top of lower.  With like (clone)
    the settings start from that container's, hand edits included.

    A NAME.nspawn the user wrote before running create is edited, not replaced, and a failed
    create gives it back as it was.  identity (create's --root-password-*, --timezone,
    --locale) is written into the staged tree (identity.py; never an --overlay's shared base)."""
    paths = store.paths
    tree = stage / "tree"
    if lower is None:
        prepare_tree(tree, hostname)
        if identity:
            write_identity(tree, identity)
    else:
        prepare_tree(lower, hostname, upper=stage / "layers" / "upper")
    nspawn = paths.nspawn_file(name)
    before = (read_small_text(nspawn, f"{name}'s settings file")
              if nspawn.is_file() and not nspawn.is_symlink() else None)
    copied: list[Path] = []
    try:
        copied = save_config(paths, name, cfg, like=like)
        if lower is not None:
            overlay.write_unit(paths, name, lower)
            paths.overlays.mkdir(mode=0o700, exist_ok=True)
            rename_noreplace(stage / "layers", overlay.layers(paths, name))
        store.install(tree, name)
    except BaseException:
        for path in copied:
            path.unlink(missing_ok=True)
        store.remove_settings(name)
        if before is not None:
            write_atomic(nspawn, before)
        raise
    if lower is not None:
        overlay.enable(paths, name)  # after the commit; a crash before it: recover does it
        overlay.mount_tree(paths, name, lower)


def prepare_tree(tree: Path, hostname: str, upper: Path | None = None):
    """Give a fresh clone its own identity: a machine-id made at first boot, its hostname.

    With upper (an --overlay container before its first mount) tree is the shared base, read
    only, and the two files go to upper/etc, as overlayfs would copy them up: that spares a
    mount and an unmount, which cost more than the rest of such a create.
    """
    etc = tree / "etc"
    if not etc.is_dir() or etc.is_symlink():
        return
    out = etc
    if upper is not None:
        out = upper / "etc"
        _copy_up(etc, out, lambda p: p.mkdir(exist_ok=True))
    machine_id = etc / "machine-id"
    if machine_id.is_file() and not machine_id.is_symlink():
        # empty: systemd makes one at boot, every clone its own
        _copy_up(machine_id, out / "machine-id", lambda p: p.write_text(""))
    hostname_file = etc / "hostname"
    if not hostname_file.is_symlink():
        _copy_up(hostname_file, out / "hostname", lambda p: p.write_text(hostname + "\n"))
        # 0644 whatever the base says: debootstrap copies the build host's file, mode and all
        os.chmod(out / "hostname", 0o644)


def _copy_up(src: Path, dst: Path, write: Callable[[Path], object]):
    """write(dst); a new dst gets src's owner and mode where src exists."""
    new = not dst.exists()
    write(dst)
    if new and src.exists():
        st = src.stat()
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, st.st_mode & 0o7777)
