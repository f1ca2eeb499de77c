"""Making, copying, exporting and removing containers: create, run, clone, rename, export,
remove, upgrade."""

import sys
from dataclasses import replace
from pathlib import Path

import click

from ..errors import Usage
from ..ops import clone, create, export, lifecycle, remove, rename, upgrade
from ..settings import firstboot
from ..settings.model import ContainerConfig, given_settings, parse_cli
from ..store.identity import Identity
from . import completion, jsonview, pass_app
from .options import (
    config_options,
    existing,
    json_option,
    registry_options,
    sources_epilog,
    sources_help,
    timeout_option,
)
from .output import megabytes, print_json, print_record, results, shown, tty_progress


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
@click.option("--args", metavar="'ARGS'",
              help="Images: arguments for the image's entrypoint instead of its Cmd, as "
                   "podman run IMAGE ARGS (--cmd replaces both).")
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
@click.option("--ssh-key", metavar="FILE", type=click.Path(dir_okay=False),
              help="Root's authorized SSH keys (an OpenSSH .pub file), set at the first boot "
                   "by the container's systemd (the credential ssh.authorized_keys.root).")
@click.option("--root-password-hashed", metavar="HASH",
              help="Root's password as a crypt(3) hash (mkpasswd or openssl passwd -6 print "
                   "one), written into the tree's /etc/shadow.")
@click.option("--root-password-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Root's password: the first line of FILE, hashed here (yescrypt) and "
                   "written into the tree's /etc/shadow; never on a command line.")
@click.option("--timezone", metavar="ZONE",
              help="Time zone inside, a zoneinfo name such as Europe/Berlin (the image needs "
                   "its zoneinfo: --include tzdata).")
@click.option("--locale", metavar="LOCALE", help="LANG inside, e.g. de_DE.UTF-8.")
@click.option("--start", "start_it", is_flag=True,
              help="Start it once created (as nspawnctl start NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def create_command(app, name, start_it, as_json, **options):
    """Create container NAME (a Debian bookworm tree by default)."""
    info = _create(app, name, as_json, **options)
    if start_it:
        info["state"] = lifecycle.start(app.ctx, name)
    _said(name, info, as_json)


@click.command("run", epilog=sources_epilog())
@click.option("--rm", "remove_it", is_flag=True,
              help="Stay until the container stops (or Ctrl-C stops it), then remove it; "
                   "nspawnctl's exit status is then the container's.")
@pass_app
def run_command(app, name, remove_it, as_json, **options):
    """Create container NAME and start it: create's options, and --rm.

    Without --rm it returns once the container runs, as create --start.  With --rm it
    stays: when the container stops, or exits (a single command), it is removed, also when
    its start failed; Ctrl-C stops it first.
    """
    info = _create(app, name, as_json, **options)
    if not remove_it:
        info["state"] = lifecycle.start(app.ctx, name)
        _said(name, info, as_json)
        return
    try:
        info["state"] = lifecycle.start(app.ctx, name)
        _said(name, info, as_json)
        if not as_json:
            click.echo(f"{name}: removed when it stops (Ctrl-C stops it)", err=True)
        status = lifecycle.wait_stopped(app.ctx, name)
    except KeyboardInterrupt:
        lifecycle.stop(app.ctx, name)
        status = 130
    finally:
        remove.remove(app.ctx, name, force=True)
        click.echo(f"removed {name}", err=True)
    sys.exit(status)


# run takes NAME and every option of create but --start (it always starts), --rm first
run_command.params[:0] = create_command.params[:1]
run_command.params[2:] = [p for p in create_command.params[1:] if p.name != "start_it"]


def _create(app, name, as_json, source, use_overlay, ssh_key, root_password_hashed,
            root_password_file, timezone, locale, **options) -> dict:
    config = {k: v for k, v in options.items() if k not in create.CREATE_OPTIONS}
    cfg = ContainerConfig(**parse_cli(config, creating=True))
    if ssh_key is not None:
        cfg = with_credential(cfg, firstboot.ssh_key(ssh_key), "--ssh-key")
    identity = first_boot(root_password_hashed, root_password_file, timezone, locale)
    if identity.timezone is not None:  # else systemd-nspawn puts the host's zone back
        cfg = replace(cfg, timezone_mode="off")
    how = {k: v for k, v in options.items() if k in create.CREATE_OPTIONS}
    request = create.make_request(app.ctx, progress=None if as_json else tty_progress(), **how)
    return create.create(app.ctx, name, source, cfg, request, use_overlay=use_overlay,
                         identity=identity, given=given_settings(config))


def first_boot(hashed: str | None, password_file: str | None, timezone: str | None,
               locale: str | None) -> Identity:
    """What create writes into the tree, each value checked (settings/firstboot.py)."""
    if hashed is not None and password_file is not None:
        raise Usage("--root-password-hashed and --root-password-file: give one of them")
    if password_file is not None:
        hashed = firstboot.hash_password_file(password_file)
    return Identity(
        root_hash=None if hashed is None else firstboot.check_root_hash(hashed),
        timezone=None if timezone is None else firstboot.check_timezone(timezone),
        locale=None if locale is None else firstboot.check_locale(locale))


def with_credential(cfg: ContainerConfig, credential, flag: str) -> ContainerConfig:
    """cfg with one more credential, which a flag of its own gives."""
    if any(c.name == credential.name for c in cfg.credentials):
        raise Usage(f"{flag} and --credential {credential.name}=... both give credential "
                    f"{credential.name}: give one of them")
    return replace(cfg, credentials=cfg.credentials + (credential,))


def _said(name: str, info: dict, as_json: bool):
    if as_json:
        print_record(jsonview.view("created", info), True)
        return
    how = "from the cached base tree" if info.get("cached") else ""
    click.echo(f"created {name} ({info['method']}{', ' + how if how else ''}, "
               f"{info['seconds']:.2f} s)")
    if "state" in info:
        click.echo(f"{name}: {info['state']}")




@click.command("upgrade")
@click.argument("name", shell_complete=completion.containers)
@click.option("--check", "check_cmd", metavar="CMD",
              help="A shell command run inside after the upgrade: non-zero rolls it back.")
@click.option("--keep-snapshot", is_flag=True, help="Keep the snapshot taken before it.")
@timeout_option("for the container to come back after its restart")
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
@json_option()
@pass_app
def clone_command(app, src, dst, as_json):
    """Copy stopped container SRC to a new container DST."""
    info = clone.clone(app.ctx, src, dst)
    if as_json:
        print_json(jsonview.view("cloned", info))
    else:
        click.echo(f"cloned {src} to {dst} ({info['method']})")




@click.command("rename")
@click.argument("old", shell_complete=completion.containers)
@click.argument("new")
@json_option()
@pass_app
def rename_command(app, old, new, as_json):
    """Rename stopped container OLD to NEW, with its settings, snapshots and addresses.

    Its hostname inside stays as it is.  Nothing is renamed unless all of it is.
    """
    info = rename.rename(app.ctx, old, new)
    if as_json:
        print_json(jsonview.view("renamed", info))
        return
    click.echo(f"renamed {old} to {new}{' (still enabled)' if info['enabled'] else ''}")




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
                   ".tar.zst for a tarball, .oci.tar or .docker.tar for an image; a name "
                   "that says another format is refused.")
