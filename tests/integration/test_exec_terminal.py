"""`exec` never hands the admin's terminal to a container (issue 26, item 4), seen as an admin
sees it: nspawnctl runs in the testbed on a real terminal (tests/ptyadmin.py holds the pty's
master, as a terminal emulator does, and leads the session as a login shell does), and the
container's side tries to type into that terminal with TIOCSTI: at once, and again from a
process it leaves behind after `exec` returned.  What the admin's shell would then read as
typed is the terminal's input queue, which ptyadmin reads once nspawnctl has returned.

The program that tries is a tiny static C binary (HELPER below, built with gcc -static on the
machine running the tests), put in a container made from scratch (a single command, which
`exec` enters itself: confine.py) and in a booted one (systemd-run).  It reports which files
its standard streams are (DEV:INO), which must never be the admin's terminal.  The kernel
lets a process type into its controlling terminal only before 6.2 or with
dev.tty.legacy_tiocsti=1; the first test shows that it does on this machine.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.helpers import MACHINES

pytestmark = pytest.mark.integration

WORK = "/root/exec-terminal-test"
PTYADMIN = Path(__file__).resolve().parents[1] / "ptyadmin.py"

# tiocsti STATUS MARK [LATER]: push "MARK\n" into each standard stream and /dev/tty with
# TIOCSTI, report each file and result, and exit STATUS; with LATER, leave a child behind that
# pushes "LATER\n" one second later.
HELPER = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void push(const char *what, int fd, const char *text) {
    int err = 0;
    for (const char *p = text; *p; p++)
        if (ioctl(fd, TIOCSTI, p) != 0) { err = errno; break; }
    printf("%s %s\n", what, err ? strerror(err) : "pushed");
}

static void push_all(const char *mark) {
    char text[256], name[16];
    snprintf(text, sizeof text, "%s\n", mark);
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        snprintf(name, sizeof name, "fd%d", fd);
        if (fstat(fd, &st) == 0)
            printf("%s is %lu:%lu\n", name, (unsigned long)st.st_dev, (unsigned long)st.st_ino);
        push(name, fd, text);
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (tty < 0) printf("/dev/tty %s\n", strerror(errno));
    else { push("/dev/tty", tty, text); close(tty); }
    printf("sid %d pid %d\n", (int)getsid(0), (int)getpid());
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    push_all(argv[2]);
    if (argc > 3 && fork() == 0) { sleep(1); push_all(argv[3]); _exit(0); }
    return atoi(argv[1]);
}
"""


@pytest.fixture(scope="module")
def work(host, tmp_path_factory):
    """WORK in the testbed: the helper, built here, and the admin's terminal program."""
    gcc = shutil.which("gcc")
    assert gcc, "this test builds a static helper: needs gcc and libc6-dev (`make deps`)"
    build = tmp_path_factory.mktemp("tiocsti")
    (build / "tiocsti.c").write_text(HELPER)
    subprocess.run([gcc, "-static", "-O2", "-o", build / "tiocsti", build / "tiocsti.c"],
                   check=True)
    host.run(["rm", "-rf", WORK])
    host.run(["mkdir", "-p", WORK])
    for name, data in (("tiocsti", (build / "tiocsti").read_bytes()),
                       ("ptyadmin.py", PTYADMIN.read_bytes())):
        host.path(f"{WORK}/{name}").write_bytes(data)
        os.chmod(host.path(f"{WORK}/{name}"), 0o755)
    yield WORK
    host.run(["rm", "-rf", WORK])


@pytest.fixture(scope="module")
def containers(host, nspawnctl, made, work):
    """A single-command container (entered by nspawnctl itself) and a booted one (through its
    systemd), both running and both with the helper; name -> the shell to run in it."""
    single = made("tty-single", "--from", "scratch", "--add", "/bin/busybox",
                  "--add", f"{work}/tiocsti:/usr/bin/tiocsti",
                  "--cmd", "/bin/busybox sleep 1000000")
    booted = made("tty-booted")
    helper = host.path(f"{MACHINES}/{booted}/usr/local/bin/tiocsti")
    helper.write_bytes(host.path(f"{work}/tiocsti").read_bytes())
    os.chmod(helper, 0o755)
    for name in (single, booted):
        nspawnctl("start", name)
    return {single: ["busybox", "sh"], booted: ["sh"]}


def admin(host, work, *command, options=()) -> dict:
    """Run command in the testbed from the admin's terminal; ptyadmin's report."""
    r = host.run(["python3", f"{work}/ptyadmin.py", *options, "--", *command], timeout=120)
    assert r.returncode == 0, str(r)
    return json.loads(r.stdout)


def held(report: dict) -> set[str]:
    """DEV:INO of every standard stream the helper said it had."""
    return {line.split()[-1] for line in report["screen"].splitlines()
            if line.startswith("fd") and " is " in line}


