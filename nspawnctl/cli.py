"""The command line: click commands only.

Each command parses its arguments, calls one operation and prints the result (a table, or JSON
with --json).  Operation modules are imported inside the commands so `nspawnctl --help` stays
fast: importing pystemd and tabulate is left to the commands that use them.
"""

import sys

import click

from . import __version__, completion
from .errors import Error


class App:
    """What every command gets (a plain class: dataclasses costs ~10 ms of start-up)."""

    def __init__(self, debug: bool = False):
        self.debug = debug

    @property
    def paths(self):
        from .paths import Paths
        return Paths.from_env()


pass_app = click.make_pass_decorator(App, ensure=True)


def progress(message: str):
    click.echo(_shown(message, keep=_LINES), err=True)


def print_table(rows: list[dict], columns: list[str], as_json: bool):
    if as_json:
        import json
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from tabulate import tabulate
    click.echo(tabulate([[_cell(r.get(c)) for c in columns] for r in rows],
                        headers=[c.upper() for c in columns], tablefmt="plain"))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_shown, value)) or "-"
    return _shown(value) if isinstance(value, str) else value


_LINES = "\n\t"  # what messages may hold: a hint's lines, a log's tabs


def _shown(value, keep: str = "") -> str:
    """Text as a terminal may show it: what a container or an image wrote (an OS name, a
    port, a path, a line of its log in a hint, apt's progress inside it) could hold escape
    sequences that rewrite the admin's screen, or a line break that forges a row, so every
    character that is not printable (but those in keep) shows escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep
                   else c.encode("unicode_escape").decode("ascii") for c in text)


def print_record(record: dict, as_json: bool):
    if as_json:
        import json
        click.echo(json.dumps(record, indent=2, default=str))
        return
    width = max(map(len, record)) + 1
    for key, value in record.items():
        click.echo(f"{key + ':':<{width}} {_cell(value)}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _param, value: _print_version(ctx, value),
              help="Show the version and exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks and every command run.")
@pass_app
def cli(app: App, debug: bool):
    """Very small Linux containers with systemd-nspawn.

    Containers live in /var/lib/machines and run as systemd-nspawn@NAME.service, so
    machinectl, systemctl and journalctl see them too.
    """
    app.debug = debug
    if debug:
        import logging
        logging.basicConfig(level=logging.DEBUG, format="nspawnctl: %(message)s")


def _print_version(ctx, value: bool):
    """click.version_option's output, without its gettext lookups (locale and .mo file
    searches: ~1-2 ms of the 4 ms nspawnctl --version spends over importing click)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"nspawnctl, version {__version__}")
        ctx.exit()


def _terminated(_signum, _frame):
    # SIGTERM unwinds like Ctrl-C, so staging directories and locks are cleaned up.
    raise KeyboardInterrupt


