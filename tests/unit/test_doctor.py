"""doctor: every check on a fake good host and a fake bad one (files under a root prefix, the
ruleset and the bus from callables); nothing on this machine is read or changed."""

import json
import os
import socket
import sys

import pytest

from nspawnctl.errors import Error
from nspawnctl.network.firewall import forward_fix
from nspawnctl.ops import doctor
from nspawnctl.ops.doctor import ERROR, WARNING, Probe, failed, run_checks, to_json
from nspawnctl.paths import Paths

GOOD_FILES = {
    "proc/1/comm": "systemd\n",
    "proc/self/mounts": "/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\n"
                        "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
    "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
    "proc/filesystems": "nodev\tsysfs\nnodev\tproc\n\text4\nnodev\toverlay\n",
    "proc/sys/kernel/osrelease": "6.1.0-13-amd64\n",
    "proc/sys/fs/inotify/max_user_instances": "4096\n",
    "proc/sys/fs/inotify/max_user_watches": "524288\n",
    "proc/sys/net/ipv4/ip_forward": "1\n",
}


def chain(family, table, name, hook="forward", policy="drop"):
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1,
                      "type": "filter", "hook": hook, "prio": 0, "policy": policy}}


def accept_rule(family, table, chain_name, key="iifname"):
    return {"rule": {"family": family, "table": table, "chain": chain_name, "handle": 9,
                     "expr": [{"match": {"op": "==", "left": {"meta": {"key": key}},
                                         "right": "nsc-*"}}, {"accept": None}]}}


META = {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5",
                     "json_schema_version": 1}}
# nspawnctl's own table drops by default in forward: that is its isolation, not a blocker.
GOOD_RULESET = {"nftables": [META, {"table": {"family": "inet", "name": "nspawnctl"}},
                             chain("inet", "nspawnctl", "forward"),
                             chain("inet", "filter", "forward", policy="accept")]}
# What Docker leaves through iptables-nft.
DOCKER_RULESET = {"nftables": [META, {"table": {"family": "ip", "name": "filter"}},
                               chain("ip", "filter", "FORWARD"),
                               chain("ip", "filter", "INPUT", hook="input", policy="accept")]}


def make_probe(tmp_path, files=None, **overrides):
    for rel, text in {**GOOD_FILES, **(files or {})}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "run/systemd/system").mkdir(parents=True, exist_ok=True)
    defaults = {"root": tmp_path, "ruleset": lambda: GOOD_RULESET, "legacy_rules": _never,
                "which": lambda name: f"/usr/sbin/{name}", "importable": lambda module: True,
                "free_bytes": lambda path: 20 << 30, "bus_reachable": lambda path: True,
                "environ": {}, "nspawn_version": lambda: 252}
    return Probe(**{**defaults, **overrides})


def _never():
    raise AssertionError("legacy rules read although no legacy table exists")


def paths(tmp_path):
    return Paths(machines=tmp_path / "var/lib/machines", nspawn=tmp_path / "n",
                 units=tmp_path / "u", state=tmp_path / "s", cache=tmp_path / "c")


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_good_host_passes_every_check(tmp_path):
    checks = run_checks(paths(tmp_path), make_probe(tmp_path))
    assert [c for c in checks if not c.ok] == []
    assert not failed(checks)
    assert set(by_name(checks)) == {"systemd", "system bus", "cgroups", "overlayfs",
                                    "idmapped mounts", "idmapped binds", "disk space", "inotify instances",
                                    "inotify watches",
                                    "ip forwarding", "firewall", "forward chains",
                                    "directory modes"}
    report = to_json(checks)
    assert report["ok"] is True and json.loads(json.dumps(report)) == report
    assert report["checks"][0] == {"name": "systemd", "ok": True, "severity": ERROR,
                                   "message": "PID 1 is systemd", "fix": None}


