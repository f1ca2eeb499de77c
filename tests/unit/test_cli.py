"""The command line: click's runner for parsing and help, `python -m nspawnctl` for what users
see (one line on stderr, the exit status).  Nothing here needs root, a bus or systemd."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nspawnctl import __version__
from nspawnctl import cli as climod
from nspawnctl.cli import cli
from nspawnctl.errors import CONFLICT, EXEC_FAILED, NOT_FOUND, USAGE

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["create", "start", "stop", "restart", "kill", "enable", "disable", "list", "status",
            "shell", "exec", "logs", "remove", "clone", "set", "images", "export", "inspect",
            "stats", "top", "rename", "run"]
NO_BUS = "unix:path=/nonexistent"


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
    return tmp_path


def nspawnctl(root: Path, *args, env=None):
    """Run nspawnctl as a user would, with every path under root and no system bus."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environ.update(NSPAWNCTL_ROOT=str(root), DBUS_SYSTEM_BUS_ADDRESS=NO_BUS,
                   PYTHONPATH=str(REPO), LC_ALL="C.UTF-8", **(env or {}))
    return subprocess.run([sys.executable, "-m", "nspawnctl", *args], capture_output=True,
                          text=True, cwd=REPO, env=environ, timeout=60)


def assert_error(result, line: str, code: int = 1):
    """One 'nspawnctl: ...' line (and maybe hint lines), nothing on stdout, no traceback."""
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith(line), result.stderr
    assert all(not l.startswith("nspawnctl") for l in lines[1:]), result.stderr
    if len(lines) > 1:
        assert lines[1].startswith("hint: "), result.stderr
    assert result.stdout == ""


def make_tree(root: Path, name: str):
    (root / "var/lib/machines" / name / "etc").mkdir(parents=True)


# click's runner: parsing and help

def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"nspawnctl, version {__version__}\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(flag):
    result = CliRunner().invoke(cli, [flag])
    assert result.exit_code == 0
    listed = result.output.split("Commands:", 1)[1].split()
    for command in COMMANDS:
        assert command in listed, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


def test_set_without_options_is_nothing_to_change(root):
    result = CliRunner().invoke(cli, ["set", "x"])
    assert result.exit_code != 0
    assert isinstance(result.exception, climod.Error)
    assert result.exception.message == "nothing to change"


def test_kill_with_an_unknown_signal(root):
    make_tree(root, "x")
    result = CliRunner().invoke(cli, ["kill", "x", "--signal", "FOO"])
    assert isinstance(result.exception, climod.Error)
    assert result.exception.message == "unknown signal 'FOO'"


# main(): what the user sees

def test_usage_error_is_one_line(tmp_path):
    for args in (["start"], ["frobnicate"], ["create"], ["start", "--timeout", "x", "a"],
                 ["list", "--bogus"]):
        result = nspawnctl(tmp_path, *args)
        assert result.returncode == 2, result
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "--help" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_error_is_one_line_with_a_hint(tmp_path):
    result = nspawnctl(tmp_path, "create", "bad/name")
    assert_error(result, "nspawnctl: invalid container name 'bad/name'", USAGE)
    assert len(result.stderr.splitlines()) == 2
    assert list(tmp_path.iterdir()) == []  # nothing made


@pytest.mark.parametrize("name", ["-x", ".host", "a..b", "x" * 65])
def test_create_refuses_bad_names_before_anything(tmp_path, name):
    result = nspawnctl(tmp_path, "create", "--", name)
    assert_error(result, "nspawnctl: ", USAGE)
    assert "name" in result.stderr.splitlines()[0]
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path):
    result = nspawnctl(tmp_path, "--debug", "create", "bad/name")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "invalid container name" in result.stderr


def test_list_of_no_container_needs_no_bus(tmp_path):
    result = nspawnctl(tmp_path, "list", "--json")
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result


def test_list_without_a_bus(tmp_path):
    make_tree(tmp_path, "x")
    result = nspawnctl(tmp_path, "list")
    assert_error(result, "nspawnctl: systemd is not asked about containers under a relocated root")
    assert len(result.stderr.splitlines()) == 1 or \
        result.stderr.splitlines()[1].startswith("hint:")
    assert "b'" not in result.stderr


def test_list_json_without_a_bus(tmp_path):
    make_tree(tmp_path, "x")  # with no container at all, list has nothing to ask systemd
    assert_error(nspawnctl(tmp_path, "list", "--json"),
                 "nspawnctl: systemd is not asked about containers under a relocated root")


def test_set_without_options(tmp_path):
    result = nspawnctl(tmp_path, "set", "x")
    assert_error(result, "nspawnctl: nothing to change", USAGE)


