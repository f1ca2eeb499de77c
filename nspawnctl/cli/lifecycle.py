"""Running containers: start, stop, restart, kill, enable, disable, exec, shell, logs, health,
wait."""

import sys

import click

from ..errors import EXEC_FAILED, FAILURE, Error, Usage
from ..ops import execute, lifecycle
from ..ops import health as health_ops
from ..runtime.health import HEALTHY
from . import completion, jsonview, pass_app
from .options import existing, json_option, timeout_option
from .output import print_json, results, shown


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Return once the container's systemd reports running.")
@timeout_option("for each container to report running (with --wait)")
@json_option()
@pass_app
def start(app, names, wait, timeout, as_json):
    """Start containers (systemd-nspawn@NAME.service)."""
    with results("changed", as_json) as done:
        for name in existing(app, names):
            state, changed = lifecycle.started(app.ctx, name, wait=wait, timeout=timeout)
            done.append({"name": name, "state": state, "changed": changed})
            _say(as_json, f"{name}: {state}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@timeout_option("for each container's clean poweroff, before it is terminated")
@json_option()
@pass_app
def stop(app, names, timeout, as_json):
    """Power containers off cleanly (terminate them after --timeout)."""
    with results("changed", as_json) as done:
        for name in existing(app, names):
            stopped = lifecycle.stop(app.ctx, name, timeout=timeout)
            done.append({"name": name, "state": "stopped", "changed": stopped})
            _say(as_json, f"{name}: {'stopped' if stopped else 'already stopped'}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@timeout_option("for each container's clean poweroff (then it is terminated), and again for "
                "it to report running")
@json_option()
@pass_app
def restart(app, names, timeout, as_json):
    """Stop and start containers."""
    with results("changed", as_json) as done:
        for name in existing(app, names):
            state = lifecycle.restart(app.ctx, name, timeout=timeout)
            done.append({"name": name, "state": state, "changed": True})
            _say(as_json, f"{name}: {state}")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.running_containers)
@click.option("--signal", "-s", "sig", default="TERM", show_default=True,
              help="The signal, by name (TERM, SIGHUP) or number.")
@json_option()
@pass_app
def kill(app, names, sig, as_json):
    """Send a signal to every process of containers."""
    names = list(dict.fromkeys(names))
    with results("killed", as_json) as done:
        lifecycle.kill(app.ctx, names, sig)  # all or none: each checked before any is sent
        done += [{"name": name, "signal": lifecycle.parse_signal(sig)} for name in names]


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@json_option()
@pass_app
def enable(app, names, as_json):
    """Start containers when the host boots (machines.target)."""
    with results("enabled", as_json) as done:
        for name in existing(app, names):
            lifecycle.enable(app.ctx, name)
            done.append({"name": name, "enabled": True})
            _say(as_json, f"{name}: enabled")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=completion.containers)
@json_option()
@pass_app
def disable(app, names, as_json):
    """Do not start containers at boot any more."""
    with results("enabled", as_json) as done:
        for name in existing(app, names):
            lifecycle.disable(app.ctx, name)
            done.append({"name": name, "enabled": False})
            _say(as_json, f"{name}: disabled")


def _say(as_json: bool, line: str):
    """A command's line of text, which --json replaces."""
    if not as_json:
        click.echo(line)


class ExecCommand(click.Command):
    """exec and shell keep nspawnctl's own failures apart from the command's status, as
    podman does: a bad option, no such container, one not running, are 125 (EXEC_FAILED),
    never a status the command could have exited with (2, say, which ls gives)."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            e.exit_code = EXEC_FAILED
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Error as e:
            e.exit_code = EXEC_FAILED
            raise


# The options end at NAME: what follows is the command's, options and all (podman's
# `exec -it NAME sh -l`), so `--` is not needed, but still taken.
@click.command(cls=ExecCommand, context_settings={"allow_interspersed_args": False})
@click.option("--interactive", "-i", is_flag=True,
              help="Pass stdin to the command (without it, it reads nothing).")
@click.option("--tty", "-t", is_flag=True,
              help="Give the command a terminal, relayed to ours (job control, full-screen "
                   "programs).")
@click.option("--env", "-e", "env_items", multiple=True, metavar="KEY[=VALUE]",
              help="Set an environment variable, over the container's (repeatable); KEY "
                   "alone takes its value from nspawnctl's environment.")
@click.option("--user", "-u", metavar="USER[:GROUP]",
              help="Run as this user (and group) of the container: names or numbers.")
@click.option("--workdir", "-w", metavar="DIR",
              help="Run in this directory of the container (default: its working directory).")
@click.argument("name", shell_complete=completion.running_containers)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def exec(app, name, command, interactive, tty, env_items, user, workdir):
    """Run COMMAND in a running container; its exit status is nspawnctl's.

    nspawnctl exec NAME -- ls -l /    or, at a terminal:   nspawnctl exec -it NAME sh

    Exit status: the command's; 125 when nspawnctl fails (no such container, not running,
    bad option), 126 when the command cannot be run, 127 when it is not found.
    """
    # (env_items, not env: a parameter named env is the settings table's --env to the man
    # page, which then lists it among the container settings, not here)
    options = execute.parse_options(interactive, tty, env_items, user, workdir)
    sys.exit(execute.exec_(app.ctx, name, _command(command), options))


def _command(command: tuple[str, ...]) -> list[str]:
    """The command's words, without the -- that may come first."""
    return list(command[1:] if command[:1] == ("--",) else command)


