"""Container names: systemd's machine-name rules, checked before a name becomes a path."""

import re

from .errors import Usage

MAX_LENGTH = 64  # HOST_NAME_MAX: machined refuses longer names
# systemd's hostname_is_valid(): labels of [A-Za-z0-9_-] joined by single dots.  We also
# refuse a leading '-' so a name can never be taken for an option by the tools we run.
_LABELS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")


def check_name(name: str, what: str = "container name") -> str:
    """Return name if it is a valid machine name, else raise Error saying why."""
    if not name:
        raise Usage(f"{what} is empty")
    if len(name) > MAX_LENGTH:
        raise Usage(f"invalid {what} {name!r}: longer than {MAX_LENGTH} characters")
    if name == ".host":
        raise Usage(f"invalid {what} '.host': reserved by machined for the host")
    if not _LABELS.fullmatch(name):
        raise Usage(f"invalid {what} {name!r}",
                    hint="use letters, digits, '-', '_' and single dots, "
                         "not starting with '-' or '.'")
    return name


def check_stack_name(name: str) -> str:
    """A stack's name (nspawnctl apply): a machine name's rules, as it is kept beside them."""
    return check_name(name, "stack name")


def check_volume_name(name: str) -> str:
    """A named volume's (nspawnctl volume): a machine name's rules, as it becomes a
    directory name and a word in a Bind= line."""
    return check_name(name, "volume name")
