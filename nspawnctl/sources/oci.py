"""Read OCI image layouts and `docker save` archives, verify them, unpack their layers.

Three sources: "oci-archive" (a tar of an OCI image layout), "docker-archive"
(`docker save` / `podman save`: the legacy manifest.json format, or an OCI
layout that happens to carry a manifest.json too) and "oci" (an image-layout
directory, with an optional REF matching org.opencontainers.image.ref.name).

Everything read is untrusted: a digest is checked against its grammar before it
becomes a path, every blob against its descriptor's size and digest before it
is parsed or decompressed, every layer's uncompressed stream against the
config's diff_ids, every manifest's media type against its descriptor.  JSON
documents, the output size and the compression ratio are bounded.  The layers
themselves go through nspawnctl.unpack, which never writes outside the tree.
"""

import gzip
import hashlib
import io
import json
import logging
import os
import platform as host_platform
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import Error
from .unpack import apply_layer

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 4 << 20
MAX_TOTAL_BYTES = 64 << 30          # uncompressed bytes of all layers together
BOMB_RATIO = 100                    # uncompressed:compressed, enforced past BOMB_MIN_BYTES
BOMB_MIN_BYTES = 256 << 20
MAX_INDEX_DEPTH = 4
MAX_ARCHIVE_LINKS = 8
CHUNK = 1 << 20

KINDS = ("oci-archive", "docker-archive", "oci")
REF_ANNOTATION = "org.opencontainers.image.ref.name"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json")
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": None,
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": None,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": None,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64})|(sha512:[a-f0-9]{128})")
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class ImageConfig:
    """What nspawnctl needs from an image: its cache key and how to run it."""

    digest: str  # the manifest's digest (the image ID for legacy docker archives)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=VALUE"
    working_dir: str | None = None
    user: str | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    architecture: str = ""
    os: str = ""


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
            raise Error(f"image {what} descriptor is not an object")
        media_type, size = obj.get("mediaType"), obj.get("size")
        if not isinstance(media_type, str):
            raise Error(f"image {what} descriptor has no media type")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Error(f"image {what} descriptor has an invalid size: {size!r}")
        platform, annotations = obj.get("platform"), obj.get("annotations")
        return cls(media_type, check_digest(obj.get("digest"), what), size,
                   platform if isinstance(platform, dict) else None,
                   annotations if isinstance(annotations, dict) else None)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def matches(self, os_: object, arch: object, variant: object = None) -> bool:
        return (os_ == self.os and arch == self.architecture
                and (self.variant is None or variant == self.variant))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(spec: str | None) -> Platform:
    if spec is None:
        machine = host_platform.machine()
        return Platform("linux", ARCHES.get(machine, machine))
    parts = spec.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise Error(f"invalid platform '{spec}'", hint="use OS/ARCH[/VARIANT], e.g. linux/arm64")
    return Platform(*parts)


def check_digest(value: object, what: str = "blob") -> str:
    """The digest, once it is known to be algorithm:hex and thus safe as a path."""
    if not isinstance(value, str) or not DIGEST_RE.fullmatch(value):
        raise Error(f"image {what} has an invalid digest: {str(value)[:100]!r}",
                    hint="the image is malformed or malicious; it was not unpacked")
    return value


def blob_path(digest: str) -> str:
    algorithm, hexpart = check_digest(digest).split(":")
    return f"blobs/{algorithm}/{hexpart}"


