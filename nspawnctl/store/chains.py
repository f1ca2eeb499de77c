"""Layer chains: an image's base tree built on the tree of the layers it shares with others.

Images share their first layers (a base OS, then a runtime): a second image from the same base
should unpack only its own layers.  So while an image is unpacked, the tree of each proper
prefix of its layers is kept (a hard-linked copy, cp -al: directories made anew, files shared,
so a few hundredths of a second for a Debian-sized tree), and once the image is whole they go
to images/layers-CHAIN/{tree,chain.json}, CHAIN naming the layers' diff_ids in order (a failed
create leaves none); a base tree records its own chain in chain.json beside its meta.json.
A later image starts from a hard-linked copy of the longest of these whose layers are its
first ones, and applies only the rest.

Sharing files between trees is safe because nothing writes a cached tree's files in place: the
unpacker replaces a file (unlink, then O_EXCL) and never opens an existing one for writing or
changes its owner or mode; directories, which it does change, are not shared; containers are
copies of a base tree or overlays over it (read-only below).  A chain's tree is the one its
diff_ids name: each was checked against the layer's bytes when that tree was unpacked.
"""

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import log
from ..errors import Error
from ..fs.files import fsync_dir
from ..fs.walk import empty_dir, remove_tree
from ..paths import Paths
from ..run import run

CHAIN = "chain.json"
PREFIX = "layers-"  # images/layers-CHAIN: the tree of a chain of layers, no image's own


@dataclass(frozen=True)
class Prefix:
    tree: Path              # the tree to start from (held while the with-block runs)
    layers: int             # how many of the image's first layers it holds
    used: tuple[int, ...]   # the uncompressed bytes each of those layers took
    added: tuple[str, ...]  # what make_runnable added to it, to take away again


def chain_id(diff_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(diff_ids).encode()).hexdigest()


def record(tree: Path, diff_ids: list[str], used: list[int], added: list[str]) -> None:
    """Write the chain of a base tree being built (tree is stage/tree; chain.json goes beside
    it, committed with it by ensure_image's rename)."""
    (tree.parent / CHAIN).write_text(json.dumps(
        {"diff_ids": diff_ids, "bytes": used, "added": added}))


def _read(entry: Path) -> dict | None:
    """A committed tree's chain, or None (no chain, unreadable, not whole)."""
    try:
        chain = json.loads((entry / CHAIN).read_text())
        ids, used, added = chain["diff_ids"], chain["bytes"], chain["added"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(ids, list) and isinstance(used, list) and len(ids) == len(used)
            and all(isinstance(d, str) for d in ids) and all(isinstance(n, int) for n in used)
            and isinstance(added, list) and all(a == "/usr" for a in added)):
        return None
    if not entry.name.startswith(PREFIX) and not (entry / "meta.json").is_file():
        return None  # a base tree is whole once its meta.json is there
    return chain


def _candidates(paths: Paths, diff_ids: list[str], own_key: str) -> list[tuple[int, str]]:
    """(layers, entry) of every cached tree whose layers are diff_ids' first ones."""
    found = []
    for k in range(len(diff_ids) - 1, 0, -1):  # the chains kept while images were unpacked
        found.append((k, PREFIX + chain_id(diff_ids[:k])))
    for key in os.listdir(paths.images) if paths.images.is_dir() else []:
        if key.startswith((".", PREFIX)) or key == own_key:
            continue
        chain = _read(paths.images / key)  # base trees of other images
        if chain and 0 < len(chain["diff_ids"]) <= len(diff_ids) \
                and chain["diff_ids"] == diff_ids[:len(chain["diff_ids"])]:
            found.append((len(chain["diff_ids"]), key))
    return sorted(found, reverse=True)


