"""Snapshots of a container: its tree (or, for an --overlay container, its upper layer only)
and its settings, kept beside the trees and swapped back in by rollback.

    /var/lib/machines/.nspawnctl-snapshots/NAME/TAG/
        meta.json       what it is: tag, method, size, created, lower (overlay), frozen
        tree/           a copy of the container's tree          (plain containers)
        upper/          a copy of its overlay upper layer       (--overlay containers)
        settings/       NAME.nspawn and the drop-ins nspawnctl writes, as they were
        volumes/VOLUME/ a copy of each named volume it mounts   (snapshot --with-volumes;
                        meta.json's "volumes" names them), owners as containers see them

The leading dot keeps them out of machinectl's and nspawnctl's lists; being on the machines
filesystem makes every commit a rename.  A snapshot is built in a staging directory and renamed
to TAG only once it is complete (meta.json written last inside it), so a killed command never
leaves a partial snapshot listed; its staging directory is swept as a dead process's.
Rollback builds the copy to restore in staging too and swaps it with the live tree in one
renameat2(RENAME_EXCHANGE): the container is the old tree or the restored one, never a mix.
A volume is put back the same way, staged beside the volumes (their filesystem may be
another) and exchanged with its data/ directory: each volume is whole, old or restored.
"""

import contextlib
import ctypes
import datetime
import errno
import json
import os
import re
import time
from pathlib import Path

from ..errors import Conflict, Error, NotFound, Usage
from ..fs.copy import clone_tree
from ..fs.files import AT_FDCWD, fsync_dir, rename_noreplace, sync_filesystem, write_atomic
from ..fs.walk import remove_tree, tree_size
from ..names import check_volume_name
from ..paths import Paths
from ..settings.dropin import OUR_DROPINS
from . import overlay

RENAME_EXCHANGE = 2
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
_libc = ctypes.CDLL(None, use_errno=True)


def root(paths: Paths) -> Path:
    return paths.machines / ".nspawnctl-snapshots"


def snapshot_dir(paths: Paths, name: str, tag: str | None = None) -> Path:
    return root(paths) / name / tag if tag else root(paths) / name


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag) or ".." in tag:
        raise Usage(f"invalid snapshot tag {tag!r}",
                    hint="use up to 64 letters, digits, '_', '-', '+' and '.', "
                         "not starting with '.' or '-'")
    return tag


def default_tag(paths: Paths, name: str) -> str:
    """A UTC timestamp; a second snapshot in the same second gets -2, -3, ..."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tag, n = stamp, 1
    while os.path.lexists(snapshot_dir(paths, name, tag)):
        n += 1
        tag = f"{stamp}-{n}"
    return tag


def read_meta(path: Path) -> dict | None:
    try:
        with open(path / "meta.json") as f:
            return json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        return None


def list_snapshots(paths: Paths, name: str) -> list[dict]:
    """NAME's complete snapshots, oldest first."""
    rows = []
    try:
        entries = os.listdir(snapshot_dir(paths, name))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for tag in entries:
        meta = read_meta(snapshot_dir(paths, name, tag))
        if meta is not None and not tag.startswith("."):
            rows.append(meta)
    return sorted(rows, key=lambda m: (m.get("created") or 0, m.get("tag") or ""))


def require(paths: Paths, name: str, tag: str) -> dict:
    check_tag(tag)
    meta = read_meta(snapshot_dir(paths, name, tag))
    if meta is None:
        raise NotFound(f"{name} has no snapshot {tag!r}",
                       hint=f"see: nspawnctl snapshots {name}")
    return meta


def require_absent(paths: Paths, name: str, tag: str):
    check_tag(tag)
    if os.path.lexists(snapshot_dir(paths, name, tag)):
        raise Conflict(f"{name} already has a snapshot {tag!r}",
                       hint=f"pick another tag, or remove it: nspawnctl snapshot rm {name} {tag}")


def settings_files(paths: Paths, name: str) -> dict[str, Path]:
    """The settings a snapshot keeps, by the name they get in its settings/ directory."""
    files = {"nspawn": paths.nspawn_file(name)}
    files.update({d: paths.dropin_dir(name) / d for d in OUR_DROPINS})
    return files


def copy_content(paths: Paths, name: str, stage: Path) -> str:
    """Copy NAME's tree (or upper layer) and settings into stage; returns the method."""
    if overlay.is_overlay(paths, name):
        method = clone_tree(overlay.layers(paths, name) / "upper", stage / "upper")
        method = f"overlay+{method}"  # only the container's own changes were copied
    else:
        method = clone_tree(paths.tree(name), stage / "tree")
    (stage / "settings").mkdir(mode=0o700)
    for key, path in settings_files(paths, name).items():
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        write_atomic(stage / "settings" / key, text)
    return method


def copy_volumes(paths: Paths, volumes: list[str], stage: Path) -> None:
    """Copy each volume's data into stage/volumes/VOLUME, owners and modes exactly as they are
    (the owners containers see).  Containers write volumes: copied by copy_at, which resolves
    every name once, as a container's tree is."""
    if not volumes:
        return
    (stage / "volumes").mkdir(mode=0o700)
    for volume in volumes:
        clone_tree(paths.volume_data(volume), stage / "volumes" / check_volume_name(volume))


