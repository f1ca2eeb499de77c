"""bus.py without a bus: bytes to str, D-Bus errors to Error, rows to dicts (fake sd-bus)."""

import errno
import types

import pytest
from pystemd.dbusexc import DBusAccessDeniedError, DBusBaseError, DBusError, DBusNoSuchUnitError

from nspawnctl.errors import Error
from nspawnctl.systemd import bus as busmod
from nspawnctl.systemd.bus import Bus, _s, describe, translated, unit_path


def dbus_error(errno_, name: str, message: str):
    """What sd-bus's error reply becomes in pystemd (its own factory picks the class)."""
    return DBusError(-errno_, name.encode(), message.encode())


# _s

def test_s_turns_bytes_into_str_recursively():
    value = [(b"web", b"container", b"systemd-nspawn", b"/org/x"),
             {b"Leader": 42, b"Name": b"web", b"List": [b"a", (b"b", 1)]},
             True, None, 3.5, 7]
    assert _s(value) == [("web", "container", "systemd-nspawn", "/org/x"),
                         {"Leader": 42, "Name": "web", "List": ["a", ("b", 1)]},
                         True, None, 3.5, 7]


def test_s_replaces_undecodable_bytes():
    assert _s(b"caf\xe9") == "caf\ufffd"


def test_unit_path_is_escaped():
    assert unit_path("systemd-nspawn@x.service") == \
        b"/org/freedesktop/systemd1/unit/systemd_2dnspawn_40x_2eservice"


# describe / translated

@pytest.mark.parametrize("exc, message, hint", [
    (dbus_error(errno.ENOENT, "org.freedesktop.systemd1.NoSuchUnit",
                "Unit foo.service not found."), "Unit foo.service not found", None),
    (DBusNoSuchUnitError(-2, b"org.freedesktop.systemd1.NoSuchUnit",
                         b"Unit foo.service not found."), "Unit foo.service not found", None),
    (dbus_error(errno.EACCES, "org.freedesktop.DBus.Error.AccessDenied", "Access denied"),
     "Access denied", "run nspawnctl as root"),
    (dbus_error(errno.EACCES, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                "Interactive authentication required."),
     "Interactive authentication required", "run nspawnctl as root"),
    (dbus_error(errno.EHOSTUNREACH, "org.freedesktop.DBus.Error.ServiceUnknown",
                "The name org.freedesktop.machine1 was not provided by any .service files"),
     "The name org.freedesktop.machine1 was not provided by any .service files",
     busmod.HINTS["org.freedesktop.DBus.Error.ServiceUnknown"]),
    (dbus_error(errno.ENOENT, "org.freedesktop.DBus.Error.FileNotFound",
                "Unit file x.service does not exist."), "Unit file x.service does not exist",
     None),
    (dbus_error(errno.ENXIO, "org.freedesktop.DBus.Error.InvalidArgs",
                "Unit name x y is not valid."), "Unit name x y is not valid", None),
])
def test_describe(exc, message, hint):
    assert isinstance(exc, DBusBaseError)
    assert describe(exc) == (message, hint)


def test_translated_raises_error_with_a_readable_message():
    exc = dbus_error(errno.ENOENT, "org.freedesktop.systemd1.NoSuchUnit",
                     "Unit systemd-nspawn@x.service not found.")
    with pytest.raises(Error) as info:
        with translated("starting systemd-nspawn@x.service"):
            raise exc
    err = info.value
    assert err.message == ("starting systemd-nspawn@x.service: "
                           "Unit systemd-nspawn@x.service not found")
    assert "b'" not in err.message and 'b"' not in err.message
    assert err.__cause__ is exc
    assert err.exit_code == 1


def test_translated_keeps_the_hint():
    with pytest.raises(Error) as info:
        with translated("enabling x"):
            raise DBusAccessDeniedError(-13, b"org.freedesktop.DBus.Error.AccessDenied",
                                        b"Access denied")
    assert info.value.hint == "run nspawnctl as root"


def test_translated_lets_other_exceptions_through():
    with pytest.raises(ValueError):
        with translated("x"):
            raise ValueError("not ours")
    with translated("x"):
        pass


