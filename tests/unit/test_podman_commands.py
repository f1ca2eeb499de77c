"""The commands a podman or Incus user reaches for (issue 34): inspect, stats, top, rename, run
and create --start, through click's runner with systemd faked (tests/unit/fakes.py), and the
cgroup and /proc readers on trees made here.  The testbed proves them on real containers
(tests/integration/test_podman_commands_real.py)."""

import datetime
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nspawnctl import cli as climod
from nspawnctl.cli import App, cli, jsonview
from nspawnctl.errors import CONFLICT, Error
from nspawnctl.network.containers import network_state
from nspawnctl.ops import rename as rename_op
from nspawnctl.ops import stats as stats_op
from nspawnctl.ops.lifecycle import wait_stopped
from nspawnctl.runtime import cgroups
from nspawnctl.runtime.cgroups import Cgroup, network_bytes, process
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.store import snapshots
from tests.unit.fakes import FakeBus, context

UNIT = "systemd-nspawn@web.service"


class SystemdBus(FakeBus):
    """What systemd and machined say of containers: `running` ones have a leader and a
    cgroup; every unit has a file and, here, one drop-in of the user's."""

    def __init__(self, paths, running=(), exit_status=0, **kw):
        super().__init__(**kw)
        self.paths = paths
        self.running = set(running)
        self.exit_status = exit_status

    def unit_properties(self, unit, iface=None):
        name = unit.split("@", 1)[1].rsplit(".", 1)[0]
        return {"ActiveState": "active" if name in self.running else "inactive",
                "SubState": "running" if name in self.running else "dead",
                "FragmentPath": str(self.paths.units / "systemd-nspawn@.service"),
                "DropInPaths": [str(self.paths.dropin_dir(name) / "50-nspawnctl.conf")]}

    def machine_properties(self, name):
        return {"Leader": 4242} if name in self.running else None

    def machine_path(self, name):
        return f"/machine/{name}" if name in self.running else None

    def list_machines(self):
        return [{"name": n} for n in sorted(self.running)]

    def get_all(self, *args, **kw):
        return {"MemoryCurrent": 1 << 20}

    def unit_property(self, unit, prop, signature, iface=None):
        if prop == "ControlGroup":
            name = unit.split("@", 1)[1].rsplit(".", 1)[0]
            return f"/machine.slice/{unit}" if name in self.running else ""
        if prop == "ExecMainStatus":
            return self.exit_status
        raise AssertionError(prop)


def make(paths, name, **settings):
    (paths.tree(name) / "etc").mkdir(parents=True)
    save_config(paths, name, ContainerConfig(**settings))


def invoke(paths, bus, *args):
    app = App()
    app._ctx = context(paths, bus)
    return CliRunner().invoke(cli, list(args), obj=app)


# inspect

def test_inspect_is_status_and_the_files_systemd_runs_it_from(paths):
    make(paths, "web", memory_max=256 << 20)
    (paths.units / "systemd-nspawn@.service").write_text("[Service]\nExecStart=nspawn\n")
    result = invoke(paths, SystemdBus(paths), "inspect", "web")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    status = json.loads(invoke(paths, SystemdBus(paths), "status", "web", "--json").output)
    assert {k: record[k] for k in status} == status  # everything status has
    assert record["nspawn_file"]["path"] == str(paths.nspawn_file("web"))
    assert record["nspawn_file"]["text"] == paths.nspawn_file("web").read_text()
    assert "[Exec]" in record["nspawn_file"]["text"]
    assert [f["path"] for f in record["unit_files"]] == [
        str(paths.units / "systemd-nspawn@.service"),
        str(paths.dropin_dir("web") / "50-nspawnctl.conf")]
    assert record["unit_files"][0]["text"] == "[Service]\nExecStart=nspawn\n"
    assert "MemoryMax=256M" in record["unit_files"][1]["text"]


def test_inspect_of_no_such_container_is_not_found(paths):
    result = invoke(paths, SystemdBus(paths), "inspect", "nope")
    assert isinstance(result.exception, Error)
    assert result.exception.message == "no container named 'nope'"


# the cgroup and /proc readers

