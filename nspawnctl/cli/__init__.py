"""The command line: click commands only.

Each command parses its arguments, calls one operation and prints the result (a table, or JSON
with --json).  The commands live in one module per group (containers, lifecycle, inventory,
settings, day2, network, host, registry), listed in COMMANDS with the one line `--help` shows, and a
module is imported only when one of its commands runs or shows its help (pip's
commands_dict): `nspawnctl --version`, `--help` and the other groups never load pystemd,
pyroute2, tabulate or the settings table.
"""

import importlib
import sys

import click

from .. import __version__
from ..errors import Error
from .output import LINES, shown


class App:
    """What every command gets: its Context (runtime/context.py: the paths, the store, one bus
    connection opened when first needed), made once and closed when the command ends."""

    def __init__(self, debug: bool = False):
        self.debug = debug
        self._ctx = None

    @property
    def paths(self):
        return self.ctx.paths

    @property
    def ctx(self):
        if self._ctx is None:  # imported here: --version and --help need none of it
            from ..paths import Paths
            from ..runtime.context import Context
            from .output import progress
            self._ctx = Context(Paths.from_env(), report=progress)
            click.get_current_context().call_on_close(self._ctx.close)
        return self._ctx


pass_app = click.make_pass_decorator(App, ensure=True)

# name -> (module in this package, the click command in it, its one line of help); a test
# checks each line against the command's own docstring.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "create": ("containers", "create_command",
               "Create container NAME (a Debian bookworm tree by default)."),
    "clone": ("containers", "clone_command",
              "Copy stopped container SRC to a new container DST."),
    "remove": ("containers", "remove_command", "Remove containers: their trees and settings."),
    "export": ("containers", "export_command",
               "Write container NAME's whole tree to FILE as one layer."),
    "upgrade": ("containers", "upgrade_command",
                "Upgrade a booted container's packages: download inside it, install into a "
                "copy of its stopped tree, swap the copy in, start it and check it; roll back "
                "to a snapshot taken first if it is not healthy."),
    "pull": ("registry", "pull_command",
             "Pull image REF ([docker://][REGISTRY/]REPO[:TAG|@DIGEST]) from its registry and "
             "unpack it, ready for create --from docker://REF."),
    "login": ("registry", "login_command",
              "Log in to REGISTRY: the credentials go to the auth file podman and skopeo use."),
    "logout": ("registry", "logout_command",
               "Forget the credentials of REGISTRY (or of all with --all)."),
    "images": ("inventory", "images_group",
               "List pulled images and cached base trees (see also: images rm, images prune)."),
    "list": ("inventory", "list_", "List every container, running or not."),
    "status": ("inventory", "status", "Show one container in detail."),
    "start": ("lifecycle", "start", "Start containers (systemd-nspawn@NAME.service)."),
    "stop": ("lifecycle", "stop",
             "Power containers off cleanly (terminate them after --timeout)."),
    "restart": ("lifecycle", "restart", "Stop and start a container."),
    "kill": ("lifecycle", "kill", "Send a signal to every process of a container."),
    "enable": ("lifecycle", "enable", "Start containers when the host boots (machines.target)."),
    "disable": ("lifecycle", "disable", "Do not start containers at boot any more."),
    "exec": ("lifecycle", "exec", "Run COMMAND in a running container; its exit status is "
                                  "nspawnctl's."),
    "shell": ("lifecycle", "shell", "An interactive login shell in a running, booted container."),
    "logs": ("lifecycle", "logs", "Show a container's journal."),
    "set": ("settings", "set_",
            "Change a container's settings; limits and ports apply at once if it runs."),
    "snapshot": ("day2", "snapshot_group",
                 "Snapshots of a container's tree and settings: snapshot NAME [TAG] makes one "
                 "(create, list, rm and rollback are the subcommands)."),
    "snapshots": ("day2", "snapshot_list", "List NAME's snapshots with their size and time."),
    "rollback": ("day2", "snapshot_rollback",
                 "Put NAME back as snapshot TAG holds it (tree and settings); a running "
                 "container is stopped and started again."),
    "cp": ("day2", "cp", "Copy a file or directory into or out of a container, running or "
                         "stopped: one side is NAME:/PATH."),
    "network": ("network", "network_group",
                "nspawnctl's networks: containers on one network reach each other by name, "
                "and the outside through NAT; containers on different networks cannot reach "
                "each other."),
    "doctor": ("host", "doctor_command", "Check this host for what containers need; say what "
                                         "to run for what is missing."),
    "recover": ("host", "recover", "Finish or roll back what a crash left half-done (runs at "
                                   "boot, before any container)."),
    "install-units": ("host", "install_units", ""),  # hidden: the README's commands run it
    "install-extras": ("host", "install_extras", ""),  # hidden, as install-units
}


def load(name: str) -> click.Command:
    """The click command NAME, its module imported now."""
    module, attr, _summary = COMMANDS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


class LazyGroup(click.Group):
    """The root group: commands come from COMMANDS when they are asked for; --help lists
    them with their one line without importing a module."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        return load(name) if name in COMMANDS else None

    def format_commands(self, ctx, formatter):
        rows = [(name, summary) for name, (_m, _a, summary) in COMMANDS.items() if summary]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    """click.version_option's output, without its gettext lookups at import (locale and .mo
    file searches: ~1-2 ms of every command's start-up, which a test holds off)."""
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
        click.echo(f"nspawnctl: {shown(exc.message, keep=LINES)}", err=True)
        if exc.hint:
            click.echo(f"hint: {shown(exc.hint, keep=LINES)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, not click's three: the usage is one --help away.
        command = exc.ctx.command_path if exc.ctx else "nspawnctl"
        click.echo(f"{command}: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)  # 2, but exec's and shell's 125 (cli/lifecycle.py)
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
