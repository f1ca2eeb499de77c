"""Reading a stack file: YAML, safe loading only, every value knowing its line.

A stack file is input from a user, or from whoever wrote the compose file they downloaded:
it is bounded (its size, and the nodes it expands to, so that a "billion laughs" of aliases
cannot exhaust memory), loaded with PyYAML's safe loader only (no Python objects), and each
mapping remembers the line of each of its keys, so that every error can name file, line and
key.  Duplicate keys, which PyYAML would silently overwrite, are problems too.
"""

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidInput, NotFound

MAX_BYTES = 1 << 20    # a stack of hundreds of containers is a few tens of kB
MAX_NODES = 100_000    # nodes after aliases are expanded
MAX_DEPTH = 32         # mappings and lists within each other; a stack file needs 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where, which key (dotted: containers.web.memory), what."""
    line: int
    key: str
    message: str

    def text(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.key + ': ' if self.key else ''}{self.message}"


class Doc(dict):
    """A mapping of the file: a dict, and the line of the mapping and of each key."""
    line: int = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class Seq(list):
    """A sequence of the file: a list, and the line of the sequence and of each item."""
    line: int = 0

    def __init__(self, *args):
        super().__init__(*args)
        self.lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.lines[index] if index < len(self.lines) else self.line


def read(path: str) -> tuple[str, Doc, list[Problem]]:
    """(the text, the top mapping, its problems) of the file at path ('-': standard input).
    A file that cannot be read, or is not YAML with a mapping at the top, is an error."""
    text = _read_text(path)
    doc, problems = parse(text)
    return text, doc, problems


def _read_text(path: str) -> str:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            # non-blocking, and a regular file only: a FIFO would hang the read, a device
            # (/dev/zero) never end it
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise InvalidInput(f"{path}: not a regular file",
                                   hint="give a stack file, or - for standard input")
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_BYTES // 1024} KiB; a stack file is "
                           "not that big")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path}: not UTF-8 text (byte {e.start})") from None


def parse(text: str) -> tuple[Doc, list[Problem]]:
    """The top mapping of a YAML text, and its problems (duplicate keys, keys that are not
    text).  Syntax errors, more than one document, aliases expanding past MAX_NODES, or a top
    that is not a mapping raise InvalidInput with the line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise InvalidInput(f"line {line}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise InvalidInput(f"not valid YAML: {e}") from None
    except RecursionError:  # PyYAML's composer recurses: [[[[...]]]] a thousand deep
        raise InvalidInput(f"values nested more than {MAX_DEPTH} deep; a stack file is "
                           "not that deep") from None
    finally:
        loader.dispose()
    if node is None:
        raise InvalidInput("the file is empty")
    if not isinstance(node, yaml.MappingNode):
        raise InvalidInput(f"line {node.start_mark.line + 1}: the file must be a mapping "
                           "(name:, networks:, containers: or a compose file's services:)")
    walker = _Walker(loader)
    doc = walker.value(node, "")
    assert isinstance(doc, Doc)
    return doc, walker.problems


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Walker:
    """Builds Doc/Seq/scalars from a composed node graph, counting every node it visits (an
    alias is visited again each time it is used: that is what expansion costs)."""

    def __init__(self, loader: yaml.SafeLoader):
        self.loader = loader
        self.nodes = 0
        self.problems: list[Problem] = []

    def value(self, node: yaml.Node, where: str, depth: int = 0) -> Any:
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise InvalidInput(f"line {node.start_mark.line + 1}: values nested more than "
                               f"{MAX_DEPTH} deep; a stack file is not that deep")
        if self.nodes > MAX_NODES:
            raise InvalidInput(f"line {node.start_mark.line + 1}: the file expands to more "
                               f"than {MAX_NODES} values (aliases?); a stack file is not "
                               "that big")
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            self.problems.append(Problem(line, where, f"a value tagged {node.tag!r}: a stack "
                                                      "file holds plain lists and mappings"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, where, line, depth)
        if isinstance(node, yaml.SequenceNode):
            seq = Seq()
            seq.line = line
            for i, item in enumerate(node.value):
                seq.append(self.value(item, f"{where}[{i}]", depth + 1))
                seq.lines.append(item.start_mark.line + 1)
            return seq
        try:  # a scalar: the safe constructor's int, float, bool, null, str, timestamp
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            self.problems.append(Problem(line, where, f"bad value: {e}"))
            return None

    def _mapping(self, node: yaml.MappingNode, where: str, line: int, depth: int) -> Doc:
        own = len(node.value)
        try:
            self.loader.flatten_mapping(node)  # merge keys (<<: *defaults), as compose uses
        except yaml.YAMLError as e:
            self.problems.append(Problem(line, where, f"bad merge: {e}"))
        # flatten_mapping puts the merged entries first: the mapping's own keys override them
        # (as PyYAML's own constructor does, the last one wins), but say their own key twice
        merged = len(node.value) - own if len(node.value) >= own else 0
        doc = Doc()
        doc.line = line
        for index, (key_node, value_node) in enumerate(node.value):
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(key_line, where, "a key must be text"))
                continue
            key = key_node.value
            path = f"{where}.{key}" if where else key
            if key in doc and (index < merged or doc.lines[key] < 0):
                del doc[key]  # a merged value, overridden
            elif key in doc:
                self.problems.append(Problem(key_line, path, f"given twice (also on line "
                                                             f"{doc.lines[key]})"))
                continue
            doc[key] = self.value(value_node, path, depth + 1)
            doc.lines[key] = -key_line if index < merged else key_line
        for key, number in doc.lines.items():
            doc.lines[key] = abs(number)
        return doc


def dump(data: Any) -> str:
    """YAML for data made of dicts, lists and scalars, in the order given, as a person would
    write it (block style)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=100)


def source_name(path: str) -> str:
    """A stack's default name: its file's name without the extension."""
    return Path(path).stem if path != "-" else ""