def main():
    import signal
    signal.signal(signal.SIGTERM, _terminated)
    debug = "--debug" in sys.argv[1:]
    try:
        code = cli.main(prog_name="nspawnctl", standalone_mode=False)
    except Error as exc:
        if debug:
            raise
        click.echo(f"nspawnctl: {_shown(exc.message, keep=_LINES)}", err=True)
        if exc.hint:
            click.echo(f"hint: {_shown(exc.hint, keep=_LINES)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, not click's three: the usage is one --help away.
        command = exc.ctx.command_path if exc.ctx else "nspawnctl"
        click.echo(f"{command}: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"nspawnctl: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        click.echo("nspawnctl: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:
        if debug:
            raise
        click.echo(f"nspawnctl: internal error: {type(exc).__name__}: {exc} "
                   "(run with --debug for a traceback)", err=True)
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)




# --- making and removing containers --------------------------------------------------------

def _config_params(editing: bool = False) -> list:
    """The options that describe how a container runs, shared by create and set: one per
    setting of the table in settings/model.py that has a flag (and for set, --no-FLAG for the
    settings it edits item by item)."""
    from .settings.model import CLI_SETTINGS
    params: list = []
    for s in CLI_SETTINGS:
        assert s.flag is not None
        if s.switch:
            params.append(click.Option([f"{s.flag}/--no-{s.flag[2:]}", s.name], default=None,
                                       help=s.help))
        else:
            params.append(click.Option([s.flag, s.name], multiple=s.multiple,
                                       metavar=s.metavar,
                                       type=click.Choice(s.choices) if s.choices else None,
                                       help=s.help,
                                       shell_complete=completion.for_setting(s.name)))
        if editing and s.removes is not None:
            params.append(click.Option([f"--no-{s.flag[2:]}", f"no_{s.name}"], multiple=True,
                                       metavar="KEY",
                                       help=f"Remove a {s.flag} item (repeatable).",
                                       shell_complete=completion.for_setting(f"no_{s.name}")))
    return params


def _config_options(f, editing: bool = False):
    """_config_params as decorators, for a command of one's own (the tests)."""
    for param in reversed(_config_params(editing)):
        f.__dict__.setdefault("__click_params__", []).append(param)  # as click.option does
    return f


class _ConfigCommand(click.Command):
    """create and set: their options of the settings table are made when the command runs
    or shows its help, not when nspawnctl starts (the table and its parsers are ~10 ms of
    imports that `nspawnctl --version` or `list` never need).  They go before --json."""

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._editing = editing
        self._config_added = False

    def get_params(self, ctx):
        if not self._config_added:
            self._config_added = True
            at = next((i for i, p in enumerate(self.params) if p.name == "as_json"),
                      len(self.params))
            self.params[at:at] = _config_params(self._editing)
        return super().get_params(ctx)


@cli.command(cls=_ConfigCommand)
@click.argument("name")
@click.option("--from", "source", default="debootstrap:bookworm", show_default=True,
              shell_complete=completion.image_sources,
              help="debootstrap:SUITE, tar:PATH, dir:PATH, oci-archive:PATH, "
                   "docker-archive:PATH, oci:DIR[:REF] or scratch (only what --add puts in).")
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
@click.option("--platform", help="Image platform to pick, e.g. linux/arm64.")
@click.option("--overlay", "use_overlay", is_flag=True,
              help="Share the cached base tree read-only and keep only this container's "
                   "changes (overlayfs) instead of copying it.")
@click.option("--boot/--no-boot", default=None,
              help="Images: boot the tree's init, or run one command.  Default: an image "
                   "boots when its command is an init, or when it has no command or only a "
                   "shell (sh, bash) and has an init; else it runs its command.  With "
                   "--boot, --cmd gives the init's arguments.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def create(app, name, source, adds, cmd, mirror, variant, include, arch, slim, bootstrapper,
           platform, use_overlay, boot, as_json, **options):
    """Create container NAME (a Debian bookworm tree by default)."""
    from .ops.create import create as make
    from .settings.model import ContainerConfig, parse_cli
    from .sources.debootstrap import DEFAULT_MIRROR, BootstrapSpec, parse_packages
    spec = BootstrapSpec(mirror=mirror or DEFAULT_MIRROR, variant=variant,
                         include=parse_packages(include), arch=arch, slim=slim,
                         bootstrapper=bootstrapper)
    cfg = ContainerConfig(**parse_cli(options, creating=True))
    info = make(app.paths, name, source, spec, cfg, platform=platform, use_overlay=use_overlay,
                adds=adds, cmd=cmd, boot=boot, report=progress)
    if as_json:
        print_record(info, True)
    else:
        how = "from the cached base tree" if info.get("cached") else ""
        click.echo(f"created {name} ({info['method']}{', ' + how if how else ''}, "
                   f"{info['seconds']:.2f} s)")


@cli.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--check", "check_cmd", metavar="CMD",
              help="A shell command run inside after the upgrade: non-zero rolls it back.")
@click.option("--keep-snapshot", is_flag=True, help="Keep the snapshot taken before it.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120, show_default=True,
              help="Seconds the container has to come back after its restart.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def upgrade(app, name, check_cmd, keep_snapshot, timeout, as_json):
    """Upgrade a booted container's packages: download inside it, install into a copy of its
    stopped tree, swap the copy in, start it and check it; roll back to a snapshot taken first
    if it is not healthy."""
    from .ops.upgrade import upgrade as up
    info = up(app.paths, name, check=check_cmd, keep_snapshot=keep_snapshot, timeout=timeout,
              report=progress)
    if as_json:
        print_record(info, True)
    else:
        kept = f", snapshot {info['snapshot']} kept" if info["snapshot"] else ""
        click.echo(f"{name} upgraded: {info['state']}{kept}")


@cli.command()
@click.argument("src", shell_complete=completion.containers)
@click.argument("dst")
@pass_app
def clone(app, src, dst):
    """Copy stopped container SRC to a new container DST."""
    from .ops.clone import clone as copy
    info = copy(app.paths, src, dst, report=progress)
    click.echo(f"cloned {src} to {dst} ({info['method']})")


@cli.command("export")
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
def export(app, name, file, fmt, as_json):
    """Write container NAME's whole tree to FILE as one layer.

    An --overlay container is flattened; owners are written as the container sees them
    (root is 0).  A running container is frozen while its tree is read.  FILE appears only
    once complete (an existing FILE is replaced).

    \b
    nspawnctl export web web.tar.zst
    nspawnctl export web web.oci.tar --format oci-archive
    """
    from pathlib import Path

    from .ops.export import export as run_export
    info = run_export(app.paths, name, Path(file), fmt, report=progress)
    if as_json:
        print_record(info, True)
    else:
        kind = info["format"] + (f" ({info['compression']})" if info["compression"] else "")
        click.echo(f"exported {name} to {info['file']} ({kind}, {info['entries']} entries, "
                   f"{info['size'] / 1e6:.1f} MB, {info['seconds']:.2f} s)")


def existing(app, names) -> list[str]:
    """Names given to a command that acts on several: all checked before it acts on any, so
    a typo in the last one does not leave the first ones half done."""
    from .store.containers import Store
    names = list(dict.fromkeys(names))
    store = Store(app.paths)
    for name in names:
        store.require(name)
    return names


@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--force", "-f", is_flag=True, help="Stop running containers first.")
@pass_app
def remove(app, names, force):
    """Remove containers: their trees and settings."""
    from .ops.remove import remove as delete
    names = existing(app, names)
    for i, name in enumerate(names):
        count = delete(app.paths, name, force=force, report=progress,
                       along=tuple(names[i + 1:]))
        extra = f" and its {count} snapshot{'s' if count != 1 else ''}" if count else ""
        click.echo(f"removed {name}{extra}")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def images(ctx, as_json):
    """List cached base trees (see also: images prune)."""
    if ctx.invoked_subcommand:
        return
    from .ops.images import list_images
    rows = list_images(ctx.ensure_object(App).paths)
    if not as_json:
        import datetime
        for row in rows:
            row["size"] = f"{row['size'] / 1e6:.0f} MB"
            row["created"] = datetime.datetime.fromtimestamp(row["created"]).strftime(
                "%Y-%m-%d %H:%M")
    print_table(rows, ["key", "source", "size", "created", "containers"], as_json)


@images.command("prune")
@pass_app
def images_prune(app):
    """Remove cached base trees no container uses."""
    from .ops.images import prune
    removed = prune(app.paths)
    click.echo(f"removed {len(removed)} base tree(s)" + "".join(f"\n  {k}" for k in removed))


# --- lifecycle ---------------------------------------------------------------------------

@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return once the container's systemd reports running.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60, show_default=True)
@pass_app
def start(app, names, wait, timeout):
    """Start containers (systemd-nspawn@NAME.service)."""
    from .ops.lifecycle import start as run
    for name in existing(app, names):
        state = run(app.paths, name, wait=wait, timeout=timeout, report=progress)
        click.echo(f"{name}: {state}")


@cli.command()
@click.argument("names", nargs=-1, required=True,
                shell_complete=completion.running_containers)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30, show_default=True,
              help="Seconds to wait for a clean poweroff before terminating.")
@pass_app
def stop(app, names, timeout):
    """Power containers off cleanly (terminate them after --timeout)."""
    from .ops.lifecycle import stop as halt
    for name in existing(app, names):
        stopped = halt(app.paths, name, timeout=timeout, report=progress)
        click.echo(f"{name}: {'stopped' if stopped else 'already stopped'}")


@cli.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60, show_default=True)
@pass_app
def restart(app, name, timeout):
    """Stop and start a container."""
    from .ops.lifecycle import restart as again
    click.echo(f"{name}: {again(app.paths, name, timeout=timeout, report=progress)}")