def cgroup_tree(tmp: Path, v2_files: dict, v1: dict[str, dict] | None = None):
    """A unified hierarchy (and v1 ones) with web's unit cgroup and its payload."""
    unified = tmp / "unified"
    payload = unified / "machine.slice" / UNIT / "payload"
    (payload / "init.scope").mkdir(parents=True)
    (unified / "machine.slice" / UNIT / "supervisor").mkdir()
    (unified / "machine.slice" / UNIT / "supervisor" / "cgroup.procs").write_text("88\n")
    (payload / "cgroup.procs").write_text("91\n94\n")
    (payload / "init.scope" / "cgroup.procs").write_text("95\n")
    for name, text in v2_files.items():
        (payload / name).write_text(text)
    mounts = {frozenset(): unified}
    for controller, files in (v1 or {}).items():
        point = tmp / controller
        point.mkdir()
        mounts[frozenset({controller})] = point
        if files is not None:
            where = point / "machine.slice" / UNIT / "payload"
            where.mkdir(parents=True)
            for name, text in files.items():
                (where / name).write_text(text)
    return mounts


def test_figures_come_from_the_payload_cgroup_on_cgroup2(tmp_path):
    mounts = cgroup_tree(tmp_path, {"cpu.stat": "usage_usec 1500\nuser_usec 1000\n",
                                    "memory.current": "4096\n", "pids.current": "7\n"})
    cg = Cgroup(f"/machine.slice/{UNIT}", mounts)
    assert (cg.cpu_usec(), cg.memory(), cg.pid_count()) == (1500, 4096, 7)
    assert cg.pids() == [91, 94, 95]  # below payload too; systemd-nspawn's own left out


def test_v1_controllers_are_read_only_where_the_unit_has_a_cgroup(tmp_path):
    # the testbed's shape: cgroup2 without controllers, the container's processes in the
    # root cgroup of the v1 memory hierarchy, whose figures are the whole host's
    mounts = cgroup_tree(tmp_path, {"cpu.stat": "usage_usec 10\n"},
                         {"memory": None, "pids": {"pids.current": "3\n"}})
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("999999999\n")
    cg = Cgroup(f"/machine.slice/{UNIT}", mounts)
    assert cg.memory() is None
    assert cg.pid_count() == 3
    assert cg.cpu_usec() == 10


def test_without_pids_controller_the_processes_are_counted(tmp_path):
    cg = Cgroup(f"/machine.slice/{UNIT}", cgroup_tree(tmp_path, {}))
    assert cg.pid_count() == 3


def test_cgroups_made_inside_are_walked_bounded(tmp_path, monkeypatch):
    mounts = cgroup_tree(tmp_path, {})
    payload = mounts[frozenset()] / "machine.slice" / UNIT / "payload"
    for i in range(5):
        (payload / f"c{i}").mkdir()
    monkeypatch.setattr(cgroups, "MAX_CGROUPS", 4)
    with pytest.raises(Error, match="more than 4 cgroups"):
        Cgroup(f"/machine.slice/{UNIT}", mounts).pids()


def fake_proc(tmp: Path, pid: int, same_netns: bool = False) -> Path:
    proc = tmp / "proc"
    (proc / str(pid) / "ns").mkdir(parents=True)
    (proc / "self" / "ns").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "ns" / "net").write_text("")
    if same_netns:
        os.link(proc / "self" / "ns" / "net", proc / str(pid) / "ns" / "net")
    else:
        (proc / str(pid) / "ns" / "net").write_text("")
    return proc


def test_network_bytes_of_the_container_s_interfaces_not_loopback(tmp_path):
    proc = fake_proc(tmp_path, 7)
    (proc / "7" / "net").mkdir()
    (proc / "7" / "net" / "dev").write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
        "    lo:  500 5 0 0 0 0 0 0  500 5 0 0 0 0 0 0\n"
        " host0:  1000 10 0 0 0 0 0 0  200 2 0 0 0 0 0 0\n"
        "  eth1:  1 1 0 0 0 0 0 0  2 1 0 0 0 0 0 0\n")
    assert network_bytes(7, proc) == (1001, 202)


def test_a_container_on_the_host_s_network_has_no_figures_of_its_own(tmp_path):
    proc = fake_proc(tmp_path, 7, same_netns=True)
    assert network_bytes(7, proc) is None


