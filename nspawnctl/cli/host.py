"""The host: doctor, recover, and installing the boot-time units."""

import sys

import click

from .. import __version__
from ..ops import common, doctor, host
from ..systemd import bootunits
from . import jsonview, pass_app
from .options import json_option
from .output import print_json


@click.command()
@json_option()
@pass_app
def recover(app, as_json):
    """Finish or roll back what a crash left half-done (runs at boot, before any container)."""
    common.require_root()
    done = host.recover(app.paths)
    if as_json:
        print_json(jsonview.view("recovered", {"done": done}))
        return
    for line in done:
        click.echo(line)
    if not done:
        click.echo("the store is whole: nothing to recover")


@click.command("install-units", hidden=True)
@pass_app
def install_units(app):
    """Install nspawnctl's boot-time units (the README's commands run this)."""
    common.require_root()
    bootunits.ensure_units(app.paths, lambda: app.ctx.bus)


@click.command("install-extras", hidden=True)
def install_extras():
    """Install the man page and the bash, zsh and fish completions (the README's commands
    run this)."""
    from . import cli
    from .extras import install, root_from_env
    for path in install(cli, root_from_env()):
        click.echo(f"installed {path}")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def doctor_command(app, as_json):
    """Check this host for what containers need; say what to run for what is missing.
    Exits 1 when something would stop containers from working."""
    checks = doctor.run_checks(app.paths)
    if as_json:
        print_json(jsonview.view("doctor", doctor.to_json(checks)))
    else:
        for check in checks:
            mark = "ok" if check.ok else check.severity
            click.echo(f"{mark:<8} {check.name}: {check.message}")
            if not check.ok and check.fix:
                click.echo(f"{'':<8} fix: {check.fix}")
    if doctor.failed(checks):
        sys.exit(1)


@click.command("version")
@json_option()
def version_command(as_json):
    """Show nspawnctl's version and the version of its JSON (docs/json.md)."""
    if as_json:
        print_json(jsonview.view("version", {"version": __version__,
                                             "schema_version": jsonview.SCHEMA_VERSION}))
    else:
        click.echo(f"nspawnctl {__version__}, JSON schema {jsonview.SCHEMA_VERSION}")
