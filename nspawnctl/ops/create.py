"""create: making a container without ever leaving half of one.

Every new tree is built in a staging directory next to /var/lib/machines/NAME, its settings
are written, and only then is the tree renamed into place (store.py explains the commit point).
Base trees (debootstrap results, unpacked images) are cached by key in images.py, so a second
create of the same kind is a clone.
"""

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Error
from ..fs.copy import clone_tree
from ..fs.files import read_small_text, rename_noreplace, write_atomic
from ..paths import Paths, service_unit
from ..settings.files import save_config
from ..settings.model import ContainerConfig
from ..sources import debootstrap, split_cmd, split_source
from ..store import overlay
from ..store.containers import Store
from ..store.images import apt_lists, held_image, is_cached
from ..systemd.bus import Bus
from . import host, network, order
from .common import Report, require_root

BASE_KINDS = ("debootstrap", "oci-archive", "docker-archive", "oci")


def create(paths: Paths, name: str, source: str, spec: debootstrap.BootstrapSpec,
           cfg: ContainerConfig, *, platform: str | None = None, use_overlay: bool = False,
           adds: tuple[str, ...] = (), cmd: str | None = None, boot: bool | None = None,
           report: Report = print) -> dict:
    """Make container NAME from source; returns what was done (for the user and the tests).
    adds and cmd: what a scratch tree holds and runs (an image's command, cmd overrides).
    boot is --boot/--no-boot (None: neither given): for images they override what the image
    says, with cmd (see boot_rule)."""
    require_root()
    store = Store(paths)
    store.require_absent(name)
    host.ensure_units(paths)  # the boot-time recovery, for this container's first start
    kind, rest = split_source(source)
    if adds and kind != "scratch":
        raise Error("--add puts files in a tree made from scratch",
                    hint="use it with --from scratch")
    planned = None
    if kind == "scratch":  # read (and refused) before anything is made
        from ..sources import scratch  # with pyelftools: scratch only
        planned = scratch.plan(adds, cmd, report=report)
        cfg = dataclasses.replace(cfg, boot=False, command=planned.command)
    elif cmd is not None:
        if kind not in BASE_KINDS or kind == "debootstrap":
            raise Error(f"--cmd names the one command of a container that runs one: a {kind} "
                        "tree is booted", hint="use it with --from scratch or an image source")
        cfg = dataclasses.replace(cfg, command=split_cmd(cmd))
    if boot is not None and kind not in BASE_KINDS[1:]:
        raise Error("--boot and --no-boot choose how an image runs",
                    hint="use them with oci-archive:, docker-archive: or oci: sources")
    if use_overlay and kind not in BASE_KINDS:
        raise Error(f"--overlay needs a cached base tree, and {kind}: sources are imported "
                    "once", hint="use it with debootstrap:, oci-archive:, docker-archive: or "
                                 "oci: sources")
    if kind == "debootstrap":
        spec = dataclasses.replace(spec, suite=rest).resolved()
        debootstrap.check_spec(spec)
    order.check(paths, name, cfg)  # refused now, not after a bootstrap: unknown names, cycles
    if network.managed(cfg):  # refused now, not after a bootstrap: unknown network, taken port
        network.require_host_network(paths)
        network.network_state(paths).get(cfg.network)
        network.check_ports(paths, name, cfg)
    t0 = time.monotonic()
    with store.lock(name):
        store.require_absent(name)
        with store.staging(paths.machines, f"create-{name}") as stage:
            tree = stage / "tree"
            info: dict[str, Any] = {"name": name, "source": source}
            lower = None
            with contextlib.ExitStack() as held:
                if kind in BASE_KINDS:
                    base = _debootstrap_base(paths, spec, report) if kind == "debootstrap" \
                        else _image_base(source, platform, report, boot, cfg.command)
                    # held until the commit: `images prune` cannot take it away meanwhile
                    image, cached = held.enter_context(
                        held_image(paths, base.key, base.meta, base.build, report))
                    cfg, lower = _from_base(stage, cfg, info, base, image, cached, use_overlay,
                                            boot, report)
                elif planned is not None:
                    from ..sources import scratch
                    scratch.make_tree(planned, str(tree))
                    info.update(method="scratch", command=list(planned.command),
                                added=planned.added)
                elif kind == "tar":
                    from ..sources import tarball  # with the decompressors: tar: only
                    tree.mkdir(mode=0o755)
                    tarball.import_tar(Path(rest), tree, warn=report)
                    info["method"] = "import"
                else:
                    from ..sources import tarball
                    tarball.import_dir(Path(rest), tree)
                    info["method"] = "import"
                address = network.join(paths, name, cfg)  # given back if the commit fails
                finish(store, stage, name, cfg, cfg.hostname or name, lower)
        if address is not None:
            info["address"] = str(address)
            network.joined(paths, name, cfg)
    _reload_if_loaded(name)
    info["seconds"] = round(time.monotonic() - t0, 3)
    return info


