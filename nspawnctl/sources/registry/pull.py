"""Pulling an image: a reference in, a record of its verified blobs in the store out.

    1. the reference (reference.py); a short name through registries.conf (shortnames.py);
    2. --pull: missing (the default) and never use a record of the name for this platform,
       with its blobs, and touch no network; newer asks the registry for the current digest
       and keeps the local image if it is the same or the registry cannot be reached; always
       asks the registry;
    3. the manifest (skopeo inspect --raw, bounded): its digest is computed here, and a
       reference by digest must get exactly that digest; an index is looked through for the
       platform (--platform, the host's by default) and the chosen manifest fetched by its
       digest and held to it;
    4. everything the manifest declares is bounded before a byte of a blob is fetched: media
       types, sizes, how many layers, how much in all;
    5. the blobs the store lacks are copied by skopeo into a staging layout, by the manifest's
       digest (so skopeo cannot be given another manifest than the one checked here), with
       the store's blobs linked in for it to reuse, and each is checked and linked into the
       store as soon as it is whole (a killed pull keeps what it had finished);
    6. the image is read back from the store the way an OCI layout is read (sources/oci:
       digests, media types, diff_ids, platform) and only then recorded.
"""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ...errors import Error, InvalidInput, NotFound, Usage
from ...formats.platforms import Platform, parse_platform
from ...paths import Paths
from ...store.blobs import BlobStore, Record, now
from ...store.containers import Store
from ..oci.index import CONFIG_TYPES, INDEX_TYPES, LAYER_TYPES, MANIFEST_TYPES, load_manifest
from ..oci.layout import MAX_JSON_BYTES, Descriptor, DirLayout
from . import shortnames, skopeo
from .reference import Reference, parse_user

POLICIES = ("missing", "always", "never", "newer")
MAX_LAYERS = 256                 # docker's own limit is 127
MAX_IMAGE_BYTES = 64 << 30       # compressed bytes of one image (all its blobs)
MAX_INDEX_ENTRIES = 1024
HOSTILE = "the registry is broken or hostile; nothing of it was kept"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")

Report = Callable[[str], None]
# progress(bytes, of_bytes) as a download goes, and progress(bytes, of_bytes, landed) with a
# line that names a blob once it is whole and checked (a terminal shows both)
Progress = Callable[..., None]


@dataclass(frozen=True)
class Pulled:
    record: Record
    cached: bool = False      # served from the store: nothing asked of a registry
    fetched_bytes: int = 0
    fetched_blobs: int = 0
    blobs: int = 0
    seconds: float = 0.0


def pull(paths: Paths, text: str, *, policy: str | None = None, platform: str | None = None,
         tls_verify: bool | None = None, report: Report = print,
         progress: Progress | None = None, conf: shortnames.Conf | None = None) -> Pulled:
    """Pull the image text names (see the module docstring); the record of what was pulled."""
    policy = policy or "missing"
    if policy not in POLICIES:
        raise Usage(f"invalid --pull {policy!r}", hint=f"use one of: {', '.join(POLICIES)}")
    ref = parse_user(text)
    want = parse_platform(platform)
    if ref.short and conf is None:
        conf = shortnames.load()
    store = BlobStore(paths)
    with store.using(report):
        local = None
        if policy != "always":
            names = shortnames.local_candidates(ref, conf) if conf is not None else [ref]
            local = _local(store, names, want)
            if local is not None and policy != "newer" and _whole(store, local):
                if local.name not in (r.name for r in store.records()):
                    store.record(replace(local, pulled=now()))
                return Pulled(local, cached=True)
        if policy == "never":
            raise NotFound(f"image {ref.name} is not pulled for {want} (--pull never)",
                           hint=f"pull it first: nspawnctl pull {text}")
        if ref.short:
            assert conf is not None
            resolved = shortnames.resolve(ref, conf)
            report(resolved.why)
            candidates = resolved.candidates
        else:
            candidates = (ref,)
        failures = []
        for candidate in candidates:
            try:
                return _pull(paths, store, candidate, want, tls_verify, report, progress,
                             local if policy == "newer" else None)
            except Error as e:
                if len(candidates) == 1:
                    raise
                failures.append(e)
        raise Error(f"cannot pull {ref.name} from any unqualified-search registry: "
                    + "; ".join(e.message for e in failures))


