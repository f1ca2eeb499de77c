"""The cache of read-only base trees, and cloning them into containers.

A base tree is made once per key (the hash of everything that decides its content) and kept
under /var/lib/nspawnctl/images/KEY/{tree,meta.json}.  Containers are clones of it, made with
the cheapest method the filesystem has: a btrfs snapshot, else `cp --reflink=auto` (a reflink
copy on btrfs/XFS, a plain copy elsewhere).
"""

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from .errors import Error
from .fsutil import flocked, tree_size
from .paths import Paths
from .run import run
from .store import Store, remove_tree

BTRFS_MAGIC = 0x9123683E
XFS_MAGIC = 0x58465342


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


def clone_method(src: Path) -> str:
    fstype = _fs_magic(src)
    if fstype == BTRFS_MAGIC and os.stat(src).st_ino == 256:
        return "btrfs-snapshot"
    if fstype in (BTRFS_MAGIC, XFS_MAGIC):
        return "reflink"
    return "copy"


def _fs_magic(path: Path) -> int:
    import ctypes
    buf = ctypes.create_string_buffer(120)  # struct statfs; f_type is the first long
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(os.fsencode(path), buf) != 0:
        return 0
    return int.from_bytes(buf.raw[:8], "little")


def clone_tree(src: Path, dst: Path) -> str:
    """Copy tree src to dst (which must not exist) the cheapest way; returns the method."""
    method = clone_method(src)
    try:
        if method == "btrfs-snapshot":
            run(["btrfs", "subvolume", "snapshot", src, dst], what="btrfs snapshot")
        else:
            run(["cp", "-a", "--reflink=auto", "--", src, dst], what="copying the tree")
    except Error as exc:
        if "No space left" in exc.message:
            raise Error(f"no space left on the filesystem of {_mount_point(dst.parent)}",
                        hint="free some space, e.g. nspawnctl images prune") from None
        raise
    return method


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


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