@pytest.mark.parametrize("exc, message", [
    # Errors pystemd has no class for (machined's, most of systemd1's) arrive as DBusBaseError,
    # whose text carries the error name and pystemd's "i bet you did not see that coming".
    (dbus_error(132, "org.freedesktop.systemd1.UnitMasked", "Unit x.service is masked."),
     "Unit x.service is masked"),
    (dbus_error(errno.ENXIO, "org.freedesktop.machine1.NoSuchMachine", "No machine 'x' known"),
     "No machine 'x' known"),
    (dbus_error(errno.EBADR, "org.freedesktop.systemd1.JobTypeNotApplicable",
                "Job type reload is not applicable for unit x.service."),
     "Job type reload is not applicable for unit x.service"),
])
def test_describe_shows_only_the_message_of_an_unmapped_dbus_error(exc, message):
    # str(exc) of a DBusBaseError is "b'org.freedesktop.systemd1.UnitMasked'[err -132]:
    # b'Unit x.service is masked.'\nThis is DBusBaseError, a base error for DBus (...)":
    # describe() shows the user exc.err_message alone, on one line.
    assert type(exc) is DBusBaseError
    got, _hint = describe(exc)
    assert "b'" not in got and 'b"' not in got
    assert "DBusBaseError" not in got and "[err" not in got and "\n" not in got
    assert got == message


@pytest.mark.parametrize("message", [
    "Invalid unit name 'a b'",             # "b'" inside: everything before it is cut off
    "Unit file 'web' does not exist.",     # likewise after a name ending in b
    "No such file 'x'",                    # ends in a quote: rstrip("'\"") eats it
    "No such file 'caf\u00e9'",             # non-ASCII arrives as \\x escapes
])
def test_describe_keeps_the_message_intact(message):
    # The message is exc.err_message decoded, not cut out of the repr of the bytes: "b'"
    # inside it, a quote at its end and non-ASCII text come through unchanged.
    got, _ = describe(dbus_error(errno.ENOENT, "org.freedesktop.DBus.Error.FileNotFound",
                                 message))
    assert got == message.rstrip(".")


# calls through a fake sd-bus connection

class FakeDBus:
    def __init__(self, replies=None, properties=None):
        self.replies = replies or {}
        self.properties = properties or {}
        self.calls = []

    def call_method(self, dest, path, iface, method, args):
        self.calls.append((dest, path, iface, method, args))
        reply = self.replies[method]
        if isinstance(reply, Exception):
            raise reply
        return types.SimpleNamespace(body=reply)

    def get_property(self, dest, path, iface, prop, signature):
        self.calls.append((dest, path, iface, prop, signature))
        reply = self.properties[prop]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def close(self):
        pass


def fake_bus(**kwargs) -> tuple[Bus, FakeDBus]:
    bus = Bus()
    bus._dbus = FakeDBus(**kwargs)
    return bus, bus._dbus


def test_list_units_maps_rows_to_dicts():
    row = (b"systemd-nspawn@web.service", b"Container web", b"loaded", b"active", b"running",
           b"", b"/org/freedesktop/systemd1/unit/x", 0, b"", b"/")
    bus, fake = fake_bus(replies={b"ListUnitsByPatterns": [row]})
    assert bus.list_units(["systemd-nspawn@*.service"]) == [{
        "name": "systemd-nspawn@web.service", "description": "Container web",
        "load_state": "loaded", "active_state": "active", "sub_state": "running"}]
    dest, path, iface, method, args = fake.calls[0]
    assert (dest, path, iface) == (busmod.SYSTEMD, busmod.SYSTEMD_PATH, busmod.MANAGER)
    assert (ord("s"), b"systemd-nspawn@*.service") in args


def test_list_units_of_none():
    bus, _ = fake_bus(replies={b"ListUnitsByPatterns": []})
    assert bus.list_units([]) == []


def test_list_machines_maps_rows_to_dicts():
    rows = [(b"web", b"container", b"systemd-machined", b"/org/freedesktop/machine1/machine/web"),
            (b".host", b"host", b"host", b"/org/freedesktop/machine1/machine/_2ehost")]
    bus, fake = fake_bus(replies={b"ListMachines": rows})
    assert bus.list_machines() == [
        {"name": "web", "class": "container", "service": "systemd-machined",
         "path": "/org/freedesktop/machine1/machine/web"},
        {"name": ".host", "class": "host", "service": "host",
         "path": "/org/freedesktop/machine1/machine/_2ehost"}]
    assert fake.calls[0][:4] == (busmod.MACHINED, busmod.MACHINED_PATH,
                                 busmod.MACHINE_MANAGER, b"ListMachines")
    assert fake.calls[0][4] == []


def test_call_failures_become_error():
    bus, _ = fake_bus(replies={b"ListMachines": dbus_error(
        errno.EHOSTUNREACH, "org.freedesktop.DBus.Error.ServiceUnknown",
        "The name org.freedesktop.machine1 was not provided by any .service files")})
    with pytest.raises(Error) as info:
        bus.list_machines()
    assert info.value.message.startswith("listing machines: The name org.freedesktop.machine1")
    assert "systemd-container" in info.value.hint


