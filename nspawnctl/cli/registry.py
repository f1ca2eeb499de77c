"""Registries: pull, login, logout."""

import click

from ..ops import pull as ops
from . import completion, jsonview, pass_app
from .options import registry_options
from .output import print_record, tty_progress


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
