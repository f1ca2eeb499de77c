"""upgrade: the distribution's package upgrade, installed into a copy of the container's tree
and swapped in whole, undone when the upgraded container is not healthy.

    [1/6] apt-get update            \\ inside the running container (its own network and
    [2/6] download the upgrade      /  DNS); they change nothing but apt's lists and cache
    [3/6] stop, snapshot            the snapshot is what a rollback puts back
    [4/6] install into a copy       apt-get full-upgrade --no-download in a staged copy of the
                                    stopped tree, under systemd-nspawn with no network; the
                                    copy is swapped with the tree in one rename
    [5/6] start
    [6/6] health check              else: rollback to the snapshot, and say why

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

import datetime
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import Error
from ..fs.copy import clone_tree
from ..fs.files import fsync_dir, sync_filesystem, write_atomic
from ..paths import Paths
from ..run import contained, need_tool, run, stream, tail
from ..runtime.lifecycle import is_active, start, stop
from ..runtime.snapshot import restart_dependents, restore, take
from ..settings.files import load_config
from ..store import overlay, snapshots
from ..store.containers import Store
from ..store.hold import hold, require_stopped, running_dependents
from ..systemd.bus import Bus, guest_state
from .common import Report, require_root

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


def upgrade(paths: Paths, name: str, check: str | None = None, keep_snapshot: bool = False,
            timeout: float = 120, step_timeout: float = 1800, report: Report = print,
            run_inside: Callable[..., tuple[int, str]] = inside,
            run_in_copy: Callable[..., tuple[int, str]] = in_copy) -> dict:
    require_root()
    store = Store(paths)
    store.require(name)
    cfg = load_config(paths, name)
    if not cfg.boot:
        raise Error(f"upgrade does not apply to {name}: it runs a single command, not a "
                    "system with a package manager",
                    hint="rebuild it from a newer image instead")
    if not os.path.lexists(paths.tree(name) / "usr/bin/apt-get"):
        raise Error(f"upgrade does not apply to {name}: it has no apt-get",
                    hint="nspawnctl upgrades Debian and Ubuntu containers")
    with store.lock(name):
        store.require(name)
        finish_interrupted(paths, name, report)
        with Bus() as bus:
            was_running = is_active(bus, name)
        if not was_running:
            report(f"starting {name} for the upgrade")
            start(paths, name, timeout=timeout, report=report, locked=True)
        before = guest_state(name)
        _stop_step_unit(name)  # a step of a killed upgrade may still run inside
        try:
            for label, command in [
                # Error-Mode=any: a source that cannot be fetched fails the step (exit 100);
                # by default apt only warns, and the upgrade went on with stale lists and
                # said "upgraded" having installed nothing.  Older apt ignores the key.
                ("[1/6] apt-get update",
                 ["apt-get", *APT_OPTIONS, "-o", "APT::Update::Error-Mode=any", "update"]),
                ("[2/6] download the upgrade",
                 ["apt-get", *APT_OPTIONS, "-y", "--download-only", "full-upgrade"]),
            ]:
                report(label)
                rc, output = run_inside(name, command, step_timeout, report)
                if rc != 0:
                    raise StepFailed(label.split("] ")[1] + f" (exit {rc})", output)
        except StepFailed as exc:
            if not was_running:
                stop(paths, name, report=report)
            raise Error(f"upgrade of {name} failed at {exc.step}; nothing was changed",
                        hint=_last_output(exc.output)) from None
        tag = "upgrade-" + datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y%m%dT%H%M%SZ")
        tag = tag if not os.path.lexists(snapshots.snapshot_dir(paths, name, tag)) \
            else snapshots.default_tag(paths, name)
        # From the stop on, a kill leaves the container stopped (and, after the swap, with an
        # unchecked tree): this record lets the next upgrade, or recover, put it right.
        record = {"tag": tag, "phase": "install", "was_running": was_running,
                  "keep_snapshot": keep_snapshot}
        write_atomic(_record(paths, name), json.dumps(record))
        report(f"[3/6] stop, snapshot {tag}")
        failure: StepFailed | Error | KeyboardInterrupt | None = None
        # Held from the stop to the swap: systemd starts it for nobody meanwhile (a container
        # that requires it, machinectl); those it stopped start again with it.
        with Bus() as bus, hold(paths, bus, name):
            dependents = running_dependents(bus, name)
            stop(paths, name, report=report)
            info = take(paths, name, tag, stop_if_needed=False, report=report)
            report("[4/6] install the upgrade into a copy of the tree")
            try:
                _install_in_copy(paths, store, bus, name, cfg.private_users, record,
                                 step_timeout, report, run_in_copy)
            except (StepFailed, Error, KeyboardInterrupt) as exc:
                failure = exc
        if failure is not None:
            # the tree is as it was: nothing to roll back
            _drop(paths, store, name, tag, keep_snapshot)
            _record(paths, name).unlink()
            if was_running:
                start(paths, name, timeout=timeout, report=report, locked=True)
                restart_dependents(dependents, report)
            if isinstance(failure, KeyboardInterrupt):
                raise failure
            step = failure.step if isinstance(failure, StepFailed) else failure.message
            raise Error(f"upgrade of {name} failed at {step}; its tree was not changed",
                        hint=_last_output(getattr(failure, "output", ""))) from None
        try:
            report("[5/6] start")
            try:
                state = start(paths, name, timeout=timeout, report=report, locked=True)
            except Error as exc:
                raise StepFailed("start", f"{exc.message}\n{exc.hint or ''}") from None
            report(f"[6/6] health check: {state}")
            if state != "running" and not (state == "degraded" and before == "degraded"):
                _, output = run_inside(name, ["systemctl", "--failed", "--no-legend"], 60,
                                       lambda _m: None)
                raise StepFailed(f"health check (its systemd is {state}, was {before})",
                                 output)
            if check:
                rc, output = run_inside(name, ["sh", "-c", check], step_timeout, report)
                if rc != 0:
                    raise StepFailed(f"--check {check!r} (exit {rc})", output)
        except (StepFailed, Error, KeyboardInterrupt) as exc:
            step = exc.step if isinstance(exc, StepFailed) else (
                "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc))
            output = exc.output if isinstance(exc, StepFailed) else ""
            report(f"upgrade failed at {step}: rolling back to {tag}")
            restore(paths, name, tag, report, start_after=was_running)
            _record(paths, name).unlink()
            _drop(paths, store, name, tag, keep_snapshot)  # the tree is its copy now
            if was_running:
                restart_dependents(dependents, report)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Error(f"upgrade of {name} failed at {step}; rolled back to snapshot {tag}",
                        hint=_last_output(output)) from None
        _record(paths, name).unlink()  # healthy: from here a kill keeps the upgrade
        if not was_running:
            stop(paths, name, report=report)
        else:
            restart_dependents(dependents, report)
        _drop(paths, store, name, tag, keep_snapshot)
    return {"name": name, "state": state, "snapshot": tag if keep_snapshot else None,
            "snapshot_method": info["method"]}


def _install_in_copy(paths: Paths, store: Store, bus: Bus, name: str, private_users: bool,
                     record: dict, timeout: float, report: Report,
                     run_in_copy: Callable[..., tuple[int, str]]):
    """Copy NAME's stopped tree (an overlay container: its upper layer) into staging, run the
    install there, and swap the result in."""
    lower = overlay.lower_of(paths, name) if overlay.is_overlay(paths, name) else None
    command = ["sh", "-c", 'apt-get "$@" -y --no-download full-upgrade && apt-get clean',
               "sh", *APT_OPTIONS]
    with store.staging(paths.machines, f"upgrade-{name}") as stage:
        if lower is None:
            live = paths.tree(name)
            clone_tree(live, stage / "tree")
            rc, output = run_in_copy(stage / "tree", name, private_users, command, timeout,
                                     report)
            built = stage / "tree"
        else:
            live = overlay.layers(paths, name) / "upper"
            overlay.make_layers(stage / "layers", lower, upper_from=live)
            (stage / "merged").mkdir()
            rc, output = run_in_copy(stage / "merged", name, private_users, command, timeout,
                                     report, overlay.options(lower, stage / "layers"))
            built = stage / "layers" / "upper"
        if rc != 0:
            raise StepFailed(f"apt-get full-upgrade (exit {rc})", output)
        sync_filesystem(built)
        # From the swap on, a kill leaves the new tree unchecked: the record makes the next
        # upgrade (or recover) roll it back.  Written first, it is true by the time it counts.
        write_atomic(_record(paths, name), json.dumps(dict(record, phase="swapped")))
        require_stopped(bus, name)  # held, but a start may have come before the hold
        if lower is not None:
            overlay.release(paths, name)
        try:
            snapshots.exchange(built, live)
        except OSError as exc:
            raise Error(f"cannot swap the upgraded tree of {name} in: {exc.strerror}") \
                from None
        finally:
            if lower is not None:
                overlay.mount_tree(paths, name, lower)
        fsync_dir(live.parent)


def _stop_step_unit(name: str):
    run([need_tool("systemctl", "systemd"), "-M", name, "stop", STEP_UNIT], check=False)


def _drop(paths: Paths, store: Store, name: str, tag: str, keep: bool):
    if not keep and snapshots.read_meta(snapshots.snapshot_dir(paths, name, tag)) is not None:
        with store.staging(paths.machines, f"snapshot-rm-{name}") as trash:
            snapshots.remove(paths, name, tag, trash)


def _last_output(output: str) -> str | None:
    return ("its last output:\n" + tail(output)) if output.strip() else None


def _record(paths: Paths, name: str) -> Path:
    return paths.state / "upgrades" / f"{name}.json"


def interrupted(paths: Paths) -> list[str]:
    """Names with the record of an upgrade that did not finish (or is running now)."""
    try:
        return sorted(p[:-5] for p in os.listdir(paths.state / "upgrades")
                      if p.endswith(".json"))
    except FileNotFoundError:
        return []


def finish_interrupted(paths: Paths, name: str, report: Report,
                       start_after: bool | None = None, running: bool | None = None) -> bool:
    """An upgrade of NAME killed before its end (the caller holds NAME's lock, so its writer
    is gone): after the swap, roll back to its snapshot; before, there is nothing to undo.
    Its snapshot goes unless it was asked to stay.  True when there was one."""
    path = _record(paths, name)
    try:
        record = json.loads(path.read_text())
        tag = record["tag"]
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # not one we wrote whole: write_atomic writes whole
        return False
    store = Store(paths)
    has_snapshot = snapshots.read_meta(snapshots.snapshot_dir(paths, name, tag)) is not None
    again = bool(record.get("was_running")) if start_after is None else start_after
    if record.get("phase") == "swapped" and has_snapshot:
        report(f"an earlier upgrade of {name} was interrupted: rolling back to {tag}")
        restore(paths, name, tag, report, start_after=again, running=running)
    else:
        report(f"an earlier upgrade of {name} was interrupted before its install: "
               "nothing to roll back")
        if again:
            start(paths, name, report=report, locked=True)  # it stopped it
    if has_snapshot:
        _drop(paths, store, name, tag, bool(record.get("keep_snapshot")))
    path.unlink()
    return True