@cli.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--signal", "-s", "sig", default="TERM", show_default=True)
@pass_app
def kill(app, name, sig):
    """Send a signal to every process of a container."""
    from .ops.lifecycle import kill as send
    send(app.paths, name, sig)


@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@pass_app
def enable(app, names):
    """Start containers when the host boots (machines.target)."""
    from .ops.lifecycle import enable as on
    for name in existing(app, names):
        on(app.paths, name)
        click.echo(f"{name}: enabled")


@cli.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@pass_app
def disable(app, names):
    """Do not start containers at boot any more."""
    from .ops.lifecycle import disable as off
    for name in existing(app, names):
        off(app.paths, name)
        click.echo(f"{name}: disabled")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app, as_json):
    """List every container, running or not."""
    from .ops.inventory import list_containers
    rows = list_containers(app.paths)
    print_table(rows, ["name", "state", "os", "address", "ports", "image", "enabled", "limits"],
                as_json)


@cli.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app, name, as_json):
    """Show one container in detail."""
    from .ops.inventory import status as describe
    print_record(describe(app.paths, name), as_json)


@cli.command("set", cls=_ConfigCommand, editing=True)
@click.argument("name", shell_complete=completion.containers)
@pass_app
def set_(app, name, **options):
    """Change a container's settings; limits and ports apply at once if it runs."""
    from .ops.reconfigure import set_config
    if not any(v for v in options.values() if v not in (None, ())):
        raise Error("nothing to change", hint="see 'nspawnctl set --help'")
    for line in set_config(app.paths, name, options):
        click.echo(line)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=completion.running_containers)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def exec(app, name, command):
    """Run COMMAND in a running container; its exit status is nspawnctl's.

    Put -- before the command: nspawnctl exec NAME -- ls -l /
    """
    from .ops.lifecycle import exec_
    sys.exit(exec_(app.paths, name, list(command)))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=completion.running_containers)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--user", "-u", help="Log in as this user (default: root).")
