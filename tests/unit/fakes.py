"""The fakes unit tests share: systemd and machined behind a Bus, and a Context holding one.

Integration tests run against the real ones (the testbed); these only let a unit test choose
what systemd says and see what was asked of it.
"""

from nspawnctl.paths import Paths
from nspawnctl.runtime.context import Context


class FakeBus:
    """Every unit in `state` whatever is asked of it; every call not answered below recorded
    in `calls` as (method, args)."""

    def __init__(self, state="inactive", freeze_error=None):
        self.state = state
        self.freeze_error = freeze_error  # what FreezeUnit says (None: it froze)
        self.calls: list = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def active_state(self, unit):
        return self.state

    def is_active(self, unit):
        return self.state in ("active", "activating", "reloading") or self.has_job(unit)

    def has_job(self, unit):
        return False

    def machine_path(self, name):
        return None

    def freeze_unit(self, unit):
        self.calls.append(("freeze", unit))
        return self.freeze_error

    def unit_asserts(self, unit):
        # what units/container-settings.conf has systemd assert (store/hold.py)
        name = unit.split("@", 1)[1].rsplit(".", 1)[0]
        return [str(Paths.from_env().holds / name)]

    def unit_dependents(self, unit):
        return []

    def __getattr__(self, method):
        def call(*args, **kwargs):
            self.calls.append((method, args))
        return call


def context(paths: Paths, bus=None, report=lambda line: None) -> Context:
    """A command's Context with the given (fake) bus: no connection is ever opened."""
    return Context(paths, report=report, bus=bus if bus is not None else FakeBus())
