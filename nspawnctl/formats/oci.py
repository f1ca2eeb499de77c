"""Write a one-layer image archive (an OCI image layout in a tar, or a `docker save` archive)
from a layer stream, in one pass.

The layer's digest is known only once it is written, and the outer tar's header names the
blob by that digest and says its size: so the header's place is kept (one 512-byte block)
while the layer streams behind it, and written there afterwards (pwrite).  The layer is an
uncompressed tar, so its digest is also its diff_id, and one hash serves both.
"""

import hashlib
import json
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from .platforms import parse_platform
from .tar import BLOCK, Sink

OCI_LAYOUT = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
FORMATS = ("oci-archive", "docker-archive")  # ops/export.py names them too


@dataclass(frozen=True)
class RunConfig:
    """How the image runs: what an OCI config's "config" holds."""

    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str | None = None
    user: str | None = None
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"

    def to_json(self) -> dict:
        out: dict = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        return out


def image_config(run: RunConfig, diff_id: str, created_by: str) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = parse_platform(None)
    config = {"created": now, "architecture": host.architecture, "os": host.os,
              "config": run.to_json(),
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": now, "created_by": created_by}]}
    return json.dumps(config, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Outer:
    """The outer tar, written straight to fd."""

    def __init__(self, fd: int):
        self.fd = fd
        self.mtime = int(time.time())

    def _header(self, name: str, size: int, type_: bytes = tarfile.REGTYPE) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mtime = size, type_, self.mtime
        info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
        # GNU format: one block for a name under 100 bytes, base-256 sizes past 8 GiB
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")

    def dir(self, name: str) -> None:
        _write(self.fd, self._header(name, 0, tarfile.DIRTYPE))

    def file(self, name: str, data: bytes) -> None:
        _write(self.fd, self._header(name, len(data)) + data + b"\0" * (-len(data) % BLOCK))

    def streamed(self, name_of: Callable[[str], str],
                 write: Callable[[Sink], None]) -> tuple[str, int]:
        """An entry whose bytes write(sink) makes and whose name name_of(digest) gives:
        its header block is kept free and filled in at the end.  Returns (digest, size)."""
        where = os.lseek(self.fd, 0, os.SEEK_CUR)
        _write(self.fd, b"\0" * BLOCK)
        hasher = hashlib.sha256()
        sink = Sink(self.fd, hasher=hasher)
        write(sink)
        sink.close()
        size = sink.count
        _write(self.fd, b"\0" * (-size % BLOCK))
        digest = "sha256:" + hasher.hexdigest()
        header = self._header(name_of(digest), size)
        assert len(header) == BLOCK
        os.pwrite(self.fd, header, where)
        return digest, size

    def end(self) -> None:
        _write(self.fd, b"\0" * (2 * BLOCK))


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_archive(fd: int, fmt: str, layer: Callable[[Sink], None], run: RunConfig,
                  name: str, created_by: str) -> dict:
    """An image archive of format fmt into fd (a new, empty, seekable file): one layer that
    layer(sink) writes, run as RunConfig says, named NAME:latest.  Returns its digests."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    out = _Outer(fd)
    if fmt == "oci-archive":
        out.file("oci-layout", OCI_LAYOUT)
        out.dir("blobs/")
        out.dir("blobs/sha256/")

        def blob(digest: str) -> str:
            return "blobs/sha256/" + digest.split(":", 1)[1]

        layer_digest, layer_size = out.streamed(blob, layer)
        config = image_config(run, layer_digest, created_by)
        config_digest = _digest(config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest,
                        "size": layer_size}]}, separators=(",", ":")).encode()
        manifest_digest = _digest(manifest)
        index = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_INDEX,
            "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": manifest_digest,
                           "size": len(manifest),
                           "annotations": {REF_ANNOTATION: f"{name}:latest"}}]},
            separators=(",", ":")).encode()
        out.file(blob(config_digest), config)
        out.file(blob(manifest_digest), manifest)
        out.file("index.json", index)
    else:
        layer_digest, layer_size = out.streamed(
            lambda d: d.split(":", 1)[1] + "/layer.tar", layer)
        config = image_config(run, layer_digest, created_by)
        config_digest = _digest(config)
        config_name = config_digest.split(":", 1)[1] + ".json"
        layer_name = layer_digest.split(":", 1)[1] + "/layer.tar"
        out.file(config_name, config)
        out.file("manifest.json", json.dumps([{
            "Config": config_name, "RepoTags": [f"{name}:latest"],
            "Layers": [layer_name]}]).encode())
        out.file("repositories", json.dumps(
            {name: {"latest": layer_digest.split(":", 1)[1]}}).encode())
        manifest_digest = None
    out.end()
    return {"layer": layer_digest, "layer_size": layer_size, "config": config_digest,
            "manifest": manifest_digest}
