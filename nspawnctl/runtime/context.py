"""What one command works with: its Context (the paths, the store, one connection to the system
bus opened when first needed, and where its progress lines go), and the one way to hold a
container (Context.holding, which gives a Held).

A function that needs a container's lock held takes a Held, so that "the caller holds it
already" is a type, not a flag: the operations take the lock (ctx.holding(name)) and pass what
it gives to the services that need it (start, take a snapshot, restore one, an upgrade's
phases).  The CLI makes one Context per command and closes it at the end; tests give one a bus
of their own.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..paths import Paths
from ..store.containers import Store
from ..systemd.bus import Bus

Report = Callable[[str], None]


class Context:
    def __init__(self, paths: Paths, report: Report = print, bus: Bus | None = None):
        self.paths = paths
        self.report = report
        self.store = Store(paths)
        self._bus = bus
        self._opened: Bus | None = None  # the one this context opened, and closes

    @property
    def bus(self) -> Bus:
        """The command's connection to the system bus, opened at the first call that needs
        it (list of no container, or a command that fails on its arguments, opens none)."""
        if self._bus is None:
            self._bus = self._opened = Bus().__enter__()
        return self._bus

    def close(self):
        if self._opened is not None:
            self._opened.__exit__(None, None, None)
            self._opened = self._bus = None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator["Held"]:
        """NAME, held for the with-block: it exists, and its lock is this command's (a second
        command on it fails at once as busy).  Checked again once locked: it may have been
        removed while this command waited for nothing (a lock is taken or refused at once,
        but the first check and the lock are two steps)."""
        self.store.require(name)
        with self.store.lock(name):
            self.store.require(name)
            yield Held(self, name)


@dataclass(frozen=True)
class Held:
    """A container whose lock the command holds (see the module docstring)."""

    ctx: Context
    name: str

    @property
    def paths(self) -> Paths:
        return self.ctx.paths