def parse_reference(spec: str) -> tuple[str, Path, str | None]:
    """Split "oci-archive:PATH", "docker-archive:PATH", "oci:DIR[:REF]" into (kind, path, ref)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise Error(f"unknown image source '{spec}'",
                    hint="use oci-archive:PATH, docker-archive:PATH or oci:DIR[:REF]")
    ref = None
    if kind == "oci" and not Path(rest).is_dir() and ":" in rest:
        rest, _, ref = rest.rpartition(":")
        if not rest or not ref:
            raise Error(f"invalid image source '{spec}'", hint="use oci:DIR[:REF]")
    return kind, Path(rest), ref


# -- where the files of an image live ----------------------------------------------------------

class Layout:
    """Files of an image by their name in the layout (e.g. "index.json", "blobs/sha256/...")."""

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DirLayout(Layout):
    def __init__(self, path: Path):
        if not path.is_dir():
            raise Error(f"{path} is not an image-layout directory")
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
            raise Error(f"{self.path / name} is not a regular file")
        return f


class TarLayout(Layout):
    """An uncompressed tar read in place: members are indexed once, then read by offset."""

    def __init__(self, path: Path):
        try:
            self.tar = tarfile.open(path, "r:")
            members = self.tar.getmembers()
        except FileNotFoundError:
            raise Error(f"{path}: no such file") from None
        except IsADirectoryError:
            raise Error(f"{path} is a directory", hint="use oci:DIR for an image-layout directory")
        except tarfile.ReadError as e:
            raise Error(f"{path} is not an uncompressed tar archive ({e})",
                        hint="decompress it first (image archives are plain tar files)") from None
        self.members = {os.path.normpath(m.name).lstrip("/"): m for m in members}

    def member(self, name: str) -> tarfile.TarInfo | None:
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
            raise Error(f"image archive has no file '{name}'")
        return self.tar.extractfile(m)

    def close(self) -> None:
        self.tar.close()


def open_layout(kind: str, path: Path) -> Layout:
    if kind not in KINDS:
        raise Error(f"unknown image source kind '{kind}'")
    return DirLayout(path) if kind == "oci" else TarLayout(path)


# -- verified reading ----------------------------------------------------------------------------

def read_json(layout: Layout, name: str, what: str) -> object:
    size = layout.size(name)
    if size is None:
        raise Error(f"image has no {what} ('{name}')")
    if size > MAX_JSON_BYTES:
        raise Error(f"image {what} is too large ({size} bytes, limit {MAX_JSON_BYTES})")
    with layout.open(name) as f:
        return parse_json(f.read(MAX_JSON_BYTES + 1), what)


def parse_json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise Error(f"image {what} is not valid JSON: {e}") from None


def hash_stream(f: BinaryIO, algorithm: str, limit: int) -> tuple[str, int]:
    """Digest and length of at most limit + 1 bytes of f (one more tells that it is too long)."""
    h = hashlib.new(algorithm)
    n = 0
    while n <= limit:
        chunk = f.read(min(CHUNK, limit + 1 - n))
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return f"{algorithm}:{h.hexdigest()}", n


def verify_blob(layout: Layout, desc: Descriptor, what: str, name: str | None = None) -> None:
    """Check a blob's size and digest before anything parses or decompresses it."""
    name = name or blob_path(desc.digest)
    size = layout.size(name)
    if size is None:
        raise Error(f"image {what} blob {desc.digest} is missing")
    if size != desc.size:
        raise Error(f"image {what} blob {desc.digest} has {size} bytes, "
                    f"its descriptor says {desc.size}",
                    hint="the image is corrupt or was tampered with; it was not unpacked")
    with layout.open(name) as f:
        digest, n = hash_stream(f, desc.digest.split(":")[0], desc.size)
    if n != desc.size or digest != desc.digest:
        raise Error(f"image {what} blob {desc.digest} does not match its digest",
                    hint="the image is corrupt or was tampered with; it was not unpacked")


def read_blob_json(layout: Layout, desc: Descriptor, what: str) -> dict:
    if desc.size > MAX_JSON_BYTES:
        raise Error(f"image {what} is too large ({desc.size} bytes, limit {MAX_JSON_BYTES})")
    verify_blob(layout, desc, what)
    with layout.open(blob_path(desc.digest)) as f:
        data = f.read(desc.size + 1)
    if hashlib.new(desc.digest.split(":")[0], data).hexdigest() != desc.digest.split(":")[1]:
        raise Error(f"image {what} blob {desc.digest} changed while reading it")
    obj = parse_json(data, what)
    if not isinstance(obj, dict):
        raise Error(f"image {what} is not a JSON object")
    return obj