@pass_app
def shell(app, name, command, user):
    """An interactive login shell in a running, booted container."""
    from .ops.lifecycle import shell as login
    sys.exit(login(app.paths, name, user, list(command)))


@cli.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries.")
@click.option("--lines", "-n", type=click.IntRange(min=0), help="Show the last N entries.")
@pass_app
def logs(app, name, follow, lines):
    """Show a container's journal."""
    from .ops.lifecycle import logs as journal
    sys.exit(journal(app.paths, name, follow, lines))



# --- day two: snapshots ------------------------------------------------------------------

class DefaultGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to a default one:
    `snapshot NAME [TAG]` creates, `snapshot rm|list|rollback ...` do the rest.  A container
    named like a subcommand is reached through `snapshot create NAME`."""

    default = "create"

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [self.default, *args]
        return super().resolve_command(ctx, args)

    def shell_complete(self, ctx, incomplete):
        # `snapshot NAME` makes one: the containers besides the subcommands
        return [*super().shell_complete(ctx, incomplete),
                *completion.containers(ctx, None, incomplete)]

    def parse_args(self, ctx, args):
        # `snapshot --stop NAME`: options before NAME belong to create, not to the group
        if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def _snapshot_rows(rows: list[dict], as_json: bool) -> None:
    if not as_json:
        import datetime
        for row in rows:
            row["size"] = f"{(row.get('size') or 0) / 1e6:.1f} MB"
            row["created"] = datetime.datetime.fromtimestamp(
                row.get("created") or 0, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    print_table(rows, ["tag", "method", "size", "created"], as_json)


@cli.group(cls=DefaultGroup)
def snapshot():
    """Snapshots of a container's tree and settings: snapshot NAME [TAG] makes one
    (create, list, rm and rollback are the subcommands)."""


@snapshot.command("create")
@click.argument("name", shell_complete=completion.containers)
@click.argument("tag", required=False)
@click.option("--stop", "stop_if_needed", is_flag=True,
              help="Where a running container cannot be frozen, stop it for the copy and "
                   "start it again.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def snapshot_create(app, name, tag, stop_if_needed, as_json):
    """Snapshot NAME as TAG (default: the UTC time, e.g. 20261128T192500Z)."""
    from .ops.snapshot import snapshot as take
    info = take(app.paths, name, tag, stop_if_needed=stop_if_needed, report=progress)
    if as_json:
        print_record(info, True)
    else:
        click.echo(f"snapshot {info['tag']} of {name} ({info['method']}, "
                   f"{info['size'] / 1e6:.1f} MB)")


@snapshot.command("list")
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def snapshot_list(app, name, as_json):
    """List NAME's snapshots with their size and time."""
    from .ops.snapshot import list_snapshots
    _snapshot_rows(list_snapshots(app.paths, name), as_json)


@snapshot.command("rm")
@click.argument("name", shell_complete=completion.containers)
@click.argument("tag", shell_complete=completion.snapshot_tags)
@pass_app
def snapshot_rm(app, name, tag):
    """Remove NAME's snapshot TAG."""
    from .ops.snapshot import remove_snapshot
    remove_snapshot(app.paths, name, tag)
    click.echo(f"removed snapshot {tag} of {name}")


@snapshot.command("rollback")
@click.argument("name", shell_complete=completion.containers)
@click.argument("tag", shell_complete=completion.snapshot_tags)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def snapshot_rollback(app, name, tag, as_json):
    """Put NAME back as snapshot TAG holds it (tree and settings); a running container is
    stopped and started again.  The snapshot stays."""
    from .ops.snapshot import rollback as back
    info = back(app.paths, name, tag, report=progress)
    if as_json:
        print_record(info, True)
    else:
        click.echo(f"{name} rolled back to {tag} ({info['method']})"
                   + (f": {info['state']}" if info["restarted"] else ""))


