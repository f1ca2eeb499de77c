"""What a podman user types on day one (issue 34): the aliases (rm, ps), several names for
restart and kill, --debug after the command, logs --since/--until, one --timeout default,
help summaries that are whole sentences, and hints that fit their errors.  Through click's
runner with the fake bus, or `python -m nspawnctl` as in test_cli.py."""

import click
import pytest
from click.testing import CliRunner

from nspawnctl import cli as climod
from nspawnctl.cli import App, cli
from nspawnctl.errors import NOT_FOUND, USAGE, Error
from nspawnctl.ops import lifecycle
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from tests.unit.fakes import FakeBus, context
from tests.unit.test_cli import assert_error, make_tree, nspawnctl


class RunningBus(FakeBus):
    """machined knows the containers in `running` (their machine objects)."""

    def __init__(self, running=()):
        super().__init__(state="active")
        self.running = set(running)

    def machine_path(self, name):
        return f"/org/freedesktop/machine1/machine/{name}" if name in self.running else None


@pytest.fixture
def app(private_root):
    for name in ("a", "b"):
        (private_root.tree(name) / "etc").mkdir(parents=True)
        save_config(private_root, name, ContainerConfig())
    made = App()
    made._ctx = context(private_root, RunningBus({"a", "b"}))
    return made


def run(app, *args):
    return CliRunner().invoke(cli, list(args), obj=app)


# rm and ps, as podman users type them

def test_rm_and_ps_are_remove_and_list(app, monkeypatch):
    assert climod.load("remove") is cli.get_command(None, "rm")
    assert climod.load("list") is cli.get_command(None, "ps")
    seen = []
    from nspawnctl.ops import remove
    monkeypatch.setattr(remove, "remove", lambda ctx, name, **kw: seen.append(name) or {
        "name": name, "stopped": False, "snapshots": []})
    result = run(app, "rm", "a", "b")
    assert result.exit_code == 0, result.output
    assert seen == ["a", "b"] and result.output == "removed a\nremoved b\n"


def test_the_aliases_are_shown_beside_their_commands():
    listing = CliRunner().invoke(cli, ["--help"]).output
    rows = {line.split()[0]: line for line in listing.splitlines() if line.startswith("  ")}
    assert rows["remove"].split()[1] == "(rm)" and rows["list"].split()[1] == "(ps)"
    assert "rm" not in rows and "ps" not in rows  # one row each, not a second one


# restart and kill take several names, as start and stop do

def test_restart_takes_several_names(app, monkeypatch):
    seen = []
    monkeypatch.setattr(lifecycle, "restart", lambda ctx, name, timeout: seen.append(
        (name, timeout)) or "running")
    result = run(app, "restart", "a", "b")
    assert result.exit_code == 0, result.output
    assert result.output == "a: running\nb: running\n"
    assert seen == [("a", 60), ("b", 60)]
    seen.clear()
    result = run(app, "restart", "a", "nope")  # checked before any restart
    assert isinstance(result.exception, Error) and "no container named 'nope'" in str(
        result.exception)
    assert seen == []


def test_kill_takes_several_names_and_checks_all_first(app):
    bus = app.ctx.bus
    result = run(app, "kill", "a", "b", "-s", "HUP")
    assert result.exit_code == 0, result.output
    assert bus.calls == [("kill_machine", ("a", "all", 1)), ("kill_machine", ("b", "all", 1))]
    bus.calls.clear()
    bus.running = {"b"}
    result = run(app, "kill", "b", "a")
    assert isinstance(result.exception, Error) and result.exception.message == "a is not running"
    assert bus.calls == []  # b not killed either: a typo does not leave half done


# --debug after the command, too

def test_debug_after_the_command(tmp_path):
    result = nspawnctl(tmp_path, "list", "--json", "--debug")
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result
    result = nspawnctl(tmp_path, "create", "bad/name", "--debug")
    assert "Traceback" in result.stderr and "invalid container name" in result.stderr
    result = nspawnctl(tmp_path, "images", "prune", "--debug")
    assert result.returncode == 0, result
    result = nspawnctl(tmp_path, "snapshot", "rm", "x", "t", "--debug")
    assert "Traceback" in result.stderr and "no container named 'x'" in result.stderr


def test_debug_after_dashdash_is_the_commands(app, monkeypatch):
    seen = []
    from nspawnctl.ops import execute
    monkeypatch.setattr(execute, "exec_", lambda ctx, name, command, *a, **kw:
                        seen.append(command) or 0)
    result = run(app, "exec", "a", "--", "prog", "--debug")
    assert result.exit_code == 0, result.output
    assert seen == [["prog", "--debug"]]
    assert not app.debug


