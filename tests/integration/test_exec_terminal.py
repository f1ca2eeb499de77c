"""`exec` never hands the admin's terminal to a container (issue 26, item 4), seen as an admin
sees it: nspawnctl runs in the testbed on a real terminal (tests/ptyadmin.py holds the pty's
master, as a terminal emulator does, and leads the session as a login shell does), and the
container's side tries to type into that terminal with TIOCSTI: at once, and again from a
process it leaves behind, once the command is gone.  What the admin's shell would then read
as typed is the terminal's input queue, which ptyadmin reads once nspawnctl has returned and
that process has said it made its attempt (a file it writes in the container: the admin's
side cannot see it exit across the container's boundary).  In a container running a single
command, that attempt comes after the command's session has ended, as `exec` returns; in a
booted one, while systemd stops the command's unit (systemd-run waits until its cgroup is
empty), before `exec` returns.

The program that tries is a tiny static C binary (HELPER below, built with gcc -static on the
machine running the tests), put in a container made from scratch (a single command, which
`exec` enters itself: confine.py) and in a booted one (systemd-run).  It reports which files
its standard streams are (DEV:INO), which must never be the admin's terminal.  The kernel
lets a process type into its controlling terminal only before 6.2 or with
dev.tty.legacy_tiocsti=1; the first test shows that it does on this machine.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.helpers import MACHINES

pytestmark = pytest.mark.integration

WORK = "/root/exec-terminal-test"
PTYADMIN = Path(__file__).resolve().parents[1] / "ptyadmin.py"

# tiocsti STATUS MARK [LATER DONE]: push "MARK\n" into each standard stream and /dev/tty with
# TIOCSTI, report each file and result, and exit STATUS.  With LATER, leave a child behind that
# acts as a hostile one would: it ignores the SIGHUP that the end of the command's session
# sends and the SIGTERM of its unit's stop, waits for the command to be gone (its
# parent-death signal, not a time), pushes "LATER\n" the same way, and writes what came of it
# to DONE (a path in the container): the done mark the admin's side waits for, and the proof
# that the second attempt was made.
HELPER = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void push(FILE *out, const char *what, int fd, const char *text) {
    int err = 0;
    for (const char *p = text; *p; p++)
        if (ioctl(fd, TIOCSTI, p) != 0) { err = errno; break; }
    fprintf(out, "%s %s\n", what, err ? strerror(err) : "pushed");
}

static void push_all(FILE *out, const char *mark) {
    char text[256], name[16];
    snprintf(text, sizeof text, "%s\n", mark);
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        snprintf(name, sizeof name, "fd%d", fd);
        if (fstat(fd, &st) == 0)
            fprintf(out, "%s is %lu:%lu\n", name, (unsigned long)st.st_dev,
                    (unsigned long)st.st_ino);
        push(out, name, fd, text);
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (tty < 0) fprintf(out, "/dev/tty %s\n", strerror(errno));
    else { push(out, "/dev/tty", tty, text); close(tty); }
    fprintf(out, "sid %d pid %d\n", (int)getsid(0), (int)getpid());
    fflush(out);
}

/* The child left behind: once the command is gone, it tries again, and says what came of it
   in DONE (written as DONE.tmp, then renamed: the mark is whole when it is there at all). */
static void later(pid_t command, const sigset_t *gone, const char *mark, const char *done) {
    /* The parent-death signal comes as the command's exit completes: after the kernel has
       released its session's terminal, as it does when a session leader exits. */
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    while (getppid() == command)
        if (sigwaitinfo(gone, NULL) == SIGUSR1) break;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", done);
    FILE *out = fopen(tmp, "w");
    if (!out) _exit(1);
    push_all(out, mark);
    if (fclose(out) != 0 || rename(tmp, done) != 0) _exit(1);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 5) return 2;
    sigset_t gone;
    sigemptyset(&gone);
    sigaddset(&gone, SIGUSR1);
    if (argc == 5) {
        /* Set before the fork, for the child to have them from its first instant: the end of
           the command's session sends SIGHUP to its process group, and a unit's stop SIGTERM
           to its cgroup; a hostile child ignores both. */
        signal(SIGHUP, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        sigprocmask(SIG_BLOCK, &gone, NULL);
    }
    push_all(stdout, argv[2]);
    if (argc == 5) {
        pid_t command = getpid();
        pid_t child = fork();
        if (child == 0) later(command, &gone, argv[3], argv[4]);
        if (child < 0) printf("fork %s\n", strerror(errno));
    }
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
    report = json.loads(r.stdout)
    assert not report.get("error"), report["error"]  # ptyadmin's own failure, not the test's
    return report


def held(report: dict) -> set[str]:
    """DEV:INO of every standard stream the helper said it had."""
    return {line.split()[-1] for line in report["screen"].splitlines()
            if line.startswith("fd") and " is " in line}


TARGETS = {"fd0", "fd1", "fd2", "/dev/tty"}


def attempts(text: str) -> dict[str, str]:
    """What the helper said came of each attempt: target -> "pushed" or the error."""
    results = {}
    for line in text.splitlines():
        target, _, result = line.strip().partition(" ")
        if target in TARGETS and not result.startswith("is "):
            results[target] = result
    return results


def mark_of(host, tree: str, inside: str):
    """The helper's done mark: inside, a path in the container whose tree is tree (as the
    testbed sees it); (the path ptyadmin waits for, the Path to read it), any old one gone."""
    outside = f"{tree}{inside}"
    host.path(outside).unlink(missing_ok=True)
    return outside, host.path(outside)


def test_this_kernel_lets_a_command_type_into_its_terminal(host, work):
    """The premise, without nspawnctl: the helper run straight from the terminal types into it
    (that is what `exec` handed a container before), at once and from the child it leaves
    behind, which acts after the command has returned and before the admin's shell reads."""
    wait_for, mark = mark_of(host, "", f"{work}/done-direct")
    report = admin(host, work, f"{work}/tiocsti", "3", "DIRECT", "DIRECT-LATER", wait_for,
                   options=("--await-file", wait_for, "--timeout", "30"))
    assert report["awaited"], f"no done mark from the left-behind child:\n{report}"
    assert attempts(mark.read_text()) == dict.fromkeys(TARGETS, "pushed"), mark.read_text()
    # fds 0, 1, 2 and /dev/tty, at once and later
    assert report["typed"] == "DIRECT\n" * 4 + "DIRECT-LATER\n" * 4, report
    assert held(report) == {report["terminal"]}, report