def test_this_kernel_lets_a_command_type_into_its_terminal(host, work):
    """The premise, without nspawnctl: the helper run straight from the terminal types into it
    (that is what `exec` handed a container before)."""
    report = admin(host, work, f"{work}/tiocsti", "3", "DIRECT", options=("--linger", "0.2"))
    assert report["typed"].count("DIRECT\n") == 4, report  # fds 0, 1, 2 and /dev/tty
    assert held(report) == {report["terminal"]}, report


@pytest.mark.parametrize("stdin", ["tty", "null"])
@pytest.mark.parametrize("kind", ["single", "booted"])
def test_the_container_cannot_type_into_the_admins_terminal(host, work, containers, kind,
                                                            stdin):
    name = f"tty-{kind}"
    report = admin(host, work, "nspawnctl", "exec", name, "--", "tiocsti", "3",
                   "INJECTED-NOW", "INJECTED-LATER",
                   options=("--stdin", stdin, "--linger", "2", "--victims", "4"))
    why = json.dumps(report, indent=1)
    # Nothing typed, at once or by what it left behind, and no stream of it is the terminal;
    # nor any other terminal of the host: systemd 252's `systemd-run -M --pty` hands the
    # container the host's /dev/pts/N, N being the number of the pty machined made in it.
    assert report["typed"] == "", why
    assert report["victimized"] == "", why
    assert not held(report) & {report["terminal"], *report["victims"]}, why
    assert "fd1 is" in report["screen"], why  # the helper ran, its output on the screen
    assert report["status"] == 3, why
    assert report["restored"] is True, why
    assert "Traceback" not in report["screen"], why
    sid, _, pid = report["screen"].split("sid ", 1)[1].split()[:3]
    assert sid == pid, why  # the command leads a session of its own


@pytest.mark.parametrize("kind", ["single", "booted"])
def test_exit_status_and_streams_pass_through(host, nspawnctl, work, containers, kind):
    name = f"tty-{kind}"
    sh = containers[name]
    # under a terminal, and without one
    assert admin(host, work, "nspawnctl", "exec", name, "--", *sh, "-c",
                 "exit 3")["status"] == 3
    assert nspawnctl("exec", name, "--", *sh, "-c", "exit 3", check=False).returncode == 3
    # stdin a pipe
    assert nspawnctl("exec", name, "--", *sh, "-c", "cat", input="hi\n").stdout == "hi\n"
    # typing at the terminal, stdout to a file: bytes as written (no \r\n of a pty), and
    # stderr still on the terminal, apart
    report = admin(host, work, "nspawnctl", "exec", name, "--", *sh, "-c",
                   'printf "a\\nb\\n"; echo err >&2', options=("--stdout", "file"))
    assert report["stdout"] == "a\nb\n", report
    assert report["screen"] == "err\r\n", report
    # the window size is the admin terminal's
    report = admin(host, work, "nspawnctl", "exec", name, "--", *sh, "-c", "stty size",
                   options=("--size", "33x101"))
    assert report["screen"] == "33 101\r\n", report


def test_a_signal_passes_through_as_128_plus_n(host, nspawnctl, work, containers):
    """Single-command containers only: a booted one's command ends in its unit, whose result
    systemd-run reports its own way."""
    report = admin(host, work, "nspawnctl", "exec", "tty-single", "--", "busybox", "sh", "-c",
                   "kill -TERM $$")
    assert report["status"] == 128 + 15, report
    r = nspawnctl("exec", "tty-single", "--", "busybox", "sh", "-c", "kill -TERM $$",
                  check=False)
    assert r.returncode == 128 + 15, r


@pytest.mark.parametrize("kind", ["single", "booted"])
def test_ctrl_c_and_a_closing_terminal_end_exec_cleanly(host, work, containers, kind):
    name = f"tty-{kind}"
    sleep = ["sleep", "60"] if kind == "booted" else ["busybox", "sleep", "60"]
    report = admin(host, work, "nspawnctl", "exec", name, "--", *sleep,
                   options=("--keys", r"\x03", "--when-raw", "--after", "0.5"))
    assert report["status"] == 130, report
    assert report["seconds"] < 30, report
    assert report["restored"] is True, report
    assert "Traceback" not in report["screen"], report
    report = admin(host, work, "nspawnctl", "exec", name, "--", *containers[name], "-c",
                   "sleep 60", options=("--hangup", "1", "--stderr", "file"))
    assert report["status"] is not None and report["status"] >= 128, report
    assert report["seconds"] < 30, report
    assert "Traceback" not in report["stderr"], report


def test_the_entered_command_gets_sigpipe_as_programs_expect(host, work, containers):
    """nspawnctl is Python, which ignores SIGPIPE and SIGXFSZ, and an ignored signal stays
    ignored across exec: `exec c -- yes | head -1` would have spun on EPIPE."""
    report = admin(host, work, "nspawnctl", "exec", "tty-single", "--", "busybox", "grep",
                   "SigIgn", "/proc/self/status", options=("--stdin", "null"))
    ignored = int(report["screen"].split()[1], 16)
    assert not ignored & (1 << (13 - 1)), report  # SIGPIPE
    assert not ignored & (1 << (25 - 1)), report  # SIGXFSZ
