"""The only module that speaks D-Bus: systemd1 and machine1 through pystemd.

One connection per command: runtime.Context opens it at the first call that needs it and
closes it at the end (a Bus is also a context manager, `with Bus() as bus:`).  Methods take
and return str; pystemd's bytes stay in here.  Every D-Bus failure becomes nspawnctl's Error
with a readable message, so callers never see a pystemd exception.

Calls go straight to sd-bus with known signatures instead of through pystemd's introspecting
objects: introspection costs a round trip and an XML parse per object, and `list` touches many.
"""

import contextlib
import errno
import importlib.util
import os
import sys
import types
from collections.abc import Sequence

from ..errors import Error
from ..paths import Paths


def _import_pystemd_lightly():
    """Make `import pystemd.X` skip pystemd/__init__.py.

    That file imports all of pystemd's interface classes, and lxml for their introspection,
    none of which nspawnctl uses: 40-80 ms of every command that touches the bus, more than
    the calls themselves.  An empty package whose __path__ is pystemd's directory lets
    pystemd.dbuslib and the rest import as usual.
    """
    if "pystemd" in sys.modules:
        return
    spec = importlib.util.find_spec("pystemd")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the first real import says so
    package = types.ModuleType("pystemd")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["pystemd"] = package


_import_pystemd_lightly()

SYSTEMD = b"org.freedesktop.systemd1"
SYSTEMD_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SERVICE = b"org.freedesktop.systemd1.Service"
MACHINED = b"org.freedesktop.machine1"
MACHINED_PATH = b"/org/freedesktop/machine1"
MACHINE_MANAGER = b"org.freedesktop.machine1.Manager"
MACHINE = b"org.freedesktop.machine1.Machine"
PROPERTIES = b"org.freedesktop.DBus.Properties"

# Error names from D-Bus that have a better explanation than their text.
HINTS = {
    "org.freedesktop.DBus.Error.AccessDenied": "run nspawnctl as root",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": "run nspawnctl as root",
    "org.freedesktop.DBus.Error.ServiceUnknown":
        "is systemd-machined installed? apt-get install systemd-container",
}


def _s(value):
    """bytes from pystemd -> str, recursively."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_s(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_s(v) for v in value)
    if isinstance(value, dict):
        return {_s(k): _s(v) for k, v in value.items()}
    return value


def _b(value: str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def unit_path(unit: str) -> bytes:
    from pystemd.dbuslib import path_encode
    return path_encode(b"/org/freedesktop/systemd1/unit", _b(unit))


def describe(exc: Exception) -> tuple[str, str | None]:
    """(message, hint) for a pystemd D-Bus exception.

    pystemd keeps the D-Bus error's name and text as bytes on the exception; its str() wraps
    them in reprs and boilerplate, so read the raw parts instead.
    """
    name = _s(getattr(exc, "err_name", None) or b"")
    message = _s(getattr(exc, "err_message", None) or b"").strip().rstrip(".")
    if not message:
        code = getattr(exc, "errno", 0) or 0
        message = os.strerror(abs(code)) if code else type(exc).__name__
    hint = HINTS.get(name)
    if hint is None:
        hint = next((h for n, h in HINTS.items() if n.rsplit(".", 1)[-1] in type(exc).__name__),
                    None)
    return message, hint


@contextlib.contextmanager
def translated(what: str):
    """Turn pystemd's D-Bus exceptions raised inside into Error('WHAT: reason')."""
    from pystemd.dbusexc import DBusBaseError
    try:
        yield
    except DBusBaseError as exc:
        message, hint = describe(exc)
        raise Error(f"{what}: {message}", hint=hint) from exc


# Methods that only read, which Bus.call sends again on a new connection when the bus had
# dropped the old one (Bus._read; property reads and machine_path go through it too); and the
# errors that mean it did.
_READS = frozenset({b"LoadUnit", b"GetAll", b"ListUnitsByPatterns", b"ListMachines",
                    b"GetMachineAddresses"})
_DROPPED = frozenset({errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE})


