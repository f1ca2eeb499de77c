"""Running a command in a running container, as `exec` and the health checks run one: the
environment it gets, systemd-run's command line for a booted container (the command runs as a
unit of the container's own systemd), and a check's command run with its output captured and
its time bounded (Check), without blocking the caller: the health scheduler runs many at once.

A container that runs a single command has no systemd to ask: there the check's process
enters its namespaces itself, confined as exec's command is (confine.spawn_entered).
"""

import contextlib
import math
import os
import secrets
import select
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..confine import Entry, opened, spawn_entered
from ..run import need_tool, start
from ..settings.model import ContainerConfig
from . import health as health_state

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Beyond a check's timeout: what systemd-run (or the entered command) is given to end after
# its signal before it is killed, and the container's systemd to stop the unit.
GRACE = 2.0


def readable(fds: Iterable[int], timeout: float | None) -> set[int]:
    """Which of fds are readable (or hung up), waiting up to timeout seconds (None: until one
    is).  poll, not select: the health scheduler holds about ten descriptors a container
    (confine.Entry, a pidfd of its leader), and select takes none numbered 1024 or more."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    wait = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return {fd for fd, _ in poller.poll(wait)}


def merged_env(container: Iterable[str], given: Sequence[tuple[str, str]]) -> dict[str, str]:
    """What the command gets: the container's environment (KEY=VALUE items of its settings),
    with -e's over it; later items win, as in podman."""
    env: dict[str, str] = {}
    for item in container:
        key, _, value = item.partition("=")
        env[key] = value
    env.update(given)
    return env


def systemd_run(name: str, unit: str, env: Mapping[str, str], workdir: str | None,
                user: str | None = None, group: str | None = None) -> list[str]:
    """systemd-run's command line that runs a command as unit in booted NAME (the command's
    words go after it, through literal()): exec's and the health check's."""
    # Type=simple (systemd-run's): with --wait, a command that cannot be run is told apart
    # all the same (exec's _status), and Type=exec failed the start job of a command that
    # ended at once after a PAM login (systemd-run then said 1, whatever its status).
    argv = [need_tool("systemd-run", "systemd"), "-M", name, "--quiet", "--wait", "--collect",
            f"--unit={unit}"]
    argv += [f"--setenv={key}={value}" for key, value in env.items()]
    if user is not None:
        argv.append(f"--uid={user}")
    if group is not None:
        argv.append(f"--gid={group}")
    if workdir is not None:
        argv.append(f"--working-directory={workdir}")
    return argv


def literal(command: list[str]) -> list[str]:
    """The command's words as systemd passes them on: it expands $NAME and ${NAME} in
    ExecStart=, and takes "$$" for a "$"."""
    return [word.replace("$", "$$") for word in command]


