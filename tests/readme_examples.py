"""The nspawnctl commands of the README's examples, in the order a reader types them.

Read from its shell code blocks (console, sh): a line continued with a backslash is joined to
the next, a leading `$ ` and `sudo` go, `#` starts a comment, `a && b` is two commands, and
only commands that start with `nspawnctl` are kept (curl, make are the reader's own).  Used by
tests/unit/test_readme_order.py (each parses, and none names a container the tour removed)
and tests/integration/test_readme_tour.py (each runs, in order, in the testbed).
"""

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def commands(text: str | None = None) -> list[list[str]]:
    """Each nspawnctl command of the README's shell blocks, as argv without `nspawnctl`."""
    if text is None:
        text = README.read_text()
    found = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if lang not in ("console", "sh", "shell", "bash"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            words = shlex.split(line, comments=True)
            while words:
                end = words.index("&&") if "&&" in words else len(words)
                argv, words = words[:end], words[end + 1:]
                if argv[:1] == ["sudo"]:
                    argv = argv[1:]
                if argv[:1] == ["nspawnctl"]:
                    found.append(argv[1:])
    return found
