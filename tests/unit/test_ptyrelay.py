"""ptyrelay.py: a command run from the admin's terminal never gets that terminal (issue 26,
item 4), and still behaves as a command on a terminal does.

Each test runs the admin at a real terminal (tests/ptyadmin.py: a pty whose slave is the
controlling terminal of a login-shell-like session) and, in it, a small Python program that
runs a command through ptyrelay.spawn(), as `nspawnctl exec` does.  No container is needed:
what is under test is what the command can reach, whatever runs it.  The integration test
(tests/integration/test_exec_terminal.py) does the same through `nspawnctl exec`.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PTYADMIN = REPO / "tests" / "ptyadmin.py"
RELAY = ("import os, sys; from nspawnctl import ptyrelay; argv = sys.argv[1:]; "
         "sys.exit(ptyrelay.spawn(lambda: os.execvp(argv[0], argv)))")

# A command that tries to type MARK into whatever terminal it can reach: its standard streams
# and its controlling terminal, at once and again from a child it leaves behind, which acts
# once the command has returned, as a hostile one would: ignoring the SIGHUP that the end of
# its session sends it, and going on when its terminal is gone (what it says is then lost).
# The admin's side waits for that child to have exited before it reads what was typed
# (ptyadmin --await-orphans).
INJECT = r"""
import fcntl, os, select, signal, sys, termios

def say(line):
    try:
        print(line, flush=True)
    except OSError:
        pass

def push(mark):
    for fd in (0, 1, 2):
        st = os.fstat(fd)
        say(f"fd{fd} is {st.st_dev}:{st.st_ino}")
    targets = [(f"fd{fd}", fd) for fd in (0, 1, 2)]
    try:
        targets.append(("/dev/tty", os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)))
    except OSError as e:
        say(f"/dev/tty {e.strerror}")
    for name, fd in targets:
        try:
            for byte in mark.encode() + b"\n":
                fcntl.ioctl(fd, termios.TIOCSTI, bytes([byte]))
            say(f"{name} pushed")
        except OSError as e:
            say(f"{name} {e.strerror}")
    say(f"leader {os.getsid(0) == os.getpid()}")

push(sys.argv[1])
command = os.pidfd_open(os.getpid())
if os.fork() == 0:
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        select.select([command], [], [])  # the command has returned
        push(sys.argv[2])
    finally:
        os._exit(0)
