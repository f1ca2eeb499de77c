"""The cache of read-only base trees.

A base tree is made once per key (the hash of everything that decides its content: for
images, their full manifest digest) and kept under /var/lib/nspawnctl/images/KEY/{tree,meta.json}.
A cache hit is held to what its meta.json says it is: an entry whose recorded digest is not
the one asked for is refused, never used for another image.  Containers are clones of it
(fs.copy.clone_tree: a reflink copy where the filesystem has them, a plain copy elsewhere) or
overlayfs mounts over it (overlay.py).
"""

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import log
from ..errors import Error, InvalidInput
from ..fs.files import fsync_dir, mkdir_private, sync_filesystem
from ..fs.locks import flocked
from ..fs.walk import remove_tree, tree_size
from ..paths import Paths
from ..settings.files import load_config
from . import chains, overlay, snapshots
from .containers import Store

# meta.json fields that say what a base tree is: a hit must agree on each the caller gives.
IDENTITY = ("digest",)


def image_dir(paths: Paths, key: str) -> Path:
    return paths.images / key


def read_meta(path: Path) -> dict | None:
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def apt_lists(paths: Paths, key: str) -> Path:
    """Where the package lists of the incremental builds on base key are kept (a cache: they
    go with the base)."""
    return paths.cache / "apt-lists" / key


def is_cached(paths: Paths, key: str) -> bool:
    """Whether a base tree is cached under key (looked at without its lock: a hint, which
    held_image() makes sure of)."""
    return read_meta(image_dir(paths, key)) is not None


@contextlib.contextmanager
def held_image(paths: Paths, key: str, meta: dict, build: Callable[[Path], None],
               report: Callable[[str], None]) -> Iterator[tuple[Path, bool]]:
    """ensure_image(), and then the base tree held for the with-block: a shared lock on its
    key that `images prune` must wait for, taken before the tree is looked at.  A create
    holds it from choosing the base until its commit, when the new container counts as a user
    (prune counts users again once it has the lock)."""
    cached = True
    while True:
        mkdir_private(paths.state)
        paths.images.mkdir(parents=True, exist_ok=True)
        with flocked(paths.images / f".{key}.lock", lambda: None, shared=True):
            if _cached(image_dir(paths, key), key, meta):
                yield image_dir(paths, key), cached
                return
        # not there (or pruned meanwhile): build it under the exclusive lock, then hold it
        _, was_cached = ensure_image(paths, key, meta, build, report)
        cached = cached and was_cached


def ensure_image(paths: Paths, key: str, meta: dict, build: Callable[[Path], None],
                 report: Callable[[str], None]) -> tuple[Path, bool]:
    """The base tree for key, built with build(tree_dir) if missing.  Returns (dir, was_cached).

    Two commands that need the same base wait for each other on a lock, so it is built once.
    Its callers hold a container's lock, which has already swept dead staging directories.
    """
    final = image_dir(paths, key)
    if _cached(final, key, meta):
        return final, True
    mkdir_private(paths.state)
    paths.images.mkdir(parents=True, exist_ok=True)
    with _image_lock(paths, key, report):
        if _cached(final, key, meta):
            return final, True
        with Store(paths).staging(paths.images, f"image-{key}") as stage:
            tree = stage / "tree"
            tree.mkdir(mode=0o755)
            t0 = time.monotonic()
            build(tree)
            meta = dict(meta, key=key, created=time.time(),
                        build_seconds=round(time.monotonic() - t0, 2), size=tree_size(tree))
            (stage / "meta.json").write_text(json.dumps(meta, indent=2))
            remove_tree(final)  # an entry without meta.json is a leftover, not an image
            sync_filesystem(stage)  # the tree on disk before the rename that commits it
            os.rename(stage, final)
            fsync_dir(paths.images)
    return final, False


def _cached(final: Path, key: str, meta: dict) -> bool:
    """Whether the base tree for key is there, and is what meta says it must be."""
    found = read_meta(final)
    if not found:
        return False
    for field in IDENTITY:
        if field in meta and found.get(field) != meta[field]:
            raise InvalidInput(f"cached base tree {key} is recorded as {field} "
                               f"{str(found.get(field))[:80]}, not {str(meta[field])[:80]}",
                               hint=f"the cache entry {final} is not what its key says: "
                             "move it away, or remove it if no container uses it")
    return True


def _image_lock(paths: Paths, key: str, report):
    """KEY's lock: a second command that needs the same base waits for the first."""
    return flocked(paths.images / f".{key}.lock",
                   lambda: report("waiting for another nspawnctl that is building the same "
                                  "base tree"))


def list_images(paths: Paths, usage: dict[str, int]) -> list[dict]:
    rows = []
    for entry in sorted(os.listdir(paths.images)) if paths.images.is_dir() else []:
        meta = read_meta(paths.images / entry)
        if not meta:
            continue
        rows.append({"key": entry, "source": meta.get("source"), "suite": meta.get("suite"),
                     "size": meta.get("size"), "created": meta.get("created"),
                     "containers": usage.get(entry, 0)})
    return rows


def prune(paths: Paths, usage: Callable[[], dict[str, int]],
          only: set[str] | None = None) -> list[str]:
    """Remove the base trees no container uses (of only, when given); one that cannot be
    removed is reported (a warning) and skipped, the others still go.  Users are counted again
    under each tree's lock, which a create holds from choosing a base until its commit
    (held_image)."""
    removed = []
    for row in list_images(paths, usage()):
        if row["containers"] or (only is not None and row["key"] not in only):
            continue
        with _image_lock(paths, row["key"], lambda _m: None):
            if usage().get(row["key"]):
                continue  # a create committed a container on it while we waited
            try:
                remove_tree(image_dir(paths, row["key"]))
                remove_tree(apt_lists(paths, row["key"]))
            except OSError as e:
                log.warning(__name__, "could not remove base tree %s: %s: %s", row["key"],
                            e.filename or image_dir(paths, row["key"]), e.strerror or e)
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(paths.images / f".{row['key']}.lock")
        removed.append(row["key"])
    chains.prune(paths)  # the layers' trees kept for images that are gone now
    return removed


def usage_by_image(paths: Paths) -> dict[str, int]:
    """How many containers use each base tree (users_by_image), and the snapshots of
    --overlay containers, which need their base too."""
    counts = {key: len(names) for key, names in users_by_image(paths).items()}
    # an --overlay container's snapshots hold only its upper layer: they need its base too
    for key, n in snapshots.lowers(paths).items():
        counts[key] = counts.get(key, 0) + n
    return counts


def users_by_image(paths: Paths) -> dict[str, list[str]]:
    """The containers that use each base tree: the one their settings name, and, for an
    --overlay container, the one its mount unit really stacks on (a hand-edited .nspawn file
    without its image comment must not let prune delete a live overlay's lower tree)."""
    users: dict[str, list[str]] = {}
    for name in Store(paths).names():
        keys: set[str] = set()
        with contextlib.suppress(Error):
            keys.add(load_config(paths, name).image or "")
        lower = overlay.lower_of(paths, name)
        if lower is not None and lower.parent.parent == paths.images:
            keys.add(lower.parent.name)
        for key in sorted(keys - {""}):
            users.setdefault(key, []).append(name)
    return users