def test_machine_path_is_none_for_an_unknown_machine():
    bus, _ = fake_bus(replies={b"GetMachine": dbus_error(
        errno.ENXIO, "org.freedesktop.machine1.NoSuchMachine", "No machine 'x' known")})
    assert bus.machine_path("x") is None


def test_machine_path_of_a_running_machine():
    bus, fake = fake_bus(replies={b"GetMachine": b"/org/freedesktop/machine1/machine/web"})
    assert bus.machine_path("web") == "/org/freedesktop/machine1/machine/web"
    assert fake.calls[0][4] == [(ord("s"), b"web")]


def test_machine_path_other_errors_are_errors():
    bus, _ = fake_bus(replies={b"GetMachine": dbus_error(
        errno.EACCES, "org.freedesktop.DBus.Error.AccessDenied", "Access denied")})
    with pytest.raises(Error) as info:
        bus.machine_path("web")
    assert info.value.message == "looking up machine web: Access denied"
    assert info.value.hint == "run nspawnctl as root"


def test_machine_addresses():
    bus, _ = fake_bus(replies={b"GetMachineAddresses": [
        (2, [10, 0, 0, 2]), (10, [0xfe, 0x80] + [0] * 13 + [1])]})
    assert bus.machine_addresses("web") == ["10.0.0.2", "fe80::1"]


def test_properties():
    bus, fake = fake_bus(properties={b"ActiveState": b"active", b"Job": (0, b"/")})
    assert bus.active_state("systemd-nspawn@web.service") == "active"
    assert bus.has_job("systemd-nspawn@web.service") is False
    assert fake.calls[0][1] == unit_path("systemd-nspawn@web.service")
    bus, _ = fake_bus(properties={b"Job": (7, b"/org/freedesktop/systemd1/job/7")})
    assert bus.has_job("u") is True


def test_kill_and_start_send_their_arguments():
    bus, fake = fake_bus(replies={b"KillUnit": None, b"StartUnit": b"/job/1"})
    bus.kill_unit("u.service", 9)
    assert fake.calls[-1][3:] == (b"KillUnit", [(ord("s"), b"u.service"), (ord("s"), b"all"),
                                                (ord("i"), 9)])
    assert bus.start_unit("u.service") == "/job/1"
    assert fake.calls[-1][4] == [(ord("s"), b"u.service"), (ord("s"), b"replace")]


def test_connecting_without_a_bus(monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
    with pytest.raises(Error) as info:
        with Bus():
            pass
    assert info.value.message.startswith("cannot connect to the system bus")
    assert "b'" not in info.value.message and "\n" not in info.value.message


# a connection the bus daemon dropped

class DroppingDBus(FakeDBus):
    """Fails every call with `errno_` until it is closed (the bus had dropped it)."""

    def __init__(self, errno_=errno.ENOTCONN, **kwargs):
        super().__init__(**kwargs)
        self.errno_ = errno_

    def call_method(self, dest, path, iface, method, args):
        self.calls.append(method)
        raise DBusError(-self.errno_, b"", b"")

    def get_property(self, dest, path, iface, prop, signature):
        self.calls.append(prop)
        raise DBusError(-self.errno_, b"", b"")


def reconnecting_bus(dropped: FakeDBus) -> tuple[Bus, list]:
    bus, opened = Bus(), []
    bus._dbus = dropped

    def reopen():
        bus._dbus = FakeDBus(replies={b"LoadUnit": b"/u", b"StartUnit": b"/job",
                                      b"GetMachine": b"/org/freedesktop/machine1/machine/web"},
                             properties={b"ActiveState": b"active"})
        opened.append(bus._dbus)
    bus._open = reopen
    return bus, opened


def test_a_read_is_sent_again_on_a_new_connection_when_the_bus_dropped_the_old_one():
    bus, opened = reconnecting_bus(DroppingDBus())
    assert bus.active_state("systemd-nspawn@web.service") == "active"
    assert len(opened) == 1


def test_the_machine_lookup_start_polls_is_sent_again_too():
    bus, opened = reconnecting_bus(DroppingDBus())
    assert bus.machine_path("web") == "/org/freedesktop/machine1/machine/web"
    assert len(opened) == 1


def test_a_call_that_changes_something_is_not_repeated():
    bus, opened = reconnecting_bus(DroppingDBus())
    with pytest.raises(Error, match="Transport endpoint is not connected"):
        bus.start_unit("systemd-nspawn@web.service")
    assert opened == []


def test_other_errors_of_a_read_are_not_retried():
    bus, opened = reconnecting_bus(DroppingDBus(errno_=errno.EACCES))
    with pytest.raises(Error):
        bus.active_state("systemd-nspawn@web.service")
    assert opened == []
