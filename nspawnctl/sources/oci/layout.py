"""Where the files of an image live (a directory or a tar archive), and reading them verified.

Everything read is untrusted: a digest is checked against its grammar before it becomes a
path, every blob's size against its descriptor before it is read, JSON blobs against their
digest before they are parsed, and JSON documents are bounded.  Layers are hashed as they
are decompressed (BlobReader, one read of each), and a layer that does not match fails the
whole unpack (layers.py).
"""

import hashlib
import io
import json
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ...errors import Error, InvalidInput, NotFound, Usage
from ..unpack import SafeTarFile

MAX_JSON_BYTES = 4 << 20
MAX_ARCHIVE_LINKS = 8
MAX_ARCHIVE_MEMBERS = 1 << 16
CHUNK = 1 << 20

KINDS = ("oci-archive", "docker-archive", "oci")
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64})|(sha512:[a-f0-9]{128})")
TAMPERED = "the image is corrupt or was tampered with; it was not unpacked"
MALICIOUS = "the image is malformed or malicious; it was not unpacked"
TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, IndexError, OverflowError)


def check_digest(value: object, what: str = "blob") -> str:
    """The digest, once it is known to be algorithm:hex and thus safe as a path."""
    if not isinstance(value, str) or not DIGEST_RE.fullmatch(value):
        raise InvalidInput(
            f"image {what} has an invalid digest: {str(value)[:100]!r}", hint=MALICIOUS)
    return value


def blob_path(digest: str) -> str:
    algorithm, hexpart = check_digest(digest).split(":")
    return f"blobs/{algorithm}/{hexpart}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None

    @classmethod
    def parse(cls, obj: object, what: str) -> "Descriptor":
        if not isinstance(obj, dict):
            raise InvalidInput(f"image {what} descriptor is not an object")
        media_type, size = obj.get("mediaType"), obj.get("size")
        if not isinstance(media_type, str):
            raise InvalidInput(f"image {what} descriptor has no media type")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"image {what} descriptor has an invalid size: {size!r}")
        platform, annotations = obj.get("platform"), obj.get("annotations")
        return cls(media_type, check_digest(obj.get("digest"), what), size,
                   platform if isinstance(platform, dict) else None,
                   annotations if isinstance(annotations, dict) else None)


class Layout:
    """Files of an image by their name in the layout (e.g. "index.json", "blobs/sha256/...").

    JSON blobs are read, verified and parsed once per digest (blob_json), however often the
    image's indexes refer to them.
    """

    def __init__(self):
        self._json: dict[str, tuple[int, dict]] = {}

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def blob_json(self, desc: Descriptor, what: str) -> dict:
        cached = self._json.get(desc.digest)
        if cached is None:
            cached = (desc.size, read_blob_json(self, desc, what))
            self._json[desc.digest] = cached
        elif cached[0] != desc.size:
            raise InvalidInput(f"image {what} blob {desc.digest} has {cached[0]} bytes, "
                               f"its descriptor says {desc.size}", hint=TAMPERED)
        return cached[1]


class DirLayout(Layout):
    def __init__(self, path: Path):
        super().__init__()
        if not path.exists():
            raise NotFound(f"{path}: no such directory")
        if not path.is_dir():
            raise Usage(f"{path} is not an image-layout directory",
                        hint="use oci-archive:FILE for an image archive")
        self.path = path

    def size(self, name: str) -> int | None:
        try:
            st = (self.path / name).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def open(self, name: str) -> BinaryIO:
        f = open(self.path / name, "rb", buffering=0)
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            f.close()
            raise InvalidInput(f"{self.path / name} is not a regular file")
        return f


class TarLayout(Layout):
    """An uncompressed tar read in place: members are indexed once, then read by offset.

    The archive's headers go through the same bounded parser as layers, and at most
    MAX_ARCHIVE_MEMBERS of them are indexed.
    """

    def __init__(self, path: Path):
        super().__init__()
        try:
            self.tar = SafeTarFile(path, "r", what="image archive")
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except IsADirectoryError:
            raise Usage(f"{path} is a directory", hint="use oci:DIR for an image-layout directory")
        except TAR_ERRORS as e:
            raise InvalidInput(
                f"{path} is not an uncompressed tar archive ({e})",
                hint="decompress it first (image archives are plain tar files)") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            while True:
                try:
                    m = self.tar.next()
                except TAR_ERRORS as e:
                    raise InvalidInput(f"{path} is not a valid tar archive ({e})") from None
                if m is None:
                    break
                cast(Any, self.tar).members.clear()  # indexed here instead
                if len(self.members) >= MAX_ARCHIVE_MEMBERS:
                    raise InvalidInput(
                        f"{path} has more than {MAX_ARCHIVE_MEMBERS} files, the limit "
                        "for an image archive", hint=MALICIOUS)
                self.members[os.path.normpath(m.name).lstrip("/")] = m
        except BaseException:
            self.tar.close()
            raise

    def member(self, name: str):
        m = self.members.get(name)
        for _ in range(MAX_ARCHIVE_LINKS):  # follow in-archive links (docker save uses them)
            if m is None or not (m.issym() or m.islnk()):
                return m
            target = m.linkname if m.islnk() else os.path.join(os.path.dirname(m.name),
                                                                  m.linkname)
            m = self.members.get(os.path.normpath(target).lstrip("/"))
        return None

    def size(self, name: str) -> int | None:
        m = self.member(name)
        return m.size if m is not None and m.isfile() else None

    def open(self, name: str) -> BinaryIO:
        m = self.member(name)
        if m is None or not m.isfile():
            raise InvalidInput(f"image archive has no file '{name}'")
        if not m.issparse():
            fileobj = cast(Any, self.tar).fileobj
            return cast(BinaryIO, _Member(fileobj.fileno(), m.offset_data, m.size, name))
        f = self.tar.extractfile(m)  # holes to fill in: tarfile's own reader
        assert f is not None  # a regular file
        return cast(BinaryIO, f)

    def close(self) -> None:
        self.tar.close()


