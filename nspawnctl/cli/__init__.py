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
    "run": ("containers", "run_command",
            "Create container NAME and start it: create's options, and --rm."),
    "clone": ("containers", "clone_command",
              "Copy stopped container SRC to a new container DST."),
    "rename": ("containers", "rename_command",
               "Rename stopped container OLD to NEW, with its settings, snapshots and "
               "addresses."),
    "remove": ("containers", "remove_command",
               "Remove containers: their trees, settings and snapshots (each named, with its "
               "size)."),
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
    "auto-update": ("registry", "auto_update_command",
                    "Update the containers marked --auto-update registry (or those named) to "
                    "the image their reference names now, keeping their settings; roll each "
                    "back when it is not healthy."),
    "images": ("inventory", "images_group",
               "List pulled images and cached base trees (see also: images rm, images prune)."),
    "list": ("inventory", "list_", "List every container, running or not."),
    "status": ("inventory", "status", "Show one container in detail."),
    "inspect": ("inventory", "inspect",
                "Show one container as JSON: all that status shows, and its .nspawn file and "
                "unit."),
    "stats": ("inventory", "stats",
              "Show what running containers use: CPU, memory, processes, network."),
    "top": ("inventory", "top", "Show the processes running in container NAME."),
    "start": ("lifecycle", "start", "Start containers (systemd-nspawn@NAME.service)."),
    "stop": ("lifecycle", "stop",
             "Power containers off cleanly (terminate them after --timeout)."),
    "restart": ("lifecycle", "restart", "Stop and start containers."),
    "kill": ("lifecycle", "kill", "Send a signal to every process of containers."),
    "enable": ("lifecycle", "enable", "Start containers when the host boots (machines.target)."),
    "disable": ("lifecycle", "disable", "Do not start containers at boot any more."),
    "exec": ("lifecycle", "exec", "Run COMMAND in a running container; its exit status is "
                                  "nspawnctl's."),
    "shell": ("lifecycle", "shell", "An interactive login shell in a running, booted container."),
    "logs": ("lifecycle", "logs", "Show a container's journal."),
    "health": ("lifecycle", "health", "Run container NAME's health check now and show its "
                                      "health."),
    "wait": ("lifecycle", "wait", "Wait until container NAME is running, healthy or stopped."),
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
    "apply": ("stacks", "apply_command",
              "Make this host's containers and networks match a stack file: create what is "
              "missing, change what differs (live where set is), start and stop; --dry-run "
              "shows the plan."),
    "spec": ("stacks", "spec_command",
             "Print a stack file (YAML) that apply turns back into containers NAME..., with "
             "the networks they use; only what differs from create's defaults."),
    "network": ("network", "network_group",
                "nspawnctl's networks: containers on one network reach each other by name, "
                "and the outside through NAT; containers on different networks cannot reach "
                "each other."),
    "volume": ("volumes", "volume_group",
               "Named volumes: data that outlives its containers, mounted with --volume "
               "NAME:/PATH (create, list, inspect, remove, export and import are the "
               "subcommands)."),
    "doctor": ("host", "doctor_command", "Check this host for what containers need; say what "
                                         "to run for what is missing."),
    "recover": ("host", "recover", "Finish or roll back what a crash left half-done (runs at "
                                   "boot, before any container)."),
    # hidden until the README's list of commands names it (a test holds the two together)
    "version": ("host", "version_command",
                "Show nspawnctl's version and the version of its JSON (docs/json.md)."),
    "install-units": ("host", "install_units", ""),  # hidden: the README's commands run it
    "install-extras": ("host", "install_extras", ""),  # hidden, as install-units
    # hidden: units/nspawnctl-health.service runs it
    "health-scheduler": ("lifecycle", "health_scheduler", ""),
}


# podman's names for the same commands, as its users type them: shown beside the command in
# --help ("remove (rm)"), "the same as" in the man page, completed as any command
ALIASES = {"rm": "remove", "ps": "list"}


def load(name: str) -> click.Command:
    """The click command NAME (or the one it is an alias of), its module imported now, with
    --debug among its options."""
    module, attr, _summary = COMMANDS[ALIASES.get(name, name)]
    return with_debug(getattr(importlib.import_module(f"{__name__}.{module}"), attr))


