"""`set`: change a container's settings, applying limits and published ports live when it
runs; what needs a restart is said."""

import contextlib
from dataclasses import replace
from typing import Any

from ..errors import Conflict
from ..network import containers as network
from ..paths import service_unit
from ..runtime import health
from ..runtime.autoupdate import require_updatable
from ..runtime.context import Context
from ..runtime.lifecycle import is_active
from ..settings import running as running_record
from ..settings.files import load_config, save_config
from ..settings.model import ContainerConfig, dependencies, edit, live_properties, needs_restart
from ..store import order, volumes
from ..systemd import bootunits
from .common import check_mounts, require_root


def set_config(ctx: Context, name: str, options: dict[str, Any],
               values: dict[str, Any] | None = None) -> list[str]:
    """Apply the CLI's options (and values: settings by name, already parsed, that replace
    what is set: a stack's); returns lines telling the user what took effect and what
    waits."""
    return said(set_settings(ctx, name, options, values))


def said(done: dict) -> list[str]:
    """set_settings' answer as lines for the user."""
    name = done["name"]
    if not done["changed"]:
        return [f"{name}: nothing changed"]
    if not done["running"]:
        return [f"{name}: settings saved; they apply at the next start"]
    messages = [f"{name}: limits and ports applied to the running container"]
    if done["restart_for"]:
        messages.append(f"{name}: restart it for {', '.join(done['restart_for'])} to take "
                        f"effect (nspawnctl restart {name})")
    return messages


def set_settings(ctx: Context, name: str, options: dict[str, Any],
                 values: dict[str, Any] | None = None) -> dict:
    """set_config's work; returns what it did as data (set --json): whether anything
    changed, whether NAME runs (limits and ports applied at once), and the settings it gets
    only at a restart."""
    require_root()
    paths, store = ctx.paths, ctx.store
    with ctx.holding(name), contextlib.ExitStack() as held:
        old = load_config(paths, name)
        new = replace(edit(old, options), **(values or {}))
        if new.auto_update != old.auto_update:
            require_updatable(name, new)
        # only the mounts it adds: one whose source went away since must not block other
        # changes
        added = [v for v in new.volumes if v not in old.volumes]
        check_mounts(paths, (b for b in new.binds
                             if b not in old.binds or not new.private_users),
                     added, new.private_users)
        # the volumes it adds, checked again and held until its settings name them: no
        # volume remove in between (store/volumes.py held_volumes)
        held.enter_context(volumes.held_volumes(paths, (v.name for v in added), ctx.report))
        if new == old:
            # The files already say so, but a `set` killed after writing them may not have
            # reached the running unit or the firewall: roll it forward, it costs little.
            _apply_live(ctx, name, new)
            return {"name": name, "changed": False, "running": is_active(ctx.bus, name),
                    "restart_for": []}
        if dependencies(new) != dependencies(old) or new.wait_healthy != old.wait_healthy:
            order.check(paths, name, new)
        if order.has_health(old) and not order.has_health(new):
            waiting = order.health_dependents(paths, name)
            if waiting:
                raise Conflict(f"{', '.join(waiting)} wait{'s' if len(waiting) == 1 else ''} "
                               f"for {name}'s health at start (:healthy): it keeps its check",
                               hint=f"first: nspawnctl set {waiting[0]} --after {name}")
        bus = ctx.bus
        running = is_active(bus, name)
        live = _record_running(ctx, name, old, new) if running else None
        networked = network.managed(old) or network.managed(new)
        if networked:
            # refuses taken ports and unknown networks; keeps the address it runs with
            network.join(paths, name, new, keep=live.network if live else None)
        save_config(paths, name, new)
        if networked:
            network.ensure_host_unit(paths, ctx.bus)
            network.apply_host(paths)  # published ports change at once
            network.write_all_hosts(paths)
        if not running:
            # The runtime drop-ins of an earlier live `set` override /etc: gone, so the saved
            # settings are what the next start gets.
            store.clear_live_limits(name)
        if new.health_cmd:
            bootunits.install_units(paths)  # a container made before nspawnctl had them
        bus.reload()  # so the unit reads the new drop-ins (limits, restart policy)
        later: list[str] = []
        if running:
            health.follow_settings(bus, name, old, new)
            # Runtime properties make the new limits bite now, without a restart.
            bus.set_unit_properties(service_unit(name), live_properties(new), runtime=True)
            later = list(needs_restart(live or old, new))  # against what runs, not the last set
        if new.health_cmd != old.health_cmd:
            # what another check (or none) found is not this one's: status, list and `wait
            # --for healthy` wait for the new check (the scheduler runs it one interval on)
            health.forget(paths, name)
    return {"name": name, "changed": True, "running": running, "restart_for": later}


def _record_running(ctx: Context, name: str, old: ContainerConfig,
                    new: ContainerConfig) -> ContainerConfig | None:
    """Before saving settings a running container gets only at its next start: record what it
    runs with (settings/running.py), so that list, status and its published ports keep to
    that until the restart.  Returns the settings it runs with (None: the saved ones)."""
    recorded = running_record.read(ctx.paths, name)
    if recorded is None and needs_restart(old, new):
        machine = ctx.bus.machine_properties(name)
        if machine and machine.get("Leader"):
            running_record.record(ctx.paths, name, old, int(machine["Leader"]))
            recorded = running_record.read(ctx.paths, name)
    return recorded.config if recorded else None


def _apply_live(ctx: Context, name: str, cfg) -> None:
    if network.managed(cfg):
        network.apply_host(ctx.paths)
    if is_active(ctx.bus, name):
        ctx.bus.set_unit_properties(service_unit(name), live_properties(cfg), runtime=True)
    elif ctx.store.clear_live_limits(name):
        ctx.bus.reload()