def test_a_bad_host_forwarding_off_forward_drop_inotify_128(tmp_path):
    probe = make_probe(tmp_path, {"proc/sys/net/ipv4/ip_forward": "0\n",
                                  "proc/sys/fs/inotify/max_user_instances": "128\n"},
                       ruleset=lambda: DOCKER_RULESET)
    checks = by_name(run_checks(paths(tmp_path), probe))
    fwd = checks["ip forwarding"]
    assert (fwd.ok, fwd.severity) == (False, ERROR)
    assert fwd.fix == ("echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/60-nspawnctl-ip-forward"
                       ".conf && sysctl -p /etc/sysctl.d/60-nspawnctl-ip-forward.conf")
    drop = checks["forward chain ip filter FORWARD"]
    assert (drop.ok, drop.severity) == (False, ERROR)
    assert "table ip filter chain FORWARD drops forwarded packets" in drop.message
    assert drop.fix == forward_fix("ip", "filter", "FORWARD")  # one place says the fix
    assert "nsc-" in drop.fix and "accept" in drop.fix.lower()
    ino = checks["inotify instances"]
    assert (ino.ok, ino.severity) == (False, WARNING)
    assert "= 128: about 16 booted containers fit" in ino.message
    # the fix installs the drop-in nspawnctl ships, which sets what the check wants
    assert ino.fix.startswith("install -m 0644 ")
    assert ino.fix.endswith("/60-nspawnctl.conf /etc/sysctl.d/60-nspawnctl.conf && "
                            "/lib/systemd/systemd-sysctl /etc/sysctl.d/60-nspawnctl.conf")
    assert doctor.shipped_sysctl() == {"fs.inotify.max_user_instances": 4096,
                                       "fs.inotify.max_user_watches": 524288}
    assert "forward chains" not in checks  # a blocker replaces the all-clear line
    assert failed(list(checks.values()))
    assert to_json(list(checks.values()))["ok"] is False


