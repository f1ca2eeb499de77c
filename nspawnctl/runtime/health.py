"""A container's health: what its last checks found, kept where status, list, --json and
`wait --for healthy` read it (paths.health/NAME.json, state under /run: a check's result
never outlives a boot), and the rules that turn one more check into the next state.

The states are podman's: starting (no healthy check yet, or failures inside the start period),
healthy, unhealthy (`retries` failures in a row).  The check itself runs in the container as
`exec` runs a command (ops/health.py); one scheduler runs every container's checks at their
intervals (units/nspawnctl-health.service).
"""

import json
import os
import signal
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import InvalidInput
from ..fs.files import read_small_text, write_atomic
from ..paths import Paths
from ..settings.files import load_config
from ..settings.model import ContainerConfig, scheduled
from ..systemd.bus import Bus, guest_state

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
SCHEDULER_UNIT = "nspawnctl-health.service"  # units/: runs the checks (ops/health.py)
STATES = (STARTING, HEALTHY, UNHEALTHY)
MAX_OUTPUT = 4096  # bytes of a check's output kept: the container writes it, any length
_MAX_FILE = 64 * 1024


@dataclass(frozen=True)
class Health:
    """What the checks of one run of a container found.

    started: the run they belong to (the container's leader PID and its start time, so a
    restart begins afresh); streak: failed checks in a row; output: the last check's (bounded,
    what the container wrote); checked: when (RFC 3339 UTC); degraded_ok: a booted container
    without a command was degraded at its last healthy check, so degraded is its normal."""

    state: str = STARTING
    streak: int = 0
    output: str = ""
    checked: str | None = None
    exit_status: int | None = None
    started: str = ""
    degraded_ok: bool = False
    action: str | None = None  # what --on-unhealthy did at the last check, if anything

    def last_line(self) -> str:
        lines = self.output.strip().splitlines()
        return lines[-1][:200] if lines else ""

    def to_json(self) -> dict[str, Any]:
        """The `health` object of status/list --json."""
        return {"state": self.state, "failing_streak": self.streak, "last_output": self.output,
                "last_check": self.checked, "last_exit_status": self.exit_status,
                "last_action": self.action}


def bounded(output: bytes) -> str:
    """A check's output as kept: its first MAX_OUTPUT bytes, as text whatever the bytes."""
    return output[:MAX_OUTPUT].decode(errors="replace")


def advance(prev: Health | None, cfg: ContainerConfig, run_id: str, ok: bool, output: str,
            status: int | None, now: str, in_start_period: bool,
            degraded: bool = False) -> tuple[Health, bool]:
    """The state after one more check of the run run_id (its result: ok, output, status),
    and whether it has just become unhealthy (when --on-unhealthy acts: once, at the
    `retries`-th failure in a row, not at each one after)."""
    if prev is None or prev.started != run_id:
        prev = Health(started=run_id)
    if ok:
        return replace(prev, state=HEALTHY, streak=0, output=output, checked=now,
                       exit_status=status, degraded_ok=degraded, action=None), False
    if in_start_period and prev.state != HEALTHY:
        # podman: a failure in the start period does not count, until a first success
        return replace(prev, state=STARTING, streak=0, output=output, checked=now,
                       exit_status=status, action=None), False
    streak = prev.streak + 1
    if streak >= cfg.health_retries:
        return replace(prev, state=UNHEALTHY, streak=streak, output=output, checked=now,
                       exit_status=status, action=None), streak == cfg.health_retries
    return replace(prev, streak=streak, output=output, checked=now, exit_status=status,
                   action=None), False


def run_of(machine: dict) -> str:
    """Which run of a container (machined's properties of it) a check belongs to: its leader
    and start time, so a restart starts afresh."""
    return f"{int(machine['Leader'])}@{int(machine.get('Timestamp') or 0)}"


def without_check(cfg: ContainerConfig, name: str, prev: Health | None,
                  run_id: str) -> tuple[bool, str, bool]:
    """A container without --health-cmd: (healthy, what says so, degraded is its normal).
    Booted, it is healthy when its systemd says running; degraded counts as unhealthy unless
    it was degraded at its last healthy check of this run, or no check of this run was
    healthy yet (then that is how it boots).  A single command is healthy while it runs.
    (Not healthy yet is the starting state: one that became unhealthy has had its healthy
    checks, or failed `retries` times before any, and is not forgiven by degraded.)"""
    if not cfg.boot:
        return True, "running", False
    return judged(prev, run_id, guest_state(name) or "unreachable")


