"""`nspawnctl --host [USER@]HOST[:PORT]`: the command runs on HOST, over ssh, by the nspawnctl
installed there (as `machinectl -H` and `podman --connection`).

Nothing about containers is done here: this side only checks HOST, builds ssh's command line
and passes the far nspawnctl's exit status on, so both sides' versions need not match beyond
the command's own options.  A foundation module beside run.py (it is a way of running a
program, and the only one that is not a local program): the cli calls it before any command
module is loaded, so `-H` needs neither pystemd nor a systemd here.

ssh joins the words after HOST into one string that the far user's login shell parses, so
every word is quoted here (shlex: single quotes, which sh, bash, dash and zsh read literally);
an argument like `a b; touch /tmp/x` or `$(id)` arrives as one word, unexpanded.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from . import run
from .errors import FAILURE, Error, Usage

SSH_FAILED = 255  # ssh's own exit status when it fails (it passes the far command's through)
MAX_SAID = 1 << 16  # bytes of ssh's own messages read back
MAX_HOST = 320    # USER@ (32) + a DNS name (253) + :PORT, with room to spare

# A user name as Debian's adduser allows it, then a host name, an ssh_config alias or an IPv4
# address, or an IPv6 address in brackets; then a port.  Nothing starts with '-' (ssh would
# read an option), no space, quote or control character.
_DESTINATION = re.compile(
    r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
    r"(?:(?P<name>[A-Za-z0-9_][A-Za-z0-9._-]*)|\[(?P<ipv6>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\])"
    r"(?::(?P<port>[0-9]{1,5}))?")


@dataclass(frozen=True)
class Destination:
    """Where ssh goes: [USER@]HOST as ssh takes it, and a port (None: ssh's own choice, from
    ~/.ssh/config or 22)."""

    target: str
    port: int | None = None


def destination(value: str) -> Destination:
    """HOST as --host takes it, checked: [USER@]HOST[:PORT], HOST a name, an ssh_config alias,
    an IPv4 address or an [IPv6] one.  Anything else is one line and exit 2."""
    shown = value if len(value) <= 80 and value.isprintable() else repr(value[:80])
    found = _DESTINATION.fullmatch(value) if len(value) <= MAX_HOST else None
    if found is None:
        raise Usage(f"--host {shown}: not [USER@]HOST[:PORT]",
                    hint="HOST is a host name, an alias of ~/.ssh/config, an IPv4 address or "
                         "an IPv6 one in brackets ([2001:db8::1]); it cannot start with '-'")
    port = found["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise Usage(f"--host {shown}: port {port} is not 1-65535")
    host = found["name"] or found["ipv6"]
    user = f"{found['user']}@" if found["user"] else ""
    return Destination(f"{user}{host}", int(port) if port else None)


# What the far command reads from stdin or asks on a terminal.  Without stdin, ssh gets -n: it
# reads nothing of ours, so `while read h; do nspawnctl -H "$h" list; done` keeps its input.
# A new command that reads stdin belongs here.
def wants(args: Sequence[str]) -> tuple[bool, bool]:
    """(stdin, terminal): whether the command args (the words after nspawnctl's own options)
    reads our stdin, and whether it wants a terminal when we have one."""
    command, rest = (args[0], list(args[1:])) if args else ("", [])
    if command in ("exec", "shell"):
        interactive, tty = _exec_flags(rest) if command == "exec" else (True, True)
        return interactive or tty, tty
    if command == "apply":
        return any(word in ("-", "--file=-", "-f-") for word in rest), False
    if command == "login":  # the password: from stdin, or asked for on the terminal
        return True, "--password-stdin" not in rest
    return False, False


def _exec_flags(words: list[str]) -> tuple[bool, bool]:
    """exec's -i and -t: its options end at NAME (or --); -e, -u and -w take a value, in the
    next word or glued on (`-uroot`, `--user=root`); short flags combine (`-it`)."""
    interactive = tty = False
    takes_value = {"--env", "--user", "--workdir"}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" or not word.startswith("-"):
            break
        if word.startswith("--"):
            interactive |= word == "--interactive"
            tty |= word == "--tty"
            i += 2 if word in takes_value else 1
            continue
        for n, flag in enumerate(word[1:], 1):
            interactive |= flag == "i"
            tty |= flag == "t"
            if flag in "euw":
                i += 0 if word[n + 1:] else 1  # the value: the rest of the word, or the next
                break
        i += 1
    return interactive, tty


def ssh_argv(where: Destination, args: Sequence[str], *, stdin: bool, terminal: bool,
             debug: bool = False, log: str | None = None) -> list[str]:
    """ssh's command line: nspawnctl on the far side, with args (and --debug), each word
    quoted for the far shell; -t for a terminal, -n when it reads no stdin; ssh's own
    messages to the file log; `--` before HOST."""
    remote = shlex.join(["nspawnctl", *(["--debug"] if debug else []), *args])
    return ["ssh", *(["-t"] if terminal else []), *([] if stdin else ["-n"]),
            # errors only (no "Connection to HOST closed." after a terminal, nor known_hosts
            # notices in a script's output), and in a file of their own: see run_on
            "-o", "LogLevel=ERROR", *(["-E", log] if log else []),
            *(["-p", str(where.port)] if where.port else []), "--", where.target, remote]


def on_terminal() -> bool:
    """Our stdin and stdout are a terminal: the far side gets one too (as exec and shell
    decide here)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def refuse_inline_secrets(args: Sequence[str]) -> None:
    """A credential's value (or a password hash) typed after -H would be on ssh's command line
    here and on the far host's (both process lists): only files on the far host go over."""
    for index, arg in enumerate(args):
        if arg == "--":  # what follows is a command for the container, not our options
            return
        if arg == "--root-password-hashed" or arg.startswith("--root-password-hashed="):
            raise Usage("with --host, a password hash would be on ssh's command line: give "
                        "--root-password-file FILE, a file on that host")
        given = (args[index + 1] if arg == "--credential" and index + 1 < len(args)
                 else arg.removeprefix("--credential=") if arg.startswith("--credential=")
                 else None)
        if given is not None and not given.partition("=")[2].startswith("@"):
            raise Usage("with --host, a credential's value would be on ssh's command line: "
                        "give --credential NAME=@FILE, a file on that host")


def run_on(where: Destination, args: Sequence[str], debug: bool = False) -> int:
    """Run nspawnctl args on the far host with our stdin (when it reads it), stdout and
    stderr; its exit status is returned, ssh's own failure is an Error.

    ssh exits 255 when it fails, and also passes on a far command's 255 (exec's command may
    exit with it): ssh's messages go to a file of their own (-E), so a 255 with a message is
    ssh's failure, said on one line, and one without is the far side's status."""
    import tempfile
    refuse_inline_secrets(args)
    stdin, terminal = wants(args)
    run.need_tool("ssh", "openssh-client")
    with tempfile.NamedTemporaryFile("rb", prefix="nspawnctl-ssh-") as log:
        code = run.interactive(ssh_argv(where, args, stdin=stdin,
                                        terminal=terminal and on_terminal(), debug=debug,
                                        log=log.name))
        said = log.read(MAX_SAID).decode(errors="replace").strip()
    if code == SSH_FAILED and said:
        last = said.splitlines()[-1].removeprefix("ssh: ")
        port = f"-p {where.port} " if where.port else ""
        raise Error(f"cannot reach {where.target} over ssh: {last}",
                    hint=f"check that `ssh {port}{where.target} nspawnctl --version` works "
                         "(keys, host name; ports and options can go in ~/.ssh/config)",
                    exit_code=FAILURE)
    if said:  # a warning of ssh's while the far command ran: not kept from the user
        print(said, file=sys.stderr)
    return code
