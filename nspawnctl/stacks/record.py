"""What a stack made, and what its file said about each of its containers, kept between
applies in /var/lib/nspawnctl/stacks/NAME.json.

The containers themselves say which stack owns them (the `# nspawnctl-stack:` record of their
.nspawn file, written with the container in one commit), so ownership can never be lost or
half-written.  This record adds what only the file said: the create-only keys (a change to
one of them means the tree must be made again), the env the file set (the rest of a
container's env is its image's), and the networks the stack made.  apply writes it before
each step that changes something (an intent), so a killed apply leaves a record that is true
of what is there or of what the next apply will make.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..fs.files import read_small_text, write_atomic
from ..fs.locks import flocked
from ..paths import Paths

VERSION = 1
RECORD_MAX = 8 << 20  # a file of at most 1 MiB (yamlfile.MAX_BYTES), recorded as JSON


@dataclass
class Record:
    name: str
    containers: dict[str, dict] = field(default_factory=dict)
    networks: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, "name": self.name,
                           "containers": self.containers, "networks": self.networks},
                          indent=1, sort_keys=True) + "\n"


def _path(paths: Paths, name: str):
    return paths.stacks / f"{name}.json"


def read(paths: Paths, name: str) -> Record:
    """The record of stack NAME (an empty one for a stack never applied)."""
    path = _path(paths, name)
    text = read_small_text(path, "stack record", limit=RECORD_MAX)
    if text is None:
        return Record(name)
    try:
        data = json.loads(text)
        containers, networks = data["containers"], data["networks"]
        if not (isinstance(containers, dict) and isinstance(networks, dict)
                and all(isinstance(v, dict) for v in [*containers.values(),
                                                      *networks.values()])):
            raise ValueError("not a record")
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"stack record {path} is damaged ({e})",
                           hint="remove it: the next apply then treats the stack's "
                                "containers as made by hand") from None
    return Record(name, containers, networks)


def write(paths: Paths, record: Record) -> None:
    write_atomic(_path(paths, record.name), record.to_json(), mode=0o600)


def names(paths: Paths) -> list[str]:
    try:
        return sorted(p.stem for p in paths.stacks.glob("*.json"))
    except OSError:
        return []


def forget(paths: Paths, name: str) -> None:
    _path(paths, name).unlink(missing_ok=True)


def locked(paths: Paths, name: str, report: Any):
    """Stack NAME's lock, for a whole apply: a second apply of the same stack waits for the
    first (and then finds less or nothing to do)."""
    paths.stacks.mkdir(parents=True, exist_ok=True)
    return flocked(paths.stacks / f".{name}.lock",
                   lambda: report(f"waiting for another apply of stack {name}"))