def test_set_with_a_bad_value(tmp_path):
    make_tree(tmp_path, "x")
    result = nspawnctl(tmp_path, "set", "x", "--memory", "lots")
    assert_error(result, "nspawnctl: invalid size 'lots'", USAGE)  # as click's --restart sometimes


def test_kill_with_an_unknown_signal_needs_no_container_and_no_bus(tmp_path):
    result = nspawnctl(tmp_path, "kill", "x", "--signal", "FOO")
    assert_error(result, "nspawnctl: unknown signal 'FOO'", USAGE)


@pytest.mark.parametrize("sig", ["0", "999", "SIGFOO", "-9", ""])
def test_kill_refuses_bad_signals(tmp_path, sig):
    make_tree(tmp_path, "x")
    assert_error(nspawnctl(tmp_path, "kill", "x", "-s", sig), "nspawnctl: unknown signal", USAGE)


def test_kill_of_a_missing_container(tmp_path):
    assert_error(nspawnctl(tmp_path, "kill", "x", "--signal", "HUP"),
                 "nspawnctl: no container named 'x'", NOT_FOUND)


def test_kill_of_an_existing_container_without_a_bus(tmp_path):
    make_tree(tmp_path, "x")
    assert_error(nspawnctl(tmp_path, "kill", "x", "--signal", "sighup"),
                 "nspawnctl: systemd is not asked about containers under a relocated root")


@pytest.mark.parametrize("command", [["start", "nope"], ["stop", "nope"], ["status", "nope"],
                                     ["enable", "nope"], ["logs", "nope"],
                                     ["remove", "nope"],
                                     ["clone", "nope", "other"]])
def test_missing_containers_are_found_before_the_bus(tmp_path, command):
    # exec's own code for it is the exec work's (podman's 125); every other command says 3
    result = nspawnctl(tmp_path, *command)
    assert_error(result, "nspawnctl: no container named 'nope'", result.returncode
                 if command[0] == "exec" and result.returncode == EXEC_FAILED else NOT_FOUND)


def test_start_with_a_bad_name(tmp_path):
    assert_error(nspawnctl(tmp_path, "start", "../etc"), "nspawnctl: invalid container name",
                 USAGE)


def test_create_with_an_unknown_source(tmp_path):
    assert_error(nspawnctl(tmp_path, "create", "x", "--from", "ftp:thing"),
                 "nspawnctl: unknown source 'ftp:thing'", USAGE)


def test_create_with_a_bad_mirror(tmp_path):
    assert_error(nspawnctl(tmp_path, "create", "x", "--mirror", "deb.debian.org"),
                 "nspawnctl: invalid mirror", USAGE)


def test_create_with_a_bad_package(tmp_path):
    assert_error(nspawnctl(tmp_path, "create", "x", "--include", "Vim"),
                 "nspawnctl: invalid package name 'Vim'", USAGE)


def test_create_over_an_existing_container(tmp_path):
    make_tree(tmp_path, "x")
    assert_error(nspawnctl(tmp_path, "create", "x"),
                 "nspawnctl: a container named 'x' already exists", CONFLICT)


