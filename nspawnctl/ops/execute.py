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

import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..confine import enter
from ..errors import EXEC_CANNOT_RUN, EXEC_FAILED, EXEC_NOT_FOUND, USAGE, Error
from ..run import relayed, run, with_pty
from ..runtime.context import Context
from ..runtime.incontainer import DEFAULT_PATH, literal, merged_env, systemd_run
from ..runtime.lifecycle import leader
from ..settings.files import load_config
from ..settings.values import _ENV_NAME_RE, check_text, check_user

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


def _in_booted(ctx: Context, name: str, command: list[str], options: Options,
               env: Mapping[str, str], workdir: str | None, login: bool = False) -> int:
    unit = f"nspawnctl-exec-{secrets.token_hex(8)}.service"
    argv = systemd_run(name, unit, env, workdir, options.user, options.group)
    if login:
        # the user's home, or / when it has none (nobody's /nonexistent), as a login does
        argv += ["-p", "PAMName=login", "-p", "WorkingDirectory=-~"]
    if options.tty:
        master, pty = ctx.bus.open_machine_pty(name)
        argv += ["-p", f"TTYPath={pty}", "-p", "StandardInput=tty", "-p", "StandardOutput=tty",
                 "-p", "StandardError=tty", "-p", "SendSIGHUP=yes"]
        status = with_pty([*argv, "--", *literal(command)], master,
                          keys=options.interactive)
    else:
        status = relayed([*argv, "--pipe", "--", *literal(command)],
                         stdin=options.interactive)
    return _status(name, unit, command[0], status, options, workdir)


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