class _Member(io.RawIOBase):
    """A member of an archive read in place, by offset (pread): no copy of it anywhere, and
    no buffering layers between the reader and the file."""

    def __init__(self, fd: int, offset: int, size: int, name: str):
        self.fd, self.pos, self.end, self.name = fd, offset, offset + size, name

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        left = self.end - self.pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        data = os.pread(self.fd, n, self.pos)
        if not data:
            raise InvalidInput(f"image archive ends inside its file '{self.name}'", hint=TAMPERED)
        self.pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def open_layout(kind: str, path: Path) -> Layout:
    if kind not in KINDS:
        raise Error(f"unknown image source kind '{kind}'")
    return DirLayout(path) if kind == "oci" else TarLayout(path)


def read_json(layout: Layout, name: str, what: str) -> object:
    size = layout.size(name)
    if size is None:
        raise InvalidInput(f"image has no {what} ('{name}')")
    if size > MAX_JSON_BYTES:
        raise InvalidInput(f"image {what} is too large ({size} bytes, limit {MAX_JSON_BYTES})")
    with layout.open(name) as f:
        return parse_json(f.read(MAX_JSON_BYTES + 1), what)


def parse_json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"image {what} is not valid JSON: {e}") from None


def check_size(layout: Layout, desc: Descriptor, what: str, name: str | None = None) -> str:
    """The blob's name, once its size is known to be its descriptor's (nothing read yet)."""
    name = name or blob_path(desc.digest)
    size = layout.size(name)
    if size is None:
        raise InvalidInput(f"image {what} blob {desc.digest} is missing")
    if size != desc.size:
        raise InvalidInput(f"image {what} blob {desc.digest} has {size} bytes, "
                           f"its descriptor says {desc.size}", hint=TAMPERED)
    return name


def verify_blob(layout: Layout, desc: Descriptor, what: str, name: str | None = None) -> None:
    """Check a blob's size and digest before anything parses it."""
    with layout.open(check_size(layout, desc, what, name)) as f:
        blob = BlobReader(f, desc, what)
        blob.check()


class BlobReader:
    """A blob read once, hashed on the way, for what decompresses it as it is read.

    Reads stop one byte past the descriptor's size (that byte tells a blob too long).
    check() reads what is left and raises the digest's Error unless the whole blob is what
    its descriptor says: call it at the end, and also when anything read from the blob
    failed, since a blob that is not what it should be is the cause to report.
    """

    def __init__(self, raw: BinaryIO, desc: Descriptor, what: str):
        self.raw, self.desc, self.what = raw, desc, what
        self.hash = hashlib.new(desc.digest.split(":")[0])
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        left = self.desc.size + 1 - self.count
        n = min(CHUNK, left) if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        data = self.raw.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def check(self) -> None:
        while self.read(CHUNK):
            pass
        if self.count != self.desc.size or \
                f"{self.hash.name}:{self.hash.hexdigest()}" != self.desc.digest:
            raise InvalidInput(
                f"image {self.what} blob {self.desc.digest} does not match its digest",
                hint=TAMPERED)


def read_blob_json(layout: Layout, desc: Descriptor, what: str) -> dict:
    if desc.size > MAX_JSON_BYTES:
        raise InvalidInput(f"image {what} is too large ({desc.size} bytes, limit {MAX_JSON_BYTES})")
    verify_blob(layout, desc, what)
    with layout.open(blob_path(desc.digest)) as f:
        data = f.read(desc.size + 1)
    if hashlib.new(desc.digest.split(":")[0], data).hexdigest() != desc.digest.split(":")[1]:
        raise InvalidInput(f"image {what} blob {desc.digest} changed while reading it")
    obj = parse_json(data, what)
    if not isinstance(obj, dict):
        raise InvalidInput(f"image {what} is not a JSON object")
    return obj