def test_a_process_as_ps_shows_it(tmp_path):
    proc = tmp_path / "proc"
    (proc / "95").mkdir(parents=True)
    fields = ["S", "91"] + ["0"] * 9 + ["250", "50"] + ["0"] * 6 + ["1000", "0", "3"]
    # a name with ") " in it (the process chose it) does not shift the fields
    (proc / "95" / "stat").write_text(f"95 (evil) S 1) {' '.join(fields)}\n")
    (proc / "95" / "status").write_text("Name:\tevil\nUid:\t100033\t100033\t100033\t100033\n"
                                        "NSpid:\t95\t12\n")
    (proc / "95" / "uid_map").write_text("         0     100000      65536\n")
    (proc / "95" / "cmdline").write_bytes(b"sleep\x00100\x00")
    (proc / "stat").write_text("cpu  1 2 3\nbtime 1796558400\nprocesses 9\n")
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    started = datetime.datetime.fromtimestamp(1796558400 + 1000 / ticks, datetime.timezone.utc)
    assert process(95, proc) == {
        "pid": 95, "cpid": 12, "ppid": 91, "uid": 33, "state": "S", "rss": 3 * page,
        "cpu_seconds": round(300 / ticks, 2),
        "started": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": ["sleep", "100"]}
    assert process(96, proc) is None  # gone meanwhile


# stats and top through the CLI

@pytest.fixture
def usage(paths, tmp_path, monkeypatch):
    """web runs, its cgroup in a tree here; each sample's interval adds 0.5 s of CPU."""
    make(paths, "web")
    make(paths, "db")
    mounts = cgroup_tree(tmp_path, {"cpu.stat": "usage_usec 1000000\n",
                                    "memory.current": "52428800\n", "pids.current": "3\n"})
    cpu_stat = mounts[frozenset()] / "machine.slice" / UNIT / "payload" / "cpu.stat"
    monkeypatch.setattr(stats_op, "cgroup_of", lambda bus, name: Cgroup(
        bus.unit_property(f"systemd-nspawn@{name}.service", "ControlGroup", b"s"), mounts))
    monkeypatch.setattr(stats_op, "network_bytes", lambda pid: (2000, 1000))
    clock = [100.0]

    def sleep(seconds):
        clock[0] += seconds
        used = int(cpu_stat.read_text().split()[1])
        cpu_stat.write_text(f"usage_usec {used + int(seconds * 500000)}\n")
    monkeypatch.setattr(stats_op.time, "sleep", sleep)
    monkeypatch.setattr(stats_op.time, "monotonic", lambda: clock[0])
    return SystemdBus(paths, running={"web"})


def test_stats_json_is_one_sample_of_every_running_container(paths, usage):
    result = invoke(paths, usage, "stats", "--json", "--interval", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"name": "web", "cpu_percent": 50.0, "memory_bytes": 52428800, "pids": 3,
         "net_rx_bytes": 2000, "net_tx_bytes": 1000}]
    assert jsonview.check([jsonview.schema("usage")], json.loads(result.output)) == []


def test_stats_table_once_into_a_pipe(paths, usage):
    result = invoke(paths, usage, "stats")  # the runner's stdout is no terminal
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "CPU", "MEMORY", "PIDS", "NET", "RX", "NET", "TX"]
    assert lines[1].split() == ["web", "50.00%", "52.4", "MB", "3", "2.0", "kB", "1.0", "kB"]
    assert len(lines) == 2


def test_stats_streams_until_interrupted(paths, usage, monkeypatch):
    samples = []
    real = stats_op.stats

    def counted(*args):
        for rows in real(*args):
            samples.append(rows)
            if len(samples) == 3:
                raise KeyboardInterrupt
            yield rows
    monkeypatch.setattr(stats_op, "stats", counted)
    result = invoke(paths, usage, "stats", "--stream")
    assert len(samples) == 3 and result.output.count("NAME") == 2


def test_stats_of_a_stopped_container_is_a_conflict(paths, usage):
    result = invoke(paths, usage, "stats", "web", "db")
    assert isinstance(result.exception, Error)
    assert result.exception.message == "db is not running"
    assert result.exception.exit_code == CONFLICT


def test_top_lists_the_container_s_processes(paths, usage, monkeypatch):
    seen = []
    monkeypatch.setattr(stats_op, "process", lambda pid: seen.append(pid) or {
        "pid": pid, "cpid": pid - 90, "ppid": 1, "uid": 0, "state": "S", "rss": 4096,
        "cpu_seconds": 61.5, "started": None, "command": ["sleep\x1b[2J", "9"]})
    result = invoke(paths, usage, "top", "web")
    assert result.exit_code == 0, result.output
    assert seen == [91, 94, 95]
    lines = result.output.splitlines()
    assert lines[0].split() == ["PID", "CPID", "PPID", "USER", "STATE", "RSS", "TIME",
                                "COMMAND"]
    assert lines[1].split() == ["91", "1", "1", "0", "S", "4.1", "kB", "1:01.50",
                                "sleep\\x1b[2J", "9"]  # its escape shown, not run
    rows = json.loads(invoke(paths, usage, "top", "web", "--json").output)
    assert rows[0]["pid"] == 91 and rows[0]["command"] == ["sleep\x1b[2J", "9"]
    assert jsonview.check([jsonview.schema("process")], rows) == []


