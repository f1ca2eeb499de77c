"""Named volumes: directories that outlive the containers which mount them.

A volume is /var/lib/nspawnctl/volumes/NAME/, holding data/ (what containers mount, through a
Bind= line of their .nspawn file, settings/keys.py Volumes) and volume.json (when it was made).
It exists exactly when that directory does: create builds both in a staging directory and
renames the whole into place (the commit point); remove renames it into a staging directory
before deleting it.  A command killed at any moment leaves the volume whole or absent, and
its staging directory to the next sweep (store/containers.py).
"""

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import Conflict, Error, NotFound
from ..fs.files import fsync_dir, rename_noreplace, sync_filesystem
from ..fs.locks import flocked, unlink_lock
from ..fs.walk import tree_size
from ..names import check_volume_name
from ..paths import Paths
from ..settings.files import load_config
from .containers import Store

META = "volume.json"


def volume_dir(paths: Paths, name: str) -> Path:
    return paths.volumes / check_volume_name(name)


def exists(paths: Paths, name: str) -> bool:
    return os.path.isfile(volume_dir(paths, name) / META)


def require(paths: Paths, name: str) -> str:
    if not exists(paths, name):
        raise NotFound(f"no volume named {name!r}",
                       hint=f"make it first: nspawnctl volume create {name}")
    return name


def _lock_path(paths: Paths, name: str) -> Path:
    """NAME's lock file: beside the volumes, hidden (a volume's name never starts with a
    dot)."""
    check_volume_name(name)
    paths.volumes.mkdir(parents=True, exist_ok=True, mode=0o700)
    return paths.volumes / f".{name}.lock"


@contextlib.contextmanager
def locked(paths: Paths, name: str) -> Iterator[None]:
    """NAME's lock, exclusive: create, remove, import and a snapshot's copy of one volume
    never run at once, nor while a container is being given it (held_volumes)."""
    path = _lock_path(paths, name)

    def busy():
        raise Conflict(f"volume {name!r} is busy: another nspawnctl command is working on it")

    with flocked(path, busy):
        yield


@contextlib.contextmanager
def held_volumes(paths: Paths, names, report: Callable[[str], None],
                 check: bool = True) -> Iterator[None]:
    """The volumes NAMES, each checked to exist and held for the with-block: a shared lock
    that `volume remove` takes exclusively, taken before the check.  A command that gives a
    container a volume (create, set) holds it from its check until the container's settings
    name the volume, when the container counts as a user: remove runs wholly before (the
    check then says the volume is gone) or after (its own check then sees the user), never
    in between, as images' held_image does for `images prune`.

    Taken after the container's lock (the order snapshot takes them in too), and waited for:
    whoever holds a volume exclusively never waits for a container's lock (snapshot gives up
    on a busy one), so the wait ends.  Several in name order.  check=False: held only
    (rename, whose container is a user under one name or the other, is not refused for a
    volume removed by hand)."""
    def waiting(name: str) -> Callable[[], None]:
        return lambda: report(f"waiting for volume {name}: another nspawnctl command is "
                              "working on it")

    with contextlib.ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(flocked(_lock_path(paths, name), waiting(name), shared=True))
            if check:
                require(paths, name)
        yield


def create(paths: Paths, name: str, fill: Callable[[Path], object] | None = None) -> dict:
    """Make volume NAME: data/ owned by root, 0755, as a fresh tree's directories are (with
    idmapped binds, the container's root is the host's root there); fill(data) puts its
    content in before the commit (volume import), so a failed fill leaves no volume."""
    store = Store(paths)
    with locked(paths, name):
        if exists(paths, name) or os.path.lexists(volume_dir(paths, name)):
            raise Conflict(f"a volume named {name!r} already exists",
                           hint=f"pick another name, or: nspawnctl volume remove {name}")
        with store.staging(paths.volumes, f"volume-{name}") as stage:
            made = stage / "volume"
            made.mkdir(mode=0o755)
            (made / "data").mkdir(mode=0o755)
            if fill is not None:
                fill(made / "data")
            meta = {"name": name, "created": int(time.time())}
            (made / META).write_text(json.dumps(meta) + "\n")
            os.chmod(made, 0o755)
            os.chmod(made / "data", 0o755)
            sync_filesystem(made)
            try:
                rename_noreplace(made, volume_dir(paths, name))  # the commit point
            except FileExistsError:
                raise Conflict(f"a volume named {name!r} already exists") from None
            fsync_dir(paths.volumes)
    return describe(paths, name)


def names(paths: Paths) -> list[str]:
    try:
        entries = sorted(os.listdir(paths.volumes))
    except FileNotFoundError:
        return []
    return [n for n in entries if not n.startswith(".") and exists(paths, n)]


def users(paths: Paths) -> dict[str, list[str]]:
    """The containers whose settings mount each volume (volume -> container names).  A
    container whose settings cannot be read is not counted: `remove` of it says so itself."""
    found: dict[str, list[str]] = {}
    for container in Store(paths).names():
        try:
            cfg = load_config(paths, container, dropin=False)
        except Error:
            continue
        for volume in dict.fromkeys(v.name for v in cfg.volumes):
            found.setdefault(volume, []).append(container)
    return found


def describe(paths: Paths, name: str, using: dict[str, list[str]] | None = None,
             size: bool = True) -> dict:
    """One volume as list, inspect and --json show it."""
    require(paths, name)
    meta: dict = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((volume_dir(paths, name) / META).read_text())
    created = meta.get("created") if isinstance(meta, dict) else None
    using = users(paths) if using is None else using
    return {"name": name, "path": str(paths.volume_data(name)),
            "created": created if isinstance(created, int) else None,
            "size": tree_size(paths.volume_data(name)) if size else None,
            "containers": using.get(name, [])}


def list_volumes(paths: Paths) -> list[dict]:
    using = users(paths)
    return [describe(paths, n, using) for n in names(paths)]


def remove(paths: Paths, name: str) -> dict:
    """Delete volume NAME and its data; refused while a container's settings mount it."""
    store = Store(paths)
    with locked(paths, name):
        require(paths, name)
        using = users(paths).get(name, [])
        if using:
            raise Conflict(f"volume {name} is used by {', '.join(using)}: not removed",
                           hint=f"remove {'that container' if len(using) == 1 else 'them'} "
                                f"first, or: nspawnctl set {using[0]} --no-volume {name}")
        gone = describe(paths, name, {name: []})
        with store.staging(paths.volumes, f"remove-{name}") as trash:
            # The rename is the commit point: from here on the volume is gone for everyone,
            # and if we die the trash is swept as a dead process's staging directory.
            os.rename(volume_dir(paths, name), trash / "volume")
            fsync_dir(paths.volumes)
        unlink_lock(paths.volumes / f".{name}.lock")
    return gone
