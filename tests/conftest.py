"""Shared fixtures: the systemd host the integration tests run on (see tests/testbed.py)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _units_of_this_checkout():
    """nspawnctl.units (package data from the top-level units/) as this checkout has it: an
    editable install made from another checkout (a git worktree's) maps it to that one's
    units/, and the tests would read the other checkout's unit files."""
    import importlib.util
    units = Path(__file__).resolve().parent.parent / "units"
    spec = importlib.util.spec_from_file_location(
        "nspawnctl.units", units / "__init__.py", submodule_search_locations=[str(units)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["nspawnctl.units"] = module
    spec.loader.exec_module(module)


_units_of_this_checkout()


class _ThisCheckoutOnly:
    """Import nspawnctl's modules from this checkout or not at all.

    The editable install's finder comes after the path finder: in a git worktree whose venv
    was made from another checkout, a module this checkout no longer has (a move, a removal)
    was imported from the other one, and the tests passed on code that is not here (the
    hostile-input tests imported a removed fsutil.py that way; a clean clone failed)."""

    root = str(Path(__file__).resolve().parent.parent)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        import importlib.machinery
        if name != "nspawnctl" and not name.startswith("nspawnctl."):
            return None
        if name == "nspawnctl.units" or name.startswith("nspawnctl.units."):
            return None  # _units_of_this_checkout's, above
        here = [cls.root] if name == "nspawnctl" else \
            [p for p in (path or []) if p.startswith(cls.root + os.sep)]
        spec = importlib.machinery.PathFinder.find_spec(name, here)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} in {cls.root}", name=name)
        return spec


sys.meta_path.insert(0, _ThisCheckoutOnly)

from tests import testbed  # noqa: E402

testbed.interrupt_on_sigterm()  # the testbed's teardown runs on SIGTERM as on Ctrl-C


def session_log(request):
    """A log function for a session fixture: lines go to pytest's terminal as they come
    (booting a testbed or a VM takes a while), not into captured output."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def log(message):
        if reporter:
            reporter.write_line(message)
        else:
            print(message)
    return log


@pytest.fixture(scope="session")
def host(request):
    """A booted systemd host with machined and D-Bus: this machine if it runs systemd, else
    the testbed.  Integration tests need root."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (CI runs them as root)")
    with testbed.open_host(session_log(request)) as h:
        testbed.prepare_networks(h)
        yield h


class Nspawnctl:
    """Runs nspawnctl on the host exactly as a user types it."""

    def __init__(self, host):
        self.host = host

    def __call__(self, *args, input=None, timeout=600, check=True):
        result = self.host.run(["nspawnctl", *map(str, args)], input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"nspawnctl failed:\n{result}")
        return result

    def fails(self, *args, input=None):
        """Run a command that must fail: one clear line, non-zero, no traceback.

        Returns the result; result.error is that line (progress lines may precede it).
        """
        result = self(*args, input=input, check=False)
        assert result.returncode != 0, f"expected a failure:\n{result}"
        assert "Traceback" not in result.stderr, str(result)
        errors = [line for line in result.stderr.splitlines() if line.startswith("nspawnctl")]
        assert len(errors) == 1, str(result)
        result.error = errors[0]
        return result


@pytest.fixture(scope="session")
def nspawnctl(host):
    return Nspawnctl(host)


@pytest.fixture(scope="module")
def made(nspawnctl):
    """Create containers on demand, as a user types it; each module's are removed at its end
    (also running ones), newest first."""
    names = []

    def make(name, *options):
        nspawnctl("create", name, *options)
        names.append(name)
        return name

    yield make
    for name in reversed(names):
        nspawnctl("remove", "--force", name, check=False)


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="run the long fault and load tests with their full counts "
                          "(CI runs smaller ones)")
    parser.addoption("--kill-trials", type=_positive, metavar="N",
                     help="run each kill test (test_kill*.py) N trials, whatever its own count: "
                          "for a run in parts, such as the VM's under emulation")


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError(f"{n} is not a positive count")
    return n


@pytest.fixture(scope="session")
def full(request) -> bool:
    """True with --full: soak, density and kill trials run their full counts."""
    return request.config.getoption("--full")


@pytest.fixture(scope="session")
def kill_trials(request) -> int | None:
    """--kill-trials N, or None: each kill test then runs its own count."""
    return request.config.getoption("--kill-trials")


_FIGURES: list[tuple[str, str]] = []


@pytest.fixture(scope="session")
def figures():
    """figures(what, value): a measured figure, printed together at the end of the run
    (trials run, faults survived, memory per container, ...), for the issue notes."""
    return lambda what, value: _FIGURES.append((what, str(value)))


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        width = max(len(what) for what, _ in _FIGURES)
        for what, value in _FIGURES:
            terminalreporter.write_line(f"{what:<{width}}  {value}")
