"""images, images rm and images prune: the base trees, the images pulled from registries, and
which containers use each."""

from ..errors import Conflict, Error, NotFound
from ..runtime.context import Context
from ..sources.registry import shortnames
from ..sources.registry.reference import parse_user
from ..store import images
from ..store.blobs import BlobStore, Record
from ..store.images import read_meta, usage_by_image, users_by_image
from .common import require_root


def list_images(ctx: Context) -> list[dict]:
    """One row per pulled name (repository, tag, digest, ...) and one per base tree no pulled
    name stands for; each with the containers that use its tree."""
    paths = ctx.paths
    users = users_by_image(paths)
    trees = {row["key"]: row for row in images.list_images(paths, usage_by_image(paths))}
    store = BlobStore(paths)
    rows = []
    named = set()
    for record in sorted(store.records(), key=lambda r: (r.name, r.platform)):
        key = tree_key(record.digest)
        named.add(key)
        tree = trees.get(key)
        repository, tag = split_name(record.name)
        rows.append({"repository": repository, "tag": tag, "digest": record.digest,
                     "platform": record.platform, "index": record.index, "key": key,
                     "source": f"docker://{record.name}", "suite": None,
                     "size": tree["size"] if tree else None,
                     "download": store.bytes_of(record.digest, record.size),
                     "created": record.pulled, "unpacked": tree is not None,
                     "containers": users.get(key, [])})
    for key, tree in trees.items():
        if key in named:
            continue
        rows.append(dict(tree, repository=None, tag=None, digest=(read_meta(
            paths.images / key) or {}).get("digest"), platform=None, index=None,
            download=None, unpacked=True, containers=users.get(key, [])))
    return rows


def tree_key(digest: str) -> str:
    return "oci-" + digest.replace(":", "-")


def split_name(name: str) -> tuple[str, str | None]:
    if "@" in name:
        return name.split("@", 1)[0], None
    repository, _, tag = name.rpartition(":")
    return repository, tag


def remove(ctx: Context, ref: str, dry_run: bool = False) -> dict:
    """images rm REF: a pulled name (all its platforms), or a base tree by key; its tree
    too when no container uses it and no other name stands for it, and the blobs nothing
    needs any more.  Refused while a container uses its tree.  With dry_run, what it would
    take, and nothing changed."""
    require_root()
    paths, report = ctx.paths, ctx.report
    store = BlobStore(paths)
    records = store.records()
    sizes = {row["key"]: row["size"] for row in images.list_images(paths, {})}
    keys = set(sizes)
    matching = _matching(records, ref)
    if not matching and ref not in keys:
        raise NotFound(f"no image {ref!r}", hint="see nspawnctl images")
    key_set = {tree_key(r.digest) for r in matching} if matching else {ref}
    users = users_by_image(paths)
    used = sorted({n for k in key_set for n in users.get(k, [])})
    if used:
        raise Conflict(f"image {ref} is used by container(s) {', '.join(used)}",
                       hint="remove them first (nspawnctl remove NAME)")
    names = {r.name for r in matching}
    if dry_run:
        kept = [r for r in records if r.name not in names]
        left = {tree_key(r.digest) for r in kept}
        unused = store.unused(kept)
        return _done(sorted(names), sorted(k for k in key_set if k not in left and k in keys),
                     sizes, unused)
    store.forget(lambda r: r.name not in names)
    left = {tree_key(r.digest) for r in store.records()}
    trees = {k for k in key_set if k not in left and k in keys}
    # the trees first, under their own locks (a create building one holds its lock and then
    # the store's): never the store's lock and a tree's at once
    removed_trees = images.prune(paths, lambda: usage_by_image(paths), only=trees) \
        if trees else []
    with store.exclusive(report):
        count, freed = store.collect()
    return dict(_done(sorted(names), removed_trees, sizes, {}), blobs=count, bytes=freed)


def _done(names: list[str], trees: list[str], sizes: dict, blobs: dict[str, int]) -> dict:
    """What images rm and prune took (or would take): names, trees with their sizes, blobs."""
    return {"names": names, "trees": trees, "tree_sizes": {k: sizes.get(k) for k in trees},
            "blobs": len(blobs), "bytes": sum(blobs.values())}


def _matching(records: list[Record], ref: str) -> list[Record]:
    """The records REF names: exactly, or as the name it normalizes to, or for a short name
    the first candidate recorded (as create would find it)."""
    exact = [r for r in records if r.name == ref]
    if exact:
        return exact
    try:
        parsed = parse_user(ref)
    except Error:
        return []
    candidates = shortnames.local_candidates(parsed, shortnames.load()) if parsed.short \
        else [parsed]
    for candidate in candidates:
        found = [r for r in records if r.name == candidate.name]
        if found:
            return found
    return []


def prune(ctx: Context, dry_run: bool = False) -> dict:
    """Remove the base trees no container uses, and the blobs no pulled name needs; with
    dry_run, say which (and their sizes), and change nothing."""
    require_root()
    paths = ctx.paths
    rows = images.list_images(paths, usage_by_image(paths))
    sizes = {row["key"]: row["size"] for row in rows}
    store = BlobStore(paths)
    if dry_run:
        unused = store.unused() if store.root.is_dir() else {}
        return _done([], [row["key"] for row in rows if not row["containers"]], sizes, unused)
    removed = images.prune(paths, lambda: usage_by_image(paths))
    count = freed = 0
    if store.root.is_dir():
        with store.exclusive(ctx.report):
            count, freed = store.collect()
    return dict(_done([], removed, sizes, {}), blobs=count, bytes=freed)