@contextlib.contextmanager
def held_prefix(paths: Paths, diff_ids: list[str], own_key: str) -> Iterator[Prefix | None]:
    """The cached tree holding the most of diff_ids' first layers, held (a shared lock on its
    entry, which `images prune` takes exclusively) for the with-block; None if there is none.
    One that is locked (being pruned now) is passed over, never waited for."""
    for k, entry in _candidates(paths, diff_ids, own_key):
        chain = _read(paths.images / entry)
        if chain is None or chain["diff_ids"] != diff_ids[:k]:
            continue
        fd = os.open(paths.images / f".{entry}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if _read(paths.images / entry) != chain:  # pruned (or remade) before the lock
                continue
            yield Prefix(paths.images / entry / "tree", k, tuple(chain["bytes"]),
                         tuple(chain["added"]))
            return
        finally:
            os.close(fd)
    yield None


def link_copy(src: Path, tree: Path, added: tuple[str, ...] = ()) -> bool:
    """Fill tree (empty) with a hard-linked copy of src, without what make_runnable added to
    it; False (tree emptied again) if that cannot be done here, e.g. a file at the
    filesystem's link limit."""
    try:
        run(["cp", "-a", "-l", "--", f"{src}/.", str(tree)],
            what="linking a tree of shared layers", env={**os.environ, "LC_ALL": "C"})
        for name in added:  # an empty directory made by make_runnable, nothing else
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(tree / name.lstrip("/"))
        return True
    except (Error, OSError) as exc:  # a cache: the user needs no word of it
        log.debug(__name__, "could not link the tree %s: %s", src.parent.name, exc)
        empty_dir(tree)
        return False


def keep(tree: Path, diff_ids: list[str], used: list[int]) -> None:
    """Keep the tree of these first layers of an image being unpacked (tree holds exactly
    them): a hard-linked copy beside it, in the image's staging directory, which commit()
    moves into the store once the image is whole (a failed create leaves none of them).
    Only a cache: if it cannot be kept (a full disk), the unpack goes on without it, and the
    unpack itself then says what is wrong."""
    entry = tree.parent / ".layers" / (PREFIX + chain_id(diff_ids))
    try:
        entry.mkdir(parents=True)
        (entry / "tree").mkdir(mode=0o755)
        if link_copy(tree, entry / "tree"):
            (entry / CHAIN).write_text(json.dumps(
                {"diff_ids": diff_ids, "bytes": used, "added": []}))
            return
    except (Error, OSError) as exc:
        log.debug(__name__, "could not keep the tree of %d layers: %s", len(diff_ids), exc)
    with contextlib.suppress(OSError):
        remove_tree(entry)


def commit(paths: Paths, tree: Path) -> None:
    """Move the trees keep() kept beside tree (an image built whole) into the store; one
    that is there already (another image kept it first) stays as it is."""
    kept = tree.parent / ".layers"
    for name in sorted(os.listdir(kept)) if kept.is_dir() else []:
        if _read(kept / name) is None or _read(paths.images / name) is not None:
            continue
        with contextlib.suppress(OSError):  # ENOTEMPTY: another one moved it in meanwhile
            os.rename(kept / name, paths.images / name)
    with contextlib.suppress(OSError):
        remove_tree(kept)
    fsync_dir(paths.images)


def prune(paths: Paths) -> list[str]:
    """Remove the kept chains that are no longer the first layers of any base tree; returns
    the entries removed."""
    wanted: set[str] = set()
    entries = sorted(os.listdir(paths.images)) if paths.images.is_dir() else []
    for key in entries:
        if not key.startswith((".", PREFIX)) and (chain := _read(paths.images / key)):
            ids = chain["diff_ids"]
            wanted.update(PREFIX + chain_id(ids[:k]) for k in range(1, len(ids)))
    removed = []
    for entry in entries:
        if not entry.startswith(PREFIX) or entry in wanted:
            continue
        lock = paths.images / f".{entry}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # an unpack starts from it now
        try:
            remove_tree(paths.images / entry)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            removed.append(entry)
        except OSError as e:
            log.warning(__name__, "could not remove the layer tree %s: %s", entry,
                        e.strerror or e)
        finally:
            os.close(fd)
    return removed
