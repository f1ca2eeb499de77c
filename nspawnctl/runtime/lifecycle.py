"""Starting and stopping containers, and waiting for them, through systemd1 and machine1 on
D-Bus: what every operation that runs or stops a container shares (ops/lifecycle.py holds the
commands).

A container is systemd-nspawn@NAME.service; machined registers it as machine NAME once
systemd-nspawn has set it up.  "Running" for a booted container means what `machinectl` users
expect: its own systemd reports running (or degraded), so a shell or exec works right away.
"""

import contextlib
import math
import os
import signal as signals
import time

from ..errors import Conflict, Error
from ..network import containers as network
from ..paths import service_unit
from ..run import run
from ..settings.files import load_config
from ..settings.model import ContainerConfig
from ..store.hold import drop_stale
from ..systemd.bus import SERVICE, Bus
from . import health
from .context import Context, Held

# Seconds a command waits for a container to come up (running or degraded) or to power off
# cleanly (then it is terminated): start's, stop's, restart's and upgrade's --timeout.  One
# value, so a user learns one: a minute, ample for one boot or poweroff on an idle host.
TIMEOUT: float = 60  # shown as --timeout's default: 60, not 60.0


def _polls(quick=0.01, quick_for=2.0, most=0.05):
    """Sleep intervals for state polling: every 10 ms for the first 2 s, when the answer is
    usually near (a stop takes ~0.1 s, a boot ~0.3 s; each poll is one D-Bus property read),
    then backing off so a slow boot does not cost a busy loop.  A back-off from the start
    (5 ms x1.5 up to 50 ms) was seen arriving ~50 ms after the state changed."""
    waited = 0.0
    delay = quick
    while True:
        yield delay
        waited += delay
        if waited >= quick_for:
            delay = min(delay * 1.5, most)


LOG_LINES = 10  # what a failure and `status` show of a container's log
LOG_LINE_MAX = 500  # characters of one line: a container writes its log, and any length


def journal_tail(name: str, lines: int = LOG_LINES) -> list[str]:
    """The last lines of NAME's unit's journal (systemd-nspawn's and the container's own
    output), each cut to LOG_LINE_MAX; shown escaped (cli/output.py): the container wrote
    them."""
    proc = run(["journalctl", "-u", service_unit(name), "-n", str(lines), "--no-pager", "-q",
                "-o", "cat"], check=False)
    return [line[:LOG_LINE_MAX] for line in proc.stdout.strip().splitlines()][-lines:]


def _journal_tail(name: str, lines: int = LOG_LINES) -> str:
    return "\n".join(journal_tail(name, lines))


def is_active(bus: Bus, name: str) -> bool:
    """Whether container NAME runs, or is about to (Bus.is_active of its unit)."""
    return bus.is_active(service_unit(name))


def start(held: Held, wait: bool = True, timeout: float = TIMEOUT) -> str:
    """Start the container held; with wait, return once it runs (see wait_started)."""
    if request_start(held):
        return "running"
    return wait_started(held.ctx, held.name, timeout) if wait else "starting"


def request_start(held: Held) -> bool:
    """Ask systemd to start the container held; True when it runs already.  Under the lock,
    a remove cannot move the tree away between the check and StartUnit; once the start job
    is queued, remove sees it (is_active)."""
    ctx, name = held.ctx, held.name
    bus, unit = ctx.bus, service_unit(name)
    if is_active(bus, name):
        ctx.report(f"{name} is already running")
        return True
    if bus.active_state(unit) == "failed":
        bus.reset_failed(unit)
    drop_stale(ctx.paths, name)  # a killed upgrade's or rollback's: its unit asserts none
    cfg = load_config(ctx.paths, name)
    network.settle(ctx.paths, name, cfg)  # what `set` saved is what this run gets
    if network.managed(cfg):
        network.ensure_host(ctx.paths, cfg)  # systemd-nspawn needs the bridge to exist
        # IPv4 forwarding turned off, or a FORWARD policy of drop Docker or ufw left: the
        # container would start, unable to reach anything.  Say so, with what to run.
        for line in network.reach_warnings():
            ctx.report(f"warning: {line}")
    bus.start_unit(unit)
    return False


