"""OCI image layouts: from index.json through nested indexes to one manifest for a platform.

Each index, manifest and config is read and verified once per digest however often it is
referenced (Layout.blob_json), and an index already looked through is not looked through
again: an index naming the same child index many times at each level costs one visit each.
"""

from ...errors import InvalidInput, NotFound
from ...formats.platforms import Platform
from .config import Image, check_diff_ids
from .layout import MALICIOUS, Descriptor, Layout, blob_path, read_json

MAX_INDEX_DEPTH = 4
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


def check_media_type(obj: dict, desc: Descriptor, what: str) -> None:
    """The document must be what its descriptor says, or an index passes for a manifest."""
    declared = obj.get("mediaType")
    if declared is not None and declared != desc.media_type:
        raise InvalidInput(f"image {what} {desc.digest} is {declared!r} but its descriptor says "
                           f"{desc.media_type!r}", hint="the image is malformed or malicious")
    is_index = isinstance(obj.get("manifests"), list)
    is_manifest = isinstance(obj.get("layers"), list) and "config" in obj
    if (desc.media_type in INDEX_TYPES and not is_index) or \
            (desc.media_type in MANIFEST_TYPES and not is_manifest):
        raise InvalidInput(f"image {what} {desc.digest} is not the {desc.media_type} "
                           "its descriptor says", hint="the image is malformed or malicious")


def load_oci(layout: Layout, ref: str | None, want: Platform) -> Image:
    marker = read_json(layout, "oci-layout", "oci-layout file")
    if not isinstance(marker, dict) or not isinstance(marker.get("imageLayoutVersion"), str):
        raise InvalidInput("image oci-layout file has no imageLayoutVersion")
    index = read_json(layout, "index.json", "index")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidInput("image index.json has no manifests list")
    descs = [Descriptor.parse(m, "index entry") for m in index["manifests"]]
    if ref is not None:
        chosen = [d for d in descs if (d.annotations or {}).get(REF_ANNOTATION) == ref]
        if not chosen:
            names = sorted({str((d.annotations or {}).get(REF_ANNOTATION)) for d in descs})
            raise NotFound(f"image has no reference '{ref}'", hint=f"it has: {', '.join(names)}")
        descs = chosen
    chooser = _Chooser(layout, want)
    found = chooser.choose(descs, 0)
    if found is None:
        raise NotFound(f"image has no manifest for {want}",
                       hint=f"it has: {', '.join(sorted(chooser.seen)) or 'none'}; "
                            "choose one with --platform")
    return found


class _Chooser:
    """The first manifest for a platform, depth first through indexes, each digest once."""

    def __init__(self, layout: Layout, want: Platform):
        self.layout, self.want = layout, want
        self.seen: set[str] = set()           # platforms there are, for the hint
        self.indexes_done: set[str] = set()   # looked through, found nothing
        self.manifests: dict[str, Image] = {}

    def choose(self, descs: list[Descriptor], depth: int) -> Image | None:
        for desc in descs:
            p = desc.platform
            if p is not None:
                if not self.want.matches(p.get("os"), p.get("architecture"), p.get("variant")):
                    self.seen.add(f"{p.get('os')}/{p.get('architecture')}")
                    continue
            if desc.media_type in INDEX_TYPES:
                if depth >= MAX_INDEX_DEPTH:
                    raise InvalidInput(f"image indexes nest deeper than {MAX_INDEX_DEPTH}",
                                       hint=MALICIOUS)
                if desc.digest in self.indexes_done:
                    continue  # the same index again: it had nothing then, it has nothing now
                self.indexes_done.add(desc.digest)
                sub = self.layout.blob_json(desc, "index")
                check_media_type(sub, desc, "index")
                found = self.choose([Descriptor.parse(m, "index entry")
                                     for m in sub["manifests"]], depth + 1)
                if found is not None:
                    return found
            elif desc.media_type in MANIFEST_TYPES:
                image = self.manifests.get(desc.digest)
                if image is None:
                    image = self.manifests[desc.digest] = load_manifest(self.layout, desc)
                os_, arch = image.config.get("os"), image.config.get("architecture")
                # The descriptor's platform chose it; load_image holds the config to it.
                if p is not None or self.want.matches(os_, arch, image.config.get("variant")):
                    return image
                self.seen.add(f"{os_}/{arch}")
            # anything else (attestations, signatures, artifacts) is not an image to run
        return None


def load_manifest(layout: Layout, desc: Descriptor) -> Image:
    manifest = layout.blob_json(desc, "manifest")
    check_media_type(manifest, desc, "manifest")
    config_desc = Descriptor.parse(manifest["config"], "config")
    if config_desc.media_type not in CONFIG_TYPES:
        raise InvalidInput(f"image config has unknown media type {config_desc.media_type!r}",
                           hint="this is not a container image")
    config = layout.blob_json(config_desc, "config")
    layers = [Descriptor.parse(m, "layer") for m in manifest["layers"]]
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise InvalidInput(f"image layer {layer.digest} has unknown media type "
                               f"{layer.media_type!r}",
                               hint="nspawnctl unpacks tar, gzip and zstd layers")
    diff_ids = check_diff_ids(config, len(layers))
    return Image(desc.digest, config,
                 tuple((blob_path(d.digest), d, i) for d, i in zip(layers, diff_ids)))
