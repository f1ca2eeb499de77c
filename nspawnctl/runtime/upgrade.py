"""The distribution's package upgrade of a container (ops/upgrade.py is the command),
installed into a copy of the container's tree and swapped in whole, undone when the upgraded
container is not healthy.

    [1/6] apt-get update            \\ inside the running container (its own network and
    [2/6] download the upgrade      /  DNS); they change nothing but apt's lists and cache
    [3/6] stop, snapshot            the snapshot is what a rollback puts back
    [4/6] install into a copy       apt-get full-upgrade --no-download in a staged copy of the
                                    stopped tree, under systemd-nspawn with no network; the
                                    copy is swapped with the tree in one rename
    [5/6] start
    [6/6] health check              else: rollback to the snapshot, and say why

These steps, and what undoes each, are the table PHASES below (Phase says when an undo runs).

The install runs on a copy so that a SIGKILL at any moment leaves the container whole: the old
tree until the swap, the new one after it, never a tree that dpkg left half unpacked.  Its
processes die with nspawnctl (a PID namespace whose init dies with us), so nothing writes
into the copy after a kill, and the copy is swept as a dead command's staging directory.  The
container is stopped from the snapshot to the restart: a copy upgraded while it ran would lose
what it wrote meanwhile.

Healthy means: the container's systemd reaches `running` (or `degraded`, only when it was
degraded before), within the timeout, and --check CMD run inside exits 0.  The whole upgrade
holds the container's lock: no rollback, set or second upgrade can come between its steps.
A record in the state directory says how far an upgrade got; the next upgrade of the container,
and `nspawnctl recover` at boot, finish one that was killed (roll back after the swap).
"""

import contextlib
import datetime
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ..errors import Error
from ..fs.copy import clone_tree
from ..fs.files import fsync_dir, sync_filesystem, write_atomic
from ..network import containers as network
from ..paths import Paths
from ..run import contained, need_tool, run, stream, tail
from ..settings.files import load_config
from ..store import overlay, snapshots
from ..store.hold import hold, require_stopped, running_dependents
from ..systemd.bus import guest_state
from .context import Context, Held
from .lifecycle import is_active, start, stop
from .snapshot import restart_dependents, restore, take

Report = Callable[[str], None]

APT_ENV = ["DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none",
           "NEEDRESTART_MODE=a"]
APT_OPTIONS = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
               "-o", "Dpkg::Use-Pty=0", "-q"]
OUTPUT_LINES = 2000  # the output kept of one step: its tail is what a failure shows
STEP_UNIT = "nspawnctl-upgrade-step.service"  # the transient unit a step runs as, inside
PROGRESS = ("Get:", "Unpacking", "Setting up", "Err:", "E:")


class StepFailed(Exception):
    def __init__(self, step: str, output: str):
        super().__init__(step)
        self.step, self.output = step, output
        self.why: list[str] = []  # what on the host explains it, said before its output


def follow(proc, timeout: float, report: Report) -> tuple[int, str]:
    """Read proc's merged output to its end, progress lines to report; kill it after timeout.
    Returns (exit status, last lines of output)."""
    assert proc.stdout is not None
    kept: list[str] = []
    timer = threading.Timer(timeout, proc.kill)  # a step that hangs, silent or not
    timer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")[:500]
            kept.append(line)
            del kept[:-OUTPUT_LINES]
            if line.startswith(PROGRESS):
                report(f"  {line[:120]}")
    finally:
        timer.cancel()
    rc = proc.wait()
    if rc < 0:
        kept.append(f"(no end within {timeout:g} s: stopped)")
    return rc, "\n".join(kept)


def inside(name: str, command: list[str], timeout: float, report: Report) -> tuple[int, str]:
    """Run command in booted container NAME as a transient unit of its own systemd."""
    argv = [need_tool("systemd-run", "systemd"), "-M", name, "--quiet", "--wait", "--pipe",
            "--collect", f"--unit={STEP_UNIT}", "--service-type=exec",
            *[f"--setenv={e}" for e in APT_ENV], "--", *command]
    return follow(stream(argv), timeout, report)


