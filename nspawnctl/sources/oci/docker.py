"""The legacy `docker save` format: manifest.json lists a config file and layer tars."""

import hashlib
import os
import re

from ...errors import InvalidInput, NotFound, Usage
from .config import Image, check_diff_ids
from .layout import MALICIOUS, MAX_JSON_BYTES, TAMPERED, Layout, parse_json, read_json


def safe_member_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("/") or \
            ".." in name.split("/"):
        raise InvalidInput(f"docker archive names an invalid {what} file: {str(name)[:100]!r}",
                           hint=MALICIOUS)
    return os.path.normpath(name)


def load_docker(layout: Layout, ref: str | None) -> Image:
    entries = read_json(layout, "manifest.json", "manifest.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict)
                                                               for e in entries):
        raise InvalidInput("docker archive manifest.json lists no image")
    if ref is not None:
        entries = [e for e in entries if ref in (e.get("RepoTags") or [])]
        if not entries:
            raise NotFound(f"docker archive has no image tagged '{ref}'")
    elif len(entries) > 1:
        tags = [t for e in entries for t in (e.get("RepoTags") or [])]
        raise Usage("docker archive holds several images", hint=f"choose one of: {tags}")
    entry = entries[0]
    config_name = safe_member_name(entry.get("Config"), "config")
    size = layout.size(config_name)
    if size is None or size > MAX_JSON_BYTES:
        raise InvalidInput(f"docker archive config '{config_name}' is missing or too large")
    with layout.open(config_name) as f:
        data = f.read(MAX_JSON_BYTES + 1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # The config's name is its digest ("HEX.json" or "blobs/sha256/HEX"): hold it to it.
    named = re.fullmatch(r"(?:blobs/sha256/)?([a-f0-9]{64})(?:\.json)?", config_name)
    if named and named.group(1) != digest.split(":")[1]:
        raise InvalidInput(f"docker archive config '{config_name}' does not match its digest",
                           hint=TAMPERED)
    config = parse_json(data, "config")
    if not isinstance(config, dict):
        raise InvalidInput("docker archive config is not a JSON object")
    layer_names = entry.get("Layers")
    if not isinstance(layer_names, list):
        raise InvalidInput("docker archive manifest.json lists no layers")
    diff_ids = check_diff_ids(config, len(layer_names))
    return Image(digest, config, tuple((safe_member_name(n, "layer"), None, i)
                                       for n, i in zip(layer_names, diff_ids)))
