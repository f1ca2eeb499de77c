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
