"""`status` tells the truth about a container's state: why a failed one failed."""

import json

import pytest
from click.testing import CliRunner

from nspawnctl.ops import inventory
from nspawnctl.runtime import lifecycle as runtime_lifecycle
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from tests.unit.fakes import FakeBus, context

LOG = [f"line {n}" for n in range(1, 11)]


class UnitBus(FakeBus):
    """A container's unit in `state`, its Result `result`, no machine."""

    def __init__(self, state, result):
        super().__init__(state=state)
        self.result = result

    def unit_properties(self, unit, iface=None):
        return {"ActiveState": self.state, "SubState": self.state}

    def unit_property(self, unit, prop, signature, iface=None):
        return {"Result": self.result, "ActiveState": self.state}[prop]

    def machine_properties(self, name):
        return None


@pytest.fixture
def asked(monkeypatch) -> list:
    """The journal_tail calls status made; each gives LOG's last lines."""
    calls: list = []
    monkeypatch.setattr(inventory, "journal_tail",
                        lambda name, lines=10: calls.append((name, lines)) or LOG[-lines:],
                        raising=False)
    return calls


@pytest.fixture
def paths(private_root):
    (private_root.tree("c1") / "etc").mkdir(parents=True)
    save_config(private_root, "c1", ContainerConfig())
    return private_root


def test_status_of_a_failed_container_says_why(paths, asked):
    row = inventory.status(context(paths, UnitBus("failed", "exit-code")), "c1")
    assert row["state"] == "failed"
    assert row["result"] == "exit-code"
    assert row["log"] == LOG
    assert asked == [("c1", 10)]  # bounded: its last 10 lines


def test_status_of_a_stopped_container_reads_no_log(paths, asked):
    row = inventory.status(context(paths, UnitBus("inactive", "success")), "c1")
    assert row["state"] == "stopped" and row["log"] is None and row["result"] is None
    assert asked == []


def test_journal_tail_asks_journalctl_for_the_units_last_lines(monkeypatch):
    seen = []

    class Proc:
        stdout = "a\n\x1b[2Jb\n" + "x" * 5000 + "\n"

    monkeypatch.setattr(runtime_lifecycle, "run", lambda argv, **kw: seen.append(argv) or Proc)
    lines = runtime_lifecycle.journal_tail("c1", 10)
    assert seen[0][:4] == ["journalctl", "-u", "systemd-nspawn@c1.service", "-n"]
    assert seen[0][4] == "10"
    assert lines[:2] == ["a", "\x1b[2Jb"]  # escaped when shown, not here
    assert len(lines[2]) <= runtime_lifecycle.LOG_LINE_MAX


def test_status_text_shows_the_log_lines_one_a_line_escaped(paths, monkeypatch):
    from nspawnctl import cli as climod
    monkeypatch.setattr(inventory, "journal_tail", lambda name, lines=10: ["boom", "\x1b[2J"],
                        raising=False)
    monkeypatch.setattr(climod.App, "ctx", property(
        lambda self: context(paths, UnitBus("failed", "exit-code"))), raising=False)
    result = CliRunner().invoke(climod.cli, ["status", "c1"])
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert any(line.split() == ["result:", "exit-code"] for line in out), result.output
    at = out.index("log:")
    assert out[at + 1:at + 3] == ["  boom", "  \\x1b[2J"]
    as_json = json.loads(CliRunner().invoke(climod.cli, ["status", "c1", "--json"]).output)
    assert as_json["log"] == ["boom", "\x1b[2J"] and as_json["result"] == "exit-code"


# ---------------------------------------------------------------- settings pending a restart

def leader_bus(pid, state="active"):
    """The container runs (its unit active), with pid as its leader."""
    class Bus(UnitBus):
        def machine_properties(self, name):
            return {"Leader": pid}

        def get_all(self, *args, **kwargs):
            return {}

        def list_units(self, patterns=()):
            return [{"name": "systemd-nspawn@c1.service", "active_state": state}]

        def list_machines(self):
            return [{"name": "c1"}]
    return Bus(state, "success")


@pytest.fixture
def moved(paths):
    """c1 runs on network 'front' (198.51.100.2) and `set --network back --bind ...` saved
    'back' (203.0.113.2) for its next start: what set leaves (a lease on each network, the
    record of what runs), with this test's process as its leader."""
    import os

    from nspawnctl.network.state import NetworkState
    from nspawnctl.settings import running
    from nspawnctl.settings.networking import parse_port
    from nspawnctl.settings.values import parse_bind
    state = NetworkState(paths.state / "network", routes=lambda: [])
    state.create("front", "198.51.100.0/24")
    state.create("back", "203.0.113.0/24")
    state.lease("front", "c1")
    state.lease("back", "c1")
    old = ContainerConfig(network="front")
    running.record(paths, "c1", old, os.getpid())
    save_config(paths, "c1", ContainerConfig(network="back", binds=(parse_bind(str(paths.state)),),
                                             ports=(parse_port("8080:80"),)))
    return paths


