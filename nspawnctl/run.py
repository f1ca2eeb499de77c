"""The one subprocess wrapper.

Commands are argv lists, never shell strings built from user input.  A failing
command becomes an Error carrying the command, its exit code and the tail of
its output, so the user sees why without digging.

subprocess and shutil are imported where a command runs: list, status and stop run none, and
the imports are about 3 ms of their start-up (ptyrelay, for `exec`, likewise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import log
from .errors import Error

if TYPE_CHECKING:
    import subprocess

TAIL_LINES = 10


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when nspawnctl dies, even by SIGKILL, so no cp or
    debootstrap goes on writing into a staging directory nobody owns any more."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, 9)


def contained(argv: Sequence[str], proc: str | None = None, network: bool = True) -> list[str]:
    """argv run as PID 1 of its own PID and mount namespaces, for bootstrappers and the
    package installs of upgrade and incremental bases.

    die_with_parent() reaches only the direct child, and debootstrap's own children (dpkg,
    chroot'ed maintainer scripts) would outlive a SIGKILLed nspawnctl, as would the /proc and
    /sys it mounts in the tree it builds (its exit trap never runs), leaving a staging
    directory no sweep can delete.  Here the kernel kills every process in the namespace when
    its PID 1 dies (unshare --kill-child, itself killed by die_with_parent), and the mounts go
    with the mount namespace.  proc: where to mount a /proc of the new PID namespace
    (systemd-nspawn finds its children there by the PIDs it sees; a chroot needs one in the
    tree).  network=False: a network namespace with nothing in it.
    """
    need_tool("unshare", "util-linux")
    return ["unshare", "--mount", "--propagation=private", "--pid", "--kill-child=SIGKILL",
            *([f"--mount-proc={proc}"] if proc else []), *([] if network else ["--net"]),
            "--", *argv]


def need_tool(name: str, package: str | None = None) -> str:
    """Path of a required program, or a clear error naming the package to install."""
    import shutil
    path = shutil.which(name)
    if path is None:
        raise Error(f"{name} is not installed",
                    hint=f"install it: apt-get install {package or name}")
    return path


def run(argv: Sequence[str | os.PathLike], *, check: bool = True, capture: bool = True,
        input: str | bytes | None = None, env: dict | None = None,
        timeout: float | None = None, what: str | None = None) -> subprocess.CompletedProcess:
    """Run argv; on failure raise Error with the command, exit code and output tail.

    capture=True collects stdout/stderr as text; capture=False lets the child
    use our terminal (interactive shells).
    """
    import subprocess
    args = [os.fspath(a) for a in argv]
    log.debug(__name__, "run: %s", " ".join(args))
    text = not isinstance(input, bytes)
    try:
        proc = subprocess.run(args, check=False, input=input, env=env, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, text=text,
                              preexec_fn=die_with_parent)
    except FileNotFoundError:
        raise Error(f"{args[0]} is not installed",
                    hint=f"install the package that provides {args[0]}") from None
    except subprocess.TimeoutExpired:
        raise Error(f"{what or args[0]} did not finish within {timeout:g} s") from None
    if check and proc.returncode != 0:
        output = ""
        if capture:
            out, err = _text(proc.stdout), _text(proc.stderr)
            output = tail(err or out)
        message = f"{what or args[0]} failed (exit {proc.returncode}): {' '.join(args)}"
        raise Error(message + (f"\n{output}" if output else ""))
    return proc


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def interactive(argv: Sequence[str], env: dict | None = None) -> int:
    """Run argv on our own terminal (stdin, stdout and stderr pass through, as for a shell or
    `exec`); returns its exit status for nspawnctl to pass on."""
    import subprocess
    log.debug(__name__, "run: %s", " ".join(argv))
    return subprocess.run(list(argv), env=env).returncode


def relayed(argv: Sequence[str], stdin: bool = True) -> int:
    """Run argv, which reaches into a container, in a session of its own and with a new pty in
    place of each of our standard streams that is a terminal (ptyrelay.py): nothing it starts
    there gets the admin's terminal.  Returns its exit status for nspawnctl to pass on.
    stdin=False: it reads /dev/null (`exec` without -i)."""
    from . import ptyrelay
    log.debug(__name__, "run: %s", " ".join(argv))

    def child():
        try:
            os.execvp(argv[0], list(argv))
        except OSError as e:
            os.write(2, f"nspawnctl: cannot run {argv[0]}: {e.strerror}\n".encode())
            os._exit(127 if isinstance(e, FileNotFoundError) else 126)
    return ptyrelay.spawn(child, stdin=stdin)


def with_pty(argv: Sequence[str], master: int, keys: bool) -> int:
    """Run argv (systemd-run, starting a command in a container on the pty whose master is
    given) off our terminal, in a session of its own, and relay master to our stdout (and our
    keys to it, with keys) until argv ends; master is closed then.  Returns argv's status.
    What argv itself says goes to our stderr."""
    import subprocess

    from . import ptyrelay
    log.debug(__name__, "run: %s", " ".join(argv))
    ptyrelay.copy_window_size(master)
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=die_with_parent)
    except OSError as e:
        os.close(master)
        raise Error(f"cannot run {argv[0]}: {e.strerror}") from None
    assert proc.stderr is not None
    pidfd = os.pidfd_open(proc.pid)
    try:
        ptyrelay.relay(master, pidfd, (0, 1) if keys else (1,))
    finally:
        os.close(pidfd)
        said = proc.stderr.read(1 << 16)
        proc.stderr.close()
        proc.wait()
    if said:
        os.write(2, said)
    return proc.returncode


def stream(argv: Sequence[str]) -> subprocess.Popen:
    """Start argv with its stdout and stderr merged into one text pipe the caller reads line by
    line (progress of a long command); it dies with nspawnctl."""
    import subprocess
    log.debug(__name__, "run: %s", " ".join(argv))
    return subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace",
                            preexec_fn=die_with_parent)


def start(argv: Sequence[str], *, stdout=None, stderr=None,
          file_size_limit: int | None = None) -> subprocess.Popen:
    """Start argv for a caller that watches it and bounds it itself (skopeo: what a registry
    sends): stdin from /dev/null, stdout and stderr "pipe", a file, or None for /dev/null;
    dying with nspawnctl; with file_size_limit, no file it writes can grow past that many bytes
    (RLIMIT_FSIZE: the write fails with EFBIG).  kill() ends it."""
    import resource
    import subprocess
    log.debug(__name__, "run: %s", " ".join(argv))

    def preexec():
        die_with_parent()
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    def stream(how):
        return subprocess.PIPE if how == "pipe" else subprocess.DEVNULL if how is None else how
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=stream(stdout),
                                stderr=stream(stderr), preexec_fn=preexec)
    except FileNotFoundError:
        raise Error(f"{argv[0]} is not installed", hint=f"install the package that provides "
                                                       f"{argv[0]}") from None


def wait_up_to(proc: subprocess.Popen, seconds: float) -> None:
    """Wait for a process start() made, at most seconds: back as soon as it exits (a watch
    loop between its looks, which a sleep would make a look late)."""
    import subprocess
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a process start() made (one program: skopeo starts none), and reap it."""
    proc.kill()
    proc.wait()