def check_media_type(obj: dict, desc: Descriptor, what: str) -> None:
    """The document must be what its descriptor says, or an index passes for a manifest."""
    declared = obj.get("mediaType")
    if declared is not None and declared != desc.media_type:
        raise Error(f"image {what} {desc.digest} is {declared!r} but its descriptor says "
                    f"{desc.media_type!r}", hint="the image is malformed or malicious")
    is_index = isinstance(obj.get("manifests"), list)
    is_manifest = isinstance(obj.get("layers"), list) and "config" in obj
    if (desc.media_type in INDEX_TYPES and not is_index) or \
            (desc.media_type in MANIFEST_TYPES and not is_manifest):
        raise Error(f"image {what} {desc.digest} is not the {desc.media_type} "
                    "its descriptor says", hint="the image is malformed or malicious")


# -- choosing a manifest ---------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """A verified manifest (or legacy docker entry) with its config and layers to apply."""

    digest: str
    config: dict
    layers: tuple[tuple[str, Descriptor | None, str], ...]  # (blob name, descriptor, diff_id)


def load_oci(layout: Layout, ref: str | None, want: Platform) -> Image:
    marker = read_json(layout, "oci-layout", "oci-layout file")
    if not isinstance(marker, dict) or not isinstance(marker.get("imageLayoutVersion"), str):
        raise Error("image oci-layout file has no imageLayoutVersion")
    index = read_json(layout, "index.json", "index")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise Error("image index.json has no manifests list")
    descs = [Descriptor.parse(m, "index entry") for m in index["manifests"]]
    if ref is not None:
        descs = [d for d in descs if (d.annotations or {}).get(REF_ANNOTATION) == ref]
        if not descs:
            names = sorted({str((d.annotations or {}).get(REF_ANNOTATION))
                            for d in (Descriptor.parse(m, "index entry")
                                      for m in index["manifests"])})
            raise Error(f"image has no reference '{ref}'", hint=f"it has: {', '.join(names)}")
    seen: list[str] = []
    found = choose(layout, descs, want, 0, seen)
    if found is None:
        raise Error(f"image has no manifest for {want}",
                    hint=f"it has: {', '.join(sorted(set(seen))) or 'none'}; "
                         "choose one with --platform")
    return found


def choose(layout: Layout, descs: list[Descriptor], want: Platform,
           depth: int, seen: list[str]) -> Image | None:
    for desc in descs:
        p = desc.platform
        if p is not None:
            if not want.matches(p.get("os"), p.get("architecture"), p.get("variant")):
                seen.append(f"{p.get('os')}/{p.get('architecture')}")
                continue
        if desc.media_type in INDEX_TYPES:
            if depth >= MAX_INDEX_DEPTH:
                raise Error(f"image indexes nest deeper than {MAX_INDEX_DEPTH}")
            sub = read_blob_json(layout, desc, "index")
            check_media_type(sub, desc, "index")
            found = choose(layout, [Descriptor.parse(m, "index entry") for m in sub["manifests"]],
                           want, depth + 1, seen)
            if found is not None:
                return found
        elif desc.media_type in MANIFEST_TYPES:
            image = load_manifest(layout, desc)
            os_, arch = image.config.get("os"), image.config.get("architecture")
            # The descriptor's platform chose it; load_image holds the config to it.
            if p is not None or want.matches(os_, arch, image.config.get("variant")):
                return image
            seen.append(f"{os_}/{arch}")
        # anything else (attestations, signatures, artifacts) is not an image to run
    return None


def load_manifest(layout: Layout, desc: Descriptor) -> Image:
    manifest = read_blob_json(layout, desc, "manifest")
    check_media_type(manifest, desc, "manifest")
    config_desc = Descriptor.parse(manifest["config"], "config")
    if config_desc.media_type not in CONFIG_TYPES:
        raise Error(f"image config has unknown media type {config_desc.media_type!r}",
                    hint="this is not a container image")
    config = read_blob_json(layout, config_desc, "config")
    layers = [Descriptor.parse(m, "layer") for m in manifest["layers"]]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise Error(f"image layer {layer.digest} has unknown media type "
                        f"{layer.media_type!r}", hint="nspawnctl unpacks tar, gzip and zstd layers")
    diff_ids = check_diff_ids(config, len(layers))
    return Image(desc.digest, config,
                 tuple((blob_path(d.digest), d, i) for d, i in zip(layers, diff_ids)))


