"""Registries: pull, login, logout, auto-update."""

import sys

import click

from ..errors import CHANGES, Error, Usage
from ..ops import autoupdate
from ..ops import health as health_ops
from ..ops import pull as ops
from . import completion, jsonview, pass_app
from .options import json_option, registry_options, timeout_option
from .output import print_json, print_record, tty_progress


@click.command("pull")
@click.argument("ref", shell_complete=completion.pulled_images)
@registry_options("always")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def pull_command(app, ref, platform, pull_policy, tls_verify, as_json):
    """Pull image REF ([docker://][REGISTRY/]REPO[:TAG|@DIGEST]) from its registry and
    unpack it, ready for create --from docker://REF."""
    # a pull asks the registry unless told otherwise (podman pull's default too); create's
    # default is missing
    info = ops.pull(app.ctx, ref, policy=pull_policy or "always", platform=platform,
                    tls_verify=tls_verify, progress=None if as_json else tty_progress())
    info = jsonview.view("pulled", info)
    if as_json:
        print_record(info, True)
    else:
        click.echo(f"{info['name']} {info['digest']}")


@click.command("login")
@click.argument("registry")
@click.option("-u", "--username", help="The user name (asked for when not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--tls-verify", type=click.BOOL, default=None, metavar="BOOL", is_flag=False,
              flag_value="true", help="Require HTTPS with a verified certificate.")
@pass_app
def login_command(app, registry, username, password_stdin, tls_verify):
    """Log in to REGISTRY: the credentials go to the auth file podman and skopeo use."""
    ops.login(app.ctx, registry, username, password_stdin, tls_verify)


@click.command("logout")
@click.argument("registry", required=False, shell_complete=completion.pulled_images)
@click.option("--all", "all_", is_flag=True, help="Forget the credentials of every registry.")
@pass_app
def logout_command(app, registry, all_):
    """Forget the credentials of REGISTRY (or of all with --all)."""
    ops.logout(app.ctx, registry, all_)


@click.command("auto-update")
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=completion.containers)
@click.option("--dry-run", is_flag=True,
              help=f"Only say which containers would be updated; exit {CHANGES} when any "
                   "would, 0 when none.")
@click.option("--enable-timer", is_flag=True,
              help="Install and enable nspawnctl-auto-update.timer: a run every day.")
@click.option("--disable-timer", is_flag=True, help="Stop and disable that timer.")
@timeout_option("for an updated container to come up")
@json_option()
@pass_app
def auto_update_command(app, names, dry_run, enable_timer, disable_timer, timeout, as_json):
    """Update the containers marked --auto-update registry (or those named) to the image
    their reference names now, keeping their settings; roll each back when it is not
    healthy."""
    if enable_timer or disable_timer:
        if enable_timer and disable_timer or names or dry_run:
            raise Usage("--enable-timer and --disable-timer take no names, no --dry-run and "
                        "not each other")
        info = jsonview.view("enabled", autoupdate.set_timer(app.ctx, enable=enable_timer))
        if as_json:
            print_record(info, True)
        else:
            click.echo(f"{info['name']} {'enabled' if info['enabled'] else 'disabled'}")
        return
    rows = jsonview.views("auto_updated",
                          autoupdate.auto_update(
                              app.ctx, list(names), dry_run=dry_run, timeout=timeout,
                              gate=lambda name: health_ops.health_gate(app.ctx, name, timeout)))
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            click.echo(_said(row))
        if not rows:
            click.echo("no container is marked --auto-update registry")
    failed = [r["name"] for r in rows if r["action"] in ("failed", "rolled-back")]
    if failed:
        raise Error(f"auto-update did not update {', '.join(failed)}",
                    hint="each one's line says why")
    if dry_run and any(r["action"] == "would-update" for r in rows):
        sys.exit(CHANGES)


def _said(row: dict) -> str:
    name, ref = row["name"], row["reference"]
    if row["action"] == "updated":
        return f"{name}: updated to {row['new_image']} ({ref})"
    if row["action"] == "up-to-date":
        return f"{name}: up to date ({ref})"
    if row["action"] == "would-update":
        return f"{name}: would update {row['image']} -> {row['new_image']} ({ref})"
    return f"{name}: {row['message']}"
