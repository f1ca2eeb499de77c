"""exec's options (-i, -t, -e, -u, -w) checked before anything runs, the environment the
command gets, the ids `exec -u` takes inside a container from scratch, and podman's exit
code 125 for nspawnctl's own failures (issue 34)."""

import os
import subprocess
import sys

import pytest

from nspawnctl.confine import ids_in_container
from nspawnctl.errors import EXEC_FAILED, USAGE, Error
from nspawnctl.ops import execute
from nspawnctl.runtime import incontainer
from tests.unit.test_cli import nspawnctl


def test_options_as_given():
    options = execute.parse_options(True, True, ["A=1", "B=x=y", "EMPTY=", "HOME", "GONE"],
                                    "app:staff", "/srv/app",
                                    environ={"HOME": "/home/me"})
    assert options == execute.Options(
        interactive=True, tty=True,
        env=(("A", "1"), ("B", "x=y"), ("EMPTY", ""), ("HOME", "/home/me")),
        user="app", group="staff", workdir="/srv/app")


def test_values_are_kept_as_they_are():
    """No quoting, no expansion: a value reaches the command as typed."""
    value = "a b;$HOME `x` %n 'q' \"d\"\ttab"
    assert execute.parse_options(env=[f"V={value}"]).env == (("V", value),)


@pytest.mark.parametrize("env", ["A=x\ny", "A=x\ry", "A=x\0y", "A=\x1b[31m", "1A=x", "=x",
                                 "A-B=x", "A B=x", "", "A=" + "x" * 70000])
def test_bad_env_is_one_usage_line(env):
    with pytest.raises(Error) as err:
        execute.parse_options(env=[env])
    assert err.value.exit_code == USAGE
    assert "\n" not in err.value.message and len(err.value.message) < 300


def test_env_from_our_environment_is_checked_too():
    with pytest.raises(Error) as err:
        execute.parse_options(env=["X"], environ={"X": "two\nlines"})
    assert err.value.exit_code == USAGE


@pytest.mark.parametrize("user", ["a b", "a:b:c", ":", "app:", ":staff", "a\nb", "../x", "",
                                  "-rf"])
def test_bad_user_is_one_usage_line(user):
    with pytest.raises(Error) as err:
        execute.parse_options(user=user)
    assert err.value.exit_code == USAGE and "\n" not in err.value.message


@pytest.mark.parametrize("user, expected", [("app", ("app", None)), ("1000", ("1000", None)),
                                            ("1000:50", ("1000", "50")),
                                            ("www-data:adm", ("www-data", "adm"))])
def test_users(user, expected):
    options = execute.parse_options(user=user)
    assert (options.user, options.group) == expected


@pytest.mark.parametrize("workdir", ["relative", "", "/a\nb", "/a\0b", "~", "/" + "a" * 70000])
def test_bad_workdir_is_one_usage_line(workdir):
    with pytest.raises(Error) as err:
        execute.parse_options(workdir=workdir)
    assert err.value.exit_code == USAGE and "\n" not in err.value.message


def test_exec_env_overrides_the_containers():
    env = incontainer.merged_env(["MODE=prod", "PATH=/opt/bin", "X=a=b"],
                             [("MODE", "dev"), ("NEW", "1")])
    assert env == {"MODE": "dev", "PATH": "/opt/bin", "X": "a=b", "NEW": "1"}


def test_commands_words_reach_systemd_unexpanded():
    assert incontainer.literal(["echo", "$HOME", "${X}", "$$", "a"]) == \
        ["echo", "$$HOME", "$${X}", "$$$$", "a"]


def accounts(tmp_path):
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text("root:x:0:0::/root:/bin/sh\n"
                      "broken line\nbad:x:notanumber:1::/:/bin/sh\n"
                      "app:x:1000:1001::/home/app:/bin/sh\n")
    group.write_text("root:x:0:\napp:x:1001:\nstaff:x:50:\n")
    return str(passwd), str(group)


@pytest.mark.parametrize("user, group, expected", [
    (None, None, (0, 0)), ("app", None, (1000, 1001)), ("app", "staff", (1000, 50)),
    ("1000", None, (1000, 1001)), ("4242", None, (4242, 0)), ("4242", "7", (4242, 7)),
    (None, "staff", (0, 50))])
