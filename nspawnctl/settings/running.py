"""What a running container was started with, while its saved settings say otherwise.

`set` on a running container saves settings that systemd-nspawn reads only at the next start
(the network, binds, the environment, ...): until then the container runs with the old ones,
and `list`, `status` and the firewall must not take the saved ones for what runs.  So, before
such a `set` saves, it records the settings the container runs with (the .nspawn file's
settings, as systemd-nspawn read them), once per run (its address is the lease network.join
keeps for it on the network it runs on): a later `set` in the
same run keeps the first record, which still says what runs.

A record is of one run: it names the container's leader process by PID and start time
(/proc/PID/stat), and holds only while that process lives.  A restart, a stop, a reboot,
however they came (nspawnctl, machinectl, systemd), make it stale at once, with nothing to
clean up first; a stale record is never read as true, and is dropped by the next start.
"""

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import Error
from ..fs.files import read_small_text, write_atomic
from ..paths import Paths
from .model import SETTINGS, Apply, ContainerConfig
from .nspawnfile import parse_nspawn, render_nspawn

RECORD_MAX = 64 << 10  # a record is a .nspawn file and two numbers: a few hundred bytes


@dataclass(frozen=True)
class Running:
    """The settings a container runs with (those applied at a start)."""

    config: ContainerConfig


def _record_file(paths: Paths, name: str) -> Path:
    return paths.running / f"{name}.json"


def process_start(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The start time of process pid (field 22 of /proc/PID/stat, in clock ticks since
    boot), or None when there is no such process: with the PID, it names one process for
    good (a PID alone is reused)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may hold anything, ')' included: count from the
    # last one
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def record(paths: Paths, name: str, cfg: ContainerConfig, leader: int) -> None:
    """Record that NAME's run under leader has cfg's start-time settings; kept
    when this run has a record already (it says what runs: cfg may be a later `set`'s)."""
    if read(paths, name) is not None:
        return
    start = process_start(leader)
    if start is None:
        return  # it stopped meanwhile: its next start reads the saved settings anyway
    paths.running.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(_record_file(paths, name), json.dumps(
        {"leader": leader, "start": start, "nspawn": render_nspawn(cfg)}) + "\n")


def read(paths: Paths, name: str) -> Running | None:
    """What NAME's current run was started with, if a `set` since changed it; None when no
    record holds for this run (then the saved settings are what runs)."""
    try:
        text = read_small_text(_record_file(paths, name), f"{name}'s running record",
                               limit=RECORD_MAX)
    except Error:
        return None
    if text is None:
        return None
    try:
        data = json.loads(text)
        leader, start, nspawn = int(data["leader"]), int(data["start"]), str(data["nspawn"])
    except (ValueError, KeyError, TypeError):
        return None
    if leader <= 0 or process_start(leader) != start:
        return None
    try:
        return Running(parse_nspawn(nspawn, ContainerConfig()))
    except Error:
        return None


def forget(paths: Paths, name: str) -> None:
    """Drop NAME's record: at a start (a new run reads the saved settings) and a remove."""
    _record_file(paths, name).unlink(missing_ok=True)


def effective(saved: ContainerConfig, running: Running | None) -> ContainerConfig:
    """The settings in force: the running ones of those that apply at a start, the saved
    ones of the rest (limits, ports and the restart policy apply at once)."""
    if running is None:
        return saved
    return replace(saved, **{s.name: getattr(running.config, s.name) for s in SETTINGS
                             if s.apply is Apply.RESTART})


def pending(saved: ContainerConfig, running: Running | None) -> dict[str, Any]:
    """The saved settings that wait for a restart, as `status --json` shows them, by name."""
    if running is None:
        return {}
    return {s.public: s.to_json(getattr(saved, s.name)) for s in SETTINGS
            if s.apply is Apply.RESTART
            and getattr(saved, s.name) != getattr(running.config, s.name)}