# What `systemctl is-system-running` says (SystemState): the scheduler asks a booted
# container without a command so, a check like any other (ops/health.py).
SYSTEM_STATE = ["systemctl", "is-system-running"]
_SYSTEM_STATES = frozenset({"initializing", "starting", "running", "degraded", "maintenance",
                            "stopping", "offline", "unknown"})


def system_state_said(output: str) -> str:
    """The state SYSTEM_STATE's output names (the container wrote it: a known word or
    nothing), else "unreachable"."""
    words = output.split()
    return words[0] if len(words) == 1 and words[0] in _SYSTEM_STATES else "unreachable"


def judged(prev: Health | None, run_id: str, system: str) -> tuple[bool, str, bool]:
    """without_check()'s verdict on a booted container whose systemd says system."""
    first = prev is None or prev.started != run_id or prev.state == STARTING
    degraded = system == "degraded" and (first or (prev is not None and prev.degraded_ok))
    return system == "running" or degraded, f"systemd: {system}", degraded


def is_healthy(paths: Paths, bus: Bus, name: str) -> bool:
    """Whether running NAME is healthy now: the last check of the run it is in found it so,
    or, without a --health-cmd, what that check would find now, after the checks kept of
    this run (`health NAME` found it running: degraded is not healthy) (`wait --for
    healthy`, and the start of a container that waits for NAME's health)."""
    cfg = load_config(paths, name, dropin=False)
    if cfg.health_cmd:
        found = current(paths, bus, name)
        return found is not None and found.state == HEALTHY
    machine = bus.machine_properties(name)
    return machine is not None and without_check(cfg, name, load(paths, name),
                                                 run_of(machine))[0]


def current(paths: Paths, bus: Bus, name: str) -> Health | None:
    """The state of NAME's checks in the run it is in now: None when it does not run or no
    check of this run was kept."""
    machine = bus.machine_properties(name)
    if machine is None:
        return None
    state = load(paths, name)
    return state if state is not None and state.started == run_of(machine) else None


def follow_settings(bus: Bus, name: str, old: ContainerConfig, new: ContainerConfig):
    """After `set` changed running NAME, which the scheduler checks or checked
    (model.scheduled()): the scheduler started, if
    it does not run yet (the container's drop-in wants it, but only at its next start), else
    told to read the settings again now (SIGHUP; it would at its next look, within LOOK
    seconds: ops/health.py)."""
    if new == old or not (scheduled(new) or scheduled(old)):
        return
    if scheduled(new) and not scheduled(old):
        bus.start_unit(SCHEDULER_UNIT)
    elif bus.active_state(SCHEDULER_UNIT) == "active":
        bus.kill_unit(SCHEDULER_UNIT, signal.SIGHUP, who="main")


def state_file(paths: Paths, name: str):
    return paths.health / f"{name}.json"


def load(paths: Paths, name: str) -> Health | None:
    """The last check's state, or None when none ran since the boot (or it is unreadable:
    a check will write it again)."""
    try:
        text = read_small_text(state_file(paths, name), f"{name}'s health state", _MAX_FILE)
    except InvalidInput:
        return None
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    health = Health(**{k: data[k] for k in Health.__dataclass_fields__ if k in data})
    types: dict[str, type | tuple[type, ...]] = {
        "state": str, "streak": int, "output": str, "checked": (str, type(None)),
        "exit_status": (int, type(None)), "started": str, "degraded_ok": bool,
        "action": (str, type(None))}
    if health.state not in STATES or any(not isinstance(getattr(health, k), t)
                                         for k, t in types.items()):
        return None
    return health


def save(paths: Paths, name: str, health: Health):
    """Written whole (a reader sees the last state or the new one), readable by everyone as
    `list` is."""
    os.makedirs(paths.health, mode=0o755, exist_ok=True)
    write_atomic(state_file(paths, name), json.dumps(asdict(health)) + "\n", mode=0o644)


def forget(paths: Paths, name: str):
    try:
        os.unlink(state_file(paths, name))
    except FileNotFoundError:
        pass
