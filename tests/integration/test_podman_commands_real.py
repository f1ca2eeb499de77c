"""The commands a podman or Incus user reaches for (issue 34), on real containers in the
testbed: inspect, stats, top, rename, run (--rm) and create --start.  Scratch containers of
the testbed's static busybox: made in a fraction of a second, and their processes are known.
"""

import datetime
import json

import pytest

from tests.integration.helpers import MACHINES, listing, store_problems, wait_for

pytestmark = pytest.mark.integration

BUSYBOX = ("--from", "scratch", "--add", "/bin/busybox")
SLEEPERS = "/bin/busybox sh -c '/bin/busybox sleep 1000 & exec /bin/busybox sleep 999'"
BUSY = "/bin/busybox sh -c 'while :; do :; done'"


def cmd(text):
    return ("--cmd", text)


def unified(name: str) -> str:
    return f"/sys/fs/cgroup/unified/machine.slice/systemd-nspawn@{name}.service"


def test_inspect_shows_status_and_the_files_it_runs_from(host, nspawnctl, made):
    name = made("pi", *BUSYBOX, *cmd(SLEEPERS), "--memory", "64M")
    record = json.loads(nspawnctl("inspect", name).stdout)
    status = json.loads(nspawnctl("status", name, "--json").stdout)
    assert set(status) <= set(record)
    assert {k: record[k] for k in ("name", "state", "tree", "unit")} == \
        {k: status[k] for k in ("name", "state", "tree", "unit")}
    nspawn = f"/etc/systemd/nspawn/{name}.nspawn"
    assert record["nspawn_file"] == {"path": nspawn,
                                     "text": host.path(nspawn).read_text()}
    shown = {f["path"]: f["text"] for f in record["unit_files"]}
    # what systemd itself says it runs: `systemctl cat` names the same files
    cat = host.run(["systemctl", "cat", f"systemd-nspawn@{name}.service"]).stdout
    assert [line[2:] for line in cat.splitlines() if line.startswith("# /")] == list(shown)
    dropin = f"/etc/systemd/system/systemd-nspawn@{name}.service.d/50-nspawnctl.conf"
    assert "MemoryMax=64M" in shown[dropin]
    assert "ExecStart=" in record["unit_files"][0]["text"]
    assert nspawnctl.fails("inspect", "nosuch").error == "nspawnctl: no container named 'nosuch'"


def test_stats_of_a_busy_and_an_idle_container(host, nspawnctl, made):
    busy = made("pbusy", *BUSYBOX, *cmd(BUSY))
    idle = made("pidle", *BUSYBOX, *cmd(SLEEPERS))
    nspawnctl("start", busy, idle)
    rows = {r["name"]: r for r in json.loads(
        nspawnctl("stats", "--json", "--interval", "2").stdout)}
    assert {busy, idle} <= set(rows)
    assert rows[busy]["cpu_percent"] > 50, rows  # a shell loop keeps one CPU busy
    assert rows[idle]["cpu_percent"] < 20, rows
    assert rows[idle]["pids"] == 2  # sleep 1000, and sh exec'd into sleep 999
    procs = host.run(["cat", f"{unified(idle)}/payload/cgroup.procs"]).stdout.split()
    assert rows[idle]["pids"] == len(procs)
    # memory: the container's own cgroup's, or none where systemd has no memory cgroup
    # for it (the testbed's v1 memory controller is read-only: never the whole host's)
    v1 = host.run(["test", "-d", f"/sys/fs/cgroup/memory/machine.slice/"
                   f"systemd-nspawn@{idle}.service"]).returncode == 0
    v2 = host.run(["test", "-e", f"{unified(idle)}/payload/memory.current"]).returncode == 0
    assert (rows[idle]["memory_bytes"] is None) == (not v1 and not v2), rows
    # the one named only, a table once into a pipe
    table = nspawnctl("stats", "--interval", "0.5", idle).stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "CPU"] and len(table) == 2
    assert table[1].split()[0] == idle


def test_stats_counts_network_bytes_of_the_container_s_interfaces(host, nspawnctl, made):
    name = made("pnet", *BUSYBOX, *cmd(SLEEPERS))
    peer = made("ppeer", *BUSYBOX, *cmd(SLEEPERS))
    nspawnctl("start", name, peer)
    address = wait_for(lambda: listing(nspawnctl)[peer]["address"], what="an address")[0]

    def sample():
        return json.loads(nspawnctl("stats", name, "--json", "--interval", "0.2").stdout)[0]

    before = sample()
    nspawnctl("exec", name, "--", "/bin/busybox", "ping", "-c", "3", "-s", "1000", address)
    after = sample()
    assert after["net_tx_bytes"] - before["net_tx_bytes"] >= 3 * 1000, (before, after)
    assert after["net_rx_bytes"] - before["net_rx_bytes"] >= 3 * 1000, (before, after)


