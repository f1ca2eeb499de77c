"""rename: a stopped container under a new name, with everything that names it.

What names a container: its tree (/var/lib/machines/NAME), its .nspawn file, its unit's
drop-in directory (ours and the user's drop-ins), its snapshots, its network addresses, and
its enablement (a link named after its unit).  The commit point is the tree's rename, as for
create (store/containers.py): NEW's settings are copies written before it, so a failure
before it removes only those copies, and OLD's are removed after it (a command killed there
leaves OLD's settings without a tree, which the next command sweeps; only the snapshots'
move follows the tree's rename at once, one rename(2) later, so killed between the two
they would be swept as OLD's).

Not renamed: the hostname written in the tree's /etc/hostname at create (a container's
name for itself is its own, as podman rename keeps it), and --overlay containers (their
tree is a mount point, with a mount unit named after it): refused, with how to do it.
"""

import os
import stat

from ..errors import Conflict, Error
from ..fs.files import fsync_dir, read_small_text, rename_noreplace, write_atomic
from ..network import containers as network
from ..paths import service_unit
from ..runtime.context import Context
from ..runtime.lifecycle import running_for_copy
from ..settings import credentials
from ..settings.files import load_config
from ..store import order, overlay, snapshots, volumes
from ..store.containers import is_enabled
from ..store.hold import hold
from .common import require_root


def rename(ctx: Context, old: str, new: str) -> dict:
    require_root()
    paths, store = ctx.paths, ctx.store
    store.require(old)
    store.require_absent(new)
    if overlay.is_overlay(paths, old):
        raise Conflict(f"{old} is an --overlay container: renaming one is not supported",
                       hint=f"nspawnctl clone {old} {new} && nspawnctl remove {old}")
    with ctx.holding(old), store.lock(new), hold(paths, ctx.bus, old):
        store.require_absent(new)
        if running_for_copy(ctx, old):
            raise Conflict(f"{old} is running: only a stopped container is renamed",
                              hint=f"stop it first: nspawnctl stop {old}")
        _refuse_what_names_it_elsewhere(ctx, old, new)
        cfg = load_config(paths, old)  # a broken file is said now, before anything moves
        if cfg.stack:  # its name is its stack file's: renamed, the next apply makes another
            raise Conflict(f"{old} belongs to stack {cfg.stack}: its name is the stack file's",
                           hint="rename it there and apply, or clone it to a container of "
                                "no stack")
        if network.managed(cfg):  # refused before anything moves, as remove does
            network.require_host_network(paths)
        copied = _copy_settings(ctx, old, new)
        # its volumes held over the rename: volume remove lists the containers' trees, and
        # a listing made while the tree moves may see it under neither name
        with volumes.held_volumes(paths, (v.name for v in cfg.volumes), ctx.report,
                                  check=False):
            try:
                credentials.copy(paths, old, new)  # the values its settings name (0600)
                rename_noreplace(paths.tree(old), paths.tree(new))  # the commit point
            except BaseException:
                for path in copied:
                    path.unlink(missing_ok=True)
                _remove_empty(paths.dropin_dir(new))
                credentials.remove(paths, new)
                raise
            fsync_dir(paths.machines)
        _move_snapshots(ctx, old, new)
        network.network_state(paths).rename(old, new)
        for path in _dropins(paths.dropin_dir(old)):  # the user's too: copied above
            path.unlink(missing_ok=True)
        store.remove_settings(old)
        enabled = is_enabled(paths, old)
        if enabled:
            ctx.bus.disable_units([service_unit(old)])
            ctx.bus.enable_units([service_unit(new)])
        ctx.bus.reload()  # systemd forgets OLD's drop-ins, and knows NEW's
        if network.managed(cfg):  # its peers know it by its new name
            network.write_all_hosts(paths)
            network.apply_host(paths)
    return {"name": new, "from": old, "enabled": enabled}


def _refuse_what_names_it_elsewhere(ctx: Context, old: str, new: str):
    """What would name OLD after the rename, or lose NEW's: refused before anything moves."""
    paths = ctx.paths
    left = order.dependents(paths, old)
    if left:
        raise Conflict(f"{', '.join(left)} {'is' if len(left) == 1 else 'are'} ordered after "
                       f"{old} (--after/--requires): not renamed",
                       hint=f"nspawnctl set {left[0]} --no-requires {old} / --no-after {old}, "
                            "rename, then set it again with the new name")
    if os.path.lexists(paths.nspawn_file(new)) or os.path.lexists(paths.dropin_dir(new)):
        raise Conflict(f"settings for {new} exist already ({paths.nspawn_file(new)} or "
                       f"{paths.dropin_dir(new)}): not renamed",
                       hint="move them away first")
    if os.path.lexists(snapshots.snapshot_dir(paths, new)):
        raise Conflict(f"snapshots of {new} exist already: not renamed",
                       hint=f"see: nspawnctl snapshots {new}")
    if os.path.lexists(paths.state / "upgrades" / f"{old}.json"):
        raise Conflict(f"an upgrade of {old} was interrupted: not renamed",
                       hint="run: nspawnctl recover")


def _dropins(directory) -> list:
    """Every entry of a drop-in directory; only regular files are copied (refused else)."""
    try:
        return sorted(directory.iterdir())
    except FileNotFoundError:
        return []


def _copy_settings(ctx: Context, old: str, new: str) -> list:
    """NEW's .nspawn file and drop-ins, copies of OLD's; returns what was written."""
    paths = ctx.paths
    sources = [(paths.nspawn_file(old), paths.nspawn_file(new))]
    for path in _dropins(paths.dropin_dir(old)):
        sources.append((path, paths.dropin_dir(new) / path.name))
    copied = []
    try:
        for source, target in sources:
            try:
                info = os.lstat(source)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                raise Error(f"{source} is not a regular file: {old} not renamed",
                            hint="move it away, or make it a file")
            text = read_small_text(source, f"{old}'s settings")
            if text is None:
                continue
            copied.append(target)
            write_atomic(target, text, mode=stat.S_IMODE(info.st_mode))
    except BaseException:
        for path in copied:
            path.unlink(missing_ok=True)
        _remove_empty(paths.dropin_dir(new))
        raise
    return copied


def _move_snapshots(ctx: Context, old: str, new: str):
    source = snapshots.snapshot_dir(ctx.paths, old)
    if os.path.isdir(source):
        rename_noreplace(source, snapshots.snapshot_dir(ctx.paths, new))
        fsync_dir(snapshots.root(ctx.paths))


def _remove_empty(directory):
    try:
        directory.rmdir()
    except OSError:
        pass