def in_copy(root: Path, name: str, private_users: bool, command: list[str], timeout: float,
            report: Report, overlay_options: str | None = None) -> tuple[int, str]:
    """Run command in the tree at root, which nothing boots: systemd-nspawn with no network
    and the container's user namespace, in a PID namespace of its own whose init dies with
    nspawnctl (run.contained), in a scope unit of its own (systemd-nspawn --keep-unit makes
    its payload's cgroup below the unit it runs in, and nspawnctl's may be a login session's).
    overlay_options: mount root as that overlay first, in the private mount namespace, so the
    mount goes when the command ends or is killed."""
    nspawn = [need_tool("systemd-nspawn", "systemd-container"), "--quiet", "--register=no",
              "--keep-unit", "--settings=no", "--as-pid2", f"--directory={root}",
              f"--machine={name}", "--private-network", "--resolv-conf=off",
              "--timezone=off", "--link-journal=no", "--console=pipe",
              *(["--private-users=pick", "--private-users-ownership=auto"] if private_users
                else ["--private-users=no"]),
              *[f"--setenv={e}" for e in APT_ENV], "--", *command]
    if overlay_options is not None:
        nspawn = ["/bin/sh", "-c", 'mount -t overlay overlay -o "$1" "$2" && shift 2 && '
                  'exec "$@"', "sh", overlay_options, str(root), *nspawn]
    scope = [need_tool("systemd-run", "systemd"), "--scope", "--quiet", "--collect",
             f"--unit=nspawnctl-upgrade-{name}", f"--description=nspawnctl upgrade of {name}",
             "--"]
    return follow(stream([*scope, *contained(nspawn, proc="/proc")]), timeout, report)


# -- the phases: PHASES below is the upgrade, _drive runs it -------------------------------------

@dataclass(frozen=True)
class Phase:
    """One step of an upgrade, and its undo, which puts back what it did.

    When a phase fails, the undos owed run newest first: those of the phases that completed,
    and the failing one's if it is recorded.  When the upgrade succeeds they run too, but for
    a kept phase's, whose work is the upgrade: so the stop's undo (start it again if it ran,
    and what the stop took down; drop the snapshot) runs after a failure and a success alike,
    and the swap is rolled back only on a failure.

    A recorded phase's word is in the record (state/upgrades/NAME.json) from just before it
    runs: a SIGKILL skips every undo, and the next upgrade or `nspawnctl recover` runs the
    undos of the recorded phases up to the one the record names (finish_interrupted).  So the
    undo of a recorded phase copes with its phase cut short anywhere."""
    label: str | None  # its progress line, after [k/N]; None: no line of its own
    do: Callable[["Upgrade"], None]
    undo: Callable[["Upgrade"], None] | None = None
    record: str | None = None  # the record's word for it (the words are the record's format)
    held: bool = False  # the container is held stopped meanwhile (store/hold.py)
    kept: bool = False  # its undo runs only on a failure


@dataclass
class Upgrade:
    """An upgrade of a container as it goes (or, in finish_interrupted, as its record says)."""
    held: Held
    why: str = ""  # the start of a rollback's line: a failure, or an interruption
    table: str = "upgrade"  # the command and its table of phases (TABLES), as the record says
    check: str | None = None
    keep_snapshot: bool = False
    timeout: float = 60  # for its starts
    step_timeout: float = 1800
    private_users: bool = False
    run_inside: Callable[..., tuple[int, str]] = inside
    run_in_copy: Callable[..., tuple[int, str]] = in_copy
    running: bool | None = None  # False: recover at boot, with no bus and nothing running
    # learned on the way
    was_running: bool = False
    before: str | None = None  # its systemd's state before the upgrade
    tag: str = ""  # its snapshot's, chosen as the record is first written
    dependents: list[str] = field(default_factory=list)  # what the stop took down
    method: str | None = None  # how the snapshot was copied
    lower: Path | None = None  # an overlay container's base
    copy: tuple[Path, Path] | None = None  # the upgraded copy, and the tree it replaces
    state: str | None = None  # its systemd's state after the upgraded start
    holding: bool = False  # held stopped (store/hold.py), by the phases marked held
    stage: Path | None = None  # while held stopped: a staging directory for the copy

    @property
    def ctx(self) -> Context:
        return self.held.ctx

    @property
    def paths(self) -> Paths:
        return self.held.ctx.paths

    @property
    def name(self) -> str:
        return self.held.name

    def report(self, line: str):
        self.held.ctx.report(line)

    def write_record(self, word: str):
        self.tag = self.tag or _new_tag(self.paths, self.name)
        write_atomic(_record(self.paths, self.name), json.dumps(
            {"tag": self.tag, "phase": word, "was_running": self.was_running,
             "keep_snapshot": self.keep_snapshot, "table": self.table}))


