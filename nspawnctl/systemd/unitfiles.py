"""Unit files from the top-level units/ folder: read, rendered, installed.

Every unit nspawnctl writes comes from a file in units/ (shipped as the package data
nspawnctl.units), with @NAME@ placeholders filled in here; nothing renders a unit from a string
literal in the code.  Installing writes the rendered text to /etc/systemd/system (under
NSPAWNCTL_ROOT in tests) only when it differs, so a second install changes nothing.
"""

import re
import sys
from pathlib import Path

from ..errors import Error
from ..fs.files import write_atomic

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def shipped(name: str) -> Path:
    """The path of units/NAME: the installed package data nspawnctl.units, or, when nspawnctl
    runs from a source checkout that is not installed (e.g. `python3 -m nspawnctl` in the
    Vagrant VM's /vagrant), the checkout's top-level units/ beside the package.  (Imported
    here: importlib.resources is 2 ms of the start-up of commands that render no unit.)"""
    from importlib import resources
    checkout = Path(__file__).resolve().parents[2] / "units"
    if (checkout / "__init__.py").is_file():
        # this package runs from a checkout: its own units/, not those of another checkout
        # an editable install maps nspawnctl.units to (a git worktree beside the main one)
        path = checkout / name
    else:
        try:
            path = Path(str(resources.files("nspawnctl.units").joinpath(name)))
        except ModuleNotFoundError:
            path = checkout / name
    if not path.is_file():
        raise Error(f"nspawnctl's unit file {name} is missing from its installation",
                    hint="reinstall nspawnctl")
    return path


def template(name: str) -> str:
    """The text of units/NAME."""
    return shipped(name).read_text()


def render(unit: str, /, **values: str) -> str:
    """units/UNIT with every @KEY@ replaced by values[key.lower()]; @PYTHON@ defaults to the
    interpreter running nspawnctl, so units run the same installation."""
    values.setdefault("python", sys.executable)

    def fill(match: re.Match) -> str:
        key = match.group(1).lower()
        if key not in values:
            raise AssertionError(f"units/{unit}: no value for @{match.group(1)}@")
        return values[key]

    return _PLACEHOLDER.sub(fill, template(unit))


def install(directory: Path, name: str, text: str) -> bool:
    """Write directory/name if its content differs; True when it changed."""
    path = directory / name
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, text)
    return True
