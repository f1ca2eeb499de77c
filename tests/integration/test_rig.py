"""The rig itself: a booted systemd with machined on D-Bus, reached through nspawnctl's bus
layer inside it, and a hand-made container booted by machinectl and seen over machine1."""

import json
import textwrap
import time

import pytest

pytestmark = pytest.mark.integration

PY = "/opt/nspawnctl/bin/python"


def py(host, code: str):
    """Run Python with nspawnctl importable, inside the systemd host."""
    return host.run([PY, "-c", textwrap.dedent(code)])


def test_host_runs_systemd_and_machined(host):
    r = host.run(["systemctl", "is-system-running"])
    assert r.stdout.strip() in ("running", "degraded"), str(r)
    r = host.run(["systemctl", "is-active", "dbus.service"])
    assert r.stdout.strip() == "active"


def test_bus_lists_units_and_machines(host):
    r = py(host, """
        import json
        from nspawnctl.systemd.bus import Bus
        with Bus() as bus:
            units = bus.list_units(["*.target"])
            machines = bus.list_machines()
        print(json.dumps({"units": units, "machines": machines}))
    """)
    assert r.returncode == 0, str(r)
    data = json.loads(r.stdout)
    by_name = {u["name"]: u for u in data["units"]}
    assert by_name["multi-user.target"]["active_state"] == "active"
    assert all(isinstance(u["name"], str) for u in data["units"])  # str out, not bytes
    assert isinstance(data["machines"], list)


def make_handmade_tree(host, name):
    """A bootable tree without debootstrap: the host's own /usr and /etc (usr-merged)."""
    script = f"""
        set -e
        t=/var/lib/machines/{name}
        rm -rf "$t"; mkdir -p "$t"
        cp -a --reflink=auto /usr /etc "$t"/
        for d in bin sbin lib lib64; do [ -L /$d ] && ln -s "$(readlink /$d)" "$t/$d"; done
        mkdir -p "$t"/var/lib "$t"/var/log "$t"/tmp "$t"/root "$t"/proc "$t"/sys "$t"/dev "$t"/run
        : > "$t"/etc/machine-id
        echo {name} > "$t"/etc/hostname
    """
    r = host.run(["sh", "-c", textwrap.dedent(script)])
    assert r.returncode == 0, str(r)


def test_handmade_tree_boots_and_machine1_sees_it(host):
    name = "handmade"
    make_handmade_tree(host, name)
    try:
        r = host.run(["machinectl", "start", name])
        assert r.returncode == 0, str(r)
        code = f"""
            import json, time
            from nspawnctl.systemd.bus import Bus
            from nspawnctl.systemd.bus import guest_state
            deadline = time.monotonic() + 60
            with Bus() as bus:
                while time.monotonic() < deadline:
                    props = bus.machine_properties({name!r})
                    state = guest_state({name!r}) if props else None
                    if state in ("running", "degraded"):
                        break
                    time.sleep(0.1)
                unit = bus.active_state("systemd-nspawn@{name}.service")
                names = [m["name"] for m in bus.list_machines()]
            print(json.dumps({{"state": state, "unit": unit, "machines": names,
                               "leader": props and props["Leader"],
                               "service": props and props["Unit"]}}))
        """
        r = py(host, code)
        assert r.returncode == 0, str(r)
        seen = json.loads(r.stdout)
        assert seen["state"] in ("running", "degraded"), seen
        assert seen["unit"] == "active"
        assert name in seen["machines"]
        assert seen["service"] == f"systemd-nspawn@{name}.service"
        assert seen["leader"] > 1
    finally:
        host.run(["machinectl", "terminate", name])
        for _ in range(100):
            if host.run(["machinectl", "status", name]).returncode != 0:
                break
            time.sleep(0.1)
        host.run(["rm", "-rf", f"/var/lib/machines/{name}"])


def test_dbus_failure_is_a_clear_error(host):
    r = py(host, """
        from nspawnctl.systemd.bus import Bus
        from nspawnctl.errors import Error
        with Bus() as bus:
            try:
                bus.start_unit("no-such-unit-xyz.service")
            except Error as e:
                print("ERROR:", e.message)
    """)
    assert r.returncode == 0, str(r)
    assert r.stdout.startswith("ERROR: starting no-such-unit-xyz.service:"), r.stdout
    assert "not found" in r.stdout
    assert "b'" not in r.stdout  # pystemd's bytes stay inside bus.py


def test_cli_reports_bus_failure_in_one_line(host, nspawnctl):
    # No system bus at that address: one line from nspawnctl, no traceback.
    r = host.run(["nspawnctl", "list"],
                 env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    assert r.returncode == 1, str(r)
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("nspawnctl: cannot connect to the system bus"), r.stderr
