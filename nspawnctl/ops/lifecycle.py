"""The commands that run containers: start, stop, restart, kill, enable, disable, logs (exec
and shell are execute.py's).  Starting and stopping themselves are runtime/lifecycle.py's,
which other operations share."""

import os
import signal as signals

from ..errors import Error
from ..paths import service_unit
from ..run import interactive, need_tool
from ..runtime import lifecycle
from ..runtime.context import Context
from ..settings.files import load_config


def start(ctx: Context, name: str, wait: bool = True, timeout: float = 60) -> str:
    """Start NAME: asked under its lock, then waited for without it (its start job holds it
    from there: a remove sees the job)."""
    with ctx.holding(name) as held:
        if lifecycle.request_start(held):
            return "running"
    return lifecycle.wait_started(ctx, name, timeout) if wait else "starting"


def stop(ctx: Context, name: str, timeout: float = 30) -> bool:
    return lifecycle.stop(ctx, name, timeout)


def restart(ctx: Context, name: str, timeout: float = 60) -> str:
    lifecycle.stop(ctx, name)
    return start(ctx, name, timeout=timeout)


def parse_signal(value: str) -> int:
    text = value.upper()
    if text.isascii() and text.isdigit():  # not '²': int() refuses what isdigit() takes
        number = int(text)
        if 0 < number < signals.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if hasattr(signals.Signals, name):
            return int(signals.Signals[name])
    raise Error(f"unknown signal {value!r}", hint="give a name like TERM or SIGHUP, or a number")


def kill(ctx: Context, name: str, signal: str = "TERM"):
    number = parse_signal(signal)
    ctx.store.require(name)
    if not ctx.bus.machine_path(name):
        raise Error(f"{name} is not running")
    ctx.bus.kill_machine(name, "all", number)


def enable(ctx: Context, name: str):
    """Start NAME at boot: its unit joins machines.target, and machines.target is enabled."""
    # Under NAME's lock, as start: a remove cannot go between the check and the link, which
    # would leave a machines.target.wants link to a container that is gone.
    with ctx.holding(name):
        ctx.bus.enable_units([service_unit(name), "machines.target"])
        ctx.bus.reload()


def disable(ctx: Context, name: str):
    with ctx.holding(name):
        ctx.bus.disable_units([service_unit(name)])
        ctx.bus.reload()


def logs(ctx: Context, name: str, follow: bool, lines: int | None) -> int:
    """The container's own journal while it runs and keeps one, else its unit's log."""
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    running = bool(ctx.bus.machine_path(name))
    argv = [need_tool("journalctl", "systemd"), "--no-pager"]
    argv += ["-M", name] if (running and cfg.boot) else ["-u", service_unit(name)]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return interactive(argv, env=dict(os.environ, SYSTEMD_COLORS="0"))