# `snapshots NAME` and `rollback NAME TAG`, as the issue and machinectl users would type them
cli.add_command(snapshot_list, "snapshots")
cli.add_command(snapshot_rollback, "rollback")


@cli.command()
@click.argument("src", shell_complete=completion.files)
@click.argument("dst", shell_complete=completion.files)
@click.option("--preserve-owner", is_flag=True,
              help="Out of a container: keep owners and groups as they are on disk (the "
                   "container's user-namespace range), and set-ID bits of ids in that range.")
@pass_app
def cp(app, src, dst, preserve_owner):
    """Copy a file or directory into or out of a container, running or stopped: one side is
    NAME:/PATH.  A copy in is owned as the container sees it (owners mapped through its user
    namespace); a copy out belongs to the invoking user (sudo's SUDO_UID/SUDO_GID), without
    set-ID bits, file capabilities or device nodes.  A path in the container never leads out
    of its tree, whatever the container does meanwhile."""
    from .ops.copy import copy
    info = copy(app.paths, src, dst, preserve_owner=preserve_owner, report=progress)
    click.echo(f"copied {info['from']} to {info['to']}")


# --- networks and the host ---------------------------------------------------------------

@cli.group()
def network():
    """nspawnctl's networks: containers on one network reach each other by name, and the
    outside through NAT; containers on different networks cannot reach each other."""


@network.command("create")
@click.argument("name")
@click.option("--subnet", metavar="CIDR", help="Its IPv4 subnet (default: a free one).")
@pass_app
def network_create(app, name, subnet):
    """Create network NAME (a bridge nsc-NAME and its subnet)."""
    from .ops.network import create_network
    net = create_network(app.paths, name, subnet)
    click.echo(f"created network {net.name} ({net.subnet}, bridge {net.bridge})")


@network.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def network_list(app, as_json):
    """List networks and their containers."""
    from .ops.network import list_networks
    print_table(list_networks(app.paths), ["name", "subnet", "gateway", "bridge", "containers"],
                as_json)


@network.command("remove")
@click.argument("names", nargs=-1, required=True, shell_complete=completion.networks)
@pass_app
def network_remove(app, names):
    """Remove networks that no container uses."""
    from .ops.network import remove_network
    for name in names:
        remove_network(app.paths, name)
        click.echo(f"removed network {name}")


@network.command("apply", hidden=True)
@pass_app
def network_apply(app):
    """Bring the host side of every network up to date (bridges, firewall table)."""
    from .ops.network import apply_host
    apply_host(app.paths)


@network.command("watch", hidden=True)
@pass_app
def network_watch(app):
    """Apply, then put the firewall table back whenever it is deleted (the boot unit)."""
    from .ops.network import watch
    watch(app.paths)


@network.command("attach", hidden=True)
@click.argument("name")
@pass_app
def network_attach(app, name):
    """Configure a just-started container's network (its unit's ExecStartPost=)."""
    from .ops.network import attach_running
    attach_running(app.paths, name, report=progress)


@cli.command()
@pass_app
def recover(app):
    """Finish or roll back what a crash left half-done (runs at boot, before any container)."""
    from .ops.common import require_root
    from .ops.host import recover as make_whole
    require_root()
    done = make_whole(app.paths)
    for line in done:
        click.echo(line)
    if not done:
        click.echo("the store is whole: nothing to recover")


@cli.command("install-units", hidden=True)
@pass_app
def install_units(app):
    """Install nspawnctl's boot-time units (the README's commands run this)."""
    from .ops.common import require_root
    from .ops.host import ensure_units
    require_root()
    ensure_units(app.paths)


@cli.command("install-extras", hidden=True)
def install_extras():
    """Install the man page and the bash, zsh and fish completions (the README's commands
    run this)."""
    from .extras import install, root_from_env
    for path in install(cli, root_from_env()):
        click.echo(f"installed {path}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def doctor(app, as_json):
    """Check this host for what containers need; say what to run for what is missing.
    Exits 1 when something would stop containers from working."""
    from .ops.doctor import failed, run_checks, to_json
    checks = run_checks(app.paths)
    if as_json:
        import json
        click.echo(json.dumps(to_json(checks), indent=2))
    else:
        for check in checks:
            mark = "ok" if check.ok else check.severity
            click.echo(f"{mark:<8} {check.name}: {check.message}")
            if not check.ok and check.fix:
                click.echo(f"{'':<8} fix: {check.fix}")
    if failed(checks):
        sys.exit(1)
