"""The blobs of pulled images: one OCI image layout under /var/lib/nspawnctl/oci, shared by
every image pulled, so that a second image on the same base layers fetches only its own.

    oci/oci-layout, oci/index.json     the layout; index.json lists what was pulled (records)
    oci/blobs/sha256/HEX               manifests, indexes, configs and layers, by digest
    oci/.nspawnctl-staging/            pulls in progress (swept once their owner is dead)

A blob enters the store only whole and checked: it is hashed where it was fetched (a staging
layout), synced, and then hard-linked in under its digest, so a SIGKILL or a power cut leaves
either no file or the right one, never a partial blob under a digest's name.  A record
(a name, the platform it was pulled for, the manifest's digest) is written after all of its
blobs are in.  Blobs nothing records are what `images prune` removes.

Locks: every pull holds the store shared (lock); prune and rm hold it exclusive while they
remove blobs, so no blob goes while a pull counts on it.  index.json is rewritten whole under
its own short lock (records_lock).  Pulls of the same image take pull_lock(digest): the
second waits, then finds every blob there.
"""

import contextlib
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import Error, InvalidInput
from ..fs.files import fsync_dir, mkdir_private, write_atomic
from ..fs.locks import flocked, unlink_lock
from ..paths import Paths

DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
MAX_DOCUMENT = 4 << 20          # a manifest, index or config in the store
MAX_RECORDS_BYTES = 32 << 20    # index.json
LAYOUT = '{"imageLayoutVersion": "1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20
TAMPERED = "the registry sent something other than what it named; it was not kept"


def check_digest(digest: object) -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise InvalidInput(f"invalid digest {str(digest)[:80]!r}",
                           hint="the registry is broken or hostile")
    return digest


@dataclass(frozen=True)
class Record:
    """One name pulled: what `images` lists and a create --pull=missing finds."""

    name: str            # REGISTRY/REPOSITORY:TAG or ...@sha256:DIGEST
    platform: str        # os/arch[/variant] it was chosen for
    digest: str          # the image manifest's digest (the base tree's key)
    size: int            # the manifest's size
    media_type: str
    index: str | None    # the digest of the index the name pointed at, if it was one
    index_size: int | None
    pulled: float        # when

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                "annotations": {REF_NAME: self.name, "io.nspawnctl.platform": self.platform,
                                "io.nspawnctl.index": self.index or "",
                                "io.nspawnctl.index-size": str(self.index_size or ""),
                                "io.nspawnctl.pulled": str(self.pulled)}}

    @classmethod
    def parse(cls, desc: object) -> "Record | None":
        """A record from index.json (which only nspawnctl writes), or None if it is not one."""
        try:
            assert isinstance(desc, dict)
            notes = desc["annotations"]
            index = notes.get("io.nspawnctl.index") or None
            size = notes.get("io.nspawnctl.index-size")
            return cls(name=str(notes[REF_NAME]), platform=str(notes["io.nspawnctl.platform"]),
                       digest=check_digest(desc["digest"]), size=int(desc["size"]),
                       media_type=str(desc["mediaType"]),
                       index=check_digest(index) if index else None,
                       index_size=int(size) if size else None,
                       pulled=float(notes["io.nspawnctl.pulled"]))
        except (AssertionError, KeyError, TypeError, ValueError, Error):
            return None