def summary(command: click.Command) -> str:
    """What a list of commands says of one: its short help, else its help's whole first
    paragraph (click's own stops at the first full stop, e.g.'s too, or mid-sentence at 45
    characters)."""
    text = command.short_help or (command.help or "").split("\n\n")[0]
    return " ".join(text.replace("\b", "").split())


class Group(click.Group):
    """A group whose --help lists each command with its whole summary, wrapped."""

    def format_commands(self, ctx, formatter):
        rows = [(name, summary(command)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class LazyGroup(click.Group):
    """The root group: commands come from COMMANDS when they are asked for; --help lists
    them with their one line without importing a module."""

    def list_commands(self, ctx):
        return [*COMMANDS, *ALIASES]

    def get_command(self, ctx, name):
        return load(name) if name in COMMANDS or name in ALIASES else None

    def invoke(self, ctx):
        """With --host, the command and its words go to the far nspawnctl as they are (the
        far side parses them: its version's options), and its exit status is ours."""
        where = ctx.params.get("host")
        args = [*ctx.protected_args, *ctx.args]
        if where is None or not args:  # no command: click's "Missing command" here
            return super().invoke(ctx)
        from .. import remote
        return remote.run_on(where, args, debug=DEBUG)

    def format_commands(self, ctx, formatter):
        aliases = {command: alias for alias, command in ALIASES.items()}
        rows = [(f"{name} ({aliases[name]})" if name in aliases else name, summary)
                for name, (_m, _a, summary) in COMMANDS.items() if summary]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _debug(ctx: click.Context, _param, value: bool):
    """--debug, before the command or after it: tracebacks, and every command run logged."""
    global DEBUG
    if value:
        DEBUG = True
        ctx.ensure_object(App).debug = True
        import logging
        logging.basicConfig(level=logging.DEBUG, format="nspawnctl: %(message)s")


DEBUG = False
DEBUG_HELP = "Show tracebacks and every command run."


def _host(_ctx, _param, value: str | None):
    """--host checked before anything runs (remote.py: nothing ssh would read as an
    option)."""
    if value is None:
        return None
    from .. import remote
    return remote.destination(value)


def with_debug(command: click.Command) -> click.Command:
    """command (and a group's subcommands) taking --debug among its own options, as the root
    group does: `nspawnctl list --debug` as `nspawnctl --debug list`.  An option of the
    command's, so click's parser says where it ends: after `--`, or in exec's COMMAND, it is
    the command's argument."""
    if not any("--debug" in getattr(p, "opts", ()) for p in command.params):
        command.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                           hidden=True, callback=_debug, help=DEBUG_HELP))
    for sub in getattr(command, "commands", {}).values():
        with_debug(sub)
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _param, value: _print_version(ctx, value),
              help="Show the version and exit.")
@click.option("--debug", is_flag=True, expose_value=False, callback=_debug,
              help=f"{DEBUG_HELP} Also taken after the command.")
@click.option("--host", "-H", metavar="[USER@]HOST[:PORT]", callback=_host,
              help="Run the command on HOST over ssh, by the nspawnctl installed there: its "
                   "output and exit status come back, stdin goes to the commands that read "
                   "it, shell and exec -t get a terminal.  Paths (apply -f FILE, cp, export) "
                   "are HOST's.")
def cli(host):  # noqa: ARG001 (LazyGroup.invoke runs the command on it)
    """Very small Linux containers with systemd-nspawn.

    Containers live in /var/lib/machines and run as systemd-nspawn@NAME.service, so
    machinectl, systemctl and journalctl see them too.
    """


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
    global DEBUG
    DEBUG = False  # until --debug is parsed, before the command or after it
    try:
        code = cli.main(prog_name="nspawnctl", standalone_mode=False)
    except Error as exc:
        if DEBUG:
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
        if DEBUG:
            raise
        click.echo(f"nspawnctl: internal error: {type(exc).__name__}: {exc} "
                   "(run with --debug for a traceback)", err=True)
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