def test_internal_errors_are_one_line(monkeypatch, capsys, root):
    from nspawnctl.ops import lifecycle

    def boom(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(lifecycle, "kill", boom)
    monkeypatch.setattr(sys, "argv", ["nspawnctl", "kill", "x"])
    with pytest.raises(SystemExit) as info:
        climod.main()
    assert info.value.code == 70
    err = capsys.readouterr().err
    assert err == ("nspawnctl: internal error: RuntimeError: boom "
                   "(run with --debug for a traceback)\n")


def test_interrupt_exits_130(monkeypatch, capsys, root):
    from nspawnctl.ops import lifecycle

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(lifecycle, "kill", interrupted)
    monkeypatch.setattr(sys, "argv", ["nspawnctl", "kill", "x"])
    with pytest.raises(SystemExit) as info:
        climod.main()
    assert info.value.code == 130
    # click ends the ^C line first, so the message starts on a line of its own
    assert capsys.readouterr().err.lstrip("\n") == "nspawnctl: interrupted\n"


def test_error_exit_code_is_the_errors(monkeypatch, capsys, root):
    from nspawnctl.ops import lifecycle

    def missing(*args, **kwargs):
        raise climod.Error("journalctl is not installed", hint="install it", exit_code=127)
    monkeypatch.setattr(lifecycle, "kill", missing)
    monkeypatch.setattr(sys, "argv", ["nspawnctl", "kill", "x"])
    with pytest.raises(SystemExit) as info:
        climod.main()
    assert info.value.code == 127
    assert capsys.readouterr().err == "nspawnctl: journalctl is not installed\nhint: install it\n"


# start-up stays lean

LEAN = """
import sys
{body}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pystemd", "tabulate"))
print(heavy, file=sys.stderr)
"""


def test_importing_the_cli_does_not_import_pystemd_or_tabulate():
    result = subprocess.run([sys.executable, "-c", LEAN.format(body="import nspawnctl.cli")],
                            capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"


def test_help_does_not_import_pystemd_or_tabulate():
    body = ("import runpy\nsys.argv = ['nspawnctl', '--help']\n"
            "try:\n    runpy.run_module('nspawnctl', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code")
    result = subprocess.run([sys.executable, "-c", LEAN.format(body=body)],
                            capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"
    assert "Commands:" in result.stdout


def test_export_of_a_name_without_a_format_is_one_error(tmp_path):
    make_tree(tmp_path, "web")
    result = nspawnctl(tmp_path, "export", "web", str(tmp_path / "web.img"))
    assert_error(result, "nspawnctl: cannot tell the format of 'web.img' from its name", USAGE)
    assert "--format oci-archive" in result.stderr
    assert not (tmp_path / "web.img").exists()


def test_export_to_a_directory_is_one_error(tmp_path):
    """FILE is a plain string to click (no click.Path): export itself refuses a directory."""
    make_tree(tmp_path, "web")
    (tmp_path / "out.tar").mkdir()
    result = nspawnctl(tmp_path, "export", "web", str(tmp_path / "out.tar"))
    assert_error(result, f"nspawnctl: {tmp_path / 'out.tar'} is a directory", USAGE)
    assert list((tmp_path / "out.tar").iterdir()) == []


def test_every_commands_line_in_the_help_is_its_own_docstring():
    # `nspawnctl --help` lists COMMANDS' lines without importing a command module; each line
    # must say what the command's own help says, and hidden commands have none.
    for name, (_module, _attr, summary) in climod.COMMANDS.items():
        command = climod.load(name)
        assert command.hidden == (summary == ""), name
        if summary:
            assert " ".join((command.help or "").split()).startswith(summary), name


def test_the_pull_policys_default_is_the_one_each_command_says():
    """create's default is missing (a create works with the registry down), pull's is always
    (podman pull's): each command's --help says its own."""
    for command, default in (("create", "missing"), ("pull", "always")):
        text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
        assert f"{default} (default)" in text, (command, text)


def test_export_over_an_existing_file_is_refused_before_anything(tmp_path):
    """`export web web.oci.tar` over the user's own archive: exit 4 (conflict), one line, the
    file as it was, and systemd never asked (no bus here)."""
    make_tree(tmp_path, "web")
    mine = tmp_path / "web.oci.tar"
    mine.write_text("the user's archive")
    result = nspawnctl(tmp_path, "export", "web", str(mine))
    assert_error(result, f"nspawnctl: {mine} already exists", code=4)
    assert "--force" in result.stderr
    assert mine.read_text() == "the user's archive"


def test_export_with_a_name_that_says_another_format_is_refused(tmp_path):
    make_tree(tmp_path, "web")
    result = nspawnctl(tmp_path, "export", "web", str(tmp_path / "web.oci.tar"),
                       "--format", "tar")
    assert_error(result, "nspawnctl: 'web.oci.tar' names an oci-archive, not a tar", code=2)
    assert not (tmp_path / "web.oci.tar").exists()


# A bind mount whose source is not there is refused where it is typed, with nothing made:
# systemd-nspawn would refuse it only at the next start, far from the mistake.
@pytest.mark.parametrize("command", [["create", "x", "--from", "scratch"],
                                     ["set", "x", "--memory", "1G"]])
def test_a_missing_bind_source_is_refused_where_it_is_given(tmp_path, command):
    if command[0] == "set":
        make_tree(tmp_path, "x")
    result = nspawnctl(tmp_path, *command, "--bind", "/srv/no-such-dir:/data")
    assert_error(result, "nspawnctl: bind mount source /srv/no-such-dir does not exist",
                 code=USAGE)
    assert not (tmp_path / "etc/systemd/nspawn/x.nspawn").exists()
    assert (tmp_path / "var/lib/machines/x").exists() == (command[0] == "set")


def test_a_bind_source_that_is_there_passes_the_check(tmp_path):
    from nspawnctl.ops.common import check_bind_sources
    from nspawnctl.settings.values import parse_bind
    assert check_bind_sources([parse_bind(f"{tmp_path}:/data")]) is None
