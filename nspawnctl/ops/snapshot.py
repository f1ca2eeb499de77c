"""snapshot, snapshots, rollback, snapshot rm: a container's tree and settings (and with
--with-volumes its named volumes) kept aside and put back.  Taking and restoring one is
runtime/snapshot.py's (upgrade does it too); the store side is store/snapshots.py."""

from ..runtime.context import Context
from ..runtime.snapshot import restore, take
from ..store import snapshots
from .common import require_root


def snapshot(ctx: Context, name: str, tag: str | None = None,
             stop_if_needed: bool = False, with_volumes: bool = False) -> dict:
    require_root()
    if tag is not None:
        snapshots.check_tag(tag)
    with ctx.holding(name) as held:
        return take(held, tag, stop_if_needed, with_volumes=with_volumes)


def list_snapshots(ctx: Context, name: str) -> list[dict]:
    ctx.store.require(name)
    return snapshots.list_snapshots(ctx.paths, name)


def remove_snapshot(ctx: Context, name: str, tag: str) -> dict:
    """Remove NAME's snapshot TAG; returns what it was (its meta.json: size, created...)."""
    require_root()
    with ctx.holding(name):
        meta = snapshots.require(ctx.paths, name, tag)
        with ctx.store.staging(ctx.paths.machines, f"snapshot-rm-{name}") as trash:
            snapshots.remove(ctx.paths, name, tag, trash)
    return meta


def rollback(ctx: Context, name: str, tag: str, with_volumes: bool = False) -> dict:
    """Put NAME back as snapshot TAG holds it: stopped if running, tree swapped in one rename,
    settings restored, started again if it was running; with_volumes: the volumes it holds
    too (each swapped in one rename).  The snapshot stays."""
    require_root()
    snapshots.check_tag(tag)
    with ctx.holding(name) as held:  # an upgrade holds it too: no rollback in one
        return restore(held, tag, with_volumes=with_volumes)