def test_ids_in_the_container(tmp_path, user, group, expected):
    passwd, groups = accounts(tmp_path)
    assert ids_in_container(user, group, passwd, groups) == expected


@pytest.mark.parametrize("user, group", [("nobody", None), ("bad", None), ("app", "nogroup"),
                                         ("4294967295", None)])
def test_unknown_ids_in_the_container(tmp_path, user, group):
    passwd, groups = accounts(tmp_path)
    with pytest.raises(Error):
        ids_in_container(user, group, passwd, groups)


@pytest.mark.parametrize("args", [["exec", "-it", "nope", "--", "sh"],
                                  ["exec", "nope", "--", "ls"],
                                  ["exec", "--no-such-option", "nope", "ls"],
                                  ["exec", "-u", "a b", "nope", "ls"],
                                  ["exec", "-e", "A=x\ny", "nope", "ls"],
                                  ["exec", "nope"],
                                  ["shell", "nope"], ["shell", "--bogus", "nope"]])
def test_nspawnctls_own_failures_are_125(tmp_path, args):
    r = nspawnctl(tmp_path, *args)
    assert r.returncode == EXEC_FAILED, r
    assert "Traceback" not in r.stderr and r.stdout == "", r
    assert 1 <= len(r.stderr.splitlines()) <= 2, r
    assert "invalid container name" not in r.stderr, r  # "-it" is not taken for NAME


@pytest.mark.parametrize("args", [["shell", "nope", "--user", "bad user"],
                                  ["shell", "nope", "-u", "bad user", "--", "id"],
                                  ["shell", "nope", "--user=bad user"]])
def test_shell_takes_its_user_right_after_name_too(tmp_path, args):
    """`shell NAME --user U` as it always was (and machinectl shell's habit), though the
    options otherwise end at NAME: the user is checked, not run as the command."""
    r = nspawnctl(tmp_path, *args)
    assert r.returncode == EXEC_FAILED, r
    assert "invalid user name" in r.stderr, r


def test_shell_user_after_name_without_its_value_is_125(tmp_path):
    r = nspawnctl(tmp_path, "shell", "nope", "--user")
    assert r.returncode == EXEC_FAILED and "requires an argument" in r.stderr, r


def test_exec_takes_the_command_after_name_without_dashes(monkeypatch):
    from click.testing import CliRunner

    from nspawnctl.cli import lifecycle as cli
    seen = []
    monkeypatch.setattr(execute, "exec_", lambda ctx, name, command, options:
                        seen.append((name, command, options.interactive, options.tty)) or 0)

    class App:
        ctx = None
    for args in (["-it", "web", "sh", "-l"], ["-it", "web", "--", "sh", "-l"],
                 ["web", "sh", "-l", "--", "x"]):
        assert CliRunner().invoke(cli.exec, args, obj=App()).exit_code == 0
    assert seen == [("web", ["sh", "-l"], True, True), ("web", ["sh", "-l"], True, True),
                    ("web", ["sh", "-l", "--", "x"], False, False)]


SPAWN = ("import os, sys; from nspawnctl import ptyrelay; tty, stdin = sys.argv[1:3]; "
         "argv = sys.argv[3:]; sys.exit(ptyrelay.spawn(lambda: os.execvp(argv[0], argv), "
         "tty=tty == 'tty', stdin=stdin == 'stdin'))")
PROBE = 'test -t 0; a=$?; test -t 1; b=$?; test -t 2; echo "$a$b$?"; [ $a = 0 ] || cat; exit 3'


@pytest.mark.parametrize("tty, stdin, out", [
    ("notty", "nostdin", "111\n"),                 # exec: nothing read, no terminal
    ("notty", "stdin", "111\nsecret\n"),           # exec -i: our stdin as it is
    ("tty", "nostdin", "000\r\n"),                 # exec -t: a terminal, nothing typed in
])
def test_spawn_passes_stdin_and_a_terminal_only_as_asked(tty, stdin, out):
    """Run from a pipe (no terminal of ours): -i decides whether the command reads what we
    read, -t whether it gets a terminal (its output then comes through it, to our stdout)."""
    r = subprocess.run([sys.executable, "-c", SPAWN, tty, stdin, "sh", "-c", PROBE],
                       input=b"secret\n", capture_output=True, timeout=30,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert (r.returncode, r.stdout.decode()) == (3, out), r
