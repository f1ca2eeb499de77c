"""`exec` and `shell` as a podman user reaches for them (issue 34, "Interactive use"):
`exec -it` under a real terminal, job control with -t, -e/-u/-w, the container's environment,
`shell` without a terminal, and podman's exit codes (125 nspawnctl's own failure, 126 cannot
run, 127 not found, else the command's status), in a booted container (through its systemd)
and in one running a single command (entered by nspawnctl itself).

The admin's terminal is tests/ptyadmin.py (see test_exec_terminal.py): it holds a real pty's
master, types keys once the relay has put the terminal in raw mode, and reports the screen
and the exit status.  Commands that must end without a terminal run under a timeout of the
harness (host.run's), so a hang fails the test instead of holding the suite.
"""

import os
from pathlib import Path

import pytest

from tests.integration.helpers import MACHINES

pytestmark = pytest.mark.integration

WORK = "/root/exec-interactive-test"
PTYADMIN = Path(__file__).resolve().parents[1] / "ptyadmin.py"
SINGLE, BOOTED = "ix-single", "ix-booted"
# A file the command cannot run (not executable), and an account the -u tests use.
NOEXEC = "/usr/local/bin/noexec"
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1001:\nstaff:x:50:\n"


@pytest.fixture(scope="module")
def work(host):
    host.run(["mkdir", "-p", WORK])
    host.path(f"{WORK}/ptyadmin.py").write_bytes(PTYADMIN.read_bytes())
    yield WORK
    host.run(["rm", "-rf", WORK])


@pytest.fixture(scope="module")
def containers(host, nspawnctl, made, work):
    """Both kinds running with MODE=prod in their settings; name -> the shell to run there."""
    made(SINGLE, "--from", "scratch", "--add", "/bin/busybox", "--env", "MODE=prod",
         "--cmd", "/bin/busybox sleep 1000000")
    made(BOOTED, "--env", "MODE=prod")
    for name in (SINGLE, BOOTED):
        tree = f"{MACHINES}/{name}"
        host.run(["mkdir", "-p", f"{tree}/usr/local/bin", f"{tree}/etc", f"{tree}/tmp"])
        host.path(f"{tree}{NOEXEC}").write_text("#!/bin/sh\necho ran\n")
        os.chmod(host.path(f"{tree}{NOEXEC}"), 0o644)
    host.path(f"{MACHINES}/{SINGLE}/etc/passwd").write_text(PASSWD)
    host.path(f"{MACHINES}/{SINGLE}/etc/group").write_text(GROUP)
    for argv in (["groupadd", "-g", "1001", "app"],
                 ["useradd", "-m", "-u", "1000", "-g", "1001", "app"]):
        r = host.run(["chroot", f"{MACHINES}/{BOOTED}", *argv])
        assert r.returncode == 0, r
    for name in (SINGLE, BOOTED):
        nspawnctl("start", name)
    return {SINGLE: ["busybox", "sh"], BOOTED: ["sh"]}


KINDS = [SINGLE, BOOTED]


def admin(host, *command, options=()) -> dict:
    """command run from the admin's terminal in the testbed; ptyadmin's report."""
    import json
    r = host.run(["python3", f"{WORK}/ptyadmin.py", "--timeout", "60", *options, "--",
                  *command], timeout=120)
    assert r.returncode == 0, str(r)
    report = json.loads(r.stdout)
    assert not report.get("error"), report["error"]
    return report


def quietly(host, command: str, timeout: float = 10):
    """A shell command line in the testbed, under the harness's timeout: a hang is a
    subprocess.TimeoutExpired, not a stuck suite."""
    return host.run(["sh", "-c", command], timeout=timeout)


@pytest.mark.parametrize("name", KINDS)
def test_exec_it_gives_an_interactive_shell(host, containers, work, name):
    """`exec -it NAME sh` (podman's spelling: options before NAME, no --): keys typed at the
    admin's terminal reach the shell, which runs on a terminal of its own and exits 5."""
    report = admin(host, "nspawnctl", "exec", "-it", name, *containers[name],
                   options=("--when-raw", "--keys",
                            r"[ -t 0 ] && [ -t 1 ] && echo on-a-tty; echo in-$((6*7)); exit 5\r"))
    assert report["status"] == 5, report
    assert "in-42" in report["screen"], report
    assert "on-a-tty" in report["screen"], report
    assert report["restored"] is True, report


@pytest.mark.parametrize("name", KINDS)
def test_exec_t_gives_job_control(host, containers, work, name):
    """A shell started with -i on exec -t's terminal leads a session on it: job control on
    ("m" in $-), no "no job control" complaint; its status passes through."""
    report = admin(host, "nspawnctl", "exec", "-t", name, "--", *containers[name], "-ic",
                   'sleep 0 & wait; echo "flags=$-"; exit 4')
    screen = report["screen"]
    assert report["status"] == 4, report
    assert "job control" not in screen, report
    flags = [line for line in screen.splitlines() if line.startswith("flags=")]
    assert flags and "m" in flags[0], report


@pytest.mark.parametrize("name", KINDS)
def test_the_containers_environment_reaches_exec(nspawnctl, containers, name):
    r = nspawnctl("exec", name, "--", *containers[name], "-c", 'echo "$MODE"')
    assert r.stdout == "prod\n", r
    r = nspawnctl("exec", "-e", "MODE=dev", name, "--", *containers[name], "-c", 'echo "$MODE"')
    assert r.stdout == "dev\n", r