@click.option("--force", "-f", is_flag=True, help="Replace FILE if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def export_command(app, name, file, fmt, force, as_json):
    """Write container NAME's whole tree to FILE as one layer.

    An --overlay container is flattened; owners are written as the container sees them
    (root is 0).  A running container is frozen while its tree is read.  FILE appears only
    once complete; an existing FILE is replaced only with --force.

    \b
    nspawnctl export web web.tar.zst
    nspawnctl export web web.oci.tar
    nspawnctl export web web.img --format docker-archive
    """

    info = jsonview.view("exported", export.export(app.ctx, name, Path(file), fmt,
                                                   force=force))
    if as_json:
        print_record(info, True)
    else:
        kind = info["format"] + (f" ({info['compression']})" if info["compression"] else "")
        click.echo(f"exported {name} to {info['file']} ({kind}, {info['entries']} entries, "
                   f"{info['size'] / 1e6:.1f} MB, {info['seconds']:.2f} s)")




@click.command("remove")
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--force", "-f", is_flag=True, help="Stop running containers first.")
@click.option("--dry-run", is_flag=True,
              help="Say what would be removed (with each snapshot and its size), and remove "
                   "nothing.")
@json_option()
@pass_app
def remove_command(app, names, force, dry_run, as_json):
    """Remove containers: their trees, settings and snapshots (each named, with its size)."""
    names = existing(app, names)
    with results("removed", as_json) as removed:
        for i, name in enumerate(names):
            done = remove.remove(app.ctx, name, force=force, along=tuple(names[i + 1:]),
                                 dry_run=dry_run)
            removed.append({**done, "dry_run": dry_run})
            if not as_json:
                _said_removed(name, done, dry_run)


def _said_removed(name: str, done: dict, dry_run: bool):
    snaps, extra = done["snapshots"], ""
    if snaps:
        total = sum(s["size"] or 0 for s in snaps)
        extra = (f" and its {len(snaps)} snapshot{'s' if len(snaps) != 1 else ''} "
                 f"({megabytes(total)}): "
                 + ", ".join(f"{shown(s['tag'])} ({megabytes(s['size'])})" for s in snaps))
    if not dry_run:
        click.echo(f"removed {name}{extra}")
    elif done["stopped"]:
        click.echo(f"would stop {name} and remove it{extra}")
    else:
        click.echo(f"would remove {name}{extra}")
    if done.get("volumes"):  # they outlive it: said, so that none is forgotten
        many = len(done["volumes"]) != 1
        kept = ", ".join(done["volumes"])
        click.echo(f"{'would keep' if dry_run else 'kept'} volume{'s' if many else ''} {kept} "
                   f"(nspawnctl volume remove {' '.join(done['volumes'])} removes "
                   f"{'them' if many else 'it'})")
