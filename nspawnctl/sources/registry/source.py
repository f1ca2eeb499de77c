"""Images from registries as a source of root trees: docker://[REGISTRY/]REPO[:TAG|@DIGEST].

The image is pulled (pull.py: into the shared blob store, --pull deciding when a registry is
asked) under the container's lock, and then is an image like any other: its base tree is keyed
by its manifest's digest (the same key as an archive of the same image), unpacked from the
store by nspawnctl's own unpacker, and run as its config says (sources/oci/source.py).
"""

from collections.abc import Callable
from pathlib import Path

from ...errors import Usage
from ...paths import Paths
from ...store.blobs import BlobStore, Record
from ..base import Base, Plan, Request, Source, run_command
from ..oci import Resolved
from ..oci.config import image_config
from ..oci.index import load_manifest
from ..oci.layout import Descriptor, DirLayout
from ..oci.source import resolved_base
from .pull import pull
from .reference import HINT, parse_user

SYNTAX = "docker://[REGISTRY/]REPO[:TAG|@DIGEST]"


class RegistrySource(Source):
    kind = "docker"
    syntax = SYNTAX
    summary = "an image from a registry, pulled with skopeo (auth, registries.conf, certs.d " \
              "as for podman) and cached by digest"
    cached = True
    image = True
    takes_cmd = True
    pulls = True

    def plan(self, rest: str, request: Request) -> Plan:
        if not rest.startswith("//"):
            raise Usage(f"invalid source 'docker:{rest}'", hint=f"use {SYNTAX}")
        text = rest[2:]
        parse_user(text)  # refused now, before anything is made
        command = run_command(request)

        def base() -> Base:
            pulled = pull(request.paths, text, policy=request.pull, platform=request.platform,
                          tls_verify=request.tls_verify, report=request.report,
                          progress=request.progress)
            return pulled_base(request.paths, pulled.record, request.report, request.boot,
                               command or ())
        return Plan(base=base, command=command)


def pulled_base(paths: Paths, record: Record, report: Callable[[str], None],
                boot: bool | None = None, cmd: tuple[str, ...] = (),
                check_run: bool = True) -> Base:
    """The base tree of a pulled image, read from the blob store (checked again as it is
    read: a blob changed in the store since the pull fails the unpack)."""
    store = BlobStore(paths)
    image = load_manifest(DirLayout(store.root),
                          Descriptor(record.media_type, record.digest, record.size))
    resolved = Resolved("oci", store.root, image, image_config(image))
    base = resolved_base(resolved, f"docker://{record.name}", report, boot, cmd, check_run,
                         paths=paths)

    def build(tree: Path):
        with store.using(report):  # no prune takes a blob while it is read
            base.build(tree)
    return Base(base.key, dict(base.meta, pulled=record.name), build, base.image_config)


__all__ = ["HINT", "RegistrySource", "pulled_base"]