def _local(store: BlobStore, names: list[Reference], want: Platform) -> Record | None:
    """The record that serves one of names (in order) for the platform: by name, or for a
    reference by digest any record of that image (its digest or its index's)."""
    records = [r for r in store.records() if r.platform == str(want)]
    for name in names:
        for r in records:
            if r.name == name.name:
                return r
        if name.digest:
            for r in records:
                if name.digest in (r.digest, r.index):
                    return replace(r, name=name.name)
    return None


def _whole(store: BlobStore, record: Record) -> bool:
    try:
        return all(store.has(d, s) for d, s in store.image_blobs(record.digest, record.size))
    except Error:
        return False


def _pull(paths: Paths, store: BlobStore, ref: Reference, want: Platform,
          tls_verify: bool | None, report: Report, progress: Progress | None,
          local: Record | None) -> Pulled:
    t0 = time.monotonic()
    with Store(paths).staging(paths.pulled, "pull") as stage:
        tmp = stage / "tmp"
        tmp.mkdir()
        try:
            top = skopeo.inspect_raw(ref.name, tls_verify, tmp)
        except Error:
            if local is not None:  # --pull newer: the registry cannot say; keep what we have
                report(f"warning: cannot reach the registry of {ref.name}; using the image "
                       "pulled before")
                return Pulled(local, cached=True)
            raise
        top_digest = "sha256:" + hashlib.sha256(top).hexdigest()
        if ref.digest and top_digest != ref.digest:
            raise InvalidInput(f"registry answered {ref.name} with another manifest ({top_digest})",
                               hint=HOSTILE)
        doc = _document(top, ref, "manifest")
        index = index_size = None
        if _is_index(doc):
            index, index_size = top_digest, len(top)
            desc = _choose(doc, ref, want)
            if local is not None and desc.digest == local.digest:
                return Pulled(local, cached=True)
            raw = skopeo.inspect_raw(f"{ref.repository}@{desc.digest}", tls_verify, tmp)
            if len(raw) != desc.size or \
                    "sha256:" + hashlib.sha256(raw).hexdigest() != desc.digest:
                raise InvalidInput(f"registry answered {ref.repository}@{desc.digest} with another "
                                   "manifest", hint=HOSTILE)
            doc = _document(raw, ref, "manifest")
            if _is_index(doc):
                raise InvalidInput(f"image {ref.name}: an index inside an index is not supported")
            manifest, media_type = raw, desc.media_type
        else:
            manifest, media_type = top, _media_type(doc)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        if local is not None and digest == local.digest:
            return Pulled(local, cached=True)
        blobs = _bounded(doc, ref, media_type)
        with store.pull_lock(digest, report):
            fetched = _fetch(store, f"{ref.repository}@{digest}", blobs, stage, tls_verify,
                             progress)
            store.add_bytes(manifest, digest, tmp)
            if index:
                store.add_bytes(top, index, tmp)
            store.sync()
            image = load_manifest(DirLayout(store.root),
                                  Descriptor(media_type, digest, len(manifest)))
            os_, arch = image.config.get("os"), image.config.get("architecture")
            if not want.matches(os_, arch, image.config.get("variant") if want.variant
                                else None):
                raise InvalidInput(f"image {ref.name} is for {os_}/{arch}, not {want}",
                                   hint="pass --platform OS/ARCH to pull it for another platform")
            record = Record(ref.name, str(want), digest, len(manifest), media_type, index,
                            index_size, now())
            store.record(record)
    seconds = time.monotonic() - t0
    got = sum(s for d, s in blobs if d in fetched)
    report(f"pulled {ref.name} ({digest[:19]}): {len(fetched)} of {len(blobs)} blobs fetched, "
           f"{_size(got)} in {seconds:.1f} s"
           + (f" ({got / 1e6 / seconds:.1f} MB/s)" if got >= 100_000 and seconds > 0 else ""))
    return Pulled(record, False, got, len(fetched), len(blobs), round(seconds, 3))


