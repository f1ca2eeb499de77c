"""The admin at a terminal, for tests of what a command run from it can do to it.

    python3 tests/ptyadmin.py [options] -- ARGV...

Makes a pseudo-terminal and, in a session whose controlling terminal is its slave (as a login
shell's is), runs ARGV in the foreground with that terminal as stdin, stdout and stderr (or
what the options say instead).  This process holds the master, as a terminal emulator does:
it types the keys asked for, and collects the screen.  Once ARGV has returned (and what it
left running has exited too, with --await-orphans, or has left its done mark, with
--await-file, or --linger seconds more), it reads what is waiting in the terminal's input
queue: what the admin's shell would now take as typed.  Prints one JSON object:

  status    ARGV's exit status (128+N for signal N), or null if it was hung up and is gone
  typed     the terminal's input queue afterwards (TIOCSTI lands there)
  terminal  "DEV:INO" of the terminal, to compare with what a command says it holds
  screen    everything written to the terminal
  restored  whether the terminal's modes afterwards are those it had before (raw mode undone)
  seconds   how long ARGV took
  stdout    what ARGV wrote to stdout, with --stdout file
  stderr    what ARGV wrote to stderr, with --stderr file
  victims   "DEV:INO" of the other terminals made first (--victims N), as other users' are
  victimized  what was written to or typed into any of those
  awaited   whether the --await-file appeared in time (null without --await-file)
  error     what went wrong in the admin's shell, if anything did (a bug of this program)

Used by tests/unit/test_ptyrelay.py on this machine and by tests/integration/test_exec_terminal.py
inside the testbed (where the worktree is at /usr/src/nspawnctl): standard library only.
"""

import argparse
import fcntl
import json
import os
import select
import signal
import struct
import tempfile
import termios
import time
import traceback


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdin", default="tty", help="tty, null, or text:TEXT (a pipe)")
    parser.add_argument("--stdout", default="tty", choices=("tty", "file"))
    parser.add_argument("--stderr", default="tty", choices=("tty", "file"))
    parser.add_argument("--keys", default="", help="typed (Python escapes) after --after s")
    parser.add_argument("--after", type=float, default=0.5)
    parser.add_argument("--when-raw", action="store_true",
                        help="type the keys (and hang up) only once the terminal is in raw "
                             "mode (a relay reads it)")
    parser.add_argument("--when-screen", metavar="TEXT", default="",
                        help="type the keys (and hang up) only once TEXT is on the screen "
                             "(the command says it runs)")
    parser.add_argument("--hangup", type=float, default=None,
                        help="close the terminal (the master) after this many seconds")
    parser.add_argument("--linger", type=float, default=0.0,
                        help="seconds to wait after ARGV returned, for what it left running")
    parser.add_argument("--await-orphans", action="store_true",
                        help="after ARGV returned, wait until every process it left running "
                             "has exited (each inherits a pipe from here: its end of file "
                             "says so); only for what does not close the fds it inherits")
    parser.add_argument("--await-file", metavar="PATH",
                        help="after ARGV returned, wait until PATH exists: the done mark of "
                             "what it left running, where --await-orphans cannot see (across "
                             "a container's boundary); given up on shortly before --timeout")
    parser.add_argument("--size", default="33x101", help="ROWSxCOLS of the terminal")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--victims", type=int, default=0,
                        help="open this many other terminals first (other users' sessions)")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    keys = args.keys.encode().decode("unicode_escape").encode("latin-1")

    victims = [os.openpty() for _ in range(args.victims)]
    master, slave = os.openpty()
    rows, cols = map(int, args.size.split("x"))
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    before = termios.tcgetattr(slave)
    terminal = os.fstat(slave)
    outputs = {name: tempfile.TemporaryFile() for name in ("stdout", "stderr")}
    report_r, report_w = os.pipe()
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    orphans_r, orphans_w = os.pipe() if args.await_orphans else (-1, -1)
    shell = os.fork()
    if shell == 0:
        os.close(master)
        os.close(report_r)
        _admin_shell(args, slave, outputs, before, report_w, (orphans_r, orphans_w),
                     deadline)
    os.close(slave)
    os.close(report_w)
    for fd in (orphans_r, orphans_w):
        if fd >= 0:
            os.close(fd)
    screen = bytearray()
    typed_yet = not keys
    when_screen = args.when_screen.encode()
    while True:
        now = time.monotonic() - t0
        ready = (master >= 0 and (not args.when_raw or _raw(master))
                 and when_screen in screen)
        if not typed_yet and now >= args.after and ready:
            os.write(master, keys)
            typed_yet = True
        if args.hangup is not None and now >= args.hangup and ready:
            os.close(master)
            master = -1
        if time.monotonic() > deadline:
            os.kill(shell, signal.SIGKILL)
            break
        ready, _, _ = select.select([fd for fd in (master, report_r) if fd >= 0], [], [], 0.05)
        if master in ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk:  # every holder of the slave is gone
                os.close(master)
                master = -1
            screen += chunk
        if report_r in ready:
            break
    report = b""
    while chunk := os.read(report_r, 65536):
        report += chunk
    os.waitpid(shell, 0)
    if master >= 0:  # what came after the report, if anything
        os.set_blocking(master, False)
        try:
            while chunk := os.read(master, 65536):
                screen += chunk
        except OSError:
            pass
    result = json.loads(report) if report else {"status": None, "typed": "", "restored": None,
                                                 "seconds": None}
    result["terminal"] = f"{terminal.st_dev}:{terminal.st_ino}"
    result["screen"] = screen.decode(errors="replace")
    for name, f in outputs.items():
        f.seek(0)
        result[name] = f.read().decode(errors="replace")
    result["victims"] = [f"{st.st_dev}:{st.st_ino}"
                         for st in (os.fstat(v_slave) for _, v_slave in victims)]
    result["victimized"] = "".join(_pending(v_master) + _pending(v_slave)
                                   for v_master, v_slave in victims)
    print(json.dumps(result))


