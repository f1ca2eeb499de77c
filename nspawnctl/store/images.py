"""The cache of read-only base trees.

A base tree is made once per key (the hash of everything that decides its content) and kept
under /var/lib/nspawnctl/images/KEY/{tree,meta.json}.  Containers are clones of it
(fsutil.clone_tree: a reflink copy where the filesystem has them, a plain copy elsewhere) or
overlayfs mounts over it (overlay.py).
"""

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..fsutil import flocked, remove_tree, tree_size
from ..paths import Paths
from .containers import Store


def image_dir(paths: Paths, key: str) -> Path:
    return paths.images / key


def read_meta(path: Path) -> dict | None:
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_image(paths: Paths, key: str, meta: dict, build: Callable[[Path], None],
                 report: Callable[[str], None]) -> tuple[Path, bool]:
    """The base tree for key, built with build(tree_dir) if missing.  Returns (dir, was_cached).

    Two commands that need the same base wait for each other on a lock, so it is built once.
    Its callers hold a container's lock, which has already swept dead staging directories.
    """
    final = image_dir(paths, key)
    if read_meta(final):
        return final, True
    paths.images.mkdir(parents=True, exist_ok=True)
    with _image_lock(paths, key, report):
        if read_meta(final):
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
            os.rename(stage, final)
    return final, False


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


def prune(paths: Paths, usage: dict[str, int]) -> list[str]:
    removed = []
    for row in list_images(paths, usage):
        if row["containers"]:
            continue
        with _image_lock(paths, row["key"], lambda _m: None):
            remove_tree(image_dir(paths, row["key"]))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(paths.images / f".{row['key']}.lock")
        removed.append(row["key"])
    return removed
