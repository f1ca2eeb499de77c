"""Holding a container stopped while nspawnctl replaces its tree (rollback, upgrade, a
snapshot that stops the container for its copy).

nspawnctl's lock keeps other nspawnctl commands out, not systemd: a container that requires
this one, `machinectl start` or `systemctl start` would start it from the tree about to be
replaced, and the swap would leave it running from a deleted tree.  A hold is a file named
after the container in /run/nspawnctl/holds (paths.holds), and every container's drop-in
asserts that it is absent (units/container-settings.conf): while it exists, a start of the
unit fails ("Assertion failed"), and so does the start of anything that requires it.

A stop of the unit also stops the units that require it (systemd's Requires=): the caller asks
`running_dependents` first and starts them again once the container runs
(runtime.snapshot.restart_dependents).

/run is emptied at boot, so no hold outlives one; the file names its owner (PID and boot), and
a hold whose command was killed is dropped by the next start, upgrade, rollback or recover of
the container (`drop_stale`).
"""

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import Conflict, Error
from ..fs.files import read_small_text, write_atomic
from ..fs.locks import owner_is_dead, owner_token
from ..paths import Paths, service_unit
from ..settings.dropin import DROPIN_NAME
from ..settings.files import load_config, save_config

if TYPE_CHECKING:
    from ..systemd.bus import Bus

_held: set[str] = set()  # names this process holds: an inner hold of the same name is a no-op


@contextlib.contextmanager
def hold(paths: Paths, bus: "Bus", name: str) -> Iterator[None]:
    """Keep systemd from starting NAME for the with-block (the caller holds NAME's lock)."""
    if name in _held:
        yield
        return
    path = paths.holds / name
    drop_stale(paths, name)
    _make_unit_assert(paths, bus, name)
    write_atomic(path, owner_token() + "\n", mode=0o644)
    _held.add(name)
    try:
        yield
    finally:
        _held.discard(name)
        path.unlink(missing_ok=True)


def drop_stale(paths: Paths, name: str) -> bool:
    """Remove NAME's hold if the command that made it is gone; True if it did."""
    path = paths.holds / name
    if not os.path.lexists(path):
        return False
    try:
        dead = owner_is_dead((read_small_text(path, "hold", limit=256) or "").strip())
    except (Error, ValueError):
        dead = True  # not a hold this code wrote whole
    if dead:
        path.unlink(missing_ok=True)
    return dead


def is_held(paths: Paths, name: str) -> bool:
    return os.path.lexists(paths.holds / name)


def _make_unit_assert(paths: Paths, bus: "Bus", name: str):
    """Make sure the unit systemd runs asserts NAME's hold is absent: a container made before
    holds existed gets its drop-in written anew, and systemd reloads it."""
    unit = service_unit(name)
    want = str(paths.holds / name)
    if want in bus.unit_asserts(unit):
        return
    dropin = paths.dropin_dir(name) / DROPIN_NAME
    if want not in (read_small_text(dropin, f"{name}'s unit drop-in") or ""):
        save_config(paths, name, load_config(paths, name))
    bus.reload()
    if want not in bus.unit_asserts(unit):
        raise Error(f"cannot hold {name} stopped: its unit does not assert {want} is absent",
                    hint=f"is {dropin} in place? see: systemctl cat {unit}")


SETTLE = 10.0  # seconds a job of the held unit is given to end before require_stopped judges


def require_stopped(bus: "Bus", name: str, settle: float = SETTLE):
    """Before a swap: NAME is still stopped (a start that came before the hold could have
    slipped in).  A start job still queued (behind the stop, say) is waited for, up to
    settle seconds, not taken for a start: it runs after the hold was made, so its
    assertion fails it; one that ran before the hold left the unit active, and that is
    refused."""
    unit = service_unit(name)
    deadline = time.monotonic() + settle
    while bus.has_job(unit) and time.monotonic() < deadline:
        time.sleep(0.05)
    if bus.active_state(unit) not in ("inactive", "failed") or bus.has_job(unit):
        raise Conflict(f"{name} was started while nspawnctl was about to replace its tree; "
                       "nothing was replaced", hint=f"stop it and try again: nspawnctl stop {name}")


def running_dependents(bus: "Bus", name: str) -> list[str]:
    """The running units a stop of NAME's unit stops too (they require it or are bound to
    it), to be started again after."""
    return [u for u in bus.unit_dependents(service_unit(name))
            if bus.active_state(u) in ("active", "activating", "reloading")]