@pytest.mark.parametrize("name", KINDS)
def test_env_user_and_workdir_options(host, containers, name):
    """-e values reach the command as given (no shell, no systemd expanding $HOME), -e KEY
    takes nspawnctl's own value, -u takes a name (its group from passwd) or USER:GROUP, -w
    the directory."""
    sh = " ".join(containers[name])
    r = host.run(["nspawnctl", "exec", "-e", "A=1 2;$HOME `x` %n", "-e", "FROMHOST",
                  "-e", "UNSET_HERE", "-u", "app", "-w", "/tmp", name, "--", *containers[name],
                  "-c", 'printf "%s|%s|%s|" "$A" "$FROMHOST" "${UNSET_HERE-unset}"; '
                        'id -u; id -g; pwd; echo "$1"', "sh", "$HOME"],
                 env={"FROMHOST": "from host"}, timeout=60)
    assert r.returncode == 0, r
    assert r.stdout == "1 2;$HOME `x` %n|from host|unset|1000\n1001\n/tmp\n$HOME\n", r
    r = quietly(host, f"nspawnctl exec -u app:staff {name} -- {sh} -c 'id -u; id -g'")
    assert (r.returncode, r.stdout) == (0, "1000\n50\n"), r


@pytest.mark.parametrize("name", KINDS)
def test_stdin_only_with_i(host, containers, name):
    sh = " ".join(containers[name])
    r = quietly(host, f"echo secret | nspawnctl exec {name} -- {sh} -c 'cat; echo end'")
    assert (r.returncode, r.stdout) == (0, "end\n"), r
    r = quietly(host, f"echo secret | nspawnctl exec -i {name} -- {sh} -c 'cat; echo end'")
    assert (r.returncode, r.stdout) == (0, "secret\nend\n"), r


@pytest.mark.parametrize("name", KINDS)
def test_exit_codes_as_podman(host, nspawnctl, containers, made, name):
    sh = " ".join(containers[name])
    codes = {
        f"nspawnctl exec {name} -- {sh} -c 'exit 3'": 3,
        f"nspawnctl exec {name} -- {sh} -c 'exit 2'": 2,
        f"nspawnctl exec {name} -- {sh} -c 'exit 203'": 203,  # systemd's EXEC, but its own
        f"nspawnctl exec {name} -- no-such-command": 127,
        f"nspawnctl exec {name} -- {NOEXEC}": 126,
        f"nspawnctl exec -u no-such-user {name} -- true": 125,
        f"nspawnctl exec -w /no/such/dir {name} -- true": 125,
        f"nspawnctl exec --no-such-option {name} -- true": 125,
        f"nspawnctl exec -u 'a b' {name} -- true": 125,
        f"nspawnctl exec -e 'A' -e '=x' {name} -- true": 125,
    }
    for command, code in codes.items():
        r = quietly(host, command + " </dev/null", timeout=60)
        assert r.returncode == code, r
        assert "Traceback" not in r.stderr, r


def test_exit_codes_of_nspawnctls_own_failures(host, made):
    made("ix-stopped", "--from", "scratch", "--add", "/bin/busybox",
         "--cmd", "/bin/busybox sleep 1")
    for command in ("nspawnctl exec ix-nosuch -- ls", "nspawnctl exec -it ix-nosuch -- ls",
                    "nspawnctl exec ix-stopped -- ls", "nspawnctl shell ix-nosuch",
                    "nspawnctl shell ix-stopped", "nspawnctl exec ix-stopped"):
        r = quietly(host, command + " </dev/null", timeout=60)
        assert r.returncode == 125, r
        assert 1 <= len(r.stderr.splitlines()) <= 2 and r.stdout == "", r  # a line, a hint
        assert "Traceback" not in r.stderr, r


def test_shell_without_a_terminal_ends_with_its_status(host, containers):
    """No terminal: `shell` runs without one (as podman exec without -t), reads stdin and
    ends with it; the status passes through; the output is the command's alone (no NUL, no
    line of nspawnctl's or machinectl's)."""
    r = quietly(host, f"nspawnctl shell {BOOTED} </dev/null; echo status=$?", timeout=3)
    assert r.stdout.endswith("status=0\n") and "\0" not in r.stdout, r
    r = quietly(host, f"nspawnctl shell {BOOTED} -- sh -c 'echo out; exit 3' </dev/null",
                timeout=3)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", ""), r
    r = quietly(host, f"echo 'echo piped; exit 6' | nspawnctl shell {BOOTED}", timeout=3)
    assert (r.returncode, r.stdout) == (6, "piped\n"), r
    r = quietly(host, f"nspawnctl shell -u app {BOOTED} -- sh -c 'id -un; pwd' </dev/null",
                timeout=3)
    assert (r.returncode, r.stdout) == (0, "app\n/home/app\n"), r
    r = quietly(host, f"nspawnctl shell {BOOTED} -- no-such-command </dev/null", timeout=3)
    assert r.returncode == 127, r


def test_shell_on_a_terminal(host, containers, work):
    report = admin(host, "nspawnctl", "shell", BOOTED, "--", "sh", "-c", "tty; exit 3")
    assert report["status"] == 3, report
    assert "/dev/pts/" in report["screen"] and "\0" not in report["screen"], report
    report = admin(host, "nspawnctl", "shell", BOOTED,
                   options=("--when-raw", "--keys", r"echo \"shell=$0\"; exit 7\r"))
    assert report["status"] == 7, report
    assert "shell=/bin/bash" in report["screen"], report  # root's, from its passwd
    assert "logout" in report["screen"], report  # a login shell says so as it ends