@pytest.fixture
def no_process_starts(monkeypatch):
    """Every way to start a process or load rules fails, and is listed: a fix the doctor ran (through
    run(), subprocess, os.system, a fork or a spawn) would be a change to the host.  The list
    is what the test asserts on, in case the code swallowed the failure."""
    import subprocess
    started = []

    class Refused(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            started.append(args[0] if args else kwargs.get("args"))
            raise AssertionError(f"the doctor started a process: {started[-1]}")

    def refuse(*args, **kwargs):
        started.append(args[:2])
        raise AssertionError(f"the doctor started a process: {args[:2]}")
    monkeypatch.setattr(subprocess, "Popen", Refused)
    for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve",
                 "execvp", "execvpe"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setitem(sys.modules, "nftables", None)  # nor a rule added through libnftables
    return started


def files_of(root) -> dict:
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_a_native_nft_table_gets_an_nft_fix_never_applied(tmp_path, no_process_starts):
    ruleset = {"nftables": [META, chain("inet", "filter", "forward")]}
    calls = []
    probe = make_probe(tmp_path, ruleset=lambda: calls.append(1) or ruleset)
    before = files_of(tmp_path)
    check = by_name(run_checks(paths(tmp_path), probe))["forward chain inet filter forward"]
    assert check.fix.startswith('nft insert rule inet filter forward iifname "nsc-*" accept && ')
    assert "iptables" not in check.fix
    assert calls == [1]  # read once; the doctor only reads
    assert files_of(tmp_path) == before  # and writes nothing
    assert no_process_starts == []  # nor runs anything


def test_a_drop_chain_that_lets_the_bridges_through_is_fine(tmp_path):
    ruleset = {"nftables": [META, chain("ip", "filter", "FORWARD"),
                            accept_rule("ip", "filter", "FORWARD"),
                            accept_rule("ip", "filter", "FORWARD", key="oifname")]}
    checks = run_checks(paths(tmp_path), make_probe(tmp_path, ruleset=lambda: ruleset))
    assert by_name(checks)["forward chains"].ok
    assert not failed(checks)


def test_an_ip6_or_input_drop_chain_is_not_a_blocker(tmp_path):
    ruleset = {"nftables": [META, chain("ip6", "filter", "FORWARD"),
                            chain("inet", "filter", "input", hook="input")]}
    checks = run_checks(paths(tmp_path), make_probe(tmp_path, ruleset=lambda: ruleset))
    assert by_name(checks)["forward chains"].ok


def test_an_unreadable_ruleset_is_a_warning(tmp_path):
    def ruleset():
        raise Error("nft failed (exit 1): nft -j list ruleset\nOperation not permitted")
    check = by_name(run_checks(paths(tmp_path), make_probe(tmp_path, ruleset=ruleset)))[
        "forward chains"]
    assert (check.ok, check.severity) == (False, WARNING)
    assert check.message == ("cannot read the nftables ruleset: nft failed (exit 1): "
                             "nft -j list ruleset")


def test_missing_nft_and_python_nftables(tmp_path):
    probe = make_probe(tmp_path, which=lambda name: None, importable=lambda module: False)
    check = by_name(run_checks(paths(tmp_path), probe))["firewall"]
    assert (check.ok, check.severity) == (False, ERROR)
    assert check.fix == "apt-get install nftables python3-nftables"


def test_legacy_iptables(tmp_path):
    files = {"proc/net/ip_tables_names": "filter\nnat\n"}
    dump = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
    check = by_name(run_checks(paths(tmp_path),
                               make_probe(tmp_path, files, legacy_rules=lambda: dump)))[
        "iptables-legacy"]
    assert (check.ok, check.severity) == (False, ERROR)
    assert check.fix.startswith("iptables-legacy -I FORWARD -i nsc-+ -j ACCEPT")
    dump = dump.replace(":FORWARD DROP", ":FORWARD ACCEPT")
    check = by_name(run_checks(paths(tmp_path),
                               make_probe(tmp_path, files, legacy_rules=lambda: dump)))[
        "iptables-legacy"]
    assert (check.ok, check.severity) == (False, WARNING)
    assert check.message.startswith("1 iptables-legacy rules in filter, nat")


def test_hybrid_cgroups_and_missing_controllers_warn(tmp_path):
    hybrid = ("tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    check = by_name(run_checks(paths(tmp_path),
                               make_probe(tmp_path, {"proc/self/mounts": hybrid})))["cgroups"]
    assert (check.ok, check.severity) == (False, WARNING)
    assert check.message.startswith("cgroup hybrid, not cgroup2")
    probe = make_probe(tmp_path / "b", {"sys/fs/cgroup/cgroup.controllers": "cpu pids\n"})
    check = by_name(run_checks(paths(tmp_path), probe))["cgroups"]
    assert not check.ok and "lacks the memory controller" in check.message


@pytest.mark.parametrize("release, ok, words", [
    ("5.10.0-28-amd64", False, "no idmapped mounts"),
    ("5.15.0-91-generic", True, "before 5.19"),
    ("6.18.44-fc-v669", True, "overlayfs included"),
])
def test_idmapped_mounts_by_kernel(tmp_path, release, ok, words):
    probe = make_probe(tmp_path, {"proc/sys/kernel/osrelease": release})
    check = by_name(run_checks(paths(tmp_path), probe))["idmapped mounts"]
    assert check.ok == ok and words in check.message


def test_no_overlayfs_no_systemd_no_bus_little_space(tmp_path):
    probe = make_probe(tmp_path, {"proc/filesystems": "nodev\tproc\n\text4\n",
                                  "proc/1/comm": "tini\n"},
                       bus_reachable=lambda path: False, free_bytes=lambda path: 300 << 20)
    checks = by_name(run_checks(paths(tmp_path), probe))
    assert checks["overlayfs"].fix == "modprobe overlay"
    assert (checks["systemd"].ok, checks["systemd"].severity) == (False, ERROR)
    assert "PID 1 is tini" in checks["systemd"].message
    assert (checks["system bus"].ok, checks["system bus"].severity) == (False, ERROR)
    space = checks["disk space"]
    assert (space.ok, space.severity) == (False, WARNING)
    assert space.message.startswith(f"0.3 GB free in {tmp_path}/var/lib/machines: under 1 GB")


