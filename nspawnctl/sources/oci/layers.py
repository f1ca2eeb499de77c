"""Layer streams: each layer verified, decompressed within its limits and applied in order."""

import logging
import re
from pathlib import Path

from ...errors import Error
from .. import compression
from ..unpack import apply_layer
from .config import Image
from .index import LAYER_TYPES
from .layout import TAMPERED, Descriptor, Layout, check_digest, verify_blob

log = logging.getLogger(__name__)


def unpack_layers(layout: Layout, image: Image, dest: Path, warn=None) -> None:
    """Apply every layer of image in order into dest, all of them within one byte budget."""
    budget = compression.MAX_TOTAL_BYTES
    for name, desc, diff_id in image.layers:
        used, warnings = unpack_layer(layout, name, desc, diff_id, dest, budget)
        budget -= used
        for w in warnings:
            (warn or log.warning)(w)


def unpack_layer(layout: Layout, name: str, desc: Descriptor | None, diff_id: str, dest: Path,
                 budget: int) -> tuple[int, list[str]]:
    """Verify and apply one layer; return the uncompressed bytes it took and warnings."""
    if desc is not None:
        verify_blob(layout, desc, "layer")
        kind, size = LAYER_TYPES[desc.media_type], desc.size
    else:
        found = layout.size(name)
        if found is None:
            raise Error(f"docker archive has no layer '{name}'")
        size = found
        with layout.open(name) as f:
            kind = compression.sniff(f.read(8))
        named = re.fullmatch(r"blobs/(sha256|sha512)/([a-f0-9]+)", name)
        if named or kind is None:  # its name or its diff_id is its digest: check first
            digest = f"{named.group(1)}:{named.group(2)}" if named else diff_id
            verify_blob(layout, Descriptor("", check_digest(digest, "layer"), size), "layer",
                        name)
    if not diff_id.startswith("sha256:"):
        raise Error(f"layer diff_id {diff_id[:14]}... uses an unsupported algorithm")
    limit, why = compression.expansion_limit(size, budget, f"layer {diff_id}")
    if budget <= limit:
        why = f"image expands beyond the limit of {compression.MAX_TOTAL_BYTES} bytes"
    with layout.open(name) as raw:
        stream = compression.Stream(raw, kind, limit, why, hash_name="sha256")
        warnings = apply_layer(stream, dest, whiteouts=True, max_file_bytes=limit)
        stream.drain()  # to the end: the diff_id covers it, and the decoder checks its end
    if "sha256:" + stream.hexdigest() != diff_id:
        raise Error(f"layer {diff_id} does not match its diff_id once uncompressed",
                    hint=TAMPERED)
    return stream.count, warnings