def finish(store: Store, stage: Path, name: str, cfg: ContainerConfig, hostname: str,
           lower: Path | None = None, like: str | None = None):
    """Give the staged tree its identity and commit it: settings first, then the tree's rename,
    from which on the container exists.  With lower (an --overlay container) the tree is an
    empty mount point and stage/layers holds its changes on top of lower.  With like (clone)
    the settings start from that container's, hand edits included.

    A NAME.nspawn the user wrote before running create is edited, not replaced, and a failed
    create gives it back as it was."""
    paths = store.paths
    tree = stage / "tree"
    if lower is None:
        prepare_tree(tree, hostname)
    else:
        prepare_tree(lower, hostname, upper=stage / "layers" / "upper")
    nspawn = paths.nspawn_file(name)
    before = (read_small_text(nspawn, f"{name}'s settings file")
              if nspawn.is_file() and not nspawn.is_symlink() else None)
    copied: list[Path] = []
    try:
        copied = save_config(paths, name, cfg, like=like)
        if lower is not None:
            overlay.write_unit(paths, name, lower)
            paths.overlays.mkdir(mode=0o700, exist_ok=True)
            rename_noreplace(stage / "layers", overlay.layers(paths, name))
        store.install(tree, name)
    except BaseException:
        for path in copied:
            path.unlink(missing_ok=True)
        store.remove_settings(name)
        if before is not None:
            write_atomic(nspawn, before)
        raise
    if lower is not None:
        overlay.enable(paths, name)  # after the commit; a crash before it: recover does it
        overlay.mount_tree(paths, name, lower)


@dataclasses.dataclass(frozen=True)
class Base:
    """A cacheable base tree: its key, what images.py records about it, how to build it, and
    for images the config that says how to run it."""
    key: str
    meta: dict
    build: Callable[[Path], None]
    image_config: object = None


def _debootstrap_base(paths: Paths, spec, report: Report) -> Base:
    """The base tree of a debootstrap: source.  With --include, where the default base (the
    same spec without it) is cached and this one is not, an incremental base: a copy of the
    default with only the missing packages installed (sources/aptinstall.py), cached under
    its own key (the default's key and the sorted packages)."""
    key = "debootstrap-" + spec.key()
    meta = {"source": f"debootstrap:{spec.suite}", "suite": spec.suite,
            "spec": dataclasses.asdict(spec.resolved())}

    def build(tree: Path):
        log_path = paths.logs / f"bootstrap-{key}-{int(time.time())}.log"
        debootstrap.bootstrap(spec, tree, debs=paths.debs, log_path=log_path, report=report)

    direct = Base(key, meta, build)
    if not spec.include or is_cached(paths, key):
        return direct
    parent = _debootstrap_base(paths, dataclasses.replace(spec, include=()), report)
    packages = sorted(set(spec.include))
    inc_key = "debootstrap-" + debootstrap.incremental_key(parent.key, packages)
    if not is_cached(paths, inc_key) and not is_cached(paths, parent.key):
        return direct  # nothing to start from: one bootstrap with every package

    def build_incremental(tree: Path):
        from ..sources import aptinstall
        # held (shared) while it is copied and its package lists are used: `images prune`
        # cannot take them away meanwhile; rebuilt if it was pruned since it was looked at
        with held_image(paths, parent.key, parent.meta, parent.build, report) as (image, _):
            tree.rmdir()  # ensure_image's empty directory: clone_tree makes its own
            clone_tree(image / "tree", tree, trusted=True)  # a base tree: nspawnctl's
            aptinstall.install(tree, packages, work=tree.parent / "apt", debs=paths.debs,
                               lists=apt_lists(paths, parent.key),
                               log_path=paths.logs / f"install-{inc_key}-{int(time.time())}.log",
                               report=report)
        if spec.slim:
            debootstrap.slim_tree(tree)

    return Base(inc_key, dict(meta, base=parent.key, packages=packages), build_incremental)


def _image_base(source: str, platform: str | None, report: Report,
                boot: bool | None = None, cmd: tuple[str, ...] = ()) -> Base:
    """The image resolved once: its full manifest digest keys the cache, and the build unpacks
    that resolution, each layer checked against its digests (an archive swapped in between
    fails; it cannot be cached under the first one's key)."""
    from ..sources import oci
    kind, path, ref = oci.parse_reference(source)
    image = oci.resolve_image(kind, path, ref, platform)
    config = image.config
    key = "oci-" + config.digest.replace(":", "-")
    meta = {"source": source, "suite": None, "digest": config.digest,
            "exposed_ports": list(config.exposed_ports), "volumes": list(config.volumes)}

    def build(tree: Path):
        oci.unpack_resolved(image, tree, warn=report)
        # an image this create cannot run is refused before it is cached
        boot_rule(config, tree, boot, cmd)

    return Base(key, meta, build, config)