def test_warnings_alone_do_not_fail(tmp_path):
    probe = make_probe(tmp_path, {"proc/sys/fs/inotify/max_user_instances": "128\n"},
                       free_bytes=lambda path: 0)
    checks = run_checks(paths(tmp_path), probe)
    assert [c.name for c in checks if not c.ok] == ["disk space", "inotify instances"]
    assert not failed(checks)


def test_the_bus_address_comes_from_the_environment(tmp_path):
    seen = []
    probe = make_probe(tmp_path, bus_reachable=lambda path: seen.append(path) or True,
                       environ={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/proc/42/root/bus"})
    run_checks(paths(tmp_path), probe)
    assert [str(p) for p in seen] == ["/proc/42/root/bus"]


# the real readers, on this machine's own files

def test_free_bytes_of_a_path_not_made_yet(tmp_path):
    assert doctor.free_bytes(tmp_path / "var/lib/machines") > 0


def test_bus_reachable_connects_to_a_socket(tmp_path):
    path = tmp_path / "bus"
    assert not doctor.bus_reachable(path)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()
        assert doctor.bus_reachable(path)


def test_container_trees_and_state_wider_than_0700_are_a_warning(tmp_path):
    p = paths(tmp_path)
    p.machines.mkdir(parents=True, mode=0o755)
    p.machines.chmod(0o755)
    p.state.mkdir(mode=0o700)
    check = by_name(run_checks(p, make_probe(tmp_path)))["directory modes"]
    assert not check.ok and check.severity == WARNING
    assert check.message.startswith(f"{p.machines} is 0755")
    assert check.fix == f"chmod 0700 {p.machines}"
    p.machines.chmod(0o700)
    assert by_name(run_checks(p, make_probe(tmp_path)))["directory modes"].ok


def test_inotify_watches_below_the_shipped_drop_in(tmp_path):
    probe = make_probe(tmp_path, {"proc/sys/fs/inotify/max_user_watches": "8192\n"})
    checks = by_name(run_checks(paths(tmp_path), probe))
    watches = checks["inotify watches"]
    assert (watches.ok, watches.severity) == (False, WARNING)
    assert watches.message == ("fs.inotify.max_user_watches = 8192: under the 524288 "
                               "nspawnctl's /etc/sysctl.d/60-nspawnctl.conf sets")
    assert watches.fix == checks_fix()
    assert checks["inotify instances"].ok


def checks_fix() -> str:
    return doctor.sysctl_install_fix()


@pytest.mark.parametrize("version, release, mounts, ok, words", [
    (252, "6.18.44", "/dev/vda / ext4 rw 0 0\n", True,
     "systemd-nspawn 252 and kernel 6.18 idmap binds of ext4"),
    (249, "6.18.44", "/dev/vda / ext4 rw 0 0\n", False,
     "systemd-nspawn 249: the idmap bind option came with systemd 250"),
    (None, "6.18.44", "/dev/vda / ext4 rw 0 0\n", False, "no systemd-nspawn: the idmap"),
    (252, "5.10.0", "/dev/vda / ext4 rw 0 0\n", False, "kernel 5.10 cannot idmap mounts"),
    # the state directory on a tmpfs of its own: idmapped only from 6.3
    (252, "6.1.0", "/dev/vda / ext4 rw 0 0\nnone {state} tmpfs rw 0 0\n", False,
     "cannot idmap mounts of tmpfs"),
    (252, "6.18.44", "/dev/vda / nfs4 rw 0 0\n", False, "cannot idmap mounts of nfs4"),
])
def test_idmapped_binds_by_nspawn_kernel_and_filesystem(tmp_path, version, release, mounts,
                                                        ok, words):
    where = paths(tmp_path)
    probe = make_probe(tmp_path, {"proc/sys/kernel/osrelease": release,
                                  "proc/self/mounts": mounts.format(state=where.state)},
                       nspawn_version=lambda: version)
    check = by_name(run_checks(where, probe))["idmapped binds"]
    assert (check.ok, check.severity) == (ok, WARNING) and words in check.message, check
