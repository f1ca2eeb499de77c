"""The commands that run containers: start, stop, restart, kill, enable, disable, logs (exec
and shell are execute.py's).  Starting and stopping themselves are runtime/lifecycle.py's,
which other operations share."""

import os
import signal as signals
import time

from ..errors import Conflict, Error, Usage
from ..paths import service_unit
from ..run import interactive, need_tool, run
from ..runtime import health, lifecycle
from ..runtime.context import Context
from ..runtime.lifecycle import TIMEOUT
from ..settings.files import load_config
from ..systemd.bus import SERVICE


def start(ctx: Context, name: str, wait: bool = True, timeout: float = TIMEOUT) -> str:
    """Start NAME: asked under its lock, then waited for without it (its start job holds it
    from there: a remove sees the job)."""
    return started(ctx, name, wait, timeout)[0]


def started(ctx: Context, name: str, wait: bool = True,
            timeout: float = TIMEOUT) -> tuple[str, bool]:
    """start's state, and whether this start changed it (False: it was running already),
    which start --json says."""
    with ctx.holding(name) as held:
        if lifecycle.request_start(held):
            return "running", False
    return (lifecycle.wait_started(ctx, name, timeout) if wait else "starting"), True


def stop(ctx: Context, name: str, timeout: float = TIMEOUT) -> bool:
    return lifecycle.stop(ctx, name, timeout)


def restart(ctx: Context, name: str, timeout: float = TIMEOUT) -> str:
    """Stop NAME (terminated after timeout) and start it (waited for up to timeout)."""
    lifecycle.stop(ctx, name, timeout)
    return start(ctx, name, timeout=timeout)


def wait_stopped(ctx: Context, name: str, interval: float = 0.2) -> int:
    """Wait, as long as it takes, until NAME stops (from inside, by its command exiting, or
    by a stop from elsewhere); returns systemd-nspawn's exit status, which for a single
    command is the command's own."""
    bus, unit = ctx.bus, service_unit(name)
    while lifecycle.is_active(bus, name):
        time.sleep(interval)
    return int(bus.unit_property(unit, "ExecMainStatus", b"i", iface=SERVICE) or 0)


WAIT_STATES = ("running", "healthy", "stopped")
_WAIT_POLL = 0.1  # seconds: a unit's state is one D-Bus read, a check's a small file


def wait_for(ctx: Context, name: str, state: str, timeout: float) -> float:
    """Wait until NAME is in state (running: its unit active; stopped: not; healthy: the last
    health check of the run it is in now found it healthy, or without a --health-cmd, what
    that check would find now); the seconds it took.  After timeout: one line, FAILURE."""
    ctx.store.require(name)
    began = time.monotonic()
    deadline = began + timeout
    while not _in_state(ctx, name, state):
        if time.monotonic() >= deadline:
            raise Error(f"{name} is not {state} after {timeout:g}s",
                        hint=f"nspawnctl status {name} says how it is")
        time.sleep(min(_WAIT_POLL, max(0.0, deadline - time.monotonic())))
    return time.monotonic() - began


def _in_state(ctx: Context, name: str, state: str) -> bool:
    active = lifecycle.is_active(ctx.bus, name)
    if state != "healthy":
        return active == (state == "running")
    return active and health.is_healthy(ctx.paths, ctx.bus, name)


def wait_dependencies(ctx: Context, name: str, timeout: float) -> list[tuple[str, float]]:
    """Wait until every container NAME waits for at its start (--after/--requires
    NAME:healthy) is healthy, one after the other, within timeout in all; (name, seconds it
    took) for each.  Run by NAME's unit as its ExecStartPre (units/container-wait-healthy.conf),
    where timeout is infinity and systemd's start timeout ends the wait: then the start
    fails, and `nspawnctl start` says which container was not healthy
    (runtime/lifecycle.py)."""
    ctx.store.require(name)
    deadline = time.monotonic() + timeout
    waited = []
    for dep in load_config(ctx.paths, name).wait_healthy:
        ctx.report(f"{name}: waiting for {dep} to be healthy")
        waited.append((dep, wait_for(ctx, dep, "healthy",
                                     max(0.0, deadline - time.monotonic()))))
    return waited


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
    raise Usage(f"unknown signal {value!r}", hint="give a name like TERM or SIGHUP, or a number")


def kill(ctx: Context, names: list[str], signal: str = "TERM"):
    """Send signal to every process of each of names: all checked (the signal, each one
    there and running) before any is sent, so a typo in the last does not leave half done."""
    number = parse_signal(signal)
    for name in names:
        ctx.store.require(name)
    for name in names:
        if not ctx.bus.machine_path(name):
            raise Conflict(f"{name} is not running")
    for name in names:
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


def check_time(option: str, value: str) -> str:
    """A --since/--until time as journalctl takes it (systemd.time(7): '2026-12-06 12:00',
    today, yesterday, now, -1h, '10 min ago', @EPOCH), checked by systemd's own parser
    (systemd-analyze timestamp, the function journalctl calls), so a bad one is one line
    here and not journalctl's failure after the lookups."""
    if not (0 < len(value) <= 64 and value.isprintable()) or run(
            [need_tool("systemd-analyze", "systemd"), "timestamp", "--", value],
            check=False, timeout=10).returncode != 0:
        raise Usage(f"invalid {option} time {value[:64]!r}",
                    hint="journalctl's times: '2026-12-06 12:00', today, yesterday, -1h, "
                         "'10 min ago', @1700000000")
    return value


def logs(ctx: Context, name: str, follow: bool, lines: int | None, since: str | None = None,
         until: str | None = None) -> int:
    """The container's own journal while it runs and keeps one, else its unit's log; from
    since to until (journalctl's times)."""
    times = [(option, check_time(option, value))
             for option, value in (("--since", since), ("--until", until)) if value is not None]
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    running = bool(ctx.bus.machine_path(name))
    argv = [need_tool("journalctl", "systemd"), "--no-pager"]
    argv += ["-M", name] if (running and cfg.boot) else ["-u", service_unit(name)]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    for option, value in times:
        argv += [option, value]
    return interactive(argv, env=dict(os.environ, SYSTEMD_COLORS="0"))