class BlobStore:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.root = paths.pulled
        self.blobs = self.root / "blobs" / "sha256"

    def ensure(self) -> "BlobStore":
        mkdir_private(self.paths.state)
        self.blobs.mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            write_atomic(self.root / "oci-layout", LAYOUT)
        return self

    def path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).split(":")[1]

    def has(self, digest: str, size: int) -> bool:
        """Whether the blob is in the store with its size (its content was checked when it
        came in)."""
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == size

    # --- bringing blobs in ---------------------------------------------------------------

    def adopt(self, src: Path, digest: str, size: int) -> bool:
        """Check src (a fetched file) against digest and size and link it into the store;
        False if the store had it already.  Error if it is not what its digest says."""
        check_digest(digest)
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise InvalidInput(
                    f"blob {digest} has {st.st_size} bytes, its descriptor says {size}",
                    hint=TAMPERED)
            h = hashlib.sha256()
            while data := os.read(fd, CHUNK):
                h.update(data)
            if f"sha256:{h.hexdigest()}" != digest:
                raise InvalidInput(f"blob {digest} does not match its digest", hint=TAMPERED)
            os.fsync(fd)  # whole on disk before its name says it is
        finally:
            os.close(fd)
        if self.has(digest, size):
            return False
        try:
            os.link(src, self.path(digest))
        except FileExistsError:  # another pull brought it meanwhile, or a wrong-size leftover
            if self.has(digest, size):
                return False
            os.unlink(self.path(digest))
            os.link(src, self.path(digest))
        return True

    def add_bytes(self, data: bytes, digest: str, stage: Path) -> bool:
        """A document fetched whole (a manifest, an index) into the store, checked."""
        tmp = stage / f"doc-{check_digest(digest).split(':')[1]}"
        tmp.write_bytes(data)
        return self.adopt(tmp, digest, len(data))

    def link_into(self, digest: str, size: int, dest_dir: Path) -> bool:
        """Hard-link the store's blob into another layout's blobs/sha256 (a pull's staging
        layout, for skopeo to reuse rather than fetch); False if the store lacks it."""
        if not self.has(digest, size):
            return False
        with contextlib.suppress(FileExistsError):
            os.link(self.path(digest), dest_dir / digest.split(":")[1])
        return True

    def sync(self):
        fsync_dir(self.blobs)

    def read_document(self, digest: str, size: int | None = None) -> dict:
        """A JSON blob of the store (manifest, index, config), checked against its digest."""
        path = self.path(digest)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_DOCUMENT + 1)
        except FileNotFoundError:
            raise InvalidInput(f"blob {digest} is not in the image store",
                               hint="pull the image again") from None
        if len(data) > MAX_DOCUMENT or (size is not None and len(data) != size) or \
                f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise InvalidInput(f"blob {digest} in the image store is not what its name says",
                               hint=f"remove {path} and pull the image again")
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise InvalidInput(f"blob {digest} is not a JSON object")
        return doc

    # --- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def using(self, report: Callable[[str], None]) -> Iterator["BlobStore"]:
        """The store held shared: no blob is removed meanwhile."""
        self.ensure()
        with flocked(self.root / ".lock",
                     lambda: report("waiting for an images prune or rm to finish"),
                     shared=True):
            yield self

    @contextlib.contextmanager
    def exclusive(self, report: Callable[[str], None]) -> Iterator["BlobStore"]:
        self.ensure()
        with flocked(self.root / ".lock",
                     lambda: report("waiting for the pulls in progress to finish")):
            yield self

    @contextlib.contextmanager
    def pull_lock(self, digest: str, report: Callable[[str], None]) -> Iterator[None]:
        path = self.root / f".pull-{check_digest(digest).split(':')[1][:32]}.lock"
        with flocked(path, lambda: report("waiting for another nspawnctl pulling the same "
                                          "image")):
            try:
                yield
            finally:
                unlink_lock(path)

    def _records_lock(self):
        return flocked(self.root / ".records.lock", lambda: None)

    # --- records ------------------------------------------------------------------------

    def records(self) -> list[Record]:
        try:
            with open(self.root / "index.json", "rb") as f:
                data = f.read(MAX_RECORDS_BYTES + 1)
        except FileNotFoundError:
            return []
        if len(data) > MAX_RECORDS_BYTES:
            raise InvalidInput(
                f"{self.root / 'index.json'} is larger than {MAX_RECORDS_BYTES >> 20} MiB")
        try:
            doc = json.loads(data)
        except ValueError:
            raise InvalidInput(f"{self.root / 'index.json'} is not valid JSON",
                               hint="it lists the pulled images: restore it or remove it (and "
                                    "pull again)") from None
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        found = [Record.parse(m) for m in manifests or []]
        return [r for r in found if r is not None]

    def _write_records(self, records: list[Record]):
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [r.descriptor() for r in records]}
        write_atomic(self.root / "index.json", json.dumps(doc, indent=1))

    def record(self, new: Record) -> Record | None:
        """Add or replace the record of new.name for its platform; returns the one replaced."""
        self.ensure()
        with self._records_lock():
            records = self.records()
            old = next((r for r in records
                        if (r.name, r.platform) == (new.name, new.platform)), None)
            records = [r for r in records if r is not old] + [new]
            self._write_records(records)
        return old

    def forget(self, keep: Callable[[Record], bool]) -> list[Record]:
        """Remove the records keep() refuses; returns them."""
        with self._records_lock():
            records = self.records()
            gone = [r for r in records if not keep(r)]
            if gone:
                self._write_records([r for r in records if keep(r)])
        return gone

    def find(self, name: str, platform: str) -> Record | None:
        return next((r for r in self.records() if (r.name, r.platform) == (name, platform)),
                    None)

    # --- what is used, and the rest ------------------------------------------------------

    def image_blobs(self, digest: str, size: int | None = None) -> list[tuple[str, int]]:
        """(digest, size) of the manifest, its config and its layers."""
        manifest = self.read_document(digest, size)
        out = [(digest, size if size is not None else self.path(digest).stat().st_size)]
        for desc in [manifest.get("config"), *(manifest.get("layers") or [])]:
            if not isinstance(desc, dict) or not isinstance(desc.get("size"), int):
                raise InvalidInput(f"manifest {digest} in the image store is malformed")
            out.append((check_digest(desc.get("digest")), desc["size"]))
        return out

    def referenced(self, records: list[Record] | None = None) -> set[str]:
        """Every blob a record needs (a record whose manifest is unreadable keeps only what
        it names directly: prune must not fail on it, nor take more than it can tell); of
        the records given, to tell what a change to them would leave unneeded."""
        used: set[str] = set()
        for r in self.records() if records is None else records:
            used.add(r.digest)
            if r.index:
                used.add(r.index)
            with contextlib.suppress(Error, OSError):
                used.update(d for d, _ in self.image_blobs(r.digest, r.size))
        return used

    def unused(self, records: list[Record] | None = None) -> dict[str, int]:
        """The blobs no record needs (of records, when given), with their sizes: what
        collect() removes, and what a --dry-run says it would."""
        used = {d.split(":")[1] for d in self.referenced(records)}
        found = {}
        try:
            entries = list(os.scandir(self.blobs))
        except FileNotFoundError:
            return {}
        for entry in entries:
            if entry.name in used:
                continue
            with contextlib.suppress(FileNotFoundError):
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
        return found

    def collect(self) -> tuple[int, int]:
        """Remove the blobs no record needs (the caller holds the store exclusive); returns
        (count, bytes)."""
        count = freed = 0
        for name, size in self.unused().items():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.blobs / name)
                count, freed = count + 1, freed + size
        if count:
            self.sync()
        return count, freed

    def bytes_of(self, digest: str, size: int | None = None) -> int | None:
        """What an image's blobs take (compressed, as fetched), or None if unreadable."""
        try:
            return sum(s for _, s in self.image_blobs(digest, size))
        except (Error, OSError):
            return None


def now() -> float:
    return round(time.time(), 3)


def as_dict(record: Record) -> dict:
    return asdict(record)