# The options end at NAME, as exec's; but --user/-u right after NAME is still shell's, as it
# always was (`shell web --user bob`), and the command follows it.
@click.command(cls=ExecCommand, context_settings={"allow_interspersed_args": False})
@click.option("--user", "-u", metavar="USER[:GROUP]",
              help="Log in as this user (default: root).")
@click.argument("name", shell_complete=completion.running_containers)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_app
def shell(app, name, command, user):
    """An interactive login shell in a running, booted container.

    On a terminal when stdin and stdout are one; otherwise it reads stdin (a script, or
    nothing) and ends with it.  Exit status as exec's.
    """
    user, command = _user_after_name(user, command)
    sys.exit(execute.shell(app.ctx, name, user, _command(command)))


def _user_after_name(user: str | None,
                     command: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """shell NAME --user U [CMD...], -u U or --user=U: the user, and the command after it."""
    first = command[0] if command else ""
    if first in ("--user", "-u"):
        if len(command) < 2:
            raise Usage(f"option '{first}' requires an argument")
        return command[1], command[2:]
    if first.startswith("--user="):
        return first.removeprefix("--user="), command[1:]
    return user, command


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


@click.command("health-scheduler", hidden=True)
@pass_app
def health_scheduler(app):
    """Check every running container with a --health-cmd at its interval, until stopped: the
    process of units/nspawnctl-health.service."""
    health_ops.serve(app.ctx)


@click.command()
@click.argument("name", shell_complete=completion.running_containers)
@json_option()
@pass_app
def health(app, name, as_json):
    """Run container NAME's health check now and show its health.

    Exit status: 0 healthy, 1 not healthy (the check failed, or it is still starting), 3 no
    such container, 4 not running.
    """
    state = health_ops.health(app.ctx, name)
    if as_json:
        print_json(jsonview.view("health", {"name": name, **state.to_json()}))
    else:
        line = shown(state.last_line())  # the container wrote it
        streak = f" (failing streak {state.streak})" if state.streak else ""
        click.echo(f"{name}: {state.state}{streak}{': ' + line if line else ''}")
        if state.action:
            click.echo(f"{name}: unhealthy after {state.streak} failed checks: "
                       f"{state.action} asked for")
    if state.state != HEALTHY:
        sys.exit(FAILURE)


@click.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--for", "state", type=click.Choice(lifecycle.WAIT_STATES), default="running",
              show_default=True,
              help="The state: running, healthy (its last health check passed) or stopped.")
@timeout_option("for the state; then exit 1 with one line")
@click.option("--dependencies", is_flag=True, hidden=True,
              help="Wait for the containers NAME waits for at its start (--after/--requires "
                   "NAME:healthy) to be healthy: its unit's ExecStartPre.")
@json_option()
@pass_app
def wait(app, name, state, timeout, dependencies, as_json):
    """Wait until container NAME is running, healthy or stopped."""
    if dependencies:
        if state != "healthy":
            raise Usage("--dependencies waits for health only: give --for healthy")
        try:
            for dep, took in lifecycle.wait_dependencies(app.ctx, name, timeout):
                click.echo(f"{name}: {dep} is healthy after {took:.1f}s")
        except KeyboardInterrupt:  # systemd's SIGTERM at NAME's start timeout
            click.echo(f"{name}: its start timeout ended the wait", err=True)
            sys.exit(FAILURE)
        return
    seconds = lifecycle.wait_for(app.ctx, name, state, timeout)
    if as_json:
        print_json(jsonview.view("waited", {"name": name, "state": state,
                                            "seconds": round(seconds, 3)}))
    else:
        click.echo(f"{name}: {state}")
