"""images and images prune: the cached base trees, with how many containers use each."""

from ..paths import Paths
from ..store import images
from ..store.images import usage_by_image
from .common import require_root


def list_images(paths: Paths) -> list[dict]:
    return images.list_images(paths, usage_by_image(paths))


def prune(paths: Paths) -> list[str]:
    """Remove the base trees no container uses; returns their keys."""
    require_root()
    return images.prune(paths, lambda: usage_by_image(paths))
