"""A registry in memory for pull's unit tests: skopeo.inspect_raw and skopeo.copy replaced by
functions that serve documents and blobs from dicts, each answer one can tamper with, and a
log of what was asked.  (The integration tests use the real skopeo and a real registry.)"""

import json

from tests.unit import imagebuild as ib

OCI_INDEX = ib.OCI_INDEX


def image(*layers: bytes, arch: str = "amd64", **config) -> dict:
    """{"manifest": bytes, "blobs": {digest: bytes}} of an image whose layers are the tars."""
    blobs = {}
    descs = []
    for tar in layers:
        data = ib.compress(tar, "gzip")
        blobs[ib.sha256(data)] = data
        descs.append({"mediaType": ib.LAYER_MEDIA["gzip"], "digest": ib.sha256(data),
                      "size": len(data)})
    cfg = json.dumps(ib.image_config([ib.sha256(t) for t in layers], arch, **config)).encode()
    blobs[ib.sha256(cfg)] = cfg
    manifest = json.dumps({"schemaVersion": 2, "mediaType": ib.OCI_MANIFEST,
                           "config": {"mediaType": ib.OCI_CONFIG, "digest": ib.sha256(cfg),
                                      "size": len(cfg)},
                           "layers": descs}).encode()
    return {"manifest": manifest, "blobs": blobs, "digest": ib.sha256(manifest)}


def index(*images: tuple[dict, str]) -> bytes:
    """An index of (image, "os/arch") pairs."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": ib.OCI_MANIFEST, "digest": img["digest"], "size": len(img["manifest"]),
         "platform": dict(zip(("os", "architecture"), plat.split("/")))}
        for img, plat in images]}).encode()


class FakeRegistry:
    def __init__(self):
        self.manifests: dict[str, bytes] = {}   # "repo:tag" or "repo@digest" -> document
        self.blobs: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.down = False

    def push(self, repo: str, tag: str | None, img: dict):
        self.blobs.update(img["blobs"])
        self.manifests[f"{repo}@{img['digest']}"] = img["manifest"]
        if tag:
            self.manifests[f"{repo}:{tag}"] = img["manifest"]

    def push_index(self, repo: str, tag: str, *images: tuple[dict, str]) -> str:
        for img, _ in images:
            self.push(repo, None, img)
        doc = index(*images)
        self.manifests[f"{repo}:{tag}"] = doc
        self.manifests[f"{repo}@{ib.sha256(doc)}"] = doc
        return ib.sha256(doc)

    def _check(self):
        from nspawnctl.errors import Error
        if self.down:
            raise Error("cannot pull x: pinging container registry: connection refused",
                        hint="is the registry up and reachable?")

    def inspect_raw(self, image, tls_verify, tmpdir, what="manifest"):
        self._check()
        self.requests.append(f"manifest {image}")
        from nspawnctl.errors import Error
        if image not in self.manifests:
            raise Error(f"cannot pull {image}: manifest unknown")
        return self.manifests[image]

    def copy(self, image, layout, tls_verify, watch, tmpdir):
        self._check()
        manifest = json.loads(self.manifests[image])
        have = layout / "blobs" / "sha256"
        for desc in [manifest["config"], *manifest["layers"]]:
            path = have / desc["digest"].split(":")[1]
            if path.exists() and desc is not manifest["config"]:
                continue  # reused, as skopeo does (it fetches the config again)
            self.requests.append(f"blob {desc['digest']}")
            tmp = have / "oci-put-blob123"
            tmp.write_bytes(self.blobs[desc["digest"]])
            tmp.replace(path)
            watch.on_file(path.name)

    def install(self, monkeypatch):
        from nspawnctl.sources.registry import pull
        monkeypatch.setattr(pull.skopeo, "inspect_raw", self.inspect_raw)
        monkeypatch.setattr(pull.skopeo, "copy", self.copy)
        return self