def _ready(up: Upgrade):
    """Running, for the steps inside it: started for the upgrade if it was stopped."""
    up.was_running = is_active(up.ctx.bus, up.name)
    if not up.was_running:
        up.report(f"starting {up.name} for the upgrade")
        start(up.held, timeout=up.timeout)
    up.before = guest_state(up.name)  # for the health check
    _stop_step_unit(up.name)  # a step of a killed upgrade may still run inside


def _stop_again(up: Upgrade):
    if not up.was_running:
        stop(up.ctx, up.name)  # nothing to do when stopped


def _update(up: Upgrade):
    # Error-Mode=any: a source that cannot be fetched fails the step (exit 100); by default
    # apt only warns, and the upgrade went on with stale lists and said "upgraded" having
    # installed nothing.  Older apt ignores the key.
    try:
        _step_inside(up, "apt-get update",
                     ["apt-get", *APT_OPTIONS, "-o", "APT::Update::Error-Mode=any", "update"])
    except StepFailed as exc:
        # apt says "Temporary failure resolving", far from the cause when it is the host's
        # (forwarding off, a FORWARD chain that drops): say that first, with its fix.
        if network.managed(load_config(up.paths, up.name, dropin=False)):
            exc.why = network.reach_warnings()
        raise


def _download(up: Upgrade):
    _step_inside(up, "download the upgrade",
                 ["apt-get", *APT_OPTIONS, "-y", "--download-only", "full-upgrade"])


def _stop_and_snapshot(up: Upgrade):
    assert up.holding
    up.dependents = running_dependents(up.ctx.bus, up.name)  # a stop takes them down
    stop(up.ctx, up.name)
    up.method = take(up.held, up.tag, stop_if_needed=False)["method"]


def _start_again(up: Upgrade):
    """Running again if it ran before the upgrade, and what its stop took down; the snapshot
    goes unless asked to stay.  After a success (or a rollback) it runs already."""
    if up.was_running:  # never at boot (recover), which may have no bus
        if not is_active(up.ctx.bus, up.name):
            start(up.held, timeout=up.timeout)
        restart_dependents(up.ctx, up.dependents)
    if not up.keep_snapshot and _has_snapshot(up):
        with up.ctx.store.staging(up.paths.machines, f"snapshot-rm-{up.name}") as trash:
            snapshots.remove(up.paths, up.name, up.tag, trash)


def _install(up: Upgrade):
    """apt-get full-upgrade --no-download in a copy of the stopped tree (an overlay
    container's: of its upper layer), under systemd-nspawn with no network."""
    paths, name, stage = up.paths, up.name, up.stage
    assert up.holding and stage is not None
    lower = up.lower = overlay.lower_of(paths, name) if overlay.is_overlay(paths, name) \
        else None
    command = ["sh", "-c", 'apt-get "$@" -y --no-download full-upgrade && apt-get clean',
               "sh", *APT_OPTIONS]
    if lower is None:
        clone_tree(paths.tree(name), stage / "tree")
        rc, output = up.run_in_copy(stage / "tree", name, up.private_users, command,
                                    up.step_timeout, up.report)
        up.copy = stage / "tree", paths.tree(name)
    else:
        upper = overlay.layers(paths, name) / "upper"
        overlay.make_layers(stage / "layers", lower, upper_from=upper)
        (stage / "merged").mkdir()
        rc, output = up.run_in_copy(stage / "merged", name, up.private_users, command,
                                    up.step_timeout, up.report,
                                    overlay.options(lower, stage / "layers"))
        up.copy = stage / "layers" / "upper", upper
    if rc != 0:
        raise StepFailed(f"apt-get full-upgrade (exit {rc})", output)
    sync_filesystem(up.copy[0])
    require_stopped(up.ctx.bus, name)  # held, but a start may have come before the hold


