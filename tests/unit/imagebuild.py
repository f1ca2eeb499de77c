"""Build tar layers, OCI image layouts and docker archives in tests, byte by byte.

Nothing here validates: the point is to make malformed and malicious images as
easily as good ones.
"""

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA = {None: "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
MTIME = 1_600_000_000


@dataclass(frozen=True)
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    xattrs: dict = field(default_factory=dict)
    mtime: int = MTIME
    devmajor: int = 0
    devminor: int = 0


def file(name, data=b"", mode=0o644, **kw) -> Entry:
    return Entry(name, tarfile.REGTYPE, data, mode, **kw)


def dir(name, mode=0o755, **kw) -> Entry:  # noqa: A001 - reads well in tables
    return Entry(name, tarfile.DIRTYPE, mode=mode, **kw)


def symlink(name, target, **kw) -> Entry:
    return Entry(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kw)


def hardlink(name, target, **kw) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target, **kw)


def fifo(name, mode=0o644, **kw) -> Entry:
    return Entry(name, tarfile.FIFOTYPE, mode=mode, **kw)


def chardev(name, major=1, minor=3, **kw) -> Entry:
    return Entry(name, tarfile.CHRTYPE, mode=0o666, devmajor=major, devminor=minor, **kw)


def blockdev(name, major=8, minor=0, **kw) -> Entry:
    return Entry(name, tarfile.BLKTYPE, mode=0o660, devmajor=major, devminor=minor, **kw)


def layer(*entries: Entry) -> bytes:
    """An uncompressed PAX tar of entries, in order, names exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid = e.type, e.mode, e.uid, e.gid
            info.linkname, info.mtime = e.linkname, e.mtime
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.size = len(e.data) if e.type == tarfile.REGTYPE else 0
            info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                for k, v in e.xattrs.items()}
            tar.addfile(info, io.BytesIO(e.data) if info.size else None)
    return buf.getvalue()


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    return data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_blob(root: Path, data: bytes, media_type: str, algorithm: str = "sha256",
               **extra) -> dict:
    """Store data under blobs/ of an image layout; return its descriptor."""
    digest = hashlib.new(algorithm, data).hexdigest()
    path = root / "blobs" / algorithm / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": f"{algorithm}:{digest}", "size": len(data), **extra}


def blob_file(root: Path, desc: dict) -> Path:
    return root / "blobs" / Path(*desc["digest"].split(":"))


def image_config(diff_ids: list[str], arch="amd64", os_="linux", **config) -> dict:
    return {"architecture": arch, "os": os_,
            "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"],
                       "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/srv", "User": "1000:1000",
                       "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, **config},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}}


@dataclass
class Built:
    """Descriptors of what write_manifest stored, for tests to tamper with."""

    manifest: dict
    config: dict
    layers: list[dict]


def write_manifest(root: Path, layers: list[bytes], compression: str | None = "gzip",
                   arch="amd64", os_="linux", layer_media_type: str | None = None,
                   algorithm: str = "sha256", config: dict | None = None,
                   manifest_media_type: str = OCI_MANIFEST, **descriptor) -> Built:
    layer_descs = [write_blob(root, compress(tar, compression),
                              layer_media_type or LAYER_MEDIA[compression], algorithm)
                   for tar in layers]
    config = config or image_config([sha256(t) for t in layers], arch, os_)
    config_desc = write_blob(root, json.dumps(config).encode(), OCI_CONFIG, algorithm)
    manifest = {"schemaVersion": 2, "mediaType": manifest_media_type,
                "config": config_desc, "layers": layer_descs}
    desc = write_blob(root, json.dumps(manifest).encode(), manifest_media_type, algorithm,
                      **descriptor)
    return Built(desc, config_desc, layer_descs)


def write_index(root: Path, manifests: list[dict], name: str = "index.json") -> None:
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / name).write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                         "manifests": manifests}))


def oci_layout(root: Path, layers: list[bytes], ref: str | None = "latest", **kw) -> Built:
    """A one-image OCI layout directory, like `skopeo copy ... oci:DIR:REF` writes."""
    root.mkdir(parents=True, exist_ok=True)
    annotations = {"annotations": {"org.opencontainers.image.ref.name": ref}} if ref else {}
    built = write_manifest(root, layers, **kw, **annotations)
    write_index(root, [built.manifest])
    return built


def tar_tree(root: Path, archive: Path) -> Path:
    """An uncompressed tar of the directory's contents, names relative to it."""
    with tarfile.open(archive, "w") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return archive


def docker_archive(path: Path, layers: list[bytes], tags=("img:latest",),
                   config: dict | None = None, layer_names: list[str] | None = None,
                   manifest: list | None = None, store_layers: bool = True) -> Path:
    """The legacy `docker save` format: manifest.json, HEX.json config, HEX/layer.tar."""
    config_data = json.dumps(config or image_config([sha256(t) for t in layers])).encode()
    config_name = sha256(config_data).split(":")[1] + ".json"
    names = layer_names or [f"{sha256(t).split(':')[1]}/layer.tar" for t in layers]
    manifest = manifest if manifest is not None else \
        [{"Config": config_name, "RepoTags": list(tags), "Layers": names}]
    with tarfile.open(path, "w") as tar:
        for name, data in [("manifest.json", json.dumps(manifest).encode()),
                           (config_name, config_data),
                           *(zip(names, layers) if store_layers else ())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