@pytest.mark.parametrize("stdin", ["tty", "null"])
@pytest.mark.parametrize("kind", ["single", "booted"])
def test_the_container_cannot_type_into_the_admins_terminal(host, work, containers, kind,
                                                            stdin):
    name = f"tty-{kind}"
    done = f"/root/tiocsti-done-{stdin}"
    wait_for, mark = mark_of(host, f"{MACHINES}/{name}", done)
    report = admin(host, work, "nspawnctl", "exec", name, "--", "tiocsti", "3",
                   "INJECTED-NOW", "INJECTED-LATER", done,
                   options=("--stdin", stdin, "--await-file", wait_for, "--timeout", "30",
                            "--victims", "4"))
    why = json.dumps(report, indent=1)
    # The left-behind child made its second attempt before the admin's shell read what was
    # typed, and every one of its tries was refused: once the command is gone, nothing it
    # left has a terminal to type into (its session's, the pty, is released and hung up).
    assert report["awaited"], f"the left-behind child never made its LATER attempt:\n{why}"
    later = mark.read_text()
    assert set(attempts(later)) == TARGETS, f"{later}\n{why}"
    assert "pushed" not in attempts(later).values(), f"{later}\n{why}"
    # Nothing typed, at once or by what it left behind, and no stream of it is the terminal;
    # nor any other terminal of the host: systemd 252's `systemd-run -M --pty` hands the
    # container the host's /dev/pts/N, N being the number of the pty machined made in it.
    assert report["typed"] == "", why
    assert report["victimized"] == "", why
    assert not held(report) & {report["terminal"], *report["victims"]}, why
    assert set(attempts(report["screen"])) == TARGETS, why  # the helper ran, output on screen
    assert report["status"] == 3, why
    assert report["restored"] is True, why
    assert "Traceback" not in report["screen"], why
    # (\r\r\n with stdin not a terminal: the admin's terminal, not raw then, adds its own \r)
    session = re.search(r"^sid (\d+) pid (\d+)\r*$", report["screen"], re.M)
    assert session, f"the helper did not say its session on the screen:\n{why}"
    assert session[1] == session[2], why  # the command leads a session of its own


