"""The man page and the shell completions, installed where man, bash, zsh and fish look.

`nspawnctl install-extras` runs this; vagrant/provision.sh and the Makefile's setup call it,
as they call install-units.  Each file is made from the click group when it runs, so it
describes the nspawnctl that is installed, and is written only when its content differs: a
second run changes nothing.
"""

import os
from pathlib import Path

import click

from ..errors import Error
from ..fs.files import write_atomic

PROG = "nspawnctl"
# click's completion protocol: `_NSPAWNCTL_COMPLETE=bash_complete nspawnctl` answers a Tab
COMPLETE_VAR = "_NSPAWNCTL_COMPLETE"

# Where each reader looks by default on Debian: the admin's /usr/local where man, bash
# (XDG_DATA_DIRS) and zsh (its fpath) read it; fish reads no /usr/local directory by default.
MAN_PAGE = "usr/local/share/man/man1/nspawnctl.1"
COMPLETIONS = {
    "bash": "usr/local/share/bash-completion/completions/nspawnctl",
    "zsh": "usr/local/share/zsh/site-functions/_nspawnctl",
    "fish": "usr/share/fish/vendor_completions.d/nspawnctl.fish",
}


def completion_script(group: click.Group, shell: str) -> str:
    """click's own completion script for shell: it asks nspawnctl at every Tab."""
    from click.shell_completion import get_completion_class
    cls = get_completion_class(shell)
    assert cls is not None, shell
    complete = cls(group, {}, PROG, COMPLETE_VAR)
    # source() would first run bash to check its version: the template is the script itself
    script = complete.source_template % complete.source_vars()
    if shell == "zsh" and "loadautofunc" not in script:
        # zsh autoloads _nspawnctl from its fpath at the first Tab and runs the file: click
        # 8.1's script then only registers its function, and that Tab offered nothing.  Run
        # as an autoloaded function, it completes (as later click's script does).
        register = f"compdef {complete.func_name} {PROG};\n"
        assert script.endswith(register), script[-200:]
        script = script[:-len(register)] + (
            "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n"
            f'    {complete.func_name} "$@"\n'
            "else\n"
            f"    compdef {complete.func_name} {PROG}\n"
            "fi\n")
    return script


def files(group: click.Group) -> dict[str, str]:
    """Path (relative to the root) -> content, for every file install-extras writes."""
    from . import manpage
    made = {MAN_PAGE: manpage.render(group, PROG)}
    for shell, path in COMPLETIONS.items():
        made[path] = completion_script(group, shell)
    return made


def root_from_env() -> Path:
    """Where to install: / or NSPAWNCTL_ROOT, as for every path (paths.Paths.from_env)."""
    return Path(os.environ.get("NSPAWNCTL_ROOT", "/"))


def install(group: click.Group, root: Path) -> list[Path]:
    """Write what differs under root; the paths written."""
    written = []
    for relative, text in files(group).items():
        path = root / relative
        try:
            if path.read_text() == text:
                continue
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            pass
        except OSError as e:
            raise Error(f"cannot read {path}: {e.strerror}") from None
        try:
            write_atomic(path, text, mode=0o644)
        except PermissionError:
            raise Error(f"cannot write {path}: permission denied", hint="run it as root") \
                from None
        except OSError as e:
            raise Error(f"cannot write {path}: {e.strerror}") from None
        written.append(path)
    return written
