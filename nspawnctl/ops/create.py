"""create: making a container without ever leaving half of one.

Every new tree is built in a staging directory next to /var/lib/machines/NAME, its settings
are written, and only then is the tree renamed into place (store/commit.py explains the
commit point).  Where the tree comes from is the source's (sources/: a plugin per kind of
--from); base trees (debootstrap results, unpacked images) are cached by key in
store/images.py, so a second create of the same kind is a clone.
"""

import contextlib
import dataclasses
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .. import sources
from ..errors import Error, Usage, refused_content
from ..fs.copy import clone_tree
from ..network import containers as network
from ..paths import service_unit
from ..runtime.autoupdate import require_updatable
from ..runtime.context import Context
from ..settings.model import ContainerConfig
from ..sources.base import Base, Request
from ..sources.debootstrap import DEFAULT_MIRROR, BootstrapSpec, parse_packages
from ..sources.oci.source import apply_image_config, boot_rule, image_user_warning
from ..store import order, overlay, volumes
from ..store.commit import finish
from ..store.identity import Identity
from ..store.images import held_image
from ..systemd import bootunits
from ..times import now
from .common import Report, check_mounts, require_root


def create(ctx: Context, name: str, source: str, cfg: ContainerConfig, request: Request,
           use_overlay: bool = False, identity: Identity | None = None,
           given: Collection[str] = ()) -> dict:
    """Make container NAME from the source --from names; returns what was done (for the user
    and the tests).  request holds the options sources read (sources/base.py); use_overlay:
    stand on the cached base instead of copying it; given: the settings (by name) the user
    gave, which an image's config does not override (settings/model.py given_settings)."""
    paths, report, store = ctx.paths, ctx.report, ctx.store
    require_root()
    store.require_absent(name)
    if identity and use_overlay:  # written into the tree, and an overlay's base is shared
        raise Usage("--root-password-*, --timezone and --locale are written into the tree: "
                    "not with --overlay")
    check_mounts(paths, cfg.binds, cfg.volumes, cfg.private_users)
    # the boot-time recovery, for this container's first start
    bootunits.ensure_units(paths, lambda: ctx.bus)
    # checked now (a value no .nspawn line can hold), not after a bootstrap
    cfg = dataclasses.replace(cfg, made_from=made_from(source, request, use_overlay))
    require_updatable(name, cfg)  # --auto-update registry: only a registry image's
    kind, rest = sources.lookup(source)
    sources.check(kind, request, use_overlay)
    plan = kind.plan(rest, request)  # a source refuses what it cannot make now
    if plan.command is not None:
        cfg = dataclasses.replace(cfg, command=plan.command)
    if plan.boot is not None:
        cfg = dataclasses.replace(cfg, boot=plan.boot)
    order.check(paths, name, cfg)  # refused now, not after a bootstrap: unknown names, cycles
    if network.managed(cfg):  # refused now, not after a bootstrap: unknown network, taken port
        network.require_host_network(paths)
        network.network_state(paths).get(cfg.network)
        network.check_ports(paths, name, cfg)
    t0 = time.monotonic()
    with store.lock(name):
        store.require_absent(name)
        with store.staging(paths.machines, f"create-{name}") as stage:
            info: dict[str, Any] = {"name": name, "source": source}
            lower = None
            with contextlib.ExitStack() as held:
                if plan.base is not None:
                    base = plan.base()
                    # held until the commit: `images prune` cannot take it away meanwhile
                    image, cached = held.enter_context(
                        held_image(paths, base.key, base.meta, base.build, report))
                    cfg, lower = _from_base(stage, cfg, info, base, image, cached, use_overlay,
                                            request.boot, report, given)
                else:
                    assert plan.build is not None
                    info.update(plan.build(stage / "tree"))
                cfg = dataclasses.replace(cfg, created=now())
                # checked again and held until the commit: no volume remove in between
                with volumes.held_volumes(paths, (v.name for v in cfg.volumes), report):
                    address = network.join(paths, name, cfg)  # given back if it fails
                    finish(store, stage, name, cfg, cfg.hostname or name, lower,
                           identity=identity)
        if address is not None:
            info["address"] = [str(address)]
            network.joined(paths, ctx.bus, name, cfg)
    _reload_if_loaded(ctx, name)
    info["created"] = cfg.created
    info["seconds"] = round(time.monotonic() - t0, 3)
    return info


