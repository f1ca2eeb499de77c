"""Making, copying, exporting and removing containers: create, clone, export, remove, upgrade."""

from pathlib import Path

import click

from ..ops import clone, create, export, remove, upgrade
from ..settings.model import ContainerConfig, parse_cli
from ..sources.base import Request
from ..sources.debootstrap import DEFAULT_MIRROR, BootstrapSpec, parse_packages
from . import completion, jsonview, pass_app
from .options import config_options, existing, registry_options, sources_epilog, sources_help
from .output import print_record, tty_progress


@click.command("create", epilog=sources_epilog())
@click.argument("name")
@click.option("--from", "source", default="debootstrap:bookworm", show_default=True,
              shell_complete=completion.image_sources,
              help=sources_help())
@click.option("--add", "adds", multiple=True, metavar="PATH[:DEST]",
              shell_complete=completion.files,
              help="With --from scratch: a host file or directory to put in the tree, with "
                   "the shared libraries its programs need (repeatable).")
@click.option("--cmd", metavar="'CMD ARGS'",
              help="The command to run (scratch: default, the one program added; images: "
                   "instead of the image's).")
@click.option("--mirror", help="Debian mirror URL for debootstrap.")
@click.option("--variant", default="minbase", show_default=True, help="debootstrap variant.")
@click.option("--include", help="Extra packages, comma-separated (installed into a copy of "
              "the cached default base where there is one).")
@click.option("--arch", help="Architecture to bootstrap (default: the host's).")
@click.option("--slim/--no-slim", default=True, show_default=True,
              help="Leave out docs, man pages, locales and apt caches.")
@click.option("--bootstrapper", type=click.Choice(["auto", "mmdebstrap", "debootstrap"]),
              default="auto", show_default=True,
              help="auto: mmdebstrap where it is installed (the faster), else debootstrap.")
@click.option("--overlay", "use_overlay", is_flag=True,
              help="Share the cached base tree read-only and keep only this container's "
                   "changes (overlayfs) instead of copying it.")
@click.option("--boot/--no-boot", default=None,
              help="Images: boot the tree's init, or run one command.  Default: an image "
                   "boots when its command is an init, or when it has no command or only a "
                   "shell (sh, bash) and has an init; else it runs its command.  With "
                   "--boot, --cmd gives the init's arguments.")
@registry_options("missing")
@config_options()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def create_command(app, name, source, adds, cmd, mirror, variant, include, arch, slim,
                   bootstrapper, platform, pull_policy, tls_verify, use_overlay, boot, as_json,
                   **options):
    """Create container NAME (a Debian bookworm tree by default)."""
    spec = BootstrapSpec(mirror=mirror or DEFAULT_MIRROR, variant=variant,
                         include=parse_packages(include), arch=arch, slim=slim,
                         bootstrapper=bootstrapper)
    cfg = ContainerConfig(**parse_cli(options, creating=True))
    request = Request(app.paths, report=app.ctx.report, platform=platform, adds=adds, cmd=cmd,
                      boot=boot, bootstrap=spec, pull=pull_policy, tls_verify=tls_verify,
                      progress=None if as_json else tty_progress())
    info = jsonview.view("created", create.create(app.ctx, name, source, cfg, request,
                                                  use_overlay=use_overlay))
    if as_json:
        print_record(info, True)
    else:
        how = "from the cached base tree" if info.get("cached") else ""
        click.echo(f"created {name} ({info['method']}{', ' + how if how else ''}, "
                   f"{info['seconds']:.2f} s)")




@click.command("upgrade")
@click.argument("name", shell_complete=completion.containers)
@click.option("--check", "check_cmd", metavar="CMD",
              help="A shell command run inside after the upgrade: non-zero rolls it back.")
@click.option("--keep-snapshot", is_flag=True, help="Keep the snapshot taken before it.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds the container has to come back after its restart.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def upgrade_command(app, name, check_cmd, keep_snapshot, timeout, as_json):
    """Upgrade a booted container's packages: download inside it, install into a copy of its
    stopped tree, swap the copy in, start it and check it; roll back to a snapshot taken first
    if it is not healthy."""
    info = upgrade.upgrade(app.ctx, name, check=check_cmd, keep_snapshot=keep_snapshot,
                           timeout=timeout)
    info = jsonview.view("upgraded", info)
    if as_json:
        print_record(info, True)
    else:
        kept = f", snapshot {info['snapshot']} kept" if info["snapshot"] else ""
        click.echo(f"{name} upgraded: {info['state']}{kept}")




@click.command("clone")
@click.argument("src", shell_complete=completion.containers)
@click.argument("dst")
@pass_app
def clone_command(app, src, dst):
    """Copy stopped container SRC to a new container DST."""
    info = clone.clone(app.ctx, src, dst)
    click.echo(f"cloned {src} to {dst} ({info['method']})")




@click.command("export")
@click.argument("name", shell_complete=completion.containers)
# A plain string: export itself refuses a directory, and click.Path() would translate its
# name through gettext as this module loads (a locale import and .mo file searches, about
# 2 ms of every command's start-up).
@click.argument("file", shell_complete=completion.files)
@click.option("--format", "fmt", type=click.Choice(["tar", "oci-archive", "docker-archive"]),
              help="tar (a root tarball, for machinectl import-tar or create --from tar:), "
                   "oci-archive or docker-archive (a one-layer image that runs as the "
                   "container runs here).  Default: from FILE's name, .tar, .tar.gz or "
                   ".tar.zst for a tarball; images always need --format.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def export_command(app, name, file, fmt, as_json):
    """Write container NAME's whole tree to FILE as one layer.

    An --overlay container is flattened; owners are written as the container sees them
    (root is 0).  A running container is frozen while its tree is read.  FILE appears only
    once complete (an existing FILE is replaced).

    \b
    nspawnctl export web web.tar.zst
    nspawnctl export web web.oci.tar --format oci-archive
    """

    info = jsonview.view("exported", export.export(app.ctx, name, Path(file), fmt))
    if as_json:
        print_record(info, True)
    else:
        kind = info["format"] + (f" ({info['compression']})" if info["compression"] else "")
        click.echo(f"exported {name} to {info['file']} ({kind}, {info['entries']} entries, "
                   f"{info['size'] / 1e6:.1f} MB, {info['seconds']:.2f} s)")




@click.command("remove")
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--force", "-f", is_flag=True, help="Stop running containers first.")
@pass_app
def remove_command(app, names, force):
    """Remove containers: their trees and settings."""
    names = existing(app, names)
    for i, name in enumerate(names):
        count = remove.remove(app.ctx, name, force=force,
                       along=tuple(names[i + 1:]))
        extra = f" and its {count} snapshot{'s' if count != 1 else ''}" if count else ""
        click.echo(f"removed {name}{extra}")