def volumes_of(meta: dict) -> list[str]:
    """The volumes a snapshot holds, as its meta.json names them ([] for one taken without
    --with-volumes, or by an nspawnctl before it)."""
    names = meta.get("volumes") or []
    if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
        raise Error(f"snapshot {meta.get('tag')!r} of {meta.get('name')}: its meta.json "
                    "names its volumes wrongly", hint="it was not written by nspawnctl")
    return [check_volume_name(v) for v in names]


def commit(paths: Paths, name: str, tag: str, stage: Path, meta: dict) -> dict:
    """Make the snapshot built in stage/snapshot visible as TAG: meta.json last, then the
    rename, which is the commit point."""
    built = stage / "snapshot"
    meta = dict(meta, tag=tag, name=name, size=tree_size(built), created=time.time())
    lower = overlay.lower_of(paths, name)
    if lower is not None:
        meta["lower"] = str(lower)
    write_atomic(built / "meta.json", json.dumps(meta, indent=2))
    mine = snapshot_dir(paths, name)
    root(paths).mkdir(mode=0o700, exist_ok=True)
    mine.mkdir(mode=0o700, exist_ok=True)
    sync_filesystem(built)  # as a create's commit: never a listed snapshot of empty files
    try:
        rename_noreplace(built, snapshot_dir(paths, name, tag))
    except FileExistsError:
        raise Conflict(f"{name} already has a snapshot {tag!r}") from None
    fsync_dir(mine)
    return meta


def exchange(a: Path, b: Path):
    """Swap a and b in one step (renameat2 RENAME_EXCHANGE): both exist before and after."""
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a), None, str(b))


def restore_tree(paths: Paths, name: str, tag: str, stage: Path) -> str:
    """Copy snapshot TAG into stage and swap it with NAME's tree (or upper layer); the old one
    is left in stage for the caller's staging to delete.  NAME must be stopped, and an overlay
    container's tree unmounted."""
    snap = snapshot_dir(paths, name, tag)
    if (snap / "upper").is_dir():
        live = overlay.layers(paths, name) / "upper"
        method = clone_tree(snap / "upper", stage / "restored", trusted=True)
    else:
        live = paths.tree(name)
        method = clone_tree(snap / "tree", stage / "restored", trusted=True)
    sync_filesystem(stage / "restored")
    try:
        exchange(stage / "restored", live)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise Conflict(f"the tree of {name} is busy (mounted or in use): not rolled back",
                           hint=f"see: fuser -vm {live}") from None
        raise
    fsync_dir(live.parent)
    return method


def restore_volume(paths: Paths, name: str, tag: str, volume: str, stage: Path) -> None:
    """Copy volume VOLUME's data from snapshot TAG into stage (beside the volumes: the same
    filesystem) and swap it with the volume's data/ in one step; the old data is left in
    stage for the caller's staging to delete.  Nothing may have it mounted: the caller holds
    every container that mounts it stopped."""
    saved = snapshot_dir(paths, name, tag) / "volumes" / check_volume_name(volume)
    live = paths.volume_data(volume)
    clone_tree(saved, stage / volume, trusted=True)  # only nspawnctl writes a snapshot
    sync_filesystem(stage / volume)
    try:
        exchange(stage / volume, live)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise Conflict(f"volume {volume} is busy (mounted or in use): not rolled back",
                           hint=f"see: fuser -vm {live}") from None
        raise
    fsync_dir(live.parent)


def restore_settings(paths: Paths, name: str, tag: str) -> bool:
    """Put the snapshot's settings back; a settings file it does not hold is removed.
    True when anything changed."""
    saved = snapshot_dir(paths, name, tag) / "settings"
    changed = False
    for key, path in settings_files(paths, name).items():
        try:
            text: str | None = (saved / key).read_text()
        except FileNotFoundError:
            text = None
        try:
            current: str | None = path.read_text()
        except FileNotFoundError:
            current = None
        if text == current:
            continue
        changed = True
        if text is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, text)
    return changed


def remove(paths: Paths, name: str, tag: str, trash: Path):
    """Take snapshot TAG away (a rename into trash, the caller's staging directory)."""
    os.rename(snapshot_dir(paths, name, tag), trash / tag)
    with contextlib.suppress(OSError):
        snapshot_dir(paths, name).rmdir()  # its last one


def take_all(paths: Paths, name: str, trash: Path) -> int:
    """Move all of NAME's snapshots into trash (remove); returns how many there were."""
    count = len(list_snapshots(paths, name))
    with contextlib.suppress(FileNotFoundError):
        os.rename(snapshot_dir(paths, name), trash / "snapshots")
    return count


def sweep(paths: Paths, name: str):
    """The snapshots of a container whose tree is gone (a remove killed between its commit and
    their removal): they go too, as remove would have done."""
    remove_tree(snapshot_dir(paths, name))


def names(paths: Paths) -> list[str]:
    try:
        return [n for n in os.listdir(root(paths)) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def lowers(paths: Paths) -> dict[str, int]:
    """How many snapshots need each base tree (overlay snapshots hold only an upper layer),
    by image key."""
    counts: dict[str, int] = {}
    for name in names(paths):
        for meta in list_snapshots(paths, name):
            lower = Path(meta["lower"]) if meta.get("lower") else None
            if lower is not None and lower.parent.parent == paths.images:
                counts[lower.parent.name] = counts.get(lower.parent.name, 0) + 1
    return counts