def _document(data: bytes, ref: Reference, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise InvalidInput(f"registry sent a {what} for {ref.name} that is not a JSON object",
                           hint=HOSTILE)
    if doc.get("schemaVersion") == 1 or doc.get("mediaType") in SCHEMA1:
        raise InvalidInput(f"image {ref.name} has a Docker schema 1 manifest, which nspawnctl does "
                           "not read", hint="it is deprecated since 2017: ask for a newer image")
    return doc


def _is_index(doc: dict) -> bool:
    return doc.get("mediaType") in INDEX_TYPES or \
        (doc.get("mediaType") is None and isinstance(doc.get("manifests"), list))


def _media_type(doc: dict) -> str:
    media_type = doc.get("mediaType")
    if media_type is None:  # OCI allows leaving it out of a manifest
        return MANIFEST_TYPES[0]
    if media_type not in MANIFEST_TYPES:
        raise InvalidInput(f"registry sent a manifest of unknown type {str(media_type)[:80]!r}",
                           hint="this is not a container image nspawnctl can run")
    return media_type


def _choose(index: dict, ref: Reference, want: Platform) -> Descriptor:
    """The index's manifest for the platform: the first whose platform matches."""
    entries = index.get("manifests")
    if not isinstance(entries, list) or len(entries) > MAX_INDEX_ENTRIES:
        raise InvalidInput(f"registry sent an index for {ref.name} without a list of at most "
                           f"{MAX_INDEX_ENTRIES} manifests", hint=HOSTILE)
    seen = []
    for entry in entries:
        desc = Descriptor.parse(entry, "index entry")
        p = desc.platform or {}
        if desc.media_type not in MANIFEST_TYPES:
            continue  # attestations, nested indexes, artifacts
        if want.matches(p.get("os"), p.get("architecture"), p.get("variant")):
            if desc.size > MAX_JSON_BYTES:
                raise InvalidInput(
                    f"index entry {desc.digest} declares {desc.size} bytes, more than "
                    f"a manifest may have ({MAX_JSON_BYTES})", hint=HOSTILE)
            return desc
        seen.append(f"{p.get('os')}/{p.get('architecture')}"
                    + (f"/{p['variant']}" if p.get("variant") else ""))
    raise NotFound(f"image {ref.name} has no manifest for {want}",
                   hint=f"it has: {', '.join(sorted(set(seen))) or 'none'}; choose one with "
                        "--platform")


def _bounded(manifest: dict, ref: Reference, media_type: str) -> list[tuple[str, int]]:
    """(digest, size) of the config and layers, once each is within nspawnctl's bounds."""
    if not isinstance(manifest.get("layers"), list) or "config" not in manifest:
        raise InvalidInput(f"registry sent a manifest for {ref.name} without config and layers",
                           hint=HOSTILE)
    declared = manifest.get("mediaType")
    if declared is not None and declared != media_type:
        raise InvalidInput(f"registry sent a {declared!r} for {ref.name} where its index says "
                           f"{media_type!r}", hint=HOSTILE)
    config = Descriptor.parse(manifest["config"], "config")
    if config.media_type not in CONFIG_TYPES:
        raise InvalidInput(f"image {ref.name} has a config of unknown type "
                           f"{config.media_type[:80]!r}", hint="this is not a container image")
    if config.size > MAX_JSON_BYTES:
        raise InvalidInput(f"image {ref.name} declares a config of {config.size} bytes, more than "
                           f"{MAX_JSON_BYTES}", hint=HOSTILE)
    if len(manifest["layers"]) > MAX_LAYERS:
        raise InvalidInput(f"image {ref.name} has {len(manifest['layers'])} layers, more than "
                           f"{MAX_LAYERS}", hint=HOSTILE)
    layers = [Descriptor.parse(m, "layer") for m in manifest["layers"]]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise InvalidInput(f"image {ref.name} has a layer of unknown type "
                               f"{layer.media_type[:80]!r}",
                               hint="nspawnctl unpacks tar, gzip and zstd layers")
        if layer.digest.startswith("sha512:"):
            raise InvalidInput(f"image {ref.name} names a layer by a sha512 digest, which skopeo's "
                               "store does not take")
    total = config.size + sum(layer.size for layer in layers)
    if total > MAX_IMAGE_BYTES:
        raise InvalidInput(f"image {ref.name} declares {total} bytes of blobs, more than "
                           f"{MAX_IMAGE_BYTES >> 30} GiB", hint=HOSTILE)
    out: dict[str, int] = {}
    for desc in [config, *layers]:
        if out.setdefault(desc.digest, desc.size) != desc.size:
            raise InvalidInput(f"image {ref.name} names blob {desc.digest} with two sizes",
                               hint=HOSTILE)
    return list(out.items())


def _fetch(store: BlobStore, image: str, blobs: list[tuple[str, int]], stage: Path,
           tls_verify: bool | None, progress: Progress | None) -> set[str]:
    """Bring the blobs the store lacks; returns the digests fetched."""
    missing = {d: s for d, s in blobs if not store.has(d, s)}
    if not missing:
        return set()
    layout = stage / "layout"
    have = layout / "blobs" / "sha256"
    have.mkdir(parents=True)
    for d, s in blobs:
        store.link_into(d, s, have)  # skopeo reuses what is there
    fetched: set[str] = set()
    expected = sum(missing.values())
    done = [0]

    def moved(written: int, total: int):
        done[0] = written
        if progress:
            progress(written, total)

    def landed(name: str):
        digest = f"sha256:{name}"
        if digest in missing and digest not in fetched:
            store.adopt(have / name, digest, missing[digest])
            fetched.add(digest)
            if progress:
                progress(done[0], expected, f"blob {digest[:19]}: {_size(missing[digest])}, "
                                            f"checked ({len(fetched)} of {len(missing)})")

    watch = skopeo.CopyWatch(expected=expected, largest=max(missing.values()),
                             on_file=landed, on_progress=moved)
    skopeo.copy(image, layout, tls_verify, watch, stage / "tmp")
    for digest in missing:
        if digest not in fetched:
            path = have / digest.split(":")[1]
            if not path.exists():
                raise InvalidInput(f"registry did not send blob {digest} of {image}", hint=HOSTILE)
            landed(digest.split(":")[1])
    return fetched


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


@dataclass(frozen=True)
class Current:
    """What a registry says a reference names now, for the platform (lookup)."""
    name: str
    digest: str  # its manifest's, for the platform: what keys its base tree (oci-sha256-...)


def lookup(paths: Paths, text: str, *, platform: str | None = None,
           tls_verify: bool | None = None) -> Current:
    """Ask the registry which image TEXT (a qualified reference) names now, fetching no blob:
    the manifest (through an index for the platform), held to the same bounds and checks as a
    pull's (a reference by digest must get that digest, an index entry its digest, the config
    descriptor its bounds), so that auto-update --dry-run and auto-update decide alike."""
    ref = parse_user(text)
    if ref.short:
        raise Usage(f"{text[:80]!r} is a short name: auto-update asks one registry",
                    hint="make the container from a qualified reference "
                         "(REGISTRY/REPO:TAG)")
    want = parse_platform(platform)
    with Store(paths).staging(paths.pulled, "lookup") as stage:
        tmp = stage / "tmp"
        tmp.mkdir()
        raw = skopeo.inspect_raw(ref.name, tls_verify, tmp)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ref.digest and digest != ref.digest:
            raise InvalidInput(f"registry answered {ref.name} with another manifest ({digest})",
                               hint=HOSTILE)
        doc = _document(raw, ref, "manifest")
        media_type = None
        if _is_index(doc):
            desc = _choose(doc, ref, want)
            raw = skopeo.inspect_raw(f"{ref.repository}@{desc.digest}", tls_verify, tmp)
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if len(raw) != desc.size or digest != desc.digest:
                raise InvalidInput(f"registry answered {ref.repository}@{desc.digest} with "
                                   "another manifest", hint=HOSTILE)
            doc = _document(raw, ref, "manifest")
            if _is_index(doc):
                raise InvalidInput(f"image {ref.name}: an index inside an index is not "
                                   "supported")
            media_type = desc.media_type
        _bounded(doc, ref, media_type or _media_type(doc))  # refused here as by a pull
    return Current(ref.name, digest)
