"""Images as a source of root trees: oci-archive:PATH, docker-archive:PATH, oci:DIR[:REF].

An image is resolved once (its index, manifest and config verified), cached as a base tree
under its manifest's digest, and run as its config says: booted like a debootstrap tree, or
one command (the boot rule below), with its environment and working directory.
"""

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path

from ...errors import InvalidInput, Usage
from ...paths import Paths
from ...settings.model import ContainerConfig
from ...store import chains
from ...store.inits import find_init, is_init_command, is_shell_command
from ..base import Args, Base, Plan, Request, Source, run_command
from . import Resolved, parse_reference, resolve_image, unpack_resolved
from .runnable import make_runnable


class ImageSource(Source):
    """An image in an archive or a layout directory on this host."""

    cached = True
    image = True
    takes_cmd = True

    def __init__(self, kind: str, syntax: str, summary: str):
        self.kind, self.syntax, self.summary = kind, syntax, summary

    def plan(self, rest: str, request: Request) -> Plan:
        source = f"{self.kind}:{rest}"
        command = run_command(request)
        return Plan(base=lambda: image_base(source, request.platform, request.report,
                                            request.boot, command or (), request.paths),
                    command=command)


def image_base(source: str, platform: str | None, report: Callable[[str], None],
               boot: bool | None = None, cmd: tuple[str, ...] = (),
               paths: Paths | None = None) -> Base:
    """The image resolved once: its full manifest digest keys the cache, and the build unpacks
    that resolution, each layer checked against its digests (an archive swapped in between
    fails; it cannot be cached under the first one's key)."""
    kind, path, ref = parse_reference(source)
    return resolved_base(resolve_image(kind, path, ref, platform), source, report, boot, cmd,
                         paths=paths)


def resolved_base(image: Resolved, source: str, report: Callable[[str], None],
                  boot: bool | None = None, cmd: tuple[str, ...] = (),
                  check_run: bool = True, paths: Paths | None = None) -> Base:
    """The base tree of a resolved image (an archive's, or a pulled one's in the blob store):
    keyed by its manifest's digest, whatever it came from, so the same image is one tree.
    check_run: refuse, before caching it, an image this create could not run (a pull does
    not know yet how it will be run).  paths: the store whose cached trees it may start
    from when their layers are its first ones (store/chains.py)."""
    config = image.config
    key = "oci-" + config.digest.replace(":", "-")
    meta = {"source": source, "suite": None, "digest": config.digest,
            "exposed_ports": list(config.exposed_ports), "volumes": list(config.volumes),
            # what create puts first in a container's env: spec leaves it out (stacks/spec.py)
            "env": list(config.env),
            # whether it has a Healthcheck create takes: spec says health-cmd: none for a
            # container made without it (create --health-cmd none), so a new one is too
            "health_check": any(name == "health_cmd" for name, _ in config.health)}

    def build(tree: Path):
        used = unpack_on_shared_layers(image, tree, report, paths, key)
        added = make_runnable(tree)
        if check_run:  # an image this create cannot run is refused before it is cached
            boot_rule(config, tree, boot, cmd)
        chains.record(tree, [diff_id for _, _, diff_id in image.image.layers], used, added)
        if paths is not None:
            chains.commit(paths, tree)

    return Base(key, meta, build, config)


def unpack_on_shared_layers(image: Resolved, tree: Path, report: Callable[[str], None],
                            paths: Paths | None, key: str) -> list[int]:
    """Unpack the image into tree, starting from a kept tree of its first layers when there
    is one, and keeping the tree of each of its first layers for the next image
    (store/chains.py); returns the bytes each layer took, for its own chain record."""
    diff_ids = [diff_id for _, _, diff_id in image.image.layers]
    start, used = 0, []
    if paths is not None:
        with chains.held_prefix(paths, diff_ids, key) as prefix:
            if prefix is not None and chains.link_copy(prefix.tree, tree, prefix.added):
                report(f"reusing the tree of {prefix.layers} of its {len(diff_ids)} layers")
                start, used = prefix.layers, list(prefix.used)

    def after(took: list[int]):
        if paths is not None and start + len(took) < len(diff_ids):
            chains.keep(tree, diff_ids[:start + len(took)], used + took)
    return used + unpack_resolved(image, tree, report, start, sum(used), after)


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
    said = tuple(image.entrypoint) + tuple(image.cmd)
    init = find_init(tree)
    if isinstance(cmd, Args):
        if boot is True:
            raise Usage("--args are for the image's own command; a booted container runs its "
                        "init", hint="give the init's arguments with --boot --cmd")
        return False, tuple(image.entrypoint) + cmd, "--args: the image's entrypoint with them"
    if boot is True:
        if init is None:
            raise InvalidInput("--boot: the image has no init to boot (no /sbin/init or "
                               "/lib/systemd/systemd)", hint="give the command to run with --cmd")
        return True, cmd, "--boot"
    if cmd:
        return False, cmd, "--cmd"
    if boot is False:
        if not said:
            raise InvalidInput("--no-boot: the image has no command to run (no Entrypoint or Cmd)",
                               hint="give one with --cmd 'CMD ARGS'")
        return False, said, "--no-boot: the image's command"
    if said and is_init_command(said) and init is not None:
        return True, said[1:], f"the image's command {said[0]} is an init"
    if not said:
        if init is None:
            raise InvalidInput("the image has no command to run (no Entrypoint or Cmd) and no init "
                               "to boot", hint="give the command with --cmd 'CMD ARGS'")
        return True, (), f"the image has no command and has an init ({init})"
    if is_shell_command(said) and init is not None:
        return True, (), (f"the image's command is a shell ({' '.join(said)}) and it has an "
                          f"init ({init})")
    return False, said, "the image's command"


def apply_image_config(cfg: ContainerConfig, image, booted: bool, command: tuple[str, ...],
                       given: Collection[str] = ()) -> ContainerConfig:
    """The image's environment, its health check (podman's reading of Healthcheck), and for
    a single command its working directory.  What create's options say wins over the
    image's check, setting by setting: given names the settings they give, also at their
    default value (a value not at its default was given too); a --health-cmd given, 'none'
    too, leaves out the image's whole check, as podman's --health-cmd none does."""
    health = {}
    if "health_cmd" not in given and not cfg.health_cmd:
        defaults = ContainerConfig()
        health = {name: value for name, value in getattr(image, "health", ())
                  if name not in given and getattr(cfg, name) == getattr(defaults, name)}
    return dataclasses.replace(
        cfg, boot=booted, command=command, env=tuple(image.env) + tuple(cfg.env),
        working_dir=cfg.working_dir or (None if booted else image.working_dir), **health)


def image_user_warning(image) -> str | None:
    """systemd-nspawn resolves User= with getent inside the container, which minimal images
    lack, and it takes no UID:GID; so an image's User is not applied (yet): say so."""
    if image.user and image.user not in ("root", "0", "0:0"):
        return (f"warning: the image asks to run as user {image.user!r}; nspawnctl runs it as "
                "root inside its own user namespace")
    return None
