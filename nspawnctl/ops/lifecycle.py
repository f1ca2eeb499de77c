"""The commands that run containers: start, stop, restart, kill, enable, disable, exec, shell,
logs.  Starting and stopping themselves are runtime/lifecycle.py's, which other operations
share."""

import os
import signal as signals
import time

from ..confine import enter
from ..errors import Conflict, Error, Usage
from ..paths import service_unit
from ..run import interactive, need_tool, relayed, run
from ..runtime import lifecycle
from ..runtime.context import Context
from ..runtime.lifecycle import TIMEOUT, leader
from ..settings.files import load_config
from ..settings.model import check_user
from ..systemd.bus import SERVICE


def start(ctx: Context, name: str, wait: bool = True, timeout: float = TIMEOUT) -> str:
    """Start NAME: asked under its lock, then waited for without it (its start job holds it
    from there: a remove sees the job)."""
    with ctx.holding(name) as held:
        if lifecycle.request_start(held):
            return "running"
    return lifecycle.wait_started(ctx, name, timeout) if wait else "starting"


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


def exec_(ctx: Context, name: str, command: list[str]) -> int:
    """Run command in NAME with our stdin/stdout/stderr; its exit status is returned.

    Whatever runs in the container is in a session of its own and gets a new pty in place of
    each of those streams that is a terminal, relayed to ours (ptyrelay.py): it never holds
    the admin's terminal, which it could type into (TIOCSTI) or read after `exec` returned.
    That holds for systemd-run too, whose helper forks into the container's namespaces to
    reach its bus: all it could lose there is that pty.

    In a booted container it runs as a transient unit of the container's own systemd
    (`systemd-run -M NAME --wait --pipe`), so it gets a clean environment and its own cgroup.
    Not `--pty`: systemd 252's systemd-run opens the pty that machined made in the container
    by its name (/dev/pts/N) on the host, and hands the container that host terminal,
    whichever it is (another user's, or ours).
    A container running a single command has no systemd to ask: there it enters the
    container's namespaces directly (as `machinectl shell` cannot either), confined as the
    container's own processes are (confine.py: its cgroups, its capability bounding set).
    """
    if not command:
        raise Error("no command given", hint=f"nspawnctl exec {name} -- CMD [ARG...]")
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    pid = leader(ctx.bus, name)
    if cfg.boot:
        return relayed([need_tool("systemd-run", "systemd"), "-M", name, "--quiet",
                        "--wait", "--pipe", "--collect", "--service-type=exec", "--",
                        *command])
    if not cfg.private_users:
        # Its processes run as the host's root; only systemd-nspawn's seccomp filter and
        # bounding set hold them, and the filter cannot be put on from outside.
        raise Error(f"{name} runs without a user namespace: a command entered from "
                    "outside would run as the host's root without the container's seccomp "
                    "filter", hint=f"nspawnctl set {name} --private-users, then restart it")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for item in cfg.env:
        key, _, value = item.partition("=")
        env[key] = value
    return enter(pid, command, env)


def shell(ctx: Context, name: str, user: str | None, command: list[str]) -> int:
    """An interactive login shell in a booted container, through machined (machinectl shell).

    machined hands out a pseudo-terminal over D-Bus (OpenMachineShell); relaying it needs a
    terminal loop, which machinectl already does well, so it runs underneath.
    """
    if user is not None:
        check_user(user)
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    leader(ctx.bus, name)
    if not cfg.boot:  # machined opens shells through the container's own systemd
        raise Error(f"{name} runs a single command, not a system with logins",
                    hint=f"run a shell in it instead: nspawnctl exec {name} -- sh")
    argv = [need_tool("machinectl", "systemd-container"), "shell", "-q"]
    target = f"{user}@{name}" if user else name
    return interactive(argv + [target, *command])


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
