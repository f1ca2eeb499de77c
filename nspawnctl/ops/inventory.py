"""What `list` and `status` show: the store's containers joined with systemd's and machined's
view of them, read with as few D-Bus calls as possible (two for the whole list)."""

import os
from pathlib import Path

from .. import log
from ..errors import Error
from ..fs import resolve
from ..fs.files import read_small_text
from ..network.containers import managed, network_state
from ..paths import Paths, service_unit
from ..runtime import health
from ..runtime.context import Context
from ..runtime.lifecycle import journal_tail
from ..settings import running as running_record
from ..settings.files import load_config
from ..settings.model import ContainerConfig, describe, limits, scheduled
from ..store import overlay
from ..store.containers import is_enabled
from ..store.images import image_dir, read_meta
from ..systemd.bus import SERVICE, SYSTEMD, Bus, unit_path

OS_RELEASE_MAX = 64 << 10  # a real one is a few hundred bytes


def os_release(tree: Path) -> dict:
    """The tree's os-release, as the container itself would find it (os-release(5): /etc,
    else /usr/lib): its root owns every byte of it, so the file is resolved inside the tree,
    opened once and read bounded (fs/resolve.py); the values are shown escaped (cli)."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        data = resolve.read_small(tree, path, OS_RELEASE_MAX)
        if data is None:
            continue
        fields = {}
        for line in data.decode(errors="replace").split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("'\"")
        return fields
    return {}


def _health(paths: Paths, name: str, cfg: ContainerConfig, up: bool,
            machine: dict | None = None) -> dict | None:
    """Its health (runtime/health.py) when it runs and the scheduler checks it (a
    --health-cmd, or booted with an --on-unhealthy action: model.scheduled()): starting until
    a check of this run was kept (with machine, its run is known: a check of an earlier run
    does not count; list does not ask machined for each container, and shows the last one)."""
    if not scheduled(cfg) or not up:
        return None
    kept = health.load(paths, name)
    if kept is None or (machine and kept.started != health.run_of(machine)):
        kept = health.Health()
    return kept.to_json()


def _row(paths: Paths, name: str, cfg: ContainerConfig, state: str,
         addresses: list[str] | None, waiting: dict | None = None,
         health_of: dict | None = None) -> dict:
    """cfg is what is in force (settings/running.py: effective); waiting, the saved settings
    a restart would bring (pending), the address among them."""
    release = os_release(paths.tree(name))
    settings = describe(cfg)
    return {"name": name, "state": state,
            "os": release.get("PRETTY_NAME") or release.get("ID"),
            "address": addresses or [],
            **{key: settings[key] for key in ("port", "image", "after", "requires", "created",
                                              "stack")},
            "enabled": is_enabled(paths, name), "limits": limits(cfg),
            "pending": waiting or {}, "health": health_of}


def _in_force(paths: Paths, name: str, saved: ContainerConfig, up: bool,
              leases: dict[tuple[str, str], str]) -> tuple[ContainerConfig, dict]:
    """The settings a container runs with, and those `set` saved for its next start (with
    the address it will have then): a running container keeps its old network, binds,
    environment... until it restarts, and is shown so."""
    run = running_record.read(paths, name) if up else None
    cfg = running_record.effective(saved, run)
    waiting = running_record.pending(saved, run)
    if "network" in waiting:
        future = leases.get((saved.network, name)) if managed(saved) else None
        waiting["address"] = [future] if future else []
    return cfg, waiting


def _bytes(value) -> int | None:
    """systemd says 2^64-1 for "unknown" (no memory accounting)."""
    return value if isinstance(value, int) and value < 2**64 - 1 else None


def _state(unit_state: str | None) -> str:
    return {"active": "running", "activating": "starting", "deactivating": "stopping",
            "failed": "failed", "reloading": "running"}.get(unit_state or "", "stopped")


def list_containers(ctx: Context) -> list[dict]:
    paths, store = ctx.paths, ctx.store
    if os.geteuid() == 0:
        store.sweep()  # what killed commands left must not show up, or linger
    names = store.names()
    if not names:
        return []  # nothing to ask systemd about: no connection (and no pystemd) at all
    bus = ctx.bus
    units = {u["name"]: u["active_state"] for u in bus.list_units(["systemd-nspawn@*.service"])}
    running = {m["name"] for m in bus.list_machines()}
    leases = _leases(paths)
    rows = []
    for name in names:
        state = _state(units.get(service_unit(name)))
        try:
            cfg = load_config(paths, name)
        except Error as exc:  # one container's broken settings must not hide the others
            log.warning(__name__, "warning: %s (its row shows what could be read)",
                        exc.message)
            try:
                cfg = load_config(paths, name, dropin=False)
            except Error:
                cfg = ContainerConfig()
        cfg, waiting = _in_force(paths, name, cfg, name in running, leases)
        rows.append(_row(paths, name, cfg, state, _addresses(bus, cfg, name, running, leases),
                         waiting, _health(paths, name, cfg, name in running)))
    return rows


def _leases(paths: Paths) -> dict[tuple[str, str], str]:
    """(network, container) -> address, from nspawnctl's own state: one file read instead of
    one machined call per container."""
    return {key: str(address) for key, address in network_state(paths).all_leases().items()}


def _addresses(bus: Bus, cfg: ContainerConfig, name: str, running: set[str],
               leases: dict[tuple[str, str], str]) -> list[str] | None:
    """A container of an nspawnctl network: its stable address, running or not.  Any other
    running one: what machined sees in it."""
    if managed(cfg):
        address = leases.get((cfg.network, name))
        return [address] if address else None
    return bus.machine_addresses(name) if name in running else None


def status(ctx: Context, name: str) -> dict:
    paths = ctx.paths
    ctx.store.require(name)  # before the bus: a typo needs no systemd to be said
    cfg = load_config(paths, name)
    bus = ctx.bus
    unit = bus.unit_properties(service_unit(name))
    machine = bus.machine_properties(name)
    leases = _leases(paths)
    cfg, waiting = _in_force(paths, name, cfg, bool(machine), leases)
    addresses = _addresses(bus, cfg, name, {name} if machine else set(), leases)
    service = bus.get_all(SYSTEMD, unit_path(service_unit(name)), SERVICE) if machine else {}
    row = _row(paths, name, cfg, _state(unit.get("ActiveState")), addresses, waiting,
               _health(paths, name, cfg, bool(machine), machine))
    row.update({
        "unit": service_unit(name),
        "unit_state": f"{unit.get('ActiveState')} ({unit.get('SubState')})",
        "leader": machine.get("Leader") if machine else None,
        "tree": str(paths.tree(name)),
        "overlay": str(overlay.layers(paths, name)) if overlay.is_overlay(paths, name) else None,
    })
    # Why a failed one failed: systemd's word for it (exit-code, timeout, signal, ...) and its
    # last lines of log; `failed` alone left the user to find journalctl.
    failed = row["state"] == "failed"
    row["result"] = bus.unit_property(service_unit(name), "Result", b"s", iface=SERVICE) \
        if failed else None
    row["log"] = journal_tail(name) if failed else None
    row.update(describe(cfg))  # every setting, as the table in settings/model.py shows it
    row["pending"] = row.pop("pending")  # last: what the settings above become at a restart
    row["memory_current"] = _bytes(service.get("MemoryCurrent"))
    row.update(_image_ports_and_volumes(paths, cfg.image))
    return row


def _image_ports_and_volumes(paths: Paths, key: str | None) -> dict:
    """What an OCI image declares (shown, not acted on: Volumes are bound only with --bind)."""
    meta = (read_meta(image_dir(paths, key)) if key else None) or {}
    return {"exposed_ports": list(meta.get("exposed_ports") or []),
            "volumes": list(meta.get("volumes") or [])}


def inspect(ctx: Context, name: str) -> dict:
    """status, and the files systemd and systemd-nspawn run NAME from, with their text: the
    .nspawn file, and the unit as `systemctl cat` shows it (its file, then each drop-in in
    the order systemd reads them, also the runtime ones a live `set` wrote).  The paths come
    from systemd itself (FragmentPath, DropInPaths), so a drop-in of the user's or the
    distribution's is there too; all are host files under /etc, /run and /lib."""
    record = status(ctx, name)
    unit = ctx.bus.unit_properties(service_unit(name))
    nspawn = ctx.paths.nspawn_file(name)
    record["nspawn_file"] = {"path": str(nspawn),
                             "text": read_small_text(nspawn, f"{name}'s settings file")}
    files = [unit.get("FragmentPath") or None, *(unit.get("DropInPaths") or [])]
    record["unit_files"] = [{"path": path, "text": read_small_text(Path(path), "unit file")}
                            for path in files if path]
    return record
