"""exec and shell: a command in a running container, with podman exec's options (-i, -t, -e,
-u, -w) and exit codes (125 for nspawnctl's own failure, 126 for a command that cannot be run,
127 for one not found, else the command's own status).

What the command sees is the container's: its environment (the settings' --env, which holds
an image's Env too) under what -e gives, its user and groups, its working directory (an
image's WorkingDir) unless -w says another.  The values of -e, -u and -w reach the command as
they are, never through a shell: systemd-run takes each as one argument, and a container that
runs a single command gets them from this process itself (confine.py).

In a booted container the command runs as a transient unit of the container's own systemd
(`systemd-run -M NAME --wait`): a clean environment, its own cgroup.  With -t its standard
streams are a pseudo-terminal that machined opens inside the container (OpenMachinePTY): the
unit's TTYPath=, so the command leads a session on it and a shell there has job control;
this process relays the pty's master, which is all of that terminal it holds.  Not
`systemd-run --pty`: systemd 252's opens the pty machined made in the container by its name
(/dev/pts/N) on the host, and hands the container that host terminal, whichever it is.
Without -t the unit gets our streams (--pipe), each that is a terminal replaced by a pty of
our own, relayed (ptyrelay.py), so the container never holds the admin's terminal.
A container running a single command has no systemd to ask: there this process enters its
namespaces itself, confined as its own processes are (confine.py).
"""

import contextlib
import math
import os
import re
import secrets
import select
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..confine import enter
from ..errors import EXEC_CANNOT_RUN, EXEC_FAILED, EXEC_NOT_FOUND, USAGE, Conflict, Error
from ..paths import service_unit
from ..run import need_tool, relayed, run, start, with_pty
from ..runtime import health as health_state
from ..runtime.context import Context
from ..runtime.health import Health
from ..runtime.lifecycle import leader, stop
from ..settings.files import load_config
from ..settings.model import ContainerConfig
from ..settings.values import _ENV_NAME_RE, check_text, check_user
from ..times import now

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_VALUE = 65536  # bytes of one -e value, -u or -w: an argument, not a file
# A login shell of the user's own, as `machinectl shell` starts one: SHELL is the user's from
# passwd (systemd sets it with User=).
LOGIN_SHELL = ("/bin/sh", "-c", 'exec "${SHELL:-/bin/sh}" -l')


@dataclass(frozen=True)
class Options:
    """exec's options, checked: -i, -t, -e (name, value pairs, in order), -u, -w."""

    interactive: bool = False
    tty: bool = False
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    group: str | None = None
    workdir: str | None = None


def parse_options(interactive: bool = False, tty: bool = False, env: Iterable[str] = (),
                  user: str | None = None, workdir: str | None = None,
                  environ: Mapping[str, str] = os.environ) -> Options:
    """exec's options as given on its command line; a bad value is one line (USAGE).
    `-e KEY` takes KEY's value from environ (nspawnctl's own environment), or sets nothing
    when KEY is not there, as podman does."""
    pairs = []
    for item in env:
        pair = parse_env_option(item, environ)
        if pair is not None:
            pairs.append(pair)
    name = group = None
    if user is not None:
        name, group = parse_user_option(user)
    return Options(interactive=interactive, tty=tty, env=tuple(pairs), user=name, group=group,
                   workdir=None if workdir is None else check_workdir(workdir))


def _usage(message: str) -> Error:
    return Error(message, exit_code=USAGE)


def _check_value(value: str, what: str):
    if len(value.encode(errors="surrogatepass")) > MAX_VALUE:
        raise _usage(f"invalid {what}: longer than {MAX_VALUE} bytes")
    try:
        check_text(value, what)
    except Error as e:
        raise _usage(e.message) from None


