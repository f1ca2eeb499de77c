"""Running a command that a container controls without handing it the admin's terminal.

A process whose controlling terminal is the admin's can type into it: TIOCSTI (kernels before
6.2, or with dev.tty.legacy_tiocsti=1) queues bytes that the admin's root shell reads as typed
once the command returns, and whatever the command leaves running keeps that power.  A process
that merely holds the terminal can still change its modes, flush what the admin typed ahead,
read the keys typed after the command returned, and take it as its controlling terminal when
no session owns it.  A container's root controls what runs there (its binaries, and ptrace of
its own processes), so what `exec` starts never gets the admin's terminal:

- it runs in a session of its own (setsid, always): no controlling terminal of ours, not in
  our foreground process group;
- each of its standard streams that is a terminal is replaced by the slave of a new
  pseudo-terminal, made its controlling terminal, and this process relays between the pty's
  master and the admin's terminal (raw while keys are read, so Ctrl-C, Ctrl-Z and Ctrl-D
  reach the command's side as bytes; restored on every way out), with the window size copied
  and followed (SIGWINCH), as `machinectl shell` and `ssh -t` do.  When the command ends, the
  output still queued is copied and the pty is hung up: nothing it left behind keeps a way to
  any terminal;
- streams that are pipes or files are passed as given: output redirected to a file keeps its
  bytes (no \\r\\n) and stderr stays apart.

SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to nspawnctl go to the command's process group
instead of ending nspawnctl, and the command's exit status is returned as a shell reports it
(128+N for signal N).  spawn() is the whole of it for a command started here; relay() serves a
pty master got elsewhere (machined's OpenMachinePTY, say) for `exec -t` and `shell`.
"""

import fcntl
import os
import select
import signal
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from .errors import Error

STDIO = (0, 1, 2)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Python starts with these ignored, and an ignored signal stays ignored across exec: a command
# would see EPIPE where it expects to die of SIGPIPE (subprocess's restore_signals does this).
DEFAULTED = (signal.SIGPIPE, signal.SIGXFSZ)
CHUNK = 65536
# After the command ended: how long output still coming (from what it left running) is copied
# before the pty is hung up.  What the command itself wrote is queued already, and read at once.
DRAIN_SECONDS = 1.0


def terminals() -> tuple[int, ...]:
    """Those of our standard streams that are terminals: the ones the command gets a pty for."""
    return tuple(fd for fd in STDIO if os.isatty(fd))


def spawn(child: Callable[[], None], tty: bool = False, stdin: bool = True) -> int:
    """Fork; the child goes into a session of its own, with a new pty in place of each of our
    standard streams that is a terminal (see the module docstring), and calls child(), which
    must exec (an exception or a return exits it with 126).  Relays until it ends; returns its
    exit status (128+N for signal N).

    tty (`exec -t`): the pty takes the place of all three streams, terminals of ours or not,
    and its output goes to our stdout, as podman's.  stdin=False (`exec` without -i): the
    command reads /dev/null, or the pty with -t, and no key of ours is passed on."""
    ttys = STDIO if tty else terminals()
    if not stdin and not tty:
        ttys = tuple(fd for fd in ttys if fd != 0)
    keyed = ttys if stdin else tuple(fd for fd in ttys if fd != 0)
    master = slave = -1
    if ttys:
        try:
            master, slave = os.openpty()
        except OSError as e:
            raise Error(f"cannot open a pseudo-terminal for the command: {e.strerror}",
                        hint="is /dev/pts mounted, and kernel.pty.max not reached?") from None
        copy_window_size(master)
    # Blocked from before the fork until each side has its own handlers: a Ctrl-C in between
    # neither runs our forwarding in the child nor ends us with the child left behind.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    # One that nspawnctl was started with ignored (nohup, a background job of a plain sh)
    # stays ignored for the command, as across any exec, and is not forwarded either.
    forwarded = [sig for sig in FORWARDED if signal.getsignal(sig) != signal.SIG_IGN]
    ready = set_up = -1
    try:
        # Closed by the child once the pty is its controlling terminal; keys are relayed only
        # from then on: until a session has the pty, its line discipline drops a Ctrl-C
        # (Ctrl-\, Ctrl-Z) typed at once, and the command would run on as if it had not been.
        ready, set_up = os.pipe()
        pid = os.fork()
    except OSError as e:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (master, slave, ready, set_up):
            if fd >= 0:
                os.close(fd)
        raise Error(f"cannot start the command: {e.strerror}") from None
    if pid == 0:  # pragma: no cover (ends in exec or _exit)
        os.close(ready)
        _become_child(child, mask, forwarded, master, slave, ttys, set_up, stdin or tty)
    os.close(set_up)
    if slave >= 0:
        os.close(slave)
    pidfd = os.pidfd_open(pid)
    previous = {sig: signal.signal(sig, lambda signum, _frame: _signal(pid, signum))
                for sig in forwarded}
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        os.read(ready, 1)  # end of file: the child has its terminal, or is gone
        if master >= 0:
            relay(master, pidfd, keyed)
        else:
            select.select([pidfd], [], [])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(pidfd)
        os.close(ready)
    # Reaped only now: until here its pid (its process group's id) could not be reused, so no
    # forwarded signal went to a stranger.
    _, status = os.waitpid(pid, 0)
    return exit_status(status)


