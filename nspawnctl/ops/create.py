"""create: making a container without ever leaving half of one.

Every new tree is built in a staging directory next to /var/lib/machines/NAME, its settings
are written, and only then is the tree renamed into place (store.py explains the commit point).
Where the tree comes from is the source's (sources/: a plugin per kind of --from); base trees
(debootstrap results, unpacked images) are cached by key in store/images.py, so a second
create of the same kind is a clone.
"""

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import sources
from ..errors import Error
from ..fs.copy import clone_tree
from ..fs.files import read_small_text, rename_noreplace, write_atomic
from ..network import containers as network
from ..paths import service_unit
from ..settings.files import save_config
from ..settings.model import ContainerConfig
from ..sources.base import Base, Request
from ..sources.oci.source import apply_image_config, boot_rule, image_user_warning
from ..store import order, overlay
from ..store.containers import Store
from ..store.images import held_image
from ..systemd import bootunits
from ..systemd.bus import Bus
from .common import Report, require_root


def create(name: str, source: str, cfg: ContainerConfig, request: Request,
           use_overlay: bool = False) -> dict:
    """Make container NAME from the source --from names; returns what was done (for the user
    and the tests).  request holds the paths, the progress callback and the options sources
    read (sources/base.py); use_overlay: stand on the cached base instead of copying it."""
    paths, report = request.paths, request.report
    require_root()
    store = Store(paths)
    store.require_absent(name)
    bootunits.ensure_units(paths)  # the boot-time recovery, for this container's first start
    kind, rest = sources.lookup(source)
    sources.check(kind, request, use_overlay)
    plan = kind.plan(rest, request)  # a source refuses what it cannot make now
    if plan.command is not None:
        cfg = dataclasses.replace(cfg, command=plan.command)
    if plan.boot is not None:
        cfg = dataclasses.replace(cfg, boot=plan.boot)
    order.check(paths, name, cfg)  # refused now, not after a bootstrap: unknown names, cycles
    if network.managed(cfg):  # refused now, not after a bootstrap: unknown network, taken port
        network.require_host_network(paths)
        network.network_state(paths).get(cfg.network)
        network.check_ports(paths, name, cfg)
    t0 = time.monotonic()
    with store.lock(name):
        store.require_absent(name)
        with store.staging(paths.machines, f"create-{name}") as stage:
            info: dict[str, Any] = {"name": name, "source": source}
            lower = None
            with contextlib.ExitStack() as held:
                if plan.base is not None:
                    base = plan.base()
                    # held until the commit: `images prune` cannot take it away meanwhile
                    image, cached = held.enter_context(
                        held_image(paths, base.key, base.meta, base.build, report))
                    cfg, lower = _from_base(stage, cfg, info, base, image, cached, use_overlay,
                                            request.boot, report)
                else:
                    assert plan.build is not None
                    info.update(plan.build(stage / "tree"))
                address = network.join(paths, name, cfg)  # given back if the commit fails
                finish(store, stage, name, cfg, cfg.hostname or name, lower)
        if address is not None:
            info["address"] = str(address)
            network.joined(paths, name, cfg)
    _reload_if_loaded(name)
    info["seconds"] = round(time.monotonic() - t0, 3)
    return info


def finish(store: Store, stage: Path, name: str, cfg: ContainerConfig, hostname: str,
           lower: Path | None = None, like: str | None = None):
    """Give the staged tree its identity and commit it: settings first, then the tree's rename,
    from which on the container exists.  With lower (an --overlay container) the tree is an
    empty mount point and stage/layers holds its changes on top of lower.  With like (clone)
    the settings start from that container's, hand edits included.

    A NAME.nspawn the user wrote before running create is edited, not replaced, and a failed
    create gives it back as it was."""
    paths = store.paths
    tree = stage / "tree"
    if lower is None:
        prepare_tree(tree, hostname)
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


def _from_base(stage: Path, cfg: ContainerConfig, info: dict, base: Base, image: Path,
               cached: bool, use_overlay: bool, boot: bool | None,
               report: Report) -> tuple[ContainerConfig, Path | None]:
    """Stage a tree from base's cached tree (image): a clone in stage/tree, or with
    use_overlay empty layers in stage/layers over it.  info records how; returns cfg naming
    the base (and for an image running its command), and the lower tree of an overlay."""
    if cached:
        report(f"using cached base tree {base.key}")
    lower = None
    if use_overlay:
        lower = image / "tree"
        (stage / "tree").mkdir(mode=0o755)
        overlay.make_layers(stage / "layers", lower)
        method = "overlay"
    else:
        method = clone_tree(image / "tree", stage / "tree", trusted=True)
    info.update(image=base.key, cached=cached, method=method)
    cfg = dataclasses.replace(cfg, image=base.key)
    if base.image_config is not None:
        booted, command, why = boot_rule(base.image_config, image / "tree", boot, cfg.command)
        info.update(boot=booted, why=why)
        cfg = apply_image_config(cfg, base.image_config, booted, command)
        if not booted:
            warning = image_user_warning(base.image_config)
            if warning:
                report(warning)
    return cfg, lower


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


def _reload_if_loaded(name: str):
    """systemd keeps a loaded unit's old drop-ins until a reload; a new name is not loaded."""
    try:
        with Bus() as bus:
            if bus.list_units([service_unit(name)]):
                bus.reload()
    except Error:
        pass  # no systemd here (e.g. building trees for another host): nothing to tell
