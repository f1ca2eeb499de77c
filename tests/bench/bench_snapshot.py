"""Benchmark: snapshots of a default container, by each method the testbed offers, beside
`cp -a --reflink=auto` of the same thing (what a user would do by hand).

- stopped, plain tree: `nspawnctl snapshot NAME` (copy, or reflink on btrfs/XFS) vs cp -a of
  the tree.
- running: frozen for the copy where systemd can freeze (unified cgroups), else stopped for it
  (`snapshot --stop`): the snapshot's own time, and how long the container was frozen or
  stopped (from its --json), vs cp -a of the tree.
- an --overlay container: only its upper layer is copied, vs cp -a of the whole tree.
- rollback of a stopped container vs cp -a of the tree (rollback copies the snapshot back).
Each snapshot is removed before the next run.  Every timed run, ours and cp's, starts synced
with the page cache dropped, and cp copies into a fresh directory in the parent nspawnctl
stages its copies in: on ext4 where a new directory lands decides much (see warm_create).
An earlier version copied to /var/lib/machines/.bench-cp with warm caches and published
snapshot 0.13x cp -a, which cannot be: the snapshot is that same copy.
"""

import json

from .bench_create import staged_copy
from .common import Seconds, check, guarded, log, time_inside

NAME = "bench-snap"
OVERLAY = "bench-snap-ov"
TREE = f"/var/lib/machines/{NAME}"


def _ensure(host, name, *options):
    if host.run(["test", "-d", f"/var/lib/machines/{name}"]).returncode != 0:
        check(host, ["nspawnctl", "create", name, *options], timeout=1200)


def _clear(host, name):
    for row in json.loads(check(host, ["nspawnctl", "snapshots", name, "--json"])):
        check(host, ["nspawnctl", "snapshot", "rm", name, row["tag"]])


def _snap(host, name, *options) -> tuple[float, dict]:
    _clear(host, name)
    s = time_inside(host, [["nspawnctl", "snapshot", *options, name, "b"]], cold=True)
    info = json.loads(check(host, ["nspawnctl", "snapshots", name, "--json"]))[0]
    return s, info


def stopped(host, runs: int) -> list:
    _ensure(host, NAME)
    host.run(["nspawnctl", "stop", NAME])
    ours, theirs, bare, method = [], [], [], ""
    for _ in range(runs):
        s, info = _snap(host, NAME)
        ours.append(s)
        method = info["method"]
        theirs.append(staged_copy(host, TREE, sync=True))
        bare.append(staged_copy(host, TREE, sync=False))
    return [(f"snapshot, stopped ({method})", Seconds(ours), Seconds(theirs),
             "cp -a --reflink=auto of the tree + sync -f (durable, as ours)"),
            (f"snapshot, stopped ({method})", Seconds(ours), Seconds(bare),
             "the same cp -a without the sync")]


def running(host, runs: int) -> list:
    _ensure(host, NAME)
    check(host, ["nspawnctl", "start", NAME])
    ours, held, theirs = [], [], []
    how = "frozen"
    for _ in range(runs):
        _clear(host, NAME)
        out = host.run(["nspawnctl", "snapshot", NAME, "b", "--json"])
        if out.returncode != 0:  # no freezer here (hybrid cgroups): stopped for the copy
            how = "stopped"
            _clear(host, NAME)
        ours.append(time_inside(host, [["nspawnctl", "snapshot", *(
            ["--stop"] if how == "stopped" else []), NAME, "c", "--json"]], cold=True))
        info = json.loads(check(host, ["nspawnctl", "snapshots", NAME, "--json"]))[-1]
        held.append(info.get("frozen_seconds") or info.get("stopped_seconds") or 0.0)
        theirs.append(staged_copy(host, TREE, sync=True))
    check(host, ["nspawnctl", "stop", NAME])
    _clear(host, NAME)
    return [(f"snapshot, running ({how} for the copy)", Seconds(ours), Seconds(theirs),
             "cp -a --reflink=auto of the tree + sync -f"),
            (f"  of which {how}", Seconds(held), "-", "")]


def overlay(host, runs: int) -> list:
    _ensure(host, OVERLAY, "--overlay")
    ours, theirs = [], []
    for _ in range(runs):
        s, info = _snap(host, OVERLAY)
        ours.append(s)
        theirs.append(staged_copy(host, f"/var/lib/machines/{OVERLAY}", sync=True))
    _clear(host, OVERLAY)
    return [(f"snapshot, --overlay container ({info['method']}, "
             f"{info['size'] / 1e6:.1f} MB)", Seconds(ours), Seconds(theirs),
             "cp -a --reflink=auto of its whole tree + sync -f")]


def rollback(host, runs: int) -> list:
    _ensure(host, NAME)
    host.run(["nspawnctl", "stop", NAME])
    _clear(host, NAME)
    check(host, ["nspawnctl", "snapshot", NAME, "r"])
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(time_inside(host, [["nspawnctl", "rollback", NAME, "r"]], cold=True))
        theirs.append(staged_copy(host, TREE, sync=True))
    _clear(host, NAME)
    return [("rollback, stopped", Seconds(ours), Seconds(theirs),
             "cp -a --reflink=auto of the tree + sync -f")]


def run(host, quick: bool = False) -> list:
    runs = 3 if quick else 5
    rows: list = []
    log(f"snapshots: {runs} runs of each method")
    guarded(rows, "snapshot, stopped", "cp -a", lambda: stopped(host, runs))
    guarded(rows, "snapshot, running", "cp -a", lambda: running(host, runs))
    guarded(rows, "snapshot, --overlay", "cp -a", lambda: overlay(host, runs))
    guarded(rows, "rollback", "cp -a", lambda: rollback(host, runs))
    return rows
