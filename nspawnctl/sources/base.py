"""What a source of root trees is, as `create` sees it: a Source plugin and the Plan it makes.

A Source reads its part of a --from value (`debootstrap:SUITE`, `tar:PATH`, `scratch`, ...)
and the options of the create that name it, refuses what it cannot do before anything is made,
and returns a Plan.  A Plan either builds a tree straight into the staging directory (tar:,
dir:, scratch), or gives a Base: a tree cached by key under the image store, built once and
cloned (or overlaid) for every container made from it (debootstrap:, images).  Images also
bring a config that decides how the container runs (the boot rule, in ops/create.py).

Everything a source needs to know about the host comes in through Request (paths, the
options, the progress callback); everything create needs to know about the source is in the
class attributes and the Plan.  sources/__init__.py lists the sources.
"""

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Usage
from ..paths import Paths


@dataclass(frozen=True)
class Request:
    """A create's options, as sources read them."""

    paths: Paths
    report: Callable[[str], None] = print
    platform: str | None = None       # images: which of an index's images
    adds: tuple[str, ...] = ()        # scratch: what the tree holds
    cmd: str | None = None            # the one command (scratch, images)
    args: str | None = None           # images: arguments to its Entrypoint instead of its Cmd
    boot: bool | None = None          # images: --boot / --no-boot
    bootstrap: Any = None             # debootstrap: its BootstrapSpec (mirror, variant, ...)
    pull: str | None = None           # registries: --pull (missing when not given)
    tls_verify: bool | None = None    # registries: --tls-verify (registries.conf when not given)
    progress: Any = None              # registries: progress(bytes, of_bytes[, landed]) on a tty


@dataclass(frozen=True)
class Base:
    """A cacheable base tree: its key, what the image store records about it, how to build
    it, and for images the config that says how to run it."""

    key: str
    meta: dict
    build: Callable[[Path], None]
    image_config: Any = None


@dataclass
class Plan:
    """What a source will make: a Base to cache (base), or a tree built in place (build).
    command and boot, when set, are what the container runs (scratch: its program)."""

    base: Callable[[], Base] | None = None   # called under the container's lock
    build: Callable[[Path], dict] | None = None
    command: tuple[str, ...] | None = None
    boot: bool | None = None
    info: dict = field(default_factory=dict)


class Source:
    """One way to get a root tree (see the module docstring)."""

    kind = ""              # the prefix of --from: KIND:REST
    syntax = ""            # how --from names it, for help and errors
    summary = ""           # one line for --from's help and the docs
    cached = False         # its Plan gives a Base: --overlay can stand on it
    image = False          # it brings an image config: --boot/--no-boot choose how it runs
    takes_cmd = False      # --cmd names its one command
    takes_adds = False     # --add puts files in it
    pulls = False          # it comes from a registry: --pull and --tls-verify apply

    def plan(self, rest: str, request: Request) -> Plan:
        raise NotImplementedError


def split_cmd(cmd: str, option: str = "--cmd") -> tuple[str, ...]:
    """create --cmd 'PROGRAM ARGS', split as a shell would (for scratch trees and images)."""
    try:
        argv = tuple(shlex.split(cmd))
    except ValueError as e:
        raise Usage(f"invalid {option} {cmd!r}: {e}") from None
    if not argv:
        raise Usage(f"{option} is empty", hint="say what to run, e.g. --cmd '/bin/program'")
    return argv


class Args(tuple):
    """create --args: arguments for the image's Entrypoint, in place of its Cmd (podman run
    IMAGE ARGS, and a compose `command`).  A command of its own kind, so that it reaches
    the image rule (sources/oci/source.py boot_rule), which knows the Entrypoint."""


def run_command(request: Request) -> tuple[str, ...] | None:
    """What --cmd or --args asks the container to run (None: neither was given)."""
    if request.cmd is not None:
        return split_cmd(request.cmd)
    if request.args is not None:
        return Args(split_cmd(request.args, "--args"))
    return None