# run and create --start

@pytest.fixture
def calls(monkeypatch):
    """What run and create ask of the operations, in order."""
    from nspawnctl.cli import containers
    done: list = []
    monkeypatch.setattr(containers.create, "create",
                        lambda ctx, name, *a, **kw: done.append(("create", name)) or
                        {"name": name, "method": "copy", "seconds": 0.1})
    monkeypatch.setattr(containers.lifecycle, "start",
                        lambda ctx, name: done.append(("start", name)) or "running")
    monkeypatch.setattr(containers.lifecycle, "stop",
                        lambda ctx, name: done.append(("stop", name)) or True)
    monkeypatch.setattr(containers.lifecycle, "wait_stopped",
                        lambda ctx, name: done.append(("wait", name)) or 3)
    monkeypatch.setattr(containers.remove, "remove",
                        lambda ctx, name, force: done.append(("remove", name, force)) or 0)
    return done


def test_create_start_starts_it_once_made(paths, calls):
    result = invoke(paths, FakeBus(), "create", "web", "--from", "scratch", "--start",
                    "--json")
    assert result.exit_code == 0, result.output
    assert calls == [("create", "web"), ("start", "web")]
    assert json.loads(result.output)["state"] == "running"


def test_create_without_start_does_not(paths, calls):
    invoke(paths, FakeBus(), "create", "web", "--from", "scratch")
    assert calls == [("create", "web")]


def test_run_is_create_and_start_with_every_create_option(paths, calls):
    create = climod.load("create")
    run = climod.load("run")
    assert {p.name for p in create.params} - {p.name for p in run.params} == {"start_it"}
    result = invoke(paths, FakeBus(), "run", "web", "--memory", "64M", "--from", "scratch")
    assert result.exit_code == 0, result.output
    assert calls == [("create", "web"), ("start", "web")]
    assert result.output == "created web (copy, 0.10 s)\nweb: running\n"


def test_run_rm_removes_it_once_it_stopped_with_its_exit_status(paths, calls):
    result = invoke(paths, FakeBus(), "run", "--rm", "web", "--from", "scratch")
    assert calls == [("create", "web"), ("start", "web"), ("wait", "web"),
                     ("remove", "web", True)]
    assert result.exit_code == 3


def test_run_rm_removes_it_when_its_start_failed(paths, calls, monkeypatch):
    from nspawnctl.cli import containers

    def fails(ctx, name):
        calls.append(("start", name))
        raise Error("web failed to start")
    monkeypatch.setattr(containers.lifecycle, "start", fails)
    result = invoke(paths, FakeBus(), "run", "--rm", "web", "--from", "scratch")
    assert calls == [("create", "web"), ("start", "web"), ("remove", "web", True)]
    assert result.exception.message == "web failed to start"


def test_run_rm_stops_it_on_ctrl_c_then_removes_it(paths, calls, monkeypatch):
    from nspawnctl.cli import containers

    def interrupted(ctx, name):
        calls.append(("wait", name))
        raise KeyboardInterrupt
    monkeypatch.setattr(containers.lifecycle, "wait_stopped", interrupted)
    result = invoke(paths, FakeBus(), "run", "--rm", "web", "--from", "scratch")
    assert calls[2:] == [("wait", "web"), ("stop", "web"), ("remove", "web", True)]
    assert result.exit_code == 130


def test_wait_stopped_returns_once_inactive_with_the_exit_status(paths, monkeypatch):
    class Stopping(SystemdBus):
        polls = 0

        def is_active(self, unit):
            self.polls += 1
            return self.polls < 3
    bus = Stopping(paths, exit_status=7)
    monkeypatch.setattr("nspawnctl.ops.lifecycle.time.sleep", lambda s: None)
    assert wait_stopped(context(paths, bus), "web") == 7
    assert bus.polls == 3


# rename

@pytest.fixture
def old(paths):
    make(paths, "old", memory_max=64 << 20)
    (paths.dropin_dir("old") / "90-mine.conf").write_text("[Service]\nNice=5\n")
    snap = snapshots.snapshot_dir(paths, "old", "t1")
    (snap / "tree").mkdir(parents=True)
    network_state(paths).create("backend")
    network_state(paths).lease("backend", "old")
    return paths


