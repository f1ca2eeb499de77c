"""`nspawnctl --host [USER@]HOST[:PORT]` (issue 30): ssh's command line for plain commands,
commands reading stdin and terminals, every word quoted for the far shell, HOST checked, and
the far side's exit status (or ssh's failure, one line) as ours.  ssh itself is faked here;
tests/integration/test_remote_host_real.py runs it for real against an sshd in the testbed."""

import shlex
import subprocess
import sys

import pytest

from nspawnctl import cli as climod
from nspawnctl import remote, run
from nspawnctl.errors import FAILURE, USAGE, Usage

HOSTILE = ["a b; touch {pwned}", "$(touch {pwned})", "`touch {pwned}`", "'; touch {pwned}; '",
           "x\ntouch {pwned}", "*", "~", "$HOME", "a\\b", "", "--", "-H", "\"q\"", "é ✓",
           "> {pwned}", "| tee {pwned}", "&& touch {pwned}"]


def argv_for(args, host="root@box", terminal_here=True, debug=False):
    """ssh's argv for `nspawnctl -H host args`, with our stdin and stdout terminals or not."""
    stdin, terminal = remote.wants(args)
    return remote.ssh_argv(remote.destination(host), args, stdin=stdin,
                           terminal=terminal and terminal_here, debug=debug)


# --- the command line built -----------------------------------------------------------------

def test_a_plain_command_reads_no_stdin_and_gets_no_terminal():
    assert argv_for(["list", "--json"]) == [
        "ssh", "-n", "-o", "LogLevel=ERROR", "--", "root@box", "nspawnctl list --json"]


def test_commands_that_read_stdin_get_it():
    for args in (["apply", "-f", "-"], ["apply", "--file=-", "--prune"], ["apply", "-f-"],
                 ["exec", "-i", "web", "--", "cat"], ["exec", "--interactive", "web", "cat"],
                 ["exec", "-e", "A=1", "-i", "web", "cat"], ["exec", "-uroot", "-i", "web", "x"],
                 ["login", "--password-stdin", "-u", "me", "registry.example"]):
        argv = argv_for(args)
        assert "-n" not in argv and "-t" not in argv, args


def test_commands_that_do_not_read_stdin_get_dev_null():
    """-n: a script's `while read h; do nspawnctl -H "$h" ...; done` keeps its input."""
    for args in (["apply", "-f", "shop.yaml"], ["exec", "web", "--", "cat", "-"],
                 ["exec", "web", "-i"], ["exec", "-e", "-i", "web", "cat"],
                 ["exec", "--user", "-i", "web", "cat"], ["logs", "-f", "web"],
                 ["create", "web", "--from", "scratch"], ["remove", "-"], []):
        assert "-n" in argv_for(args), args


def test_terminals_for_shell_and_exec_t_only_when_we_have_one():
    for args in (["shell", "web"], ["exec", "-t", "web", "sh"], ["exec", "-it", "web", "sh"],
                 ["exec", "-ti", "web", "sh"], ["exec", "--tty", "-w", "/", "web", "top"],
                 ["login", "registry.example"]):
        argv = argv_for(args)
        assert argv[:2] == ["ssh", "-t"] and "-n" not in argv, args
        assert "-t" not in argv_for(args, terminal_here=False), args
    for args in (["exec", "web", "-t"], ["exec", "-i", "web", "--", "sh", "-t"],
                 ["exec", "-w", "-t", "web", "sh"], ["list"], ["apply", "-f", "-"]):
        assert "-t" not in argv_for(args), args


def test_debug_is_passed_on_and_a_port_is_ssh_s_p():
    assert argv_for(["list"], host="admin@[2001:db8::1]:2222", debug=True) == [
        "ssh", "-n", "-o", "LogLevel=ERROR", "-p", "2222", "--", "admin@2001:db8::1",
        "nspawnctl --debug list"]


def test_hostile_words_are_one_quoted_word_each(tmp_path):
    """The far shell gets one string: each word must come out of it as it went in, nothing
    run, nothing expanded.  Checked by shlex and by a real sh, with nspawnctl a function that
    prints its arguments."""
    pwned = tmp_path / "pwned"
    words = [word.format(pwned=pwned) for word in HOSTILE]
    args = ["exec", "web", "--", "printf", *words]
    remote_line = argv_for(args)[-1]
    assert shlex.split(remote_line) == ["nspawnctl", *args]
    script = "nspawnctl() { for w in \"$@\"; do printf '%s\\0' \"$w\"; done; }; " + remote_line
    out = subprocess.run(["sh", "-c", script], capture_output=True, cwd=tmp_path, check=True)
    assert out.stdout.decode().split("\0")[:-1] == ["exec", "web", "--", "printf", *words]
    assert not pwned.exists()


