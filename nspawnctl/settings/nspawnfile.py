"""Render and parse systemd.nspawn(5) settings files.

nspawnctl owns the keys its settings declare (model.py; keys.py says how each is spelled);
everything else in the file belongs to whoever wrote it.  `update_nspawn` therefore edits a
file instead of regenerating it: a setting is rewritten only when its value changes, in place,
and comments, unknown keys, unknown sections and lines nspawnctl cannot represent (a Bind= with
mount options, a value systemd would reject) are kept as they were.

The file is cut into lines exactly as systemd cuts it (conffile.py: lines, comments,
continuations); keys are case-sensitive; later assignments win and lists accumulate (keys.py
has the rest of systemd's syntax).
"""

from dataclasses import dataclass, replace
from typing import Any

from . import conffile, keys
from .keys import quote_word, split_words  # noqa: F401  (the file syntax's words, for callers)
from .model import NSPAWN_SETTINGS, ContainerConfig, Setting

HEADER = ("# Settings of an nspawnctl container, see systemd.nspawn(5).\n"
          "# Hand edits are kept: nspawnctl only rewrites the settings it changes.")
SECTIONS = ("Exec", "Files", "Network")
# A key's readers, narrow ones first: a line belongs to the first that reads it (a named
# volume's Bind= line to the volumes, any other to the binds).
_BY_KEY: dict[tuple[str, str], list[Setting]] = {}
for _s in sorted(NSPAWN_SETTINGS, key=lambda s: not (s.nspawn and s.nspawn.narrow)):
    if _s.nspawn is not None and _s.nspawn.section:
        for _key in _s.nspawn.keys:
            _BY_KEY.setdefault(_key, []).append(_s)
# Records nspawnctl keeps in comments ("# nspawnctl-image: KEY"), by their tag.
_BY_TAG = {s.nspawn.tag: s for s in NSPAWN_SETTINGS if isinstance(s.nspawn, keys.Comment)}


# ---------------------------------------------------------------- the file as lines

@dataclass
class _Line:
    """One logical line: its original text (several physical lines when
    continued) and, for an assignment, where it is and what it says."""

    text: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    tag: str | None = None     # a record comment's tag


def _read_lines(text: str) -> list[_Line]:
    """The file's logical lines as systemd reads them (conffile.py), with the physical text
    each came from, which is written back unchanged unless its setting changes."""
    lines = []
    for line in conffile.read_lines(text):
        out = _Line("\n".join(line.physical), line.section)
        tag = _record_tag(line.text) if line.comment else None
        if tag is not None:
            out.tag, out.value = tag, line.text.partition(":")[2].strip(" \t")
        elif line.header:
            out.section = line.section
        elif line.key is not None:
            out.key, out.value = line.key, line.value
        lines.append(out)
    return lines


def _record_tag(logical: str) -> str | None:
    for tag in _BY_TAG:
        if logical.startswith(f"# {tag}:"):
            return tag
    return None


# ---------------------------------------------------------------- reading settings

def _settings_of(line: _Line) -> list[Setting]:
    if line.tag is not None:
        return [_BY_TAG[line.tag]]
    if line.key is not None:
        return _BY_KEY.get((line.section or "", line.key), [])
    return []


def _interpret(lines: list[_Line], base: ContainerConfig) -> tuple[ContainerConfig, dict]:
    """The settings the lines describe, and which lines each setting owns."""
    partial: dict[str, Any] = {s.name: keys.UNSET for s in NSPAWN_SETTINGS}
    owned: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        for setting in _settings_of(line):
            assert setting.nspawn is not None
            try:
                partial[setting.name] = setting.nspawn.read(partial[setting.name],
                                                            line.tag or line.key or "",
                                                            line.value or "")
            except keys.Unreadable:
                continue  # another reader's, or systemd ignores it too: leave it be
            owned.setdefault(setting.name, []).append(index)
            break
    values = {s.name: s.nspawn.done(partial[s.name], getattr(base, s.name))
              for s in NSPAWN_SETTINGS if s.nspawn is not None}
    return replace(base, **values), owned


def parse_nspawn(text: str, base: ContainerConfig | None = None) -> ContainerConfig:
    """The settings a (possibly hand-edited) .nspawn file gives a container.

    Keys the file does not set keep `base`'s values (default: ContainerConfig(), whose
    defaults are those systemd-nspawn@.service starts containers with).  Unit settings
    (limits, restart policy) are not in this file: they come from `base`.
    """
    return _interpret(_read_lines(text), base or ContainerConfig())[0]


# ---------------------------------------------------------------- writing settings

def _field_lines(cfg: ContainerConfig, setting: Setting) -> list[tuple[str | None, str]]:
    """(section, line) pairs that write one setting (section None: a record comment on top)."""
    assert setting.nspawn is not None
    section = setting.nspawn.section or None
    return [(section, line) for line in setting.nspawn.lines(getattr(cfg, setting.name))]


def _ordered() -> list[Setting]:
    """Record comments first, then the sections' settings in declaration order."""
    return sorted(NSPAWN_SETTINGS, key=lambda s: s.nspawn is None or bool(s.nspawn.section))


def render_nspawn(cfg: ContainerConfig) -> str:
    """A fresh .nspawn file for `cfg`, every owned setting spelled out so the file means the
    same however systemd-nspawn is invoked on it."""
    pairs = [pair for setting in _ordered() for pair in _field_lines(cfg, setting)]
    out = [HEADER] + [text for section, text in pairs if section is None]
    for section in SECTIONS:
        body = [text for sect, text in pairs if sect == section]
        if body:
            out += ["", f"[{section}]", *body]
    return "\n".join(out) + "\n"


def update_nspawn(text: str, cfg: ContainerConfig) -> str:
    """`text` with the settings nspawnctl owns changed to `cfg`'s, nothing else.

    A field whose value the file already gives is left exactly as written (even
    if spelled differently, e.g. Boot=true).  A changed field's lines are
    replaced where the first of them stood; a new one goes at the end of its
    section, which is added if the file lacks it.
    """
    if not text.strip():
        return render_nspawn(cfg)
    lines = _read_lines(text)
    current, owned = _interpret(lines, ContainerConfig())
    replaced: dict[int, list[str]] = {}
    dropped: set[int] = set()
    appended: dict[str | None, list[str]] = {}
    for setting in _ordered():
        field = setting.name
        if getattr(current, field) == getattr(cfg, field):
            continue
        new = _field_lines(cfg, setting)
        if field in owned:
            dropped.update(owned[field])
            replaced[owned[field][0]] = [text for _, text in new]
        else:
            for section, text_line in new:
                appended.setdefault(section, []).append(text_line)

    out: list[str] = appended.pop(None, [])  # the image comment goes on top
    last_of_section = _last_line_of_sections(lines)
    for index, line in enumerate(lines):
        out += replaced.get(index, [])
        if index not in dropped:
            out.append(line.text)
        if index in last_of_section:
            out += appended.pop(last_of_section[index], [])
    for section in SECTIONS:
        if section in appended:
            out += ["", f"[{section}]", *appended.pop(section)]
    return "\n".join(out) + "\n"


def _last_line_of_sections(lines: list[_Line]) -> dict[int, str]:
    """Index of the last non-blank line of each section's last occurrence."""
    last: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line.section is not None and line.text.strip():
            last[line.section] = index
    return {index: section for section, index in last.items()}