def files_of(paths, name) -> dict:
    found: dict = {}
    for what, path in (("tree", paths.tree(name)), ("nspawn", paths.nspawn_file(name)),
                       ("dropin dir", paths.dropin_dir(name)),
                       ("snapshots", snapshots.snapshot_dir(paths, name))):
        found[what] = path.exists()
    if paths.dropin_dir(name).exists():
        found["dropins"] = sorted(p.name for p in paths.dropin_dir(name).iterdir())
    found["leases"] = [str(a) for _n, a in network_state(paths).leased(name)]
    return found


def test_rename_moves_every_file_that_names_it(old):
    paths = old
    before = files_of(paths, "old")
    nspawn = paths.nspawn_file("old").read_text()
    bus = SystemdBus(paths)
    assert rename_op.rename(context(paths, bus), "old", "new") == {
        "name": "new", "from": "old", "enabled": False}
    assert files_of(paths, "new") == before
    assert paths.nspawn_file("new").read_text() == nspawn
    assert load_config(paths, "new").memory_max == 64 << 20
    assert (paths.dropin_dir("new") / "90-mine.conf").read_text() == "[Service]\nNice=5\n"
    assert snapshots.snapshot_dir(paths, "new", "t1").is_dir()
    gone = files_of(paths, "old")
    assert not any(v for k, v in gone.items() if k != "leases") and gone["leases"] == []
    assert ("reload", ()) in bus.calls


def test_rename_keeps_it_enabled_under_its_new_name(old):
    paths = old
    wants = paths.units / "machines.target.wants"
    wants.mkdir(parents=True)
    (wants / "systemd-nspawn@old.service").symlink_to("/lib/systemd/system/x")
    bus = SystemdBus(paths)
    assert rename_op.rename(context(paths, bus), "old", "new")["enabled"] is True
    assert ("disable_units", (["systemd-nspawn@old.service"],)) in bus.calls
    assert ("enable_units", (["systemd-nspawn@new.service"],)) in bus.calls


@pytest.mark.parametrize("case", ["running", "new exists", "dependent", "overlay",
                                  "bad name", "a stack's"])
def test_rename_refused_changes_nothing(old, case):
    paths = old
    bus = SystemdBus(paths)
    new = "new"
    if case == "running":
        bus.state = "active"
    elif case == "new exists":
        make(paths, "new")
    elif case == "dependent":
        make(paths, "api", after=("old",))
    elif case == "overlay":
        from nspawnctl.store import overlay
        overlay.unit_file(paths, "old").parent.mkdir(parents=True, exist_ok=True)
        overlay.unit_file(paths, "old").write_text("[Mount]\n")
    elif case == "a stack's":  # its name is the stack file's (issue 29)
        save_config(paths, "old", ContainerConfig(memory_max=64 << 20, stack="shop"))
    else:
        new = "bad/name"
    before = files_of(paths, "old")
    with pytest.raises(Error) as exc:
        rename_op.rename(context(paths, bus), "old", new)
    assert files_of(paths, "old") == before
    assert not paths.nspawn_file("new").exists() or case == "new exists"
    if case in ("running", "dependent", "overlay", "new exists", "a stack's"):
        assert exc.value.exit_code in (CONFLICT, 1)
    if case == "running":
        assert exc.value.exit_code == CONFLICT and "stop it first" in exc.value.hint


@pytest.mark.parametrize("where", ["copying a drop-in", "at the commit"])
def test_rename_that_fails_leaves_no_half(old, monkeypatch, where):
    paths = old
    before = files_of(paths, "old")
    if where == "copying a drop-in":
        real = rename_op.write_atomic

        def write(path, text, mode=0o644):
            if path.name == "90-mine.conf":
                raise OSError(28, "No space left on device")
            real(path, text, mode)
        monkeypatch.setattr(rename_op, "write_atomic", write)
    else:
        def no_rename(src, dst):
            raise OSError(16, "Device or resource busy")
        monkeypatch.setattr(rename_op, "rename_noreplace", no_rename)
    with pytest.raises(OSError):
        rename_op.rename(context(paths, SystemdBus(paths)), "old", "new")
    assert files_of(paths, "old") == before
    assert not paths.nspawn_file("new").exists()
    assert not paths.dropin_dir("new").exists()
    assert not paths.tree("new").exists()