def _swap(up: Upgrade):
    """The upgraded copy swapped with the tree in one rename."""
    assert up.copy is not None
    built, live = up.copy
    lower = up.lower
    if lower is not None:
        overlay.release(up.paths, up.name)
    try:
        snapshots.exchange(built, live)
    except OSError as exc:
        raise Error(f"cannot swap the upgraded tree of {up.name} in: {exc.strerror}") \
            from None
    finally:
        if lower is not None:
            overlay.mount_tree(up.paths, up.name, lower)
    fsync_dir(live.parent)


def _roll_back(up: Upgrade):
    """The tree its snapshot holds, started again if it ran before the upgrade.  Only
    recovery can find the snapshot gone (removed by hand): then nothing is rolled back."""
    if _has_snapshot(up):
        up.report(f"{up.why}: rolling back to {up.tag}")
        restore(up.held, up.tag, start_after=up.was_running, running=up.running)


def _start(up: Upgrade):
    try:
        up.state = start(up.held, timeout=up.timeout)
    except Error as exc:
        raise StepFailed("start", f"{exc.message}\n{exc.hint or ''}") from None


def _health_check(up: Upgrade):
    if up.state != "running" and not (up.state == "degraded" and up.before == "degraded"):
        _, output = up.run_inside(up.name, ["systemctl", "--failed", "--no-legend"], 60,
                                  lambda _m: None)
        raise StepFailed(f"health check (its systemd is {up.state}, was {up.before})", output)
    if up.check:
        _step_inside(up, f"--check {up.check!r}", ["sh", "-c", up.check])


PHASES = (
    #     label                       do                  undo
    Phase(None,                       _ready,             _stop_again),
    Phase("apt-get update",           _update),
    Phase("download the upgrade",     _download),
    Phase("stop, snapshot {up.tag}",  _stop_and_snapshot, _start_again, record="install",
          held=True),
    Phase("install the upgrade into a copy of the tree", _install, held=True),
    Phase(None,                       _swap,              _roll_back,   record="swapped",
          held=True, kept=True),
    Phase("start",                    _start),
    Phase("health check: {up.state}", _health_check),
)


def drive(up: Upgrade, phases: Sequence[Phase]):
    """Run the phases, undo as Phase says; a failure raises one Error that says where it
    failed and what it left."""
    count = sum(1 for p in phases if p.label)
    numbers = iter(range(1, count + 1))
    owed: list[Phase] = []  # the phases whose undo is due, oldest first
    try:
        for held, group in itertools.groupby(phases, key=lambda p: p.held):
            with _holding(up) if held else contextlib.nullcontext():  # one for the group
                for phase in group:
                    if phase.record:
                        up.write_record(phase.record)
                        owed.append(phase)
                    if phase.label:
                        up.report(f"[{next(numbers)}/{count}] {phase.label.format(up=up)}")
                    phase.do(up)
                    if not phase.record:
                        owed.append(phase)
    except (StepFailed, Error, KeyboardInterrupt) as exc:
        _fail(up, owed, exc)
    _record(up.paths, up.name).unlink(missing_ok=True)  # healthy: a kill now keeps it
    _undo(up, [p for p in owed if not p.kept])


@contextlib.contextmanager
def _holding(up: Upgrade) -> Iterator[None]:
    """The container held stopped: systemd starts it for nobody (a container that requires
    it, machinectl) from the stop to the swap.  The copy's staging directory goes with it."""
    with hold(up.paths, up.ctx.bus, up.name), \
            up.ctx.store.staging(up.paths.machines, f"upgrade-{up.name}") as stage:
        up.holding, up.stage = True, stage
        try:
            yield
        finally:
            up.holding, up.stage = False, None


