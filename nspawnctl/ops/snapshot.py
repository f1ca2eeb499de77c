"""snapshot, snapshots, rollback, snapshot rm: a container's tree and settings kept aside and
put back.  Taking and restoring one is runtime/snapshot.py's (upgrade does it too); the store
side is store/snapshots.py."""

from ..paths import Paths
from ..runtime.snapshot import restore, take
from ..store import snapshots
from ..store.containers import Store
from .common import Report, require_root


def snapshot(paths: Paths, name: str, tag: str | None = None, stop_if_needed: bool = False,
             report: Report = print) -> dict:
    require_root()
    store = Store(paths)
    store.require(name)
    if tag is not None:
        snapshots.check_tag(tag)
    with store.lock(name):
        store.require(name)
        return take(paths, name, tag, stop_if_needed, report)


def list_snapshots(paths: Paths, name: str) -> list[dict]:
    Store(paths).require(name)
    return snapshots.list_snapshots(paths, name)


def remove_snapshot(paths: Paths, name: str, tag: str):
    require_root()
    store = Store(paths)
    store.require(name)
    with store.lock(name):
        snapshots.require(paths, name, tag)
        with store.staging(paths.machines, f"snapshot-rm-{name}") as trash:
            snapshots.remove(paths, name, tag, trash)


def rollback(paths: Paths, name: str, tag: str, report: Report = print) -> dict:
    """Put NAME back as snapshot TAG holds it: stopped if running, tree swapped in one rename,
    settings restored, started again if it was running.  The snapshot stays."""
    require_root()
    store = Store(paths)
    store.require(name)
    snapshots.check_tag(tag)
    with store.lock(name):  # an upgrade holds it too: no rollback in the middle of one
        store.require(name)
        return restore(paths, name, tag, report)


