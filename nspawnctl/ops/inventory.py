"""What `list` and `status` show: the store's containers joined with systemd's and machined's
view of them, read with as few D-Bus calls as possible (two for the whole list)."""

import os
from pathlib import Path

from .. import log
from ..errors import Error
from ..fs import resolve
from ..network.containers import managed, network_state
from ..paths import Paths, service_unit
from ..runtime.context import Context
from ..settings.files import load_config
from ..settings.model import ContainerConfig, describe, limits
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


def _row(paths: Paths, name: str, cfg: ContainerConfig, state: str,
         addresses: list[str] | None) -> dict:
    release = os_release(paths.tree(name))
    settings = describe(cfg)
    return {"name": name, "state": state,
            "os": release.get("PRETTY_NAME") or release.get("ID"),
            "address": addresses or [],
            **{key: settings[key] for key in ("port", "image", "after", "requires", "created")},
            "enabled": is_enabled(paths, name), "limits": limits(cfg)}


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
        rows.append(_row(paths, name, cfg, state, _addresses(bus, cfg, name, running, leases)))
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
    addresses = _addresses(bus, cfg, name, {name} if machine else set(), _leases(paths))
    service = bus.get_all(SYSTEMD, unit_path(service_unit(name)), SERVICE) if machine else {}
    row = _row(paths, name, cfg, _state(unit.get("ActiveState")), addresses)
    row.update({
        "unit": service_unit(name),
        "unit_state": f"{unit.get('ActiveState')} ({unit.get('SubState')})",
        "leader": machine.get("Leader") if machine else None,
        "tree": str(paths.tree(name)),
        "overlay": str(overlay.layers(paths, name)) if overlay.is_overlay(paths, name) else None,
    })
    row.update(describe(cfg))  # every setting, as the table in settings/model.py shows it
    row["memory_current"] = _bytes(service.get("MemoryCurrent"))
    row.update(_image_ports_and_volumes(paths, cfg.image))
    return row


def _image_ports_and_volumes(paths: Paths, key: str | None) -> dict:
    """What an OCI image declares (shown, not acted on: Volumes are bound only with --bind)."""
    meta = (read_meta(image_dir(paths, key)) if key else None) or {}
    return {"exposed_ports": list(meta.get("exposed_ports") or []),
            "volumes": list(meta.get("volumes") or [])}


