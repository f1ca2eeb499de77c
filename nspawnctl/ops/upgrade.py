"""upgrade: the distribution's package upgrade inside a booted container, undone when it fails.

    snapshot -> apt-get update -> apt-get full-upgrade -> restart -> health check
                \\______ any step fails: rollback to the snapshot, say why ______/

Healthy means: the container's systemd reaches `running` (or `degraded`, only when it was
degraded before), within the timeout, and --check CMD run inside exits 0.  The whole upgrade
holds the container's lock: no rollback, set or second upgrade can come between its steps.
"""

import datetime
import json
import os
import threading
from collections.abc import Callable

from ..errors import Error
from ..fsutil import write_atomic
from ..paths import Paths
from ..run import need_tool, stream, tail
from ..settings.files import load_config
from ..store import snapshots
from ..store.containers import Store
from ..systemd.bus import Bus, guest_state
from .common import Report, require_root
from .lifecycle import is_active, start, stop
from .snapshot import restore, take

APT_ENV = ["DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none",
           "NEEDRESTART_MODE=a"]
APT_OPTIONS = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
               "-o", "Dpkg::Use-Pty=0", "-q"]
OUTPUT_LINES = 2000  # the output kept of one step: its tail is what a failure shows


class StepFailed(Exception):
    def __init__(self, step: str, output: str):
        super().__init__(step)
        self.step, self.output = step, output


def inside(name: str, command: list[str], timeout: float, report: Report) -> tuple[int, str]:
    """Run command in booted container NAME as a transient unit of its own systemd; progress
    lines go to report; returns (exit status, last lines of output)."""
    argv = [need_tool("systemd-run", "systemd"), "-M", name, "--quiet", "--wait", "--pipe",
            "--collect", "--service-type=exec", *[f"--setenv={e}" for e in APT_ENV], "--",
            *command]
    proc = stream(argv)
    assert proc.stdout is not None
    kept: list[str] = []
    timer = threading.Timer(timeout, proc.kill)  # a step that hangs, silent or not
    timer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")[:500]
            kept.append(line)
            del kept[:-OUTPUT_LINES]
            if line.startswith(("Get:", "Unpacking", "Setting up", "Err:", "E:")):
                report(f"  {line[:120]}")
    finally:
        timer.cancel()
    rc = proc.wait()
    if rc < 0:
        kept.append(f"(no end within {timeout:g} s: stopped)")
    return rc, "\n".join(kept)


def upgrade(paths: Paths, name: str, check: str | None = None, keep_snapshot: bool = False,
            timeout: float = 120, step_timeout: float = 1800, report: Report = print,
            run_inside: Callable[..., tuple[int, str]] = inside) -> dict:
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
        _finish_interrupted(paths, name, report)
        with Bus() as bus:
            was_running = is_active(bus, name)
        if not was_running:
            report(f"starting {name} for the upgrade")
            start(paths, name, timeout=timeout, report=report, locked=True)
        before = guest_state(name)
        tag = "upgrade-" + datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y%m%dT%H%M%SZ")
        tag = tag if not os.path.lexists(snapshots.snapshot_dir(paths, name, tag)) \
            else snapshots.default_tag(paths, name)
        report(f"[1/5] snapshot {tag}")
        info = take(paths, name, tag, stop_if_needed=True, report=report)
        # From here until the end, a kill leaves the container half upgraded: this record
        # makes the next upgrade roll it back to the snapshot first.
        write_atomic(_record(paths, name), json.dumps({"tag": tag, "pid": os.getpid()}))
        steps = [
            ("[2/5] apt-get update", ["apt-get", *APT_OPTIONS, "update"]),
            ("[3/5] apt-get full-upgrade", ["apt-get", *APT_OPTIONS, "-y", "full-upgrade"]),
        ]
        try:
            for label, command in steps:
                report(label)
                rc, output = run_inside(name, command, step_timeout, report)
                if rc != 0:
                    raise StepFailed(label.split("] ")[1] + f" (exit {rc})", output)
            report("[4/5] restart")
            stop(paths, name, report=report)
            try:
                state = start(paths, name, timeout=timeout, report=report, locked=True)
            except Error as exc:
                raise StepFailed("restart", f"{exc.message}\n{exc.hint or ''}") from None
            report(f"[5/5] health check: {state}")
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
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Error(f"upgrade of {name} failed at {step}; rolled back to snapshot {tag}",
                        hint=("its last output:\n" + tail(output)) if output.strip()
                        else None) from None
        if not was_running:
            stop(paths, name, report=report)
        _record(paths, name).unlink()
        if not keep_snapshot:
            with store.staging(paths.machines, f"snapshot-rm-{name}") as trash:
                snapshots.remove(paths, name, tag, trash)
    return {"name": name, "state": state, "snapshot": tag if keep_snapshot else None,
            "snapshot_method": info["method"]}


def _record(paths: Paths, name: str):
    return paths.state / "upgrades" / f"{name}.json"


def _finish_interrupted(paths: Paths, name: str, report: Report):
    """An upgrade killed between its snapshot and its end: roll back to that snapshot (the
    record is ours: NAME's lock is held, so its writer is gone)."""
    try:
        tag = json.loads(_record(paths, name).read_text())["tag"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if snapshots.read_meta(snapshots.snapshot_dir(paths, name, tag)) is not None:
        report(f"an earlier upgrade of {name} was interrupted: rolling back to {tag} first")
        restore(paths, name, tag, report)
    _record(paths, name).unlink()