@pytest.mark.parametrize("kind", ["single", "booted"])
def test_exit_status_and_streams_pass_through(host, nspawnctl, work, containers, kind):
    name = f"tty-{kind}"
    sh = containers[name]
    # under a terminal, and without one
    assert admin(host, work, "nspawnctl", "exec", name, "--", *sh, "-c",
                 "exit 3")["status"] == 3
    assert nspawnctl("exec", name, "--", *sh, "-c", "exit 3", check=False).returncode == 3
    # stdin a pipe (passed with -i only, as podman: issue 34)
    assert nspawnctl("exec", "-i", name, "--", *sh, "-c", "cat", input="hi\n").stdout == "hi\n"
    # typing at the terminal (-i), stdout to a file: bytes as written (no \r\n of a pty),
    # and stderr still on the terminal, apart
    report = admin(host, work, "nspawnctl", "exec", "-i", name, "--", *sh, "-c",
                   'printf "a\\nb\\n"; echo err >&2', options=("--stdout", "file"))
    assert report["stdout"] == "a\nb\n", report
    assert report["screen"] == "err\r\n", report
    # the window size is the admin terminal's (stty asks its stdin: -i)
    report = admin(host, work, "nspawnctl", "exec", "-i", name, "--", *sh, "-c", "stty size",
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
    """The key and the hang-up come once the command in the container said it runs (on the
    screen): not at a time, when it may not have started or nspawnctl may still be starting."""
    name = f"tty-{kind}"
    sh = containers[name]
    report = admin(host, work, "nspawnctl", "exec", name, "--", *sh, "-c",
                   "echo started; exec sleep 60",
                   options=("--keys", r"\x03", "--when-screen", "started", "--after", "0"))
    # SIGINT: the command's in a single-command container; in a booted one, systemd-run's
    assert report["status"] == 128 + 2, report
    assert report["seconds"] < 30, report
    assert report["restored"] is True, report
    assert "Traceback" not in report["screen"], report
    report = admin(host, work, "nspawnctl", "exec", name, "--", *sh, "-c",
                   "echo started; sleep 60",
                   options=("--hangup", "0", "--when-screen", "started", "--stderr", "file"))
    assert report["status"] == 128 + 1, report  # SIGHUP, likewise
    assert report["seconds"] < 30, report
    assert "Traceback" not in report["stderr"], report


def test_the_entered_command_gets_sigpipe_as_programs_expect(host, work, containers):
    """nspawnctl is Python, which ignores SIGPIPE and SIGXFSZ, and an ignored signal stays
    ignored across exec: `exec c -- yes | head -1` would have spun on EPIPE."""
    report = admin(host, work, "nspawnctl", "exec", "tty-single", "--", "busybox", "grep",
                   "SigIgn", "/proc/self/status", options=("--stdin", "null"))
    found = re.search(r"^SigIgn:\s*([0-9a-f]+)\r*$", report["screen"], re.M)
    assert found, f"no SigIgn line of the command's /proc/self/status on the screen:\n{report}"
    ignored = int(found[1], 16)
    assert not ignored & (1 << (13 - 1)), report  # SIGPIPE
    assert not ignored & (1 << (25 - 1)), report  # SIGXFSZ