def _fail(up: Upgrade, owed: list[Phase],
          exc: StepFailed | Error | KeyboardInterrupt) -> NoReturn:
    step = exc.step if isinstance(exc, StepFailed) else (
        "interrupted" if isinstance(exc, KeyboardInterrupt) else exc.message)
    up.why = f"{up.table} failed at {step}"
    _undo(up, owed)
    _record(up.paths, up.name).unlink(missing_ok=True)  # put right: nothing to recover
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    if any(p.kept for p in owed):
        left = f"rolled back to snapshot {up.tag}"
    elif any(p.record for p in owed):
        left = "its tree was not changed"
    else:
        left = "nothing was changed"
    hint = _last_output(exc.output) if isinstance(exc, StepFailed) else exc.hint
    if isinstance(exc, StepFailed) and exc.why:
        hint = "\n".join(exc.why + ([hint] if hint else []))
    raise Error(f"{up.table} of {up.name} failed at {step}; {left}", hint=hint) from None


def _undo(up: Upgrade, phases: list[Phase]):
    for phase in reversed(phases):
        if phase.undo is not None:
            phase.undo(up)


def interrupted(paths: Paths) -> list[str]:
    """Names with the record of an upgrade that did not finish (or is running now)."""
    try:
        return sorted(p[:-5] for p in os.listdir(paths.state / "upgrades")
                      if p.endswith(".json"))
    except FileNotFoundError:
        return []


def finish_interrupted(held: Held, start_after: bool | None = None,
                       running: bool | None = None,
                       tables: Mapping[str, Sequence[Phase]] | None = None) -> bool:
    """An upgrade of NAME killed before its end (the caller holds NAME's lock, so its writer
    is gone): the undos its record calls for (see Phase), so after the swap it is rolled back
    to its snapshot, and before it started again if it ran.  Its snapshot goes unless it was
    asked to stay.  True when there was one.  tables: the phase tables by the record's word
    for them (runtime/autoupdate.py TABLES has every one; a record of a table not given is
    left for a caller that has it)."""
    paths, name = held.paths, held.name
    path = _record(paths, name)
    try:
        record = json.loads(path.read_text())
        tag = record["tag"]
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # not one we wrote whole: write_atomic writes whole
        return False
    table = record.get("table", "upgrade")  # a record of before auto-update: an upgrade's
    phases = (tables or {"upgrade": PHASES}).get(table)
    if phases is None:
        raise Error(f"the record of an interrupted {str(table)[:40]!r} of {name} is not "
                    "this command's to finish", hint="nspawnctl recover finishes it")
    up = Upgrade(held, why=f"an earlier {table} of {name} was interrupted", table=table,
                 tag=tag, keep_snapshot=bool(record.get("keep_snapshot")), running=running,
                 was_running=bool(record.get("was_running")) if start_after is None
                 else start_after)
    owed = recorded_through(record.get("phase"), phases)
    if not (any(p.kept for p in owed) and _has_snapshot(up)):
        up.report(f"{up.why} before its install: nothing to roll back")
    _undo(up, owed)
    path.unlink()
    return True


def recorded_through(word: str | None, phases: Sequence[Phase]) -> list[Phase]:
    """The recorded phases up to the one a record's word names (an unknown word: the first,
    whose undo does the least)."""
    recorded = [p for p in phases if p.record]
    words = [p.record for p in recorded]
    return recorded[:words.index(word) + 1] if word in words else recorded[:1]


def _step_inside(up: Upgrade, step: str, command: list[str]):
    rc, output = up.run_inside(up.name, command, up.step_timeout, up.report)
    if rc != 0:
        raise StepFailed(f"{step} (exit {rc})", output)


def _stop_step_unit(name: str):
    run([need_tool("systemctl", "systemd"), "-M", name, "stop", STEP_UNIT], check=False)


def _new_tag(paths: Paths, name: str) -> str:
    tag = "upgrade-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return tag if not os.path.lexists(snapshots.snapshot_dir(paths, name, tag)) \
        else snapshots.default_tag(paths, name)


def _has_snapshot(up: Upgrade) -> bool:
    return bool(up.tag) and \
        snapshots.read_meta(snapshots.snapshot_dir(up.paths, up.name, up.tag)) is not None


def _last_output(output: str) -> str | None:
    return ("its last output:\n" + tail(output)) if output.strip() else None


def _record(paths: Paths, name: str) -> Path:
    return paths.state / "upgrades" / f"{name}.json"
