"""Running containers: start, stop, restart, kill, enable, disable, exec, shell, logs."""

import sys

import click

from ..ops import lifecycle
from . import completion, pass_app
from .options import existing, timeout_option


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return once the container's systemd reports running.")
@timeout_option("for each container to report running (with --wait)")
@pass_app
def start(app, names, wait, timeout):
    """Start containers (systemd-nspawn@NAME.service)."""
    for name in existing(app, names):
        state = lifecycle.start(app.ctx, name, wait=wait, timeout=timeout)
        click.echo(f"{name}: {state}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@timeout_option("for each container's clean poweroff, before it is terminated")
@pass_app
def stop(app, names, timeout):
    """Power containers off cleanly (terminate them after --timeout)."""
    for name in existing(app, names):
        stopped = lifecycle.stop(app.ctx, name, timeout=timeout)
        click.echo(f"{name}: {'stopped' if stopped else 'already stopped'}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@timeout_option("for each container's clean poweroff (then it is terminated), and again for "
                "it to report running")
@pass_app
def restart(app, names, timeout):
    """Stop and start containers."""
    for name in existing(app, names):
        click.echo(f"{name}: {lifecycle.restart(app.ctx, name, timeout=timeout)}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@click.option("--signal", "-s", "sig", default="TERM", show_default=True,
              help="The signal, by name (TERM, SIGHUP) or number.")
@pass_app
def kill(app, names, sig):
    """Send a signal to every process of containers."""
    lifecycle.kill(app.ctx, list(dict.fromkeys(names)), sig)


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
@click.option("--since", metavar="TIME",
              help="Entries from TIME on, as journalctl takes it: '2026-12-06 12:00', today, "
                   "yesterday, -1h, '10 min ago'.")
@click.option("--until", metavar="TIME", help="Entries up to TIME (as --since).")
@pass_app
def logs(app, name, follow, lines, since, until):
    """Show a container's journal."""
    sys.exit(lifecycle.logs(app.ctx, name, follow, lines, since=since, until=until))
