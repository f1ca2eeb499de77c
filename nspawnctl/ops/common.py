"""What every operation shares: the root check and the progress callback type."""

import os
from collections.abc import Callable

from ..errors import Error

# Operations tell the user what they are doing through a callback; the CLI prints to stderr.
Report = Callable[[str], None]


def require_root():
    # NSPAWNCTL_ROOT points all paths at a private tree (the unit tests): no root needed there.
    if os.geteuid() != 0 and "NSPAWNCTL_ROOT" not in os.environ:
        raise Error("this command needs root", hint="run it with sudo")
