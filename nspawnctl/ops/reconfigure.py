"""`set`: change a container's settings, applying resource limits live when it runs."""

import dataclasses

from ..paths import Paths, service_unit
from ..settings.model import live_properties, needs_restart
from ..settings.files import load_config, save_config
from ..store.containers import Store
from ..systemd.bus import Bus
from .common import require_root
from .lifecycle import is_active


def set_config(paths: Paths, name: str, changes: dict) -> list[str]:
    """Apply changes; returns lines telling the user what took effect and what waits."""
    require_root()
    store = Store(paths)
    store.require(name)
    messages = []
    with store.lock(name):
        store.require(name)  # again: a remove may have finished while we looked
        old = load_config(paths, name)
        new = dataclasses.replace(old, **changes)
        if new == old:
            return [f"{name}: nothing changed"]
        save_config(paths, name, new)
        with Bus() as bus:
            bus.reload()  # so the unit reads the new drop-in (limits, restart policy)
            if is_active(bus, name):
                # Runtime properties make the new limits bite now, without a restart.
                bus.set_unit_properties(service_unit(name), live_properties(new), runtime=True)
                messages.append(f"{name}: limits applied to the running container")
                later = needs_restart(old, new)
                if later:
                    messages.append(f"{name}: restart it for {', '.join(later)} to take effect "
                                    f"(nspawnctl restart {name})")
            else:
                messages.append(f"{name}: settings saved; they apply at the next start")
    return messages
