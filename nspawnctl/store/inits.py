"""Whether a root tree has an init to boot, and which: the rule that decides if an image is
booted like a debootstrap tree or runs one command (see ops/create.py, ops/export.py)."""

import os
import stat
from pathlib import Path

from ..fs.resolve import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

# What systemd-nspawn --boot looks for, in its order (plus the usr-merged spelling).
INITS = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd", "/sbin/init")
# Commands that are a tree's init: an image whose command is one of these is booted.
INIT_COMMANDS = INITS + ("/usr/sbin/init", "/bin/init", "/usr/bin/init", "/init",
                         "/lib/systemd/systemd", "systemd", "init")
# Interactive shells: the Cmd of the common base images (debian, ubuntu, alpine, busybox).
SHELLS = ("sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "fish")


def find_init(tree: Path) -> str | None:
    """The first of INITS that is an executable regular file inside tree, each path resolved
    as the container will see it (symlinks stop at the tree's root), or None."""
    try:
        rootfd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for path in INITS:
            try:
                fd = openat2(rootfd, path.lstrip("/"), os.O_PATH | os.O_CLOEXEC,
                             RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return path
    finally:
        os.close(rootfd)
    return None


def is_init_command(argv: tuple[str, ...]) -> bool:
    return bool(argv) and argv[0] in INIT_COMMANDS


def is_shell_command(argv: tuple[str, ...]) -> bool:
    """A shell with nothing to run (["/bin/bash"], ["sh"], ["bash", "-l"]): what a base
    image says when it is meant to be entered, not run."""
    if not argv or os.path.basename(argv[0]) not in SHELLS:
        return False
    return all(arg.startswith("-") and arg != "-c" for arg in argv[1:])