# logs --since and --until: journalctl's syntax, checked by systemd's own parser

@pytest.mark.parametrize("value", ["1h ago", "-1h", "today", "yesterday", "2026-12-06 12:00",
                                   "@1700000000", "+5min", "now"])
def test_logs_since_passes_journalctls_times(app, monkeypatch, value):
    seen = []
    monkeypatch.setattr(lifecycle, "interactive", lambda argv, env=None: seen.append(argv) or 0)
    result = run(app, "logs", "a", "--since", value, "--until", "now")
    assert result.exit_code == 0, result.output
    assert seen[0][-4:] == ["--since", value, "--until", "now"], seen


@pytest.mark.parametrize("value", ["garbage", "10m", "2026-13-01", "1h ago\nX", "x" * 200,
                                   ""])
def test_logs_since_refuses_what_journalctl_would(tmp_path, value):
    make_tree(tmp_path, "a")
    result = nspawnctl(tmp_path, "logs", "a", "--since", value)
    assert_error(result, "nspawnctl: invalid --since time", code=USAGE)
    assert "ago" in result.stderr  # the hint shows the syntax


# --timeout: one default, and a description wherever it appears

def timeouts(group: click.Group, path=()):
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if isinstance(command, click.Group):
            yield from timeouts(command, (*path, name))
        for param in command.params:
            if "--timeout" in getattr(param, "opts", ()):
                yield (*path, name), param


def test_every_timeout_has_one_default_and_says_what_it_waits_for():
    found = dict(timeouts(cli))
    assert {"start", "stop", "restart", "upgrade"} <= {p[-1] for p in found}, found
    assert {param.default for param in found.values()} == {lifecycle.TIMEOUT}, found
    for path, param in found.items():
        assert param.help and param.help.startswith("Seconds"), path
        assert param.show_default, path


# help summaries: whole sentences wherever commands are listed

def first_paragraph(command: click.Command) -> str:
    return " ".join((command.short_help or (command.help or "").split("\n\n")[0]).split())


def groups(group: click.Group, path=("nspawnctl",)):
    yield path, group
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if isinstance(command, click.Group) and command.name == name:
            yield from groups(command, (*path, name))


def whole(text: str) -> bool:
    """A sentence ends here: a full stop that is no abbreviation's, brackets closed."""
    return (text.endswith(".") and not text.endswith(("e.g.", "i.e.", "etc.", "..."))
            and text.count("(") == text.count(")"))


def test_no_commands_summary_is_cut_where_commands_are_listed():
    """`nspawnctl snapshot --help` listed `create` as "Snapshot NAME as TAG (default: the UTC
    time, e.g." (click cut its summary at the first full stop, an abbreviation's); each
    group lists each command's first paragraph whole."""
    for path, group in groups(cli):
        listing = CliRunner().invoke(cli, [*path[1:], "--help"]).output
        listed = " ".join(listing.split("Commands:", 1)[1].split())
        for name in group.list_commands(None):
            command = group.get_command(None, name)
            summary = (climod.COMMANDS[name][2] if group is cli and name in climod.COMMANDS
                       else first_paragraph(command))
            if command.hidden or (group is cli and name in climod.ALIASES):
                continue
            assert whole(summary), (path, name, summary)
            assert summary in listed, (path, name, summary, listed)


# hints that fit their errors

def test_network_remove_of_no_such_network_says_so(app, monkeypatch):
    from nspawnctl.ops import network as network_op
    monkeypatch.setattr(network_op, "require_host_network", lambda paths: None)
    monkeypatch.setattr(network_op, "apply_host", lambda paths: None)
    with pytest.raises(Error) as e:
        network_op.remove_network(app.ctx, "nosuch")
    assert e.value.message == "no network named 'nosuch'"
    assert e.value.exit_code == NOT_FOUND
    assert "create" not in (e.value.hint or "") and "network list" in (e.value.hint or "")


@pytest.mark.parametrize("network, move_to", [("default", "OTHER"), ("back", "default")])
def test_a_network_in_use_is_not_left_for_itself(app, monkeypatch, network, move_to):
    """Removing the default network with containers on it: the hint moved them back onto
    the default network."""
    from nspawnctl.ops import network as network_op
    monkeypatch.setattr(network_op, "require_host_network", lambda paths: None)
    monkeypatch.setattr(network_op, "apply_host", lambda paths: None)
    state = network_op.network_state(app.ctx.paths)
    if network != "default":
        state.create(network, None)
    state.lease(network, "a")
    with pytest.raises(Error) as e:
        network_op.remove_network(app.ctx, network)
    assert e.value.message == f"network {network} still has containers: a"
    assert e.value.hint.endswith(f"--network {move_to}")
