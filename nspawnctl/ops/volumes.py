"""volume create, list, inspect and remove: named volumes, which outlive their containers
(store/volumes.py); containers mount them with --volume NAME:/PATH."""

from ..runtime.context import Context
from ..store import volumes
from .common import require_root


def create(ctx: Context, name: str) -> dict:
    require_root()
    ctx.store.sweep()  # a killed create's or remove's staging directory goes first
    return volumes.create(ctx.paths, name)


def list_volumes(ctx: Context) -> list[dict]:
    return volumes.list_volumes(ctx.paths)


def inspect(ctx: Context, name: str) -> dict:
    return volumes.describe(ctx.paths, name)


def remove(ctx: Context, name: str) -> dict:
    """Remove volume NAME and its data; refused while a container's settings mount it."""
    require_root()
    ctx.store.sweep()
    return volumes.remove(ctx.paths, name)