def wait_started(ctx: Context, name: str, timeout: float = TIMEOUT) -> str:
    """Wait (no lock needed: the start job holds the tree) until NAME runs: its unit active,
    machined knowing it, and, for a booted container, its own systemd done with its boot
    ("running" or "degraded").  A failed start, or one past timeout, is one Error with its
    log."""
    cfg = load_config(ctx.paths, name)
    bus, unit = ctx.bus, service_unit(name)
    deadline = time.monotonic() + timeout
    polls = _polls()
    leader = None
    while time.monotonic() < deadline:
        state = bus.active_state(unit)
        # "inactive" right after StartUnit only means the job has not begun yet.
        if state == "failed" or (state == "inactive" and not bus.has_job(unit)):
            raise _start_failed(ctx, name)
        if state == "active" and (leader or bus.machine_path(name)):
            if not cfg.boot:
                return "running"
            leader = leader or (bus.machine_properties(name) or {}).get("Leader")
            if _guest_bus_ready(leader):
                guest = _guest_boot_finished(name, deadline)
                if guest in ("running", "degraded"):
                    return guest
        time.sleep(next(polls))
    deps = _unhealthy(ctx, cfg.wait_healthy) if cfg.wait_healthy and bus.unit_property(
        unit, "SubState", b"s") == "start-pre" else []
    if deps:
        raise Error(f"{name} did not start within {timeout:g} s: it still waits for "
                    f"{_names(deps)} to be healthy",
                    hint=f"its start goes on up to its start timeout "
                         f"({_start_timeout(cfg)}); see: nspawnctl status {deps[0]}")
    raise Error(f"{name} did not finish booting within {timeout:g} s", hint=_log_hint(name))


def _log_hint(name: str) -> str:
    return "its log says:\n" + (_journal_tail(name) or "(nothing)")


def _start_failed(ctx: Context, name: str) -> Error:
    """Why the start failed: systemd's start timeout (--start-timeout) is its own case, since
    the log only says the start "timed out" and the cure is a setting of nspawnctl's; and so
    is a wait for the health of the containers it waits for (NAME:healthy) that did not end
    well, where the log says only that a command of the unit failed."""
    bus = ctx.bus
    log = _log_hint(name)
    timed_out = bus.unit_property(service_unit(name), "Result", b"s", iface=SERVICE) == "timeout"
    cfg = load_config(ctx.paths, name)
    # Past the start timeout while a container it waits for is not healthy: that is what
    # it waited for (its ExecStartPre, units/container-wait-healthy.conf, was still waiting).
    deps = _unhealthy(ctx, cfg.wait_healthy) if timed_out else []
    if deps:
        return Error(f"{name} did not start: {_names(deps)} "
                     f"{'was' if len(deps) == 1 else 'were'} not healthy within its start "
                     f"timeout ({_start_timeout(cfg)})",
                     hint=f"see: nspawnctl status {deps[0]}; or give {name} longer: "
                          f"nspawnctl set {name} --start-timeout 10min\n{log}")
    if timed_out:
        return Error(f"{name} did not start within its start timeout, and systemd stopped it",
                     hint=f"on a busy host give it longer: nspawnctl set {name} "
                          f"--start-timeout 10min\n{log}")
    if "inotify" in log and "Too many open files" in log:
        # doctor's inotify check, where it bites: every booted container takes inotify
        # instances charged to root on the host, and the kernel's 128 fit about 16
        log = ("the host's inotify limit is used up (fs.inotify.max_user_instances); "
               "`nspawnctl doctor` says by how much and gives the fix\n" + log)
    return Error(f"{name} failed to start", hint=log)


def _unhealthy(ctx: Context, names: tuple[str, ...]) -> list[str]:
    """Those of names that are not healthy now."""
    found = []
    for dep in names:
        try:
            if not (is_active(ctx.bus, dep) and health.is_healthy(ctx.paths, ctx.bus, dep)):
                found.append(dep)
        except Error:
            found.append(dep)
    return found


def _start_timeout(cfg: ContainerConfig) -> str:
    if cfg.start_timeout is None:
        return "systemd's default"
    return "none" if cfg.start_timeout == math.inf else f"{cfg.start_timeout:g}s"


def _names(names: list[str]) -> str:
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " \
        + names[-1]


def _guest_bus_ready(leader: int | None) -> bool:
    """Whether the container's system bus socket is there yet (a stat through its root), so
    that `systemctl -M` is run once it can connect, not once per poll while the guest boots
    (each failed try was a process, some 30 ms of a CPU the boot needs)."""
    if not leader:
        return True  # no leader to look through: let systemctl find out
    return os.path.exists(f"/proc/{leader}/root/run/dbus/system_bus_socket")