# The options of create that say how to make the tree (besides --from and --overlay), as
# make_request takes them: the CLI's and a stack file's (stacks/model.py) alike.
CREATE_OPTIONS = ("adds", "cmd", "args", "mirror", "variant", "include", "arch", "slim",
                  "bootstrapper", "platform", "pull_policy", "tls_verify", "boot")


def make_request(ctx: Context, adds: tuple[str, ...] = (), cmd: str | None = None,
                 args: str | None = None, mirror: str | None = None, variant: str = "minbase",
                 include: str | None = None, arch: str | None = None, slim: bool = True,
                 bootstrapper: str = "auto", platform: str | None = None,
                 pull_policy: str | None = None, tls_verify: bool | None = None,
                 boot: bool | None = None, progress: Any = None) -> Request:
    """What sources read of a create's options (the defaults are create's)."""
    spec = BootstrapSpec(mirror=mirror or DEFAULT_MIRROR, variant=variant,
                         include=parse_packages(include), arch=arch, slim=slim,
                         bootstrapper=bootstrapper)
    return Request(ctx.paths, report=ctx.report, platform=platform, adds=tuple(adds), cmd=cmd,
                   args=args, boot=boot, bootstrap=spec, pull=pull_policy, tls_verify=tls_verify,
                   progress=progress)


def made_from(source: str, request: Request, use_overlay: bool = False) -> tuple[str, ...]:
    """How a tree is made, as the container's record keeps it (settings/model.py made_from):
    --from's value, then create's options that say how, as flags, those at their defaults
    left out (make_request's inverse: make_request(**options) gives the same request)."""
    words = [source]
    for add in request.adds:
        words += ["--add", add]
    if request.cmd is not None:
        words += ["--cmd", request.cmd]
    spec = request.bootstrap
    if spec is not None:
        defaults = BootstrapSpec()
        for flag, value, default in (("--mirror", spec.mirror, defaults.mirror),
                                     ("--variant", spec.variant, defaults.variant),
                                     ("--arch", spec.arch, defaults.arch),
                                     ("--bootstrapper", spec.bootstrapper,
                                      defaults.bootstrapper)):
            if value != default and value is not None:
                words += [flag, value]
        if spec.include:
            words += ["--include", ",".join(spec.include)]
        if not spec.slim:
            words.append("--no-slim")
    if request.boot is not None:
        words.append("--boot" if request.boot else "--no-boot")
    if request.platform is not None:
        words += ["--platform", request.platform]
    if request.pull is not None:
        words += ["--pull", request.pull]
    if request.tls_verify is not None:
        words.append("--tls-verify" if request.tls_verify else "--no-tls-verify")
    if use_overlay:
        words.append("--overlay")
    return tuple(words)


def _from_base(stage: Path, cfg: ContainerConfig, info: dict, base: Base, image: Path,
               cached: bool, use_overlay: bool, boot: bool | None, report: Report,
               given: Collection[str] = ()) -> tuple[ContainerConfig, Path | None]:
    """Stage a tree from base's cached tree (image): a clone in stage/tree, or with
    use_overlay empty layers in stage/layers over it.  info records how; returns cfg naming
    the base (and for an image running its command), and the lower tree of an overlay."""
    if cached:
        report(f"using cached base tree {base.key}")
    lower = None
    if use_overlay:
        lower = image / "tree"
        (stage / "tree").mkdir(mode=0o755)
        overlay.make_layers(stage / "layers", lower)
        method = "overlay"
    else:
        method = clone_tree(image / "tree", stage / "tree", trusted=True)
    info.update(image=base.key, cached=cached, method=method)
    cfg = dataclasses.replace(cfg, image=base.key)
    if base.image_config is not None:
        booted, command, why = boot_rule(base.image_config, image / "tree", boot, cfg.command)
        info.update(boot=booted, why=why)
        try:
            cfg = apply_image_config(cfg, base.image_config, booted, command, given)
        except Error as exc:  # the image's Env, User, WorkingDir: its content, not a typo
            raise refused_content(exc) from None
        if not booted:
            warning = image_user_warning(base.image_config)
            if warning:
                report(warning)
    return cfg, lower


def _reload_if_loaded(ctx: Context, name: str):
    """systemd keeps a loaded unit's old drop-ins until a reload; a new name is not loaded."""
    try:
        if ctx.bus.list_units([service_unit(name)]):
            ctx.bus.reload()
    except Error:
        pass  # no systemd here (e.g. building trees for another host): nothing to tell
