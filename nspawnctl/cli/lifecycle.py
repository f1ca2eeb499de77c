"""Running containers: start, stop, restart, kill, enable, disable, exec, shell, logs."""

import sys

import click

from ..ops import lifecycle
from . import completion, pass_app
from .options import existing


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return once the container's systemd reports running.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60, show_default=True)
@pass_app
def start(app, names, wait, timeout):
    """Start containers (systemd-nspawn@NAME.service)."""
    for name in existing(app, names):
        state = lifecycle.start(app.ctx, name, wait=wait, timeout=timeout)
        click.echo(f"{name}: {state}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30, show_default=True,
              help="Seconds to wait for a clean poweroff before terminating.")
@pass_app
def stop(app, names, timeout):
    """Power containers off cleanly (terminate them after --timeout)."""
    for name in existing(app, names):
        stopped = lifecycle.stop(app.ctx, name, timeout=timeout)
        click.echo(f"{name}: {'stopped' if stopped else 'already stopped'}")


@click.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60, show_default=True)
@pass_app
def restart(app, name, timeout):
    """Stop and start a container."""
    click.echo(f"{name}: {lifecycle.restart(app.ctx, name, timeout=timeout)}")


@click.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--signal", "-s", "sig", default="TERM", show_default=True)
@pass_app
def kill(app, name, sig):
    """Send a signal to every process of a container."""
    lifecycle.kill(app.ctx, name, sig)


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@pass_app
def enable(app, names):
    """Start containers when the host boots (machines.target)."""
    for name in existing(app, names):
        lifecycle.enable(app.ctx, name)
        click.echo(f"{name}: enabled")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@pass_app
def disable(app, names):
    """Do not start containers at boot any more."""
    for name in existing(app, names):
        lifecycle.disable(app.ctx, name)
        click.echo(f"{name}: disabled")




@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=completion.running_containers)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def exec(app, name, command):
    """Run COMMAND in a running container; its exit status is nspawnctl's.

    Put -- before the command: nspawnctl exec NAME -- ls -l /
    """
    sys.exit(lifecycle.exec_(app.ctx, name, list(command)))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=completion.running_containers)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--user", "-u", help="Log in as this user (default: root).")
@pass_app
def shell(app, name, command, user):
    """An interactive login shell in a running, booted container."""
    sys.exit(lifecycle.shell(app.ctx, name, user, list(command)))


@click.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries.")
@click.option("--lines", "-n", type=click.IntRange(min=0), help="Show the last N entries.")
@pass_app
def logs(app, name, follow, lines):
    """Show a container's journal."""
    sys.exit(lifecycle.logs(app.ctx, name, follow, lines))
