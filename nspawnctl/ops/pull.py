"""pull, login and logout: images from registries into the blob store and their base trees,
and the credentials skopeo (and podman) use for them."""

from ..errors import Error, Usage
from ..runtime.context import Context
from ..sources.registry import skopeo
from ..sources.registry.pull import Progress
from ..sources.registry.pull import pull as fetch
from ..sources.registry.reference import is_domain
from ..sources.registry.source import pulled_base
from ..store.images import ensure_image
from .common import require_root


def pull(ctx: Context, ref: str, policy: str | None = None, platform: str | None = None,
         tls_verify: bool | None = None, progress: Progress | None = None) -> dict:
    """Pull REF (its blobs into the store) and unpack its base tree, so that a create from it
    is a copy; returns what was done."""
    require_root()
    pulled = fetch(ctx.paths, ref, policy=policy, platform=platform, tls_verify=tls_verify,
                   report=ctx.report, progress=progress)
    record = pulled.record
    base = pulled_base(ctx.paths, record, ctx.report, check_run=False)
    _, unpacked_before = ensure_image(ctx.paths, base.key, base.meta, base.build, ctx.report)
    return {"name": record.name, "digest": record.digest, "platform": record.platform,
            "index": record.index, "key": base.key, "cached": pulled.cached,
            "fetched_blobs": pulled.fetched_blobs, "blobs": pulled.blobs,
            "fetched_bytes": pulled.fetched_bytes, "seconds": pulled.seconds,
            "unpacked": not unpacked_before}


def _registry(registry: str) -> str:
    if not is_domain(registry):
        raise Usage(f"invalid registry {registry[:80]!r}", hint="give HOST[:PORT], e.g. "
                                                                "registry.example.org:5000")
    return registry


def login(ctx: Context, registry: str, username: str | None = None,
          password_stdin: bool = False, tls_verify: bool | None = None):  # noqa: ARG001
    """skopeo login: the credentials go to the auth file podman and skopeo read
    (containers-auth.json(5)), asked for on the terminal or, with password_stdin, read from
    stdin; never on a command line."""
    rc = skopeo.login(_registry(registry), username, password_stdin, tls_verify)
    if rc != 0:
        raise Error(f"login to {registry} failed (skopeo login said why above)")


def logout(ctx: Context, registry: str | None, all_: bool = False):  # noqa: ARG001
    if not all_ and registry is None:
        raise Usage("logout needs a registry, or --all")
    rc = skopeo.login(_registry(registry) if registry else "", None, False, None,
                      logout=True, all_=all_)
    if rc != 0:
        raise Error(f"logout from {registry or 'all registries'} failed (skopeo logout said "
                    "why above)")