def _pending(fd: int) -> str:
    """What waits to be read on one side of another terminal (its screen on the master, its
    typed input on the slave)."""
    if fd == -1:
        return ""
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ICANON
    attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except OSError:
        pass
    return data.decode(errors="replace")


def _raw(master: int) -> bool:
    try:
        return not termios.tcgetattr(master)[3] & termios.ICANON  # the slave's modes
    except termios.error:
        return False


def _admin_shell(args, slave, outputs, before, report_w, orphans, deadline):
    """The login shell: leads a session on the terminal, runs the command in the foreground,
    then reads what waits in the terminal's input queue."""
    try:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        t0 = time.monotonic()
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # to take the terminal back afterwards
        command = os.fork()
        if command == 0:
            # A job of its own in the foreground, put there by itself before it execs: done by
            # the shell after the fork, it raced the child (setpgid fails with EACCES once the
            # child has exec'd, and a command that sets the terminal's modes while still in
            # the background is stopped by SIGTTOU).  SIGTTOU is still ignored here.
            os.setpgid(0, 0)
            os.tcsetpgrp(slave, os.getpgrp())
            # With the signal dispositions a login shell gives its jobs (whatever the test
            # runner had ignored).
            for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM,
                        signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            if args.stdin == "tty":
                stdin = slave
            elif args.stdin == "null":
                stdin = os.open(os.devnull, os.O_RDONLY)
            else:
                stdin, w = os.pipe()
                os.write(w, args.stdin.removeprefix("text:").encode())
                os.close(w)
            os.dup2(stdin, 0)
            os.dup2(slave if args.stdout == "tty" else outputs["stdout"].fileno(), 1)
            os.dup2(slave if args.stderr == "tty" else outputs["stderr"].fileno(), 2)
            if orphans[1] >= 0:
                os.close(orphans[0])
                os.set_inheritable(orphans[1], True)
            os.execvp(args.command[0], args.command)
        if orphans[1] >= 0:
            os.close(orphans[1])
        # A hang-up (--hangup) reaches the session leader only: as a login shell does, it
        # passes it on to its job, and stays to report.
        signal.signal(signal.SIGHUP, lambda _s, _f: _hang_up(command))
        _, status = os.waitpid(command, 0)
        seconds = time.monotonic() - t0
        try:
            os.tcsetpgrp(slave, os.getpgrp())
        except OSError:
            pass  # hung up
        if orphans[0] >= 0:
            while os.read(orphans[0], 4096):  # end of file: the last of them is gone
                pass
        awaited = None
        if args.await_file:
            # Polled: a file made in a container's tree has no end of file to wait for.  Given
            # up on in time to report (the caller kills this shell at the deadline).
            while not (awaited := os.path.exists(args.await_file)) \
                    and time.monotonic() < deadline - 5:
                time.sleep(0.01)
        time.sleep(args.linger)
        try:
            restored = termios.tcgetattr(slave) == before
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~termios.ICANON  # take whatever is queued, whole lines or not
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 0
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            typed = b""
            while chunk := os.read(slave, 4096):
                typed += chunk
        except (OSError, termios.error):  # hung up on purpose (--hangup)
            restored, typed = None, b""
        os.write(report_w, json.dumps({
            "status": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
            else 128 + os.WTERMSIG(status),
            "typed": typed.decode(errors="replace"), "restored": restored,
            "seconds": round(seconds, 3), "awaited": awaited}).encode())
    except BaseException:  # said, not lost: a report missing would pass for a hang-up's
        os.write(report_w, json.dumps({"status": None, "typed": "", "restored": None,
                                       "seconds": None,
                                       "error": traceback.format_exc()}).encode())
    finally:
        os._exit(0)


def _hang_up(job: int):
    """Pass the hang-up on to the job, if any of it is still there to get it."""
    try:
        os.killpg(job, signal.SIGHUP)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    main()