def test_stats_of_a_stopped_container_is_a_conflict(nspawnctl, made):
    name = made("pstopped", *BUSYBOX, *cmd(SLEEPERS))
    result = nspawnctl.fails("stats", name, "--no-stream")
    assert result.returncode == 4 and result.error == f"nspawnctl: {name} is not running"


def test_top_lists_what_runs_in_the_container(host, nspawnctl, made):
    name = made("ptop", *BUSYBOX, *cmd(SLEEPERS))
    nspawnctl("start", name)
    rows = json.loads(nspawnctl("top", name, "--json").stdout)
    commands = sorted(r["command"] for r in rows)  # its words, as a container's command
    assert commands == [["/bin/busybox", "sleep", "1000"], ["/bin/busybox", "sleep", "999"]], rows
    procs = host.run(["cat", f"{unified(name)}/payload/cgroup.procs"]).stdout  # as it numbers
    assert {r["pid"] for r in rows} == set(map(int, procs.split()))
    assert {r["uid"] for r in rows} == {0}  # root inside, some high uid outside
    first = next(r for r in rows if r["command"][-1] == "999")
    assert first["cpid"] == 1  # the container's PID 1
    started = datetime.datetime.fromisoformat(first["started"].replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(0) <= now - started < datetime.timedelta(minutes=5), first
    table = nspawnctl("top", name).stdout.splitlines()
    assert table[0].split() == ["PID", "CPID", "PPID", "USER", "STATE", "RSS", "TIME",
                                "COMMAND"]
    assert len(table) == 3


def test_rename_moves_what_names_it(host, nspawnctl, made):
    old = made("pold", *BUSYBOX, *cmd(SLEEPERS), "--memory", "48M")
    nspawnctl("snapshot", old, "t1")
    nspawnctl("enable", old)
    before = listing(nspawnctl)[old]
    nspawnctl("start", old)
    refused = nspawnctl.fails("rename", old, "pnew")
    assert refused.returncode == 4 and "stop it first" in refused.stderr
    assert listing(nspawnctl)[old]["state"] == "running"
    nspawnctl("stop", old)
    try:
        assert nspawnctl("rename", old, "pnew").stdout == \
            f"renamed {old} to pnew (still enabled)\n"
        rows = listing(nspawnctl)
        assert old not in rows
        assert {k: rows["pnew"][k] for k in ("address", "enabled", "limits")} == \
            {k: before[k] for k in ("address", "enabled", "limits")}
        assert [s["tag"] for s in json.loads(
            nspawnctl("snapshots", "pnew", "--json").stdout)] == ["t1"]
        assert nspawnctl("start", "pnew").stdout == "pnew: running\n"
        assert host.run(["test", "-e", f"/etc/systemd/nspawn/{old}.nspawn"]).returncode == 1
        assert host.run(["test", "-e", f"/etc/systemd/system/machines.target.wants/"
                                       f"systemd-nspawn@{old}.service"]).returncode == 1
        nspawnctl("stop", "pnew")
        assert store_problems(host, nspawnctl) == []
    finally:
        nspawnctl("remove", "--force", "pnew", check=False)


def test_run_and_create_start(host, nspawnctl, made):
    try:
        out = nspawnctl("run", "prun", *BUSYBOX, *cmd(SLEEPERS)).stdout
        assert out.splitlines()[-1] == "prun: running"
        assert listing(nspawnctl)["prun"]["state"] == "running"
        made("pstart", *BUSYBOX, *cmd(SLEEPERS), "--start")
        assert listing(nspawnctl)["pstart"]["state"] == "running"
        # --rm: removed once its command exits, and its status is nspawnctl's
        # (a command that exits before its start is complete fails the start, as a start)
        result = nspawnctl("run", "--rm", "prm", *BUSYBOX,
                           *cmd("/bin/busybox sh -c '/bin/busybox sleep 2; exit 3'"), check=False)
        assert result.returncode == 3, str(result)
        assert "prm" not in listing(nspawnctl)
        assert host.run(["test", "-e", f"{MACHINES}/prm"]).returncode == 1
        assert store_problems(host, nspawnctl) == []
    finally:
        for name in ("prun", "prm"):
            nspawnctl("remove", "--force", name, check=False)