def exit_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def relay(master: int, done: int, ttys: tuple[int, ...]):
    """Copy our terminal's keys to master and master's output to our terminal until done (a
    pidfd, or any fd that becomes readable when the command has ended) is readable, then the
    output still queued; master is closed (the pty hung up) on return.  ttys: which of our
    standard streams are the terminal; keys are read (in raw mode) only if stdin is one; the
    output goes to stdout if it is one of them, else stderr, else stdin."""
    keys = 0 if 0 in ttys else -1
    screen: int = next((fd for fd in (1, 2, 0) if fd in ttys), 1)
    os.set_blocking(master, False)
    # The master while the command's side has the slave open; -1 once no one has (EIO): the
    # master is kept open all the same until the command ends.  Closing it then would hang
    # the slave up, and the kernel sends SIGHUP to the session's leader, the command, alive
    # still: cat, like every program that closes its standard streams before it exits,
    # would die of it after its last byte.
    pty = master
    to_master = b""
    try:
        with _raw(keys), _following_window_size(screen, master):
            while True:
                poller = select.poll()
                poller.register(done, select.POLLIN)
                if pty >= 0:
                    poller.register(pty, select.POLLIN | (select.POLLOUT if to_master else 0))
                if keys >= 0 and len(to_master) < CHUNK:
                    poller.register(keys, select.POLLIN)
                events = dict(poller.poll())
                if done in events:
                    break
                if pty >= 0 and events.get(pty, 0) & ~select.POLLOUT:
                    data = _read(pty)
                    if data is None:  # no slave left open: wait for the command's end
                        pty = keys = -1
                        continue
                    screen = _write_all(screen, data)
                if pty >= 0 and events.get(pty, 0) & select.POLLOUT:
                    try:
                        to_master = to_master[os.write(pty, to_master):]
                    except BlockingIOError:
                        pass
                    except OSError:
                        pty = keys = -1
                        continue
                if keys >= 0 and keys in events:
                    data = _read(keys)
                    if data is None:  # our terminal is gone: so is the command's
                        master = pty = _hang_up(master)
                        keys = -1
                        continue
                    to_master += data
            if master >= 0:
                _drain(master, screen)
    finally:
        _hang_up(master)


def _become_child(child: Callable[[], None], mask, forwarded: list[signal.Signals],
                  master: int, slave: int, ttys: tuple[int, ...],
                  set_up: int, stdin: bool):  # pragma: no cover (runs in the forked child)
    try:
        for sig in [*forwarded, *DEFAULTED]:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.setsid()
        if not stdin:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if slave >= 0:
            os.close(master)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in ttys:
                os.dup2(slave, fd)
            os.close(slave)
        os.close(set_up)
        child()
    except BaseException as e:
        with suppress(OSError):
            os.write(2, f"nspawnctl: cannot start the command: {e}\n".encode())
    os._exit(126)


def _signal(pid: int, signum: int):
    """Pass signum on to the command's process group (its session leader's: the child's own
    pid once it called setsid), or to the child itself if it has not got that far."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def _read(fd: int) -> bytes | None:
    """What fd has now (b"" if nothing yet), or None once it is gone: end of file (a terminal
    hung up), or EIO (a pty master with no slave left open), or any other failure."""
    try:
        return os.read(fd, CHUNK) or None
    except BlockingIOError:  # non-blocking, and what poll saw was taken by someone else
        return b""
    except OSError:
        return None


def _write_all(fd: int, data: bytes) -> int:
    """Write data to our terminal; returns fd, or -1 once it cannot be written any more
    (hung up, or stdin opened read-only): the output is dropped then, and the command goes on."""
    while data and fd >= 0:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:  # a terminal someone left non-blocking
            select.select([], [fd], [])
        except OSError:
            return -1
    return fd


def _drain(master: int, screen: int):
    """The output still queued once the command has ended; bounded in time, since what it left
    running may go on writing."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        try:
            data = os.read(master, CHUNK)
        except (BlockingIOError, OSError):  # nothing more, or no slave left (EIO)
            return
        if not data:
            return
        screen = _write_all(screen, data)


def _hang_up(master: int) -> int:
    """Close the pty's master: the kernel hangs up its slave (SIGHUP to the session that has
    it, EIO to every later read, write or ioctl on it)."""
    if master >= 0:
        with suppress(OSError):
            os.close(master)
    return -1


def copy_window_size(master: int):
    """The pty takes the size of the first of our standard streams that is a terminal."""
    for fd in terminals()[:1]:
        _copy_window_size(fd, master)


def _copy_window_size(source: int, master: int):
    with suppress(OSError):
        fcntl.ioctl(master, termios.TIOCSWINSZ,
                    fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8))


@contextmanager
def _following_window_size(source: int, master: int) -> Iterator[None]:
    """The pty takes our terminal's size whenever it changes (the kernel then sends SIGWINCH
    to the pty's foreground process group)."""
    if source < 0:
        yield
        return
    previous = signal.signal(signal.SIGWINCH, lambda _s, _f: _copy_window_size(source, master))
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


@contextmanager
def _raw(fd: int) -> Iterator[None]:
    """fd's terminal in raw mode (cfmakeraw's settings): every key reaches the command's pty as
    a byte, and its line discipline, not ours, acts on Ctrl-C.  Restored however we leave,
    without discarding what the admin typed ahead (TCSADRAIN, not TCSAFLUSH)."""
    if fd < 0:
        yield
        return
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    raw = [*saved[:6], list(saved[6])]
    raw[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    raw[1] &= ~termios.OPOST
    raw[2] = raw[2] & ~(termios.CSIZE | termios.PARENB) | termios.CS8
    raw[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSADRAIN, raw)
    try:
        yield
    finally:
        with suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