def _guest_boot_finished(name: str, deadline: float) -> str | None:
    """The container's SystemState once its boot has finished, from `systemctl -M NAME
    is-system-running --wait` (what a machinectl user runs): it waits on the guest's bus for
    systemd's own word that startup is over, where polling SystemState was late by half a
    poll (up to 25 ms) and opened a connection through machined each time.  None while the
    guest's bus is not up yet (the caller polls again) or the deadline passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        proc = run(["systemctl", "-M", name, "is-system-running", "--wait"], check=False,
                   timeout=left)
    except Error:
        return None  # out of time: the caller says so, with the log
    return proc.stdout.strip() or None


def stop(ctx: Context, name: str, timeout: float = TIMEOUT) -> bool:
    """Power NAME off cleanly; terminate it after timeout.

    A stop of its unit, as `systemctl stop` does: systemd-nspawn turns the SIGTERM into a
    clean poweroff of a booted container, and systemd stops the containers that require this
    one first (--requires; a poweroff from inside, like `machinectl poweroff`, would leave
    them running).  Returns False when it was not running (not an error: it is stopped, as
    asked).
    """
    ctx.store.require(name)
    try:
        boot = load_config(ctx.paths, name, dropin=False).boot
    except Error:  # settings broken by a hand edit: stopping must still work
        boot = True
    unit = service_unit(name)
    bus = ctx.bus
    if not is_active(bus, name):
        return False
    bus.stop_unit(unit)
    if _wait_settled(bus, unit, timeout):
        if not boot and bus.active_state(unit) == "failed":
            # A single command has no init to power off: systemd-nspawn kills it and
            # exits 1 for that, which is the stop that was asked for, not a failure.
            bus.reset_failed(unit)
        return True
    # SIGKILL now, while the stop job still runs: waiting longer raced systemd's own
    # TimeoutStopSec= (90 s), which kills it at about the moment a second wait of ours ended,
    # and a guest whose halt fails (its /usr/bin gone) never powers off by itself.
    ctx.report(f"{name} did not power off within {timeout:g} s: terminating it")
    if bus.active_state(unit) not in ("inactive", "failed"):
        with contextlib.suppress(Error):  # it may have gone in between: the wait says
            bus.kill_unit(unit, signals.SIGKILL)
    if not _wait_settled(bus, unit, 30):
        raise Error(f"{name} is still {bus.active_state(unit)} after SIGKILL",
                    hint=f"see: systemctl status {unit}")
    return True


SETTLE_TIMEOUT = 120.0  # beyond systemd's default stop timeout (90 s)


def running_for_copy(ctx: Context, name: str, timeout: float = SETTLE_TIMEOUT) -> bool:
    """Whether NAME runs, asked by a command about to copy or read its whole tree (snapshot,
    export, clone): a container that is stopping still runs (its processes, and its root,
    write its tree until they are gone; is_active says no), and one starting is about to.
    Either is waited for, up to timeout, so that the answer holds for the copy: a copy is
    made only of a stopped tree or a frozen one."""
    bus, unit = ctx.bus, service_unit(name)
    state = bus.active_state(unit)
    if state in ("deactivating", "activating"):
        ctx.report(f"{name} is {'stopping' if state == 'deactivating' else 'starting'}: "
               "waiting for it before its tree is read")
        deadline = time.monotonic() + timeout
        polls = _polls()
        while state in ("deactivating", "activating") and time.monotonic() < deadline:
            time.sleep(next(polls))
            state = bus.active_state(unit)
        if state in ("deactivating", "activating"):
            raise Error(f"{name} is still {state} after {timeout:g} s: its tree is not read "
                        "while it changes", hint=f"see: systemctl status {unit}")
    return is_active(bus, name)


def _wait_settled(bus: Bus, unit: str, timeout: float) -> bool:
    """Wait until unit is inactive or failed and its stop job is gone."""
    deadline = time.monotonic() + timeout
    polls = _polls()
    while time.monotonic() < deadline:
        if bus.active_state(unit) in ("inactive", "failed") and not bus.has_job(unit):
            return True
        time.sleep(next(polls))
    return False


def leader(bus: Bus, name: str) -> int:
    props = bus.machine_properties(name)
    if props is None:
        raise Conflict(f"{name} is not running", hint=f"start it first: nspawnctl start {name}")
    return int(props["Leader"])