def check_diff_ids(config: dict, count: int) -> list[str]:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != count:
        raise Error(f"image config lists {len(diff_ids) if isinstance(diff_ids, list) else 'no'} "
                    f"layer diff_ids for {count} layers")
    return [check_digest(d, "layer diff_id") for d in diff_ids]


def safe_member_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("/") or \
            ".." in name.split("/"):
        raise Error(f"docker archive names an invalid {what} file: {str(name)[:100]!r}",
                    hint="the image is malformed or malicious; it was not unpacked")
    return os.path.normpath(name)


def load_docker(layout: Layout, ref: str | None) -> Image:
    """The legacy `docker save` format: manifest.json lists a config file and layer tars."""
    entries = read_json(layout, "manifest.json", "manifest.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict)
                                                               for e in entries):
        raise Error("docker archive manifest.json lists no image")
    if ref is not None:
        entries = [e for e in entries if ref in (e.get("RepoTags") or [])]
        if not entries:
            raise Error(f"docker archive has no image tagged '{ref}'")
    elif len(entries) > 1:
        tags = [t for e in entries for t in (e.get("RepoTags") or [])]
        raise Error("docker archive holds several images", hint=f"choose one of: {tags}")
    entry = entries[0]
    config_name = safe_member_name(entry.get("Config"), "config")
    size = layout.size(config_name)
    if size is None or size > MAX_JSON_BYTES:
        raise Error(f"docker archive config '{config_name}' is missing or too large")
    with layout.open(config_name) as f:
        data = f.read(MAX_JSON_BYTES + 1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # The config's name is its digest ("HEX.json" or "blobs/sha256/HEX"): hold it to it.
    named = re.fullmatch(r"(?:blobs/sha256/)?([a-f0-9]{64})(?:\.json)?", config_name)
    if named and named.group(1) != digest.split(":")[1]:
        raise Error(f"docker archive config '{config_name}' does not match its digest",
                    hint="the image is corrupt or was tampered with; it was not unpacked")
    config = parse_json(data, "config")
    if not isinstance(config, dict):
        raise Error("docker archive config is not a JSON object")
    layer_names = entry.get("Layers")
    if not isinstance(layer_names, list):
        raise Error("docker archive manifest.json lists no layers")
    diff_ids = check_diff_ids(config, len(layer_names))
    return Image(digest, config, tuple((safe_member_name(n, "layer"), None, i)
                                       for n, i in zip(layer_names, diff_ids)))


def load_image(layout: Layout, kind: str, ref: str | None, platform: str | None) -> Image:
    want = parse_platform(platform)
    is_oci = kind != "docker-archive" or layout.size("index.json") is not None
    if is_oci:
        image = load_oci(layout, ref, want)
    else:
        image = load_docker(layout, ref)
    os_, arch = image.config.get("os"), image.config.get("architecture")
    if (os_, arch) != (want.os, want.architecture):
        raise Error(f"image is for {os_}/{arch}, not {want}",
                    hint="pass --platform OS/ARCH to choose another image of a multi-platform "
                         "index" if platform is None else None)
    return image


def image_config(image: Image) -> ImageConfig:
    cfg = image.config.get("config") or {}
    if not isinstance(cfg, dict):
        raise Error("image config 'config' is not an object")

    def strings(key: str) -> tuple[str, ...]:
        value = cfg.get(key) or []
        if isinstance(value, dict):  # ExposedPorts and Volumes are sets: {"80/tcp": {}}
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Error(f"image config {key} is not a list of strings")
        return tuple(value)

    def string(key: str) -> str | None:
        value = cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise Error(f"image config {key} is not a string")
        return value or None

    return ImageConfig(
        digest=image.digest, entrypoint=strings("Entrypoint"), cmd=strings("Cmd"),
        env=strings("Env"), working_dir=string("WorkingDir"), user=string("User"),
        exposed_ports=strings("ExposedPorts"), volumes=strings("Volumes"),
        architecture=str(image.config.get("architecture", "")),
        os=str(image.config.get("os", "")))


# -- layers ----------------------------------------------------------------------------------

class LayerStream(io.RawIOBase):
    """The uncompressed stream of a layer: hashed for its diff_id, its growth bounded."""

    def __init__(self, source: BinaryIO, limit: int, why: str):
        self.source, self.limit, self.why = source, limit, why
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.source.read(CHUNK if n is None or n < 0 else n)
        except (OSError, EOFError, zlib.error) as e:
            raise Error(f"layer is corrupt: {e}") from None
        except Exception as e:  # zstandard.ZstdError has no common base to name here
            if type(e).__name__ == "ZstdError":
                raise Error(f"layer is corrupt: {e}") from None
            raise
        self.count += len(data)
        if self.count > self.limit:
            raise Error(self.why, hint="the image was not unpacked")
        self.hash.update(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def sniff_compression(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


def decompressor(raw: BinaryIO, compression: str | None) -> BinaryIO:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise Error("the image has zstd-compressed layers but the zstandard module "
                        "is missing", hint="apt-get install python3-zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK,
                                                          read_across_frames=True)
    return raw


def unpack_layer(layout: Layout, name: str, desc: Descriptor | None, diff_id: str, dest: Path,
                 budget: int) -> tuple[int, list[str]]:
    """Verify and apply one layer; return the uncompressed bytes it took and warnings."""
    if desc is not None:
        verify_blob(layout, desc, "layer")
        compression, size = LAYER_TYPES[desc.media_type], desc.size
    else:
        size = layout.size(name)
        if size is None:
            raise Error(f"docker archive has no layer '{name}'")
        with layout.open(name) as f:
            compression = sniff_compression(f.read(4))
        named = re.fullmatch(r"blobs/(sha256|sha512)/([a-f0-9]+)", name)
        if named or compression is None:  # its name or its diff_id is its digest: check first
            digest = f"{named.group(1)}:{named.group(2)}" if named else diff_id
            verify_blob(layout, Descriptor("", check_digest(digest, "layer"), size), "layer",
                        name)
    bomb = max(BOMB_MIN_BYTES, BOMB_RATIO * size)
    if budget <= bomb:
        limit, why = budget, f"image expands beyond the limit of {MAX_TOTAL_BYTES} bytes"
    else:
        limit, why = bomb, (f"layer {diff_id} expands more than {BOMB_RATIO} times its "
                            f"{size} compressed bytes: a decompression bomb")
    with layout.open(name) as raw:
        stream = LayerStream(decompressor(raw, compression), limit, why)
        warnings = apply_layer(stream, dest, whiteouts=True, max_file_bytes=limit)
        stream.drain()
    if "sha256:" + stream.hash.hexdigest() != diff_id:
        if not diff_id.startswith("sha256:"):
            raise Error(f"layer diff_id {diff_id[:14]}... uses an unsupported algorithm")
        raise Error(f"layer {diff_id} does not match its diff_id once uncompressed",
                    hint="the image is corrupt or was tampered with; it was not unpacked")
    return stream.count, warnings


def inspect_image(kind: str, path: Path, ref: str | None = None,
                  platform: str | None = None) -> ImageConfig:
    """Read and verify index, manifest and config only: the cache key and run settings."""
    layout = open_layout(kind, path)
    try:
        return image_config(load_image(layout, kind, ref, platform))
    finally:
        layout.close()


def unpack_image(kind: str, path: Path, dest: Path, ref: str | None = None,
                 platform: str | None = None, warn=None) -> ImageConfig:
    """Apply every layer of the image in order into dest, an existing empty directory."""
    layout = open_layout(kind, path)
    try:
        image = load_image(layout, kind, ref, platform)
        config = image_config(image)
        budget = MAX_TOTAL_BYTES
        for name, desc, diff_id in image.layers:
            used, warnings = unpack_layer(layout, name, desc, diff_id, dest, budget)
            budget -= used
            for w in warnings:
                (warn or log.warning)(w)
        return config
    finally:
        layout.close()