class Bus:
    """One connection to the system bus (or DBUS_SYSTEM_BUS_ADDRESS, as sd-bus honours)."""

    def __init__(self):
        self._dbus = None

    def __enter__(self):
        self._open()
        return self

    def _open(self):
        if Paths.from_env().relocated:
            # The units systemd runs are the machine's own: under NSPAWNCTL_ROOT the files
            # nspawnctl reads and writes are not theirs, so start, stop, set or a reload there
            # would act on the host's containers of the same names.
            raise Error("systemd is not asked about containers under a relocated root "
                        "(NSPAWNCTL_ROOT): its units are the whole machine's",
                        hint="unset NSPAWNCTL_ROOT")
        from pystemd.dbuslib import DBus
        self._dbus = DBus()
        with translated("cannot connect to the system bus"):
            try:
                self._dbus.open()
            except OSError as exc:  # no socket at all: not a systemd host
                raise Error(f"cannot connect to the system bus: {exc.strerror or exc}",
                            hint="nspawnctl needs a host running systemd") from exc

    def __exit__(self, *exc):
        self._dbus.close()

    # low level

    def _read(self, what: str, send):
        """send() a call that only reads; once more on a new connection if the bus had dropped
        this one.  On a host overloaded for many minutes the bus daemon can drop a client (seen
        once: one of 50 `start --wait` polling through 50 first starts at once under emulation
        got ENOTCONN); a read is safe to repeat, a call that changes something is not."""
        from pystemd.dbusexc import DBusBaseError
        with translated(what):
            try:
                return send()
            except DBusBaseError as exc:
                if abs(getattr(exc, "errno", 0) or 0) not in _DROPPED:
                    raise
            self._dbus.close()
            self._open()
            return send()

    def call(self, dest, path, iface, method, signature=b"", args=(), what=None):
        from pystemd.dbuslib import apply_signature
        call_args = apply_signature(signature, list(map(_b, args))) if signature else []

        def send():
            return _s(self._dbus.call_method(dest, path, iface, method, call_args).body)
        if method in _READS:
            return self._read(what or method.decode(), send)
        with translated(what or method.decode()):
            return send()

    def get(self, dest, path, iface, prop: str, signature: bytes, what=None):
        return self._read(what or f"reading {prop}", lambda: _s(
            self._dbus.get_property(dest, path, iface, _b(prop), signature)))

    def get_all(self, dest, path, iface, what=None) -> dict:
        return self.call(dest, path, PROPERTIES, b"GetAll", b"s", [iface], what=what)

    # systemd1

    def list_units(self, patterns=()) -> list[dict]:
        rows = self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"ListUnitsByPatterns", b"asas",
                         [[], [_b(p) for p in patterns]], what="listing units")
        keys = ("name", "description", "load_state", "active_state", "sub_state")
        return [dict(zip(keys, row)) for row in rows]

    def unit_properties(self, unit: str, iface=UNIT) -> dict:
        # LoadUnit makes sure the object exists even for units systemd has not loaded yet.
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"LoadUnit", b"s", [unit], what=unit)
        return self.get_all(SYSTEMD, unit_path(unit), iface, what=unit)

    def unit_property(self, unit: str, prop: str, signature: bytes, iface=UNIT):
        return self.get(SYSTEMD, unit_path(unit), iface, prop, signature, what=unit)

    def active_state(self, unit: str) -> str:
        return self.unit_property(unit, "ActiveState", b"s")

    def is_active(self, unit: str) -> bool:
        """Running, or about to: a queued start job counts (its unit is still inactive)."""
        return self.active_state(unit) in ("active", "activating", "reloading") \
            or self.has_job(unit)

    def has_job(self, unit: str) -> bool:
        """Whether systemd still has a job queued or running for unit."""
        job_id, _path = self.unit_property(unit, "Job", b"(uo)")
        return job_id != 0

    def unit_asserts(self, unit: str) -> list[str]:
        """The paths unit's loaded Assert*= settings name (as systemd read them)."""
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"LoadUnit", b"s", [unit], what=unit)
        return [param for _kind, _trigger, _negate, param, _state
                in self.unit_property(unit, "Asserts", b"a(sbbsi)")]

    def unit_dependents(self, unit: str) -> list[str]:
        """The units a stop of unit stops too: those that require it or are bound to it."""
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"LoadUnit", b"s", [unit], what=unit)
        return [*self.unit_property(unit, "RequiredBy", b"as"),
                *self.unit_property(unit, "BoundBy", b"as")]

    def start_unit(self, unit: str) -> str:
        return self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"StartUnit", b"ss",
                         [unit, "replace"], what=f"starting {unit}")

    def stop_unit(self, unit: str) -> str:
        return self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"StopUnit", b"ss",
                         [unit, "replace"], what=f"stopping {unit}")

    def restart_unit(self, unit: str) -> str:
        return self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"RestartUnit", b"ss",
                         [unit, "replace"], what=f"restarting {unit}")

    def kill_unit(self, unit: str, signal: int, who: str = "all"):
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"KillUnit", b"ssi", [unit, who, signal],
                  what=f"killing {unit}")

    def reset_failed(self, unit: str):
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"ResetFailedUnit", b"s", [unit],
                  what=f"resetting {unit}")

    def set_unit_properties(self, unit: str, properties: Sequence[tuple[str, object]],
                            runtime: bool = True):
        from pystemd.systemd1 import Manager
        manager = Manager(bus=self._dbus)
        with translated(f"setting properties of {unit}"):
            manager.SetUnitProperties(MANAGER, _b(unit), runtime,
                                      {_b(k): v for k, v in properties})

    def freeze_unit(self, unit: str) -> str | None:
        """Freeze every process of unit (cgroup v2's freezer); returns None once frozen, else
        systemd's reason why it cannot (no unified cgroup hierarchy, not running, ...)."""
        from pystemd.dbusexc import DBusBaseError
        try:
            self._dbus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"FreezeUnit",
                                   [(ord("s"), _b(unit))])
        except DBusBaseError as exc:
            return describe(exc)[0]
        return None

    def thaw_unit(self, unit: str):
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"ThawUnit", b"s", [unit],
                  what=f"thawing {unit}")

    def reload(self):
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"Reload", what="reloading systemd")

    def enable_units(self, units: list[str]):
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"EnableUnitFiles", b"asbb",
                  [[_b(u) for u in units], False, True], what="enabling " + " ".join(units))

    def disable_units(self, units: list[str]):
        self.call(SYSTEMD, SYSTEMD_PATH, MANAGER, b"DisableUnitFiles", b"asb",
                  [[_b(u) for u in units], False], what="disabling " + " ".join(units))

    # machine1

    def list_machines(self) -> list[dict]:
        rows = self.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, b"ListMachines",
                         what="listing machines")
        return [dict(zip(("name", "class", "service", "path"), row)) for row in rows]

    def machine_path(self, name: str) -> str | None:
        """Object path of a registered machine, or None when machined does not know it.
        A read like the others (start polls it), so it is sent again on a dropped connection."""
        from pystemd.dbusexc import DBusBaseError

        def send():
            try:
                return _s(self._dbus.call_method(MACHINED, MACHINED_PATH, MACHINE_MANAGER,
                                                 b"GetMachine", [(ord("s"), _b(name))]).body)
            except DBusBaseError as exc:
                if "NoSuchMachine" in _s(getattr(exc, "err_name", None) or b"") \
                        or "NoSuchMachine" in type(exc).__name__:
                    return None
                raise
        return self._read(f"looking up machine {name}", send)

    def machine_properties(self, name: str) -> dict | None:
        path = self.machine_path(name)
        if path is None:
            return None
        return self.get_all(MACHINED, _b(path), MACHINE, what=f"machine {name}")

    def machine_addresses(self, name: str) -> list[str]:
        import ipaddress
        rows = self.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, b"GetMachineAddresses",
                         b"s", [name], what=f"reading addresses of {name}")
        return [str(ipaddress.ip_address(bytes(addr))) for _family, addr in rows]

    def open_machine_pty(self, name: str) -> tuple[int, str]:
        """A new pseudo-terminal inside machine NAME (machined opens it in the container's
        namespaces): our own descriptor of its master, and the slave's path as the
        container names it (/dev/pts/N).  The caller closes the descriptor."""
        with translated(f"opening a terminal in {name}"):
            reply = self._dbus.call_method(MACHINED, MACHINED_PATH, MACHINE_MANAGER,
                                           b"OpenMachinePTY", [(ord("s"), _b(name))])
            fd, path = reply.body
            # The message owns its descriptor, and closes it when it goes.
            return os.dup(fd), _s(path)

    def kill_machine(self, name: str, who: str, signal_number: int, what: str | None = None):
        self.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, b"KillMachine", b"ssi",
                  [name, who, signal_number], what=what or f"killing {name}")


def guest_state(name: str) -> str | None:
    """SystemState of the container's own systemd (running, degraded, ...), over the
    container's bus through machined; None while that bus is not up yet."""
    from pystemd.dbuslib import DBusMachine
    try:
        with DBusMachine(name.encode()) as guest:
            return guest.get_property(SYSTEMD, SYSTEMD_PATH, MANAGER, b"SystemState",
                                      b"s").decode()
    except Exception:  # not reachable yet: dbus inside is still starting
        return None
