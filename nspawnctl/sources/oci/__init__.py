"""Read OCI image layouts and `docker save` archives, verify them, unpack their layers.

Three sources: "oci-archive" (a tar of an OCI image layout), "docker-archive"
(`docker save` / `podman save`: the legacy manifest.json format, or an OCI
layout that happens to carry a manifest.json too) and "oci" (an image-layout
directory, with an optional REF matching org.opencontainers.image.ref.name).

An image is resolved once (resolve_image: index, manifest and config read and verified) and
unpacked from that resolution (unpack_resolved): every layer is checked against the digests
the resolved manifest and config name, so an archive swapped in between cannot slip another
image's layers under the first one's digest.

The parts: layout.py (where files live, verified reading), platforms.py, index.py (OCI
indexes and manifests), docker.py (legacy archives), config.py (the resolved image and its
run settings), layers.py (layer streams, through compression.py and unpack.py, which never
writes outside the tree).
"""

from dataclasses import dataclass
from pathlib import Path

from ...errors import InvalidInput, Usage
from ...formats.platforms import ARCHES, Platform, parse_platform
from .config import Image, ImageConfig, image_config
from .docker import load_docker
from .index import MAX_INDEX_DEPTH, REF_ANNOTATION, load_oci
from .layers import unpack_layers
from .layout import KINDS, MAX_JSON_BYTES, Layout, open_layout

__all__ = ["ARCHES", "KINDS", "MAX_INDEX_DEPTH", "MAX_JSON_BYTES", "REF_ANNOTATION",
           "ImageConfig", "Platform", "Resolved", "inspect_image", "parse_platform",
           "parse_reference", "resolve_image", "unpack_image", "unpack_resolved"]


@dataclass(frozen=True)
class Resolved:
    """An image read and verified down to its config: what unpack_resolved unpacks."""

    kind: str
    path: Path
    image: Image
    config: ImageConfig


def parse_reference(spec: str) -> tuple[str, Path, str | None]:
    """Split "oci-archive:PATH", "docker-archive:PATH", "oci:DIR[:REF]" into (kind, path, ref)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise Usage(f"unknown image source '{spec}'",
                    hint="use oci-archive:PATH, docker-archive:PATH or oci:DIR[:REF]")
    ref = None
    if kind == "oci" and not Path(rest).is_dir() and ":" in rest:
        rest, _, ref = rest.rpartition(":")
        if not rest or not ref:
            raise Usage(f"invalid image source '{spec}'", hint="use oci:DIR[:REF]")
    return kind, Path(rest), ref


def _load(layout: Layout, kind: str, ref: str | None, platform: str | None) -> Image:
    want = parse_platform(platform)
    is_oci = kind != "docker-archive" or layout.size("index.json") is not None
    image = load_oci(layout, ref, want) if is_oci else load_docker(layout, ref)
    os_, arch = image.config.get("os"), image.config.get("architecture")
    if (os_, arch) != (want.os, want.architecture):
        raise InvalidInput(
            f"image is for {os_}/{arch}, not {want}",
            hint="pass --platform OS/ARCH to choose another image of a multi-platform "
                 "index" if platform is None else None)
    return image


def resolve_image(kind: str, path: Path, ref: str | None = None,
                  platform: str | None = None) -> Resolved:
    """Read and verify index, manifest and config only (no layer): the image to unpack."""
    layout = open_layout(kind, path)
    try:
        image = _load(layout, kind, ref, platform)
    finally:
        layout.close()
    return Resolved(kind, path, image, image_config(image))


def inspect_image(kind: str, path: Path, ref: str | None = None,
                  platform: str | None = None) -> ImageConfig:
    """The cache key and run settings of an image, without reading a layer."""
    return resolve_image(kind, path, ref, platform).config


def unpack_resolved(resolved: Resolved, dest: Path, warn=None, start: int = 0,
                    used: int = 0, after=None) -> list[int]:
    """Apply the layers of a resolved image in order into dest, each checked against the
    digests of the resolution, whatever the path holds now: all of them into an empty
    directory, or those from start on into the tree of the ones before (unpack_layers);
    returns the bytes each applied layer took."""
    layout = open_layout(resolved.kind, resolved.path)
    try:
        return unpack_layers(layout, resolved.image, dest, warn, start, used, after)
    finally:
        layout.close()


def unpack_image(kind: str, path: Path, dest: Path, ref: str | None = None,
                 platform: str | None = None, warn=None) -> ImageConfig:
    """Resolve the image and apply its layers into dest, reading the source once."""
    layout = open_layout(kind, path)
    try:
        image = _load(layout, kind, ref, platform)
        config = image_config(image)
        unpack_layers(layout, image, dest, warn)
    finally:
        layout.close()
    return config