def test_status_shows_the_live_address_and_marks_the_pending_one(moved):
    import os
    row = inventory.status(context(moved, leader_bus(os.getpid())), "c1")
    assert row["address"] == ["198.51.100.2"] and row["network"] == "front"
    assert row["bind"] == []  # not mounted in this run
    assert row["pending"] == {"network": "back", "address": ["203.0.113.2"],
                              "bind": [f"{moved.state}:{moved.state}"]}
    assert row["port"] == ["8080:80/tcp"]  # ports apply at once: not pending


def test_list_shows_the_live_address_and_marks_the_pending_one(moved, monkeypatch):
    import os
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # no sweep
    rows = inventory.list_containers(context(moved, leader_bus(os.getpid())))
    assert rows[0]["address"] == ["198.51.100.2"]
    assert rows[0]["pending"]["address"] == ["203.0.113.2"]


def test_published_ports_follow_the_live_address_until_the_restart(moved):
    from nspawnctl.network.containers import publications
    assert [(name, address) for name, address, _ in publications(moved)] == \
        [("c1", "198.51.100.2")]


def test_a_record_of_another_run_is_not_believed(moved):
    """A restart (a new leader) or a stop (no leader) makes the record stale at once."""
    import os
    import subprocess

    from nspawnctl.network.containers import publications
    from nspawnctl.settings import running
    gone = subprocess.Popen(["true"])
    gone.wait()
    data = json.loads((moved.running / "c1.json").read_text())
    data["leader"] = gone.pid
    (moved.running / "c1.json").write_text(json.dumps(data))
    assert running.read(moved, "c1") is None
    row = inventory.status(context(moved, leader_bus(os.getpid())), "c1")
    assert row["address"] == ["203.0.113.2"] and row["pending"] == {}
    assert [a for _, a, _ in publications(moved)] == ["203.0.113.2"]
    data["leader"], data["start"] = os.getpid(), data["start"] + 1  # PID reused: not it
    (moved.running / "c1.json").write_text(json.dumps(data))
    assert running.read(moved, "c1") is None


def test_status_text_says_the_pending_value_beside_the_live_one(moved, monkeypatch):
    import os

    from nspawnctl import cli as climod
    monkeypatch.setattr(climod.App, "ctx", property(
        lambda self: context(moved, leader_bus(os.getpid()))), raising=False)
    out = CliRunner().invoke(climod.cli, ["status", "c1"]).output.splitlines()
    assert [line.split(None, 1)[1] for line in out if line.startswith("address:")] == \
        ["198.51.100.2 (pending after restart: 203.0.113.2)"]
    assert [line.split(None, 1)[1] for line in out if line.startswith("network:")] == \
        ["front (pending after restart: back)"]
    assert not any(line.startswith("pending:") for line in out)


def test_set_on_a_running_container_records_what_runs_once_per_run(paths):
    """The class: any setting `set` saves for the next start (here --env) is shown pending,
    and a second `set` in the same run still compares with what runs, not with the first."""
    import os

    from nspawnctl.ops import reconfigure
    bus = leader_bus(os.getpid())
    ctx = context(paths, bus)
    reconfigure.set_config(ctx, "c1", {"env": ("MODE=prod",)})
    row = inventory.status(ctx, "c1")
    assert row["env"] == [] and row["pending"] == {"env": ["MODE=prod"]}
    reconfigure.set_config(ctx, "c1", {"env": ("MODE=dev",)})
    assert inventory.status(ctx, "c1")["pending"] == {"env": ["MODE=dev"]}
    reconfigure.set_config(ctx, "c1", {"memory_max": "1G"})  # live: nothing pends for it
    assert inventory.status(ctx, "c1")["pending"] == {"env": ["MODE=dev"]}


def test_set_on_a_stopped_container_records_nothing(paths):
    from nspawnctl.ops import reconfigure
    reconfigure.set_config(context(paths, UnitBus("inactive", "success")), "c1",
                           {"env": ("MODE=prod",)})
    assert not (paths.running / "c1.json").exists()


def test_join_keeps_the_lease_of_the_network_it_runs_on(paths):
    from nspawnctl.network.state import NetworkState
    state = NetworkState(paths.state / "network", routes=lambda: [])
    state.create("front", "198.51.100.0/24")
    state.create("back", "203.0.113.0/24")
    state.lease("front", "c1")
    state.lease("back", "c1")
    assert state.release("c1", keep=("front",)) == ["back"]
    assert [net.name for net, _ in state.leased("c1")] == ["front"]


def test_a_set_back_to_what_runs_asks_for_no_restart(paths):
    import os

    from nspawnctl.ops import reconfigure
    ctx = context(paths, leader_bus(os.getpid()))
    said = reconfigure.set_config(ctx, "c1", {"private_users": False})
    assert any("restart it for private_users" in line for line in said)
    said = reconfigure.set_config(ctx, "c1", {"private_users": True})  # as it runs
    assert not any("restart it" in line for line in said), said
    assert inventory.status(ctx, "c1")["pending"] == {}
