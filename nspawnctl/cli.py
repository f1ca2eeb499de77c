"""The command line: click commands only.

Each command parses its arguments, calls one operation and prints the result (a table, or JSON
with --json).  Operation modules are imported inside the commands so `nspawnctl --help` stays
fast: importing pystemd and tabulate is left to the commands that use them.
"""

import json
import sys
from dataclasses import dataclass

import click

from . import __version__
from .errors import Error


@dataclass
class App:
    debug: bool = False

    @property
    def paths(self):
        from .paths import Paths
        return Paths.from_env()


pass_app = click.make_pass_decorator(App, ensure=True)


def progress(message: str):
    click.echo(message, err=True)


def print_table(rows: list[dict], columns: list[str], as_json: bool):
    if as_json:
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
        return ",".join(map(str, value)) or "-"
    return value


def print_record(record: dict, as_json: bool):
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    width = max(map(len, record)) + 1
    for key, value in record.items():
        click.echo(f"{key + ':':<{width}} {_cell(value)}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nspawnctl")
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


def main():
    debug = "--debug" in sys.argv[1:]
    try:
        code = cli.main(prog_name="nspawnctl", standalone_mode=False)
    except Error as exc:
        if debug:
            raise
        click.echo(f"nspawnctl: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
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