# --- HOST -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, target, port", [
    ("box", "box", None), ("root@box", "root@box", None), ("box.example.org:2222",
                                                          "box.example.org", 2222),
    ("192.0.2.7", "192.0.2.7", None), ("vagrant@192.0.2.7:22", "vagrant@192.0.2.7", 22),
    ("[2001:db8::1]", "2001:db8::1", None), ("my_alias", "my_alias", None),
    ("u.ser-1@h", "u.ser-1@h", None)])
def test_good_hosts(value, target, port):
    assert remote.destination(value) == remote.Destination(target, port)


@pytest.mark.parametrize("value", [
    "-oProxyCommand=touch /tmp/pwned", "-H", "root@-oProxyCommand=x", "", "a b", "a;b",
    "$(id)", "a@b@c", "box:", "box:0", "box:65536", "box:123456", "2001:db8::1", "[box]",
    "box\n", "b\x1bx", "x" * 400, "@box", "box/1", "ssh://box"])
def test_bad_hosts_are_usage_errors(value):
    with pytest.raises(Usage) as info:
        remote.destination(value)
    assert info.value.message.startswith("--host ")
    assert "\n" not in info.value.message


# --- nspawnctl -H, as users type it ---------------------------------------------------------

class Calls(list):
    """ssh's argvs, one per run; answer(code, said): what the next runs return, and what ssh
    says in its -E file."""

    def answer(self, code: int, said: str = ""):
        self.reply = {"code": code, "said": said}


@pytest.fixture
def ssh(monkeypatch):
    """run.interactive faked (see Calls)."""
    calls = Calls()
    calls.answer(0)

    def interactive(argv, env=None):
        calls.append(list(argv))
        if calls.reply["said"]:
            with open(argv[argv.index("-E") + 1], "w") as log:
                log.write(calls.reply["said"])
        return calls.reply["code"]
    monkeypatch.setattr(run, "interactive", interactive)
    monkeypatch.setattr(run, "need_tool", lambda name, package=None: f"/usr/bin/{name}")
    return calls


def main(monkeypatch, *args) -> int:
    monkeypatch.setattr(sys, "argv", ["nspawnctl", *args])
    with pytest.raises(SystemExit) as info:
        climod.main()
    return info.value.code


def test_the_far_exit_status_is_ours(monkeypatch, capsys, ssh):
    ssh.answer(3)
    assert main(monkeypatch, "-H", "root@box", "exec", "web", "--", "sh", "-c", "exit 3") == 3
    assert ssh[0][-2:] == ["root@box", "nspawnctl exec web -- sh -c 'exit 3'"]
    ssh.answer(255)  # no message from ssh: the far command's own 255 (exec's command)
    assert main(monkeypatch, "--host", "box", "exec", "web", "false") == 255
    assert capsys.readouterr().err == ""


def test_ssh_failing_is_one_line_and_failure(monkeypatch, capsys, ssh):
    ssh.answer(255, "ssh: connect to host box port 22: Connection refused\r\n")
    assert main(monkeypatch, "-H", "box", "list") == FAILURE
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("nspawnctl: cannot reach box over ssh: connect to host box port 22: "
                      "Connection refused")
    assert err[1].startswith("hint: ") and len(err) == 2


def test_debug_before_the_command_goes_to_the_far_side(monkeypatch, ssh):
    assert main(monkeypatch, "--debug", "-H", "box", "list") == 0
    assert ssh[0][-1] == "nspawnctl --debug list"


def test_a_bad_host_is_one_line_and_ssh_never_runs(monkeypatch, capsys, ssh):
    assert main(monkeypatch, "-H", "-oProxyCommand=touch /tmp/x", "list") == USAGE
    err = capsys.readouterr().err
    assert err.startswith("nspawnctl: --host -oProxyCommand=touch /tmp/x: not [USER@]HOST")
    assert "Traceback" not in err and ssh == []


def test_without_a_command_nothing_runs(monkeypatch, capsys, ssh):
    assert main(monkeypatch, "-H", "box") == USAGE
    assert "Missing command" in capsys.readouterr().err and ssh == []


def test_help_shows_host():
    from click.testing import CliRunner
    assert "-H, --host [USER@]HOST[:PORT]" in CliRunner().invoke(climod.cli, ["--help"]).output


@pytest.mark.parametrize("args", [["create", "c", "--credential", "k=v"],
                                  ["set", "c", "--credential=k=v"],
                                  ["set", "c", "--credential", "k=v=@x"],
                                  ["create", "c", "--root-password-hashed", "$y$x"]])
def test_a_credential_value_is_never_put_on_ssh_s_command_line(args):
    with pytest.raises(Usage, match="with --host, a .* would be on ssh's command line"):
        remote.refuse_inline_secrets(args)


def test_a_credential_file_and_a_containers_own_command_go_over():
    assert remote.refuse_inline_secrets(["create", "c", "--credential", "k=@/etc/k",
                                         "--credential=j=@/etc/j"]) is None
    assert remote.refuse_inline_secrets(["exec", "c", "--", "tool", "--credential", "k=v"]) \
        is None
