"""images and images prune: the cached base trees, with how many containers use each."""

from ..runtime.context import Context
from ..store import images
from ..store.images import usage_by_image
from .common import require_root


def list_images(ctx: Context) -> list[dict]:
    paths = ctx.paths
    return images.list_images(paths, usage_by_image(paths))


def prune(ctx: Context) -> list[str]:
    paths = ctx.paths
    """Remove the base trees no container uses; returns their keys."""
    require_root()
    return images.prune(paths, lambda: usage_by_image(paths))