sys.exit(3)
"""


def admin(*command, relay: str | None = RELAY, options=(), timeout=60) -> dict:
    """Run command from the admin's terminal (through ptyrelay, run by the program relay,
    unless that is None); the ptyadmin report."""
    inner = [sys.executable, "-c", relay] if relay else []
    r = subprocess.run([sys.executable, str(PTYADMIN), *options, "--", *inner, *command],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def held(report: dict) -> set[str]:
    """The DEV:INO of every standard stream the command said it had."""
    return {line.split()[-1] for line in report["screen"].splitlines() + report["stdout"]
            .splitlines() if line.startswith("fd") and " is " in line}


@pytest.fixture(scope="module")
def tiocsti_works():
    """The premise: on this kernel a command that keeps the admin's terminal can type into it
    (before 6.2, or dev.tty.legacy_tiocsti=1).  Elsewhere TIOCSTI is refused to everyone
    without CAP_SYS_ADMIN, and there is nothing to show."""
    report = admin(sys.executable, "-c", INJECT, "DIRECT-NOW", "DIRECT-LATER", relay=None,
                   options=("--await-orphans",))
    if "DIRECT" not in report["typed"]:
        pytest.skip("this kernel refuses TIOCSTI (dev.tty.legacy_tiocsti=0)")
    # Both at once and from what the command left running after it returned.
    assert "DIRECT-NOW" in report["typed"] and "DIRECT-LATER" in report["typed"], report
    return report


@pytest.mark.parametrize("stdin", ["tty", "null", "text:input\n"])
def test_the_command_cannot_type_into_the_admins_terminal(tiocsti_works, stdin):
    report = admin(sys.executable, "-c", INJECT, "INJECTED-NOW", "INJECTED-LATER",
                   options=("--stdin", stdin, "--await-orphans"))
    assert report["status"] == 3, report
    assert "fd1 is" in report["screen"], report  # it ran, and its output reached the screen
    assert report["typed"] == "", report
    assert report["terminal"] not in held(report), report
    assert "leader True" in report["screen"], report
    assert report["restored"] is True, report


def test_exit_status_passes_through_with_and_without_a_terminal():
    assert admin("sh", "-c", "exit 3")["status"] == 3
    assert admin("sh", "-c", "kill -TERM $$")["status"] == 128 + 15
    plain = subprocess.run([sys.executable, "-c", RELAY, "sh", "-c", "exit 4"],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert plain.returncode == 4


def test_ctrl_c_reaches_the_command_and_the_terminal_is_restored():
    # Typed once the relay reads the keys (raw mode): the byte goes through the command's pty,
    # whose line discipline makes it SIGINT; before, it would be our terminal's own SIGINT.
    report = admin("sleep", "30", options=("--keys", r"\x03", "--when-raw", "--after", "0"))
    assert report["status"] == 130, report
    assert report["seconds"] < 10, report
    assert report["restored"] is True, report
    assert report["typed"] == "", report


def test_eof_from_the_keyboard_reaches_the_command():
    report = admin("cat", options=("--keys", r"hello\n\x04", "--when-raw", "--after", "0"))
    assert report["status"] == 0, report
    assert report["screen"] == "hello\r\nhello\r\n", report
    assert report["restored"] is True, report


def test_keys_typed_at_once_reach_the_command_however_late_it_gets_its_terminal():
    # The command's side is made slow to set up (a delay before its setsid, which only the
    # forked child calls), and ^C typed as soon as the relay reads the keys: a pty that no
    # session has yet would drop it, and sleep would run its 10 s.
    slow = RELAY.replace("argv = sys.argv[1:]; ", "argv = sys.argv[1:]; import time; "
                         "setsid = os.setsid; os.setsid = lambda: [time.sleep(1), setsid()]; ")
    report = admin("sleep", "10", relay=slow,
                   options=("--keys", r"\x03", "--when-raw", "--after", "0"))
    assert report["status"] == 130, report
    assert report["seconds"] < 5, report
    assert report["typed"] == "", report


def test_a_command_that_closes_its_terminal_is_not_hung_up_while_it_runs():
    # As cat and every program of coreutils do just before they exit: no slave of the pty is
    # left open, yet the command has not ended, and is not to get a SIGHUP for it.
    report = admin("sh", "-c", "echo before; exec 0<&- 1>&- 2>&-; sleep 1; exit 5")
    assert report["status"] == 5, report
    assert report["screen"] == "before\r\n", report
    assert report["restored"] is True, report


def test_the_terminal_closing_ends_the_command_without_a_traceback():
    report = admin("sleep", "30", options=("--hangup", "0", "--when-raw", "--stderr", "file"))
    assert report["status"] == 128 + 1, report  # SIGHUP, passed on
    assert report["seconds"] < 10, report
    assert "Traceback" not in report["stderr"], report


def test_signals_to_nspawnctl_reach_the_command_without_a_terminal():
    # No terminal anywhere: the command is in a session of its own, out of our process
    # group, so a Ctrl-C typed at whatever ran us reaches it only through us.
    # Signalled once the command has started (it says so): we have forked it by then.
    # Started with SIGINT at its default, as from a shell with job control: one started with
    # it ignored (an `&` job of a script: the test run itself may be one) keeps it ignored
    # for the command by design, and nothing would end it.
    p = subprocess.Popen([sys.executable, "-c", RELAY, "sh", "-c", "echo started; exec sleep 30"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline() == b"started\n"
        p.send_signal(2)
        _, err = p.communicate(timeout=10)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert b"Traceback" not in err


def test_pipes_and_files_are_passed_as_given():
    # stdin a pipe, stdout a file: the bytes arrive as written (no \r\n from a pty), and the
    # command's stdout is the file itself, not a terminal.
    report = admin("sh", "-c", 'cat; printf "a\\nb\\n"; [ -t 1 ] || echo "not a tty"',
                   options=("--stdin", "text:hi\n", "--stdout", "file"))
    assert report["stdout"] == "hi\na\nb\nnot a tty\n", report
    assert report["status"] == 0


def test_stderr_redirected_stays_apart():
    report = admin("sh", "-c", "echo out; echo err >&2", options=("--stderr", "file"))
    assert report["screen"] == "out\r\n", report
    assert report["stderr"] == "err\n", report


def test_the_window_size_is_the_terminals():
    report = admin("stty", "size", options=("--size", "33x101"))
    assert report["screen"] == "33 101\r\n", report


def test_the_command_gets_sigpipe_as_programs_expect():
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec.
    report = admin("grep", "SigIgn", "/proc/self/status", options=("--stdin", "null"))
    ignored = int(report["screen"].split()[1], 16)
    assert not ignored & (1 << (13 - 1)), report  # SIGPIPE
    assert not ignored & (1 << (25 - 1)), report  # SIGXFSZ


def test_no_pseudo_terminal_left_is_one_clear_error(monkeypatch):
    from nspawnctl import ptyrelay
    from nspawnctl.errors import Error

    def no_pty():
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(ptyrelay, "terminals", lambda: (0, 1, 2))
    monkeypatch.setattr(os, "openpty", no_pty)
    with pytest.raises(Error) as error:
        ptyrelay.spawn(lambda: None)
    assert error.value.message == \
        "cannot open a pseudo-terminal for the command: Resource temporarily unavailable"
