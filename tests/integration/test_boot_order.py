"""Issue 13 on the real systemd: containers ordered with --requires/--after start in order at
boot and on `nspawnctl start`, a stop of a required one stops those that need it, every unit
nspawnctl writes passes `systemd-analyze verify`, and the boot-time recovery has run before
any container starts."""

import json

import pytest

from tests.integration.helpers import guest_running, listing, wait_for

pytestmark = pytest.mark.integration


def unit_times(host, unit: str) -> dict:
    r = host.run(["systemctl", "show", unit, "-p", "ActiveState",
                  "-p", "ActiveEnterTimestampMonotonic", "-p", "ExecMainStartTimestampMonotonic",
                  "-p", "InactiveExitTimestampMonotonic"])
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def started_in_order(host, first: str, then: str):
    """`then`'s unit left inactive only once `first`'s was active (After= honoured)."""
    a = unit_times(host, f"systemd-nspawn@{first}.service")
    b = unit_times(host, f"systemd-nspawn@{then}.service")
    assert a["ActiveState"] == "active" and b["ActiveState"] == "active", (a, b)
    assert 0 < int(a["ActiveEnterTimestampMonotonic"]) <= int(b["InactiveExitTimestampMonotonic"]), \
        (a, b)


def test_requires_starts_in_order_and_stops_together(host, nspawnctl, made):
    db = made("ord-db", "--network", "none")
    web = made("ord-web", "--network", "none", "--requires", db)
    info = json.loads(nspawnctl("status", web, "--json").stdout)
    assert info["requires"] == [db] and info["after"] == [db]  # requiring implies after
    assert listing(nspawnctl)[web]["requires"] == [db]
    # a start of web starts db first
    nspawnctl("start", web)
    started_in_order(host, db, web)
    # a stop of db stops web
    nspawnctl("stop", db)
    wait_for(lambda: listing(nspawnctl)[web]["state"] == "stopped", timeout=30,
             what=f"{web} to stop with {db}")


def test_order_holds_at_boot(host, nspawnctl, made):
    if not host.can_reboot:
        pytest.skip("only the testbed can be rebooted from a test")
    db = made("boot-db", "--network", "none")
    web = made("boot-web", "--network", "none", "--requires", db)
    nspawnctl("enable", web, db)
    host.reboot()
    for name in (db, web):
        wait_for(lambda n=name: guest_running(host, n), timeout=60, what=f"{name} to boot")
    started_in_order(host, db, web)
    # the recovery ran at this boot, before them
    recover = unit_times(host, "nspawnctl-recover.service")
    assert recover["ActiveState"] == "active"
    assert int(recover["ActiveEnterTimestampMonotonic"]) <= int(
        unit_times(host, f"systemd-nspawn@{db}.service")["InactiveExitTimestampMonotonic"])
    nspawnctl("disable", web, db)
    nspawnctl("stop", web, db)


def test_order_refuses_unknown_names_cycles_and_orphans(nspawnctl, made):
    a = made("cyc-a", "--network", "none")
    b = made("cyc-b", "--network", "none", "--after", a)
    r = nspawnctl.fails("set", a, "--requires", b)
    assert r.error == f"nspawnctl: ordering {a} after {b} makes a cycle: {a} -> {b} -> {a}"
    r = nspawnctl.fails("create", "cyc-c", "--network", "none", "--requires", "no-such")
    assert "no container named 'no-such'" in r.error
    assert "cyc-c" not in listing(nspawnctl)
    r = nspawnctl.fails("remove", a)
    assert f"{b} is ordered after {a}" in r.error
    nspawnctl("set", b, "--no-after", a)
    assert listing(nspawnctl)[b]["after"] == []
    nspawnctl("set", b, "--after", a)
    nspawnctl("remove", b, a)  # both at once: nothing is orphaned
    assert not {a, b} & set(listing(nspawnctl))


def test_every_unit_nspawnctl_writes_passes_systemd_analyze_verify(host, nspawnctl, made):
    db = made("ver-db", "--network", "none")
    web = made("ver-web", "--memory", "256M", "--cpus", "0.5", "--tasks", "99",
               "--restart", "on-failure", "--requires", db, "--after", db, "--port", "8089:80")
    ov = made("ver-ov", "--overlay", "--network", "none")
    units = host.run(["sh", "-c", "ls /etc/systemd/system/*.mount "
                      "/etc/systemd/system/nspawnctl-*.service"]).stdout.split()
    assert "/etc/systemd/system/nspawnctl-recover.service" in units
    assert "/etc/systemd/system/nspawnctl-network.service" in units
    assert any(u.endswith(".mount") and "ver\\x2dov" in u for u in units), units
    # the instances with every drop-in nspawnctl writes (settings, network, the template's)
    units += [f"systemd-nspawn@{n}.service" for n in (db, web, ov)]
    r = host.run(["systemd-analyze", "verify", "--man=no", *units])
    assert r.returncode == 0, str(r)
    noise = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert noise == [], str(r)