class Check:
    """A check's command running in container NAME (leader pid), started at once: its output
    (both streams; MAX_OUTPUT bytes kept, the rest read and dropped, so a chatty command never
    blocks on a full pipe) gathered by pump() until it ended, or ended by pump() once its
    timeout passed.  The caller waits on waits() (readable()) and calls pump() when one is
    readable or at the deadline; done says it is over, status is its exit status (None: it
    took too long).  In a booted container it is a unit of the container's systemd (systemd-run, the
    container's systemd ends it at the timeout too); else a process of ours that entered
    the container."""

    def __init__(self, pid: int, fd: int, timeout: float, proc: Any = None):
        """The check running as process pid (proc: its run.start() Popen, if it is one),
        writing to the read end fd."""
        self.pid, self.fd, self.timeout, self._proc = pid, fd, timeout, proc
        self.deadline = time.monotonic() + timeout
        self.kept = bytearray()
        self.done = False
        self.eof = False  # every writer of the pipe is gone
        self.late = False  # past its timeout: told to end (deadline: when it is killed)
        self.status: int | None = None
        os.set_blocking(fd, False)
        # Readable once the process ended: its end is waited for, never polled (the pipe's
        # end comes a moment before it, or, with a process of its own left holding the
        # pipe, never).
        self.ended_fd = os.pidfd_open(pid)

    @classmethod
    def start(cls, name: str, cfg: ContainerConfig, leader: int, command: list[str],
              timeout: float, entry: Entry | None = None) -> "Check":
        """command started in NAME (leader pid); entry: the way into a container that is not
        booted (confine.opened), kept by a caller that checks it again and again (else
        opened and closed here)."""
        env = merged_env(cfg.env, ())
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            if cfg.boot:
                unit = f"nspawnctl-health-{secrets.token_hex(8)}.service"
                # RuntimeMaxSec=: the container's own systemd ends the command at the timeout
                argv = systemd_run(name, unit, env, cfg.working_dir)
                argv += ["-p", f"RuntimeMaxSec={max(1, math.ceil(timeout))}", "--pipe", "--",
                         *literal(command)]
                proc = start(argv, stdout=write, stderr=write)
                return cls(proc.pid, read, timeout, proc)
            way = entry if entry is not None else opened(leader)
            try:
                pid = spawn_entered(way, command, {"PATH": DEFAULT_PATH, **env}, write)
            finally:
                if entry is None:
                    way.close()
            return cls(pid, read, timeout)
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)

    def waits(self) -> list[int]:
        """What to wait on (readable()) until pump() has something to do, besides the deadline."""
        return [self.ended_fd] if self.eof else [self.fd, self.ended_fd]

    def pump(self) -> bool:
        """Read what it wrote; end it once its time is up; True once it is over (then fd is
        closed).  Ending it takes two deadlines, so that no caller blocks on it: at the
        timeout SIGTERM (systemd-run passes it on to the unit), GRACE seconds later SIGKILL.
        A command that left something of its own holding the pipe ends with its process:
        the check is over when the process ended, whatever still holds the pipe."""
        if self.done:
            return True
        self._drain()
        if self._ended():
            self._drain()  # what it wrote between the read and its end
            self._finish()
        elif time.monotonic() >= self.deadline:
            if not self.late:
                self.late = True
                self.deadline = time.monotonic() + GRACE
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                return False
            for kill in (os.killpg, os.kill):  # its session too (an entered one leads its own)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(self.pid, signal.SIGKILL)
            self._ended(block=True)
            self._drain()
            self._finish()
        if self.done and self.late:
            self.status = None  # it took too long, whatever it ended with
        return self.done

    def _drain(self):
        """What is in the pipe now; at most 1 MiB a call, so a check that writes without end
        holds up no other (the scheduler's) until its deadline ends it."""
        for _ in range(16):
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
                return
            self.kept += chunk[:max(0, health_state.MAX_OUTPUT - len(self.kept))]

    def output(self) -> str:
        text = health_state.bounded(bytes(self.kept))
        if self.done and self.status is None:  # its last line says so (status, list)
            text = f"{text.rstrip(chr(10))}\nthe check took longer than {self.timeout:g}s"
        return text

    def wait(self) -> tuple[int | None, str]:
        """Block until it is over: (its exit status, or None when it took too long; its
        output)."""
        while not self.pump():
            readable(self.waits(), self.deadline - time.monotonic())
        return self.status, self.output()

    def kill(self):
        """Ended now, whatever it was doing (the scheduler stops, its container went away,
        its command changed): as past its timeout, but waited for here."""
        if not self.late:
            self.deadline = 0.0
        while not self.pump():
            readable([self.ended_fd], self.deadline - time.monotonic())

    def _ended(self, block: bool = False) -> bool:
        done, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if done:
            self.status = os.waitstatus_to_exitcode(status)
            if self._proc is not None:
                self._proc.returncode = self.status
            return True
        return False

    def _finish(self):
        self.done = True
        os.close(self.fd)
        os.close(self.ended_fd)
