"""Layer streams: each layer read once, verified as it is read, decompressed within its
limits and applied in order.

A layer is read in one pass: its compressed bytes are hashed on their way to the decoder (no
pass before it to check the digest), the decoder and the hash of what it gives run in a
second thread (readahead.py), and the unpacker writes files meanwhile.  A layer that is not
what its digests say fails once it is read, and then nothing of the image stays in dest: a
tree is whole and verified, or not there.  When anything fails while a layer is read, its
digest is checked first, since a tampered blob is the cause to report.
"""

import re
from pathlib import Path

from ... import log
from ...errors import Error, InvalidInput
from ...fs.walk import empty_dir
from .. import compression
from ..readahead import ReadAhead
from ..unpack import apply_layer
from .config import Image
from .index import LAYER_TYPES
from .layout import TAMPERED, BlobReader, Descriptor, Layout, check_digest, check_size


def unpack_layers(layout: Layout, image: Image, dest: Path, warn=None, start: int = 0,
                  used: int = 0, after=None) -> list[int]:
    """Apply the layers of image from the start-th on, in order, into dest (empty, or holding
    the tree of the layers before start, which took used bytes), all of them within one byte
    budget; returns the bytes each layer applied took, and gives that list so far to
    after() once each layer is in.  On any failure dest is emptied."""
    budget = compression.MAX_TOTAL_BYTES - used
    took = []
    try:
        for name, desc, diff_id in image.layers[start:]:
            n, warnings = unpack_layer(layout, name, desc, diff_id, dest, budget)
            budget -= n
            took.append(n)
            if after is not None:
                after(took)
            for w in warnings:
                if warn:
                    warn(w)
                else:
                    log.warning(__name__, "%s", w)
    except BaseException:
        empty_dir(dest)
        raise
    return took


def unpack_layer(layout: Layout, name: str, desc: Descriptor | None, diff_id: str, dest: Path,
                 budget: int) -> tuple[int, list[str]]:
    """Verify and apply one layer; return the uncompressed bytes it took and warnings."""
    expect = desc
    if desc is not None:
        check_size(layout, desc, "layer")
        kind, size = LAYER_TYPES[desc.media_type], desc.size
    else:
        found = layout.size(name)
        if found is None:
            raise InvalidInput(f"docker archive has no layer '{name}'")
        size = found
        with layout.open(name) as f:
            kind = compression.sniff(f.read(8))
        named = re.fullmatch(r"blobs/(sha256|sha512)/([a-f0-9]+)", name)
        expect = None
        if named or kind is None:  # its name or its diff_id is its digest
            digest = f"{named.group(1)}:{named.group(2)}" if named else diff_id
            expect = Descriptor("", check_digest(digest, "layer"), size)
    if not diff_id.startswith("sha256:"):
        raise InvalidInput(f"layer diff_id {diff_id[:14]}... uses an unsupported algorithm")
    limit, why = compression.expansion_limit(size, budget, f"layer {diff_id}")
    if budget <= limit:
        why = f"image expands beyond the limit of {compression.MAX_TOTAL_BYTES} bytes"
    # a plain docker layer named by its diff_id: one hash checks both
    same = kind is None and expect is not None and expect.digest == diff_id
    with layout.open(name) as raw:
        blob = BlobReader(raw, expect, "layer") if expect is not None else None
        try:
            stream = compression.Stream(blob or raw, kind, limit, why,
                                        hash_name=None if same else "sha256")
            with ReadAhead(stream) as ahead:
                warnings = apply_layer(ahead, dest, whiteouts=True, max_file_bytes=limit)
                ahead.drain()  # to the end: the diff_id covers it, the decoder checks its end
        except Error:
            if blob is not None:
                blob.check()  # the reader thread has stopped: the rest is read here
            raise
        if blob is not None:
            blob.check()
    if not same and "sha256:" + stream.hexdigest() != diff_id:
        raise InvalidInput(f"layer {diff_id} does not match its diff_id once uncompressed",
                           hint=TAMPERED)
    return stream.count, warnings