def parse_env_option(item: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """-e KEY=VALUE, or -e KEY (its value from environ; None when it has none)."""
    name, sep, value = item.partition("=")
    if not _ENV_NAME_RE.fullmatch(name):
        shown = item if len(item) <= 60 else item[:60] + "..."
        raise _usage(f"invalid environment variable {shown!r}: expected NAME=VALUE or NAME, "
                     "NAME made of letters, digits and _")
    if not sep:
        if name not in environ:
            return None
        value = environ[name]
    _check_value(value, f"value of environment variable {name}")
    return name, value


def parse_user_option(text: str) -> tuple[str, str | None]:
    """-u USER[:GROUP]: names or numbers, as the container knows them."""
    _check_value(text, "user")
    user, sep, group = text.partition(":")
    try:
        check_user(user)
        if sep:
            check_user(group)
    except Error as e:
        raise _usage(f"{e.message} in -u {text!r}: expected USER[:GROUP]") from None
    return user, group if sep else None


def check_workdir(path: str) -> str:
    """-w DIR: an absolute path in the container."""
    _check_value(path, "working directory")
    if not path.startswith("/"):
        raise _usage(f"invalid working directory {path!r}: give an absolute path")
    return path


def merged_env(container: Iterable[str], given: Sequence[tuple[str, str]]) -> dict[str, str]:
    """What the command gets: the container's environment (KEY=VALUE items of its settings),
    with -e's over it; later items win, as in podman."""
    env: dict[str, str] = {}
    for item in container:
        key, _, value = item.partition("=")
        env[key] = value
    env.update(given)
    return env


def exec_(ctx: Context, name: str, command: list[str], options: Options = Options()) -> int:
    """Run command in NAME (see the module docstring); its exit status is returned."""
    if not command:
        raise Error("no command given", hint=f"nspawnctl exec {name} -- CMD [ARG...]")
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    pid = leader(ctx.bus, name)
    env = merged_env(cfg.env, options.env)
    if options.tty:
        env.setdefault("TERM", _term())
    workdir = options.workdir or cfg.working_dir
    if cfg.boot:
        return _in_booted(ctx, name, command, options, env, workdir)
    if not cfg.private_users:
        # Its processes run as the host's root; only systemd-nspawn's seccomp filter and
        # bounding set hold them, and the filter cannot be put on from outside.
        raise Error(f"{name} runs without a user namespace: a command entered from "
                    "outside would run as the host's root without the container's seccomp "
                    "filter", hint=f"nspawnctl set {name} --private-users, then restart it")
    return enter(pid, command, {"PATH": DEFAULT_PATH, **env}, user=options.user,
                 group=options.group, workdir=options.workdir, tty=options.tty,
                 stdin=options.interactive)


def shell(ctx: Context, name: str, user: str | None, command: list[str]) -> int:
    """A login shell (or command) of user (root) in a booted container, as `machinectl
    shell` gives one: a login session (PAM's "login"), in the user's home, the user's shell.
    On a pseudo-terminal when our stdin and stdout are terminals; without one otherwise (a
    script's `shell NAME -- CMD`, or `shell NAME </dev/null`), as podman exec without -t:
    what it reads is our stdin, and it never waits for a terminal that is not there."""
    login, group = parse_user_option(user) if user is not None else ("root", None)
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    leader(ctx.bus, name)
    if not cfg.boot:  # a login needs the container's own systemd
        raise Error(f"{name} runs a single command, not a system with logins",
                    hint=f"run a shell in it instead: nspawnctl exec -it {name} -- sh")
    tty = os.isatty(0) and os.isatty(1)
    options = Options(interactive=True, tty=tty, user=login, group=group)
    env = {"TERM": _term()} if tty else {}
    return _in_booted(ctx, name, command or list(LOGIN_SHELL), options, env, None, login=True)


def _term() -> str:
    """Our TERM for the command's pty (as machinectl shell and podman pass it), if sane."""
    term = os.environ.get("TERM", "")
    return term if re.fullmatch(r"[A-Za-z0-9._+-]{1,64}", term) else "xterm"


def _systemd_run(name: str, unit: str, options: Options, env: Mapping[str, str],
                 workdir: str | None) -> list[str]:
    """systemd-run's command line that runs a command as unit in booted NAME (the command's
    words go after it, through _literal): exec's and the health check's."""
    # Type=simple (systemd-run's): with --wait, a command that cannot be run is told apart
    # all the same (_status), and Type=exec failed the start job of a command that ended at
    # once after a PAM login (systemd-run then said 1, whatever its status).
    argv = [need_tool("systemd-run", "systemd"), "-M", name, "--quiet", "--wait", "--collect",
            f"--unit={unit}"]
    argv += [f"--setenv={key}={value}" for key, value in env.items()]
    if options.user is not None:
        argv.append(f"--uid={options.user}")
    if options.group is not None:
        argv.append(f"--gid={options.group}")
    if workdir is not None:
        argv.append(f"--working-directory={workdir}")
    return argv


def _in_booted(ctx: Context, name: str, command: list[str], options: Options,
               env: Mapping[str, str], workdir: str | None, login: bool = False) -> int:
    unit = f"nspawnctl-exec-{secrets.token_hex(8)}.service"
    argv = _systemd_run(name, unit, options, env, workdir)
    if login:
        # the user's home, or / when it has none (nobody's /nonexistent), as a login does
        argv += ["-p", "PAMName=login", "-p", "WorkingDirectory=-~"]
    if options.tty:
        master, pty = ctx.bus.open_machine_pty(name)
        argv += ["-p", f"TTYPath={pty}", "-p", "StandardInput=tty", "-p", "StandardOutput=tty",
                 "-p", "StandardError=tty", "-p", "SendSIGHUP=yes"]
        status = with_pty([*argv, "--", *_literal(command)], master,
                          keys=options.interactive)
    else:
        status = relayed([*argv, "--pipe", "--", *_literal(command)],
                         stdin=options.interactive)
    return _status(name, unit, command[0], status, options, workdir)


def _literal(command: list[str]) -> list[str]:
    """The command's words as systemd passes them on: it expands $NAME and ${NAME} in
    ExecStart=, and takes "$$" for a "$"."""
    return [word.replace("$", "$$") for word in command]


# systemd's exit statuses for a unit's process that failed before its command ran
# (systemd.exec(5)): the step that failed, as its log line names it.
_STEPS = {200: "CHDIR", 203: "EXEC", 216: "GROUP", 217: "USER"}
_JOURNAL_WAIT = 3.0  # seconds the container's journal is given to show systemd's line


def _status(name: str, unit: str, program: str, status: int, options: Options,
            workdir: str | None) -> int:
    """The command's status, or podman's 125/126/127 when systemd could not start it: a
    status systemd uses for that is taken for one only when the container's journal has
    systemd's line for that step of this unit (the command may exit 203 itself)."""
    step = _STEPS.get(status)
    line = _failed_step(name, unit, step) if step else None
    if line is None:
        return status
    where = f"in {name}"
    if step == "EXEC":
        if "No such file or directory" in line:
            _say(f"{program}: command not found {where}")
            return EXEC_NOT_FOUND
        _say(f"{program}: cannot run it {where} (not executable, or not a program)")
        return EXEC_CANNOT_RUN
    if step == "CHDIR":
        _say(f"cannot change to directory {workdir or 'of its home'} {where}")
    elif step == "USER":
        _say(f"no user {options.user!r} {where}")
    else:
        _say(f"no group {options.group!r} {where}")
    return EXEC_FAILED


def _failed_step(name: str, unit: str, step: str) -> str | None:
    """systemd's "Failed at step STEP" line for unit in the container's journal, if any.  The
    container's root could forge one: all it gains is a wrong 125-127 for its own command."""
    deadline = time.monotonic() + _JOURNAL_WAIT
    while True:
        # By UNIT= (systemd's field), not -u: a line the unit's process sent as it exited
        # has no _SYSTEMD_UNIT= (journald found it gone), and -u takes UNIT= from PID 1 only.
        proc = run(["journalctl", "-M", name, f"UNIT={unit}", "-o", "cat", "--no-pager", "-q",
                    "-n", "50"], check=False, timeout=10)
        for line in proc.stdout.splitlines():
            if f"Failed at step {step} spawning" in line:
                return line
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _say(message: str):
    os.write(2, f"nspawnctl: {message}\n".encode(errors="replace"))


# ---------------------------------------------------------------- health checks

# Beyond a check's timeout: what systemd-run (or the entered command) is given to end after
# its signal before it is killed, and the container's systemd to stop the unit.
_GRACE = 2.0


def health(ctx: Context, name: str, scheduled: bool = False) -> Health | None:
    """Run NAME's health check now and keep what it found (runtime/health.py); with
    --on-unhealthy, act when this check made it unhealthy.  The check runs as `exec` runs a
    command: in a booted container a unit of its own systemd, else entered confined.  Without
    a --health-cmd a booted container is healthy when its systemd says running, a single
    command while it runs.  scheduled (the timer's run): a container that is not running has
    nothing to check (None), where the user's `health NAME` is told it is not running."""
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    props = ctx.bus.machine_properties(name)
    if props is None:
        if scheduled:
            return None
        raise Conflict(f"{name} is not running", hint=f"start it first: nspawnctl start {name}")
    run_id = health_state.run_of(props)
    prev = health_state.load(ctx.paths, name)
    in_start_period = time.time() - int(props.get("Timestamp") or 0) / 1e6 \
        < cfg.health_start_period
    degraded, status = False, None
    if cfg.health_cmd:
        status, output = probe(ctx, name, cfg, int(props["Leader"]), list(cfg.health_cmd),
                               cfg.health_timeout)
        ok = status == 0
        if status is None:
            output += f"\nthe check took longer than {cfg.health_timeout}s"
    else:
        ok, output, degraded = health_state.without_check(cfg, name, prev, run_id)
    checked = now()
    state, crossed = health_state.advance(prev, cfg, run_id, ok, output, status, checked,
                                          in_start_period, degraded)
    action = cfg.on_unhealthy if crossed and cfg.on_unhealthy != "none" else None
    if action is not None:
        state = replace(state, action=action)
    health_state.save(ctx.paths, name, state)  # before acting: a restart may end this process
    if action is not None:
        _act(ctx, name, action)
    return state


def health_gate(ctx: Context, name: str, timeout: float) -> str | None:
    """Whether NAME, just started, passes its --health-cmd: None when it has none or a check
    passed, else why not.  For auto-update's decision to keep a new image: the check runs as
    `health` runs it (probe), every interval, up to retries failures in a row once the start
    period is over, within timeout; nothing is recorded and --on-unhealthy is not acted on
    (the caller rolls back instead)."""
    cfg = load_config(ctx.paths, name, dropin=False)
    if not cfg.health_cmd:
        return None
    started = time.monotonic()
    deadline = started + timeout
    failures, output = 0, ""
    while True:
        props = ctx.bus.machine_properties(name)
        if props is None:
            return "it stopped before its health check passed"
        status, output = probe(ctx, name, cfg, int(props["Leader"]), list(cfg.health_cmd),
                               cfg.health_timeout)
        if status == 0:
            return None
        if time.monotonic() - started >= cfg.health_start_period:
            failures += 1
        if failures >= cfg.health_retries or time.monotonic() >= deadline:
            last = output.strip().splitlines()[-1:] or ["no output"]
            said = f"{'timed out' if status is None else f'exit {status}'}: {last[0][:200]}"
            if failures >= cfg.health_retries:
                return f"its health check failed {failures} times in a row ({said})"
            return f"its health check did not pass within {timeout:g} s ({said})"
        time.sleep(max(0.0, min(cfg.health_interval, deadline - time.monotonic())))


def _act(ctx: Context, name: str, action: str):
    """--on-unhealthy.  restart: a job of systemd's on the container's unit, not waited for
    (the unit that runs this check is not part of the container's: the job does not end
    it).  stop: as `nspawnctl stop` stops it (a single command's exit 1 for the stop is no
    failure; terminated after the stop timeout).  kill: SIGKILL to all its processes."""
    unit = service_unit(name)
    if action == "restart":
        ctx.bus.restart_unit(unit)
    elif action == "stop":
        stop(ctx, name)
    elif action == "kill":
        ctx.bus.kill_unit(unit, signal.SIGKILL)


def probe(ctx: Context, name: str, cfg: ContainerConfig, pid: int, command: list[str],
          timeout: float) -> tuple[int | None, str]:
    """Run command in running NAME (leader pid) as exec would, its output (both streams,
    MAX_OUTPUT bytes of it kept) captured instead of shown: (its exit status, or None when it
    took longer than timeout; what it wrote)."""
    if not cfg.boot and not cfg.private_users:
        raise Error(f"{name} runs without a user namespace: its health check would run as "
                    "the host's root", hint=f"nspawnctl set {name} --private-users")
    env = merged_env(cfg.env, ())
    deadline = time.monotonic() + timeout
    read, write = os.pipe()
    try:
        if cfg.boot:
            unit = f"nspawnctl-health-{secrets.token_hex(8)}.service"
            # RuntimeMaxSec=: the container's own systemd ends the command at the timeout
            argv = _systemd_run(name, unit, Options(), env, cfg.working_dir)
            argv += ["-p", f"RuntimeMaxSec={max(1, math.ceil(timeout))}", "--pipe", "--",
                     *_literal(command)]
            child = _Child(proc=start(argv, stdout=write, stderr=write))
        else:
            child = _Child(_entered(pid, command, {"PATH": DEFAULT_PATH, **env}, read, write))
    finally:
        os.close(write)
    try:
        output = _collect(read, child, deadline)
    finally:
        os.close(read)
    return child.status, health_state.bounded(output)


class _Child:
    """A process of ours, reaped by pid: status is its exit status once it ended (None while
    it runs, and when it was ended for taking too long)."""

    def __init__(self, pid: int = 0, proc: Any = None):  # proc: run.start()'s Popen
        self.pid = proc.pid if proc is not None else pid
        self.proc = proc  # start()'s: told its status, so it never waits for it itself
        self.status: int | None = None
        self.done = False

    def ended(self, block: bool = False) -> bool:
        if not self.done:
            done, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if done:
                self.done, self.status = True, os.waitstatus_to_exitcode(status)
                if self.proc is not None:
                    self.proc.returncode = self.status
        return self.done

    def end(self):
        """Too late: SIGTERM (the relay passes it on to the command), SIGKILL after _GRACE."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        late = time.monotonic() + _GRACE
        while not self.ended() and time.monotonic() < late:
            time.sleep(0.02)
        if not self.done:
            for kill in (os.killpg, os.kill):  # its session (an entered one has its own)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(self.pid, signal.SIGKILL)
            self.ended(block=True)
        self.status = None


def _entered(pid: int, command: list[str], env: dict[str, str], read: int, write: int) -> int:
    """A child that enters the container (confine.enter, as exec does) and runs command with
    its output on write, in a session of its own; its pid.  Forked: entering changes the
    namespaces and cgroup of the process that does it."""
    child = os.fork()
    if child == 0:  # pragma: no cover (ends in _exit)
        status = EXEC_FAILED
        try:
            os.setsid()
            os.close(read)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(write, 1)
            os.dup2(write, 2)
            status = enter(pid, command, env, stdin=False)
        except Error as e:
            os.write(2, f"nspawnctl: {e.message}\n".encode(errors="replace"))
        except BaseException:
            pass
        finally:
            os._exit(status)
    return child


def _collect(fd: int, child: _Child, deadline: float) -> bytes:
    """What child writes on fd (MAX_OUTPUT bytes kept; the rest is read and dropped, so a
    chatty check never blocks on a full pipe) until it ended and its output with it, or the
    deadline passed (then it is ended: child.end())."""
    kept = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            child.end()
            return bytes(kept)
        ready, _, _ = select.select([fd], [], [], min(left, 0.05))
        chunk = os.read(fd, 65536) if ready else None
        if chunk:
            kept += chunk[:max(0, health_state.MAX_OUTPUT - len(kept))]
            continue
        # EOF (every writer gone), or nothing for a while: done once the child ended.  A
        # command that left something of its own holding the pipe ends with the child.
        if child.ended():
            return bytes(kept)
