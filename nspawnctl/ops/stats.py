"""stats and top: what running containers use, and what runs in one (runtime/cgroups.py
reads the kernel's files)."""

import time
from collections.abc import Iterator

from ..errors import Conflict, Error
from ..runtime.cgroups import Cgroup, cgroup_of, network_bytes, process
from ..runtime.context import Context


def _running(ctx: Context, names: list[str]) -> list[str]:
    """names (each checked), or with none every running container nspawnctl sees."""
    running = {m["name"] for m in ctx.bus.list_machines()}
    if not names:
        return sorted(n for n in running if ctx.store.exists(n))
    for name in names:
        ctx.store.require(name)
    for name in names:
        if name not in running:
            raise Conflict(f"{name} is not running",
                           hint=f"start it first: nspawnctl start {name}")
    return names


def _sample(ctx: Context, name: str) -> tuple[float, Cgroup, int | None] | None:
    """(when, its cgroup, its CPU time) now; None once it stopped."""
    props = ctx.bus.machine_properties(name)
    if props is None:
        return None
    try:
        cgroup = cgroup_of(ctx.bus, name)
    except Error:
        return None
    return time.monotonic(), cgroup, cgroup.cpu_usec()


def stats(ctx: Context, names: list[str], interval: float = 1.0) -> Iterator[list[dict]]:
    """A row per running container (those named, else all), every interval seconds: CPU %
    over that interval (100 is one CPU), memory and network bytes, process count.  With no
    names the set is asked again each time (containers that start show up); a container
    that stops drops out."""
    wanted = _running(ctx, list(dict.fromkeys(names)))
    before = {n: s for n in wanted if (s := _sample(ctx, n)) is not None}
    while True:
        time.sleep(interval)
        if not names:
            wanted = _running(ctx, [])
        rows, after = [], {}
        for name in wanted:
            now = _sample(ctx, name)
            if now is None:
                continue
            after[name] = now
            t1, cgroup, usec = now
            props = ctx.bus.machine_properties(name) or {}
            net = network_bytes(int(props["Leader"])) if props.get("Leader") else None
            previous = before.get(name)
            cpu = None
            if previous is not None and usec is not None and previous[2] is not None \
                    and t1 > previous[0]:
                cpu = round(max(0, usec - previous[2]) / ((t1 - previous[0]) * 1e6) * 100, 2)
            rows.append({"name": name, "cpu_percent": cpu, "memory_bytes": cgroup.memory(),
                         "pids": cgroup.pid_count(),
                         "net_rx_bytes": net[0] if net else None,
                         "net_tx_bytes": net[1] if net else None})
        before = after
        yield rows


def top(ctx: Context, name: str) -> list[dict]:
    """NAME's processes, from its cgroup (those of systemd-nspawn itself left out)."""
    _running(ctx, [name])
    return [p for pid in cgroup_of(ctx.bus, name).pids() if (p := process(pid)) is not None]