def _from_base(stage: Path, cfg: ContainerConfig, info: dict, base: Base, image: Path,
               cached: bool, use_overlay: bool, boot: bool | None,
               report: Report) -> tuple[ContainerConfig, Path | None]:
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
        cfg = _apply_image_config(cfg, base.image_config, booted, command)
        if not booted:
            warning = image_user_warning(base.image_config)
            if warning:
                report(warning)
    return cfg, lower


def boot_rule(image, tree: Path, boot: bool | None,
              cmd: tuple[str, ...]) -> tuple[bool, tuple[str, ...], str]:
    """Whether a container made from an image boots its init, and its command (the init's
    arguments when it boots); with the reason, for the user.

    --boot and --no-boot/--cmd decide when given.  Otherwise: an image whose command is an
    init (/sbin/init, /lib/systemd/systemd, ...) boots, with the rest as its arguments; one
    with no Entrypoint and no Cmd boots if its tree has an init; one whose command is a bare
    interactive shell (the debian, ubuntu, alpine images) boots if its tree has an init, and
    keeps the shell as its command if not; any other command runs alone, as the image says.
    """
    from ..store.inits import find_init, is_init_command, is_shell_command
    said = tuple(image.entrypoint) + tuple(image.cmd)
    init = find_init(tree)
    if boot is True:
        if init is None:
            raise Error("--boot: the image has no init to boot (no /sbin/init or "
                        "/lib/systemd/systemd)", hint="give the command to run with --cmd")
        return True, cmd, "--boot"
    if cmd:
        return False, cmd, "--cmd"
    if boot is False:
        if not said:
            raise Error("--no-boot: the image has no command to run (no Entrypoint or Cmd)",
                        hint="give one with --cmd 'CMD ARGS'")
        return False, said, "--no-boot: the image's command"
    if said and is_init_command(said) and init is not None:
        return True, said[1:], f"the image's command {said[0]} is an init"
    if not said:
        if init is None:
            raise Error("the image has no command to run (no Entrypoint or Cmd) and no init "
                        "to boot", hint="give the command with --cmd 'CMD ARGS'")
        return True, (), f"the image has no command and has an init ({init})"
    if is_shell_command(said) and init is not None:
        return True, (), (f"the image's command is a shell ({' '.join(said)}) and it has an "
                          f"init ({init})")
    return False, said, "the image's command"


def _apply_image_config(cfg: ContainerConfig, image, booted: bool,
                        command: tuple[str, ...]) -> ContainerConfig:
    """The image's environment and, for a single command, its working directory."""
    return dataclasses.replace(
        cfg, boot=booted, command=command, env=tuple(image.env) + tuple(cfg.env),
        working_dir=cfg.working_dir or (None if booted else image.working_dir))


def image_user_warning(image) -> str | None:
    """systemd-nspawn resolves User= with getent inside the container, which minimal images
    lack, and it takes no UID:GID; so an image's User is not applied (yet): say so."""
    if image.user and image.user not in ("root", "0", "0:0"):
        return (f"warning: the image asks to run as user {image.user!r}; nspawnctl runs it as "
                "root inside its own user namespace")
    return None


def prepare_tree(tree: Path, hostname: str, upper: Path | None = None):
    """Give a fresh clone its own identity: a machine-id made at first boot, its hostname.

    With upper (an --overlay container before its first mount) tree is the shared base, read
    only, and the two files go to upper/etc, as overlayfs would copy them up: that spares a
    mount and an unmount, which cost more than the rest of such a create.
    """
    etc = tree / "etc"
    if not etc.is_dir() or etc.is_symlink():
        return
    out = etc
    if upper is not None:
        out = upper / "etc"
        _copy_up(etc, out, lambda p: p.mkdir(exist_ok=True))
    machine_id = etc / "machine-id"
    if machine_id.is_file() and not machine_id.is_symlink():
        # empty: systemd makes one at boot, every clone its own
        _copy_up(machine_id, out / "machine-id", lambda p: p.write_text(""))
    hostname_file = etc / "hostname"
    if not hostname_file.is_symlink():
        _copy_up(hostname_file, out / "hostname", lambda p: p.write_text(hostname + "\n"))
        # 0644 whatever the base says: debootstrap copies the build host's file, mode and all
        os.chmod(out / "hostname", 0o644)


def _copy_up(src: Path, dst: Path, write: Callable[[Path], object]):
    """write(dst); a new dst gets src's owner and mode where src exists."""
    new = not dst.exists()
    write(dst)
    if new and src.exists():
        st = src.stat()
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, st.st_mode & 0o7777)


def _reload_if_loaded(name: str):
    """systemd keeps a loaded unit's old drop-ins until a reload; a new name is not loaded."""
    try:
        with Bus() as bus:
            if bus.list_units([service_unit(name)]):
                bus.reload()
    except Error:
        pass  # no systemd here (e.g. building trees for another host): nothing to tell
