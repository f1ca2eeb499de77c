"""Render and parse systemd.nspawn(5) settings files.

nspawnctl owns a handful of keys (see FIELD_KEYS); everything else in the file
belongs to whoever wrote it.  `update_nspawn` therefore edits a file instead of
regenerating it: a setting is rewritten only when its value changes, in place,
and comments, unknown keys, unknown sections and lines nspawnctl cannot
represent (a Bind= with mount options, a value systemd would reject) are kept
as they were.

The syntax follows systemd's conf-parser, as systemd-nspawn reads it:
- `#` or `;` starts a comment line; a line ending in a backslash continues.
- Keys are case-sensitive; whitespace around `=` and the value is stripped.
- Parameters= and Environment= are lists split like extract_first_word() with
  EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE: whitespace separates words, '...' and
  "..." quote (adjacent pieces join into one word), a backslash is an ordinary
  character, there is no escape for a quote inside the same kind of quote.
  Repeated keys accumulate; an empty assignment resets the list.
- Other values are taken raw (no quotes); later assignments win.
- No %-specifiers and no $-variables are expanded in .nspawn files.
"""

from dataclasses import dataclass, replace

from ..errors import Error
from .model import Bind, ContainerConfig, check_bind_path, check_path, parse_env

HEADER = ("# Settings of an nspawnctl container, see systemd.nspawn(5).\n"
          "# Hand edits are kept: nspawnctl only rewrites the settings it changes.")
IMAGE_COMMENT = "# nspawnctl-image: "

# Which keys each ContainerConfig field is written as.
FIELD_KEYS = {
    "boot": (("Exec", "Boot"),),
    "command": (("Exec", "Parameters"),),
    "private_users": (("Exec", "PrivateUsers"),),
    "env": (("Exec", "Environment"),),
    "working_dir": (("Exec", "WorkingDirectory"),),
    "user": (("Exec", "User"),),
    "hostname": (("Exec", "Hostname"),),
    "binds": (("Files", "Bind"), ("Files", "BindReadOnly")),
    "network": (("Network", "VirtualEthernet"), ("Network", "Private")),
}
SECTIONS = ("Exec", "Files", "Network")
_KEY_FIELD = {key: name for name, keys in FIELD_KEYS.items() for key in keys}

_TRUE = ("1", "yes", "y", "true", "t", "on")
_FALSE = ("0", "no", "n", "false", "f", "off")
_WHITESPACE = " \t\n\r"


class _Unreadable(Exception):
    """A value nspawnctl cannot represent: the line is left to its author."""


# ---------------------------------------------------------------- words and values

def quote_word(word: str) -> str:
    """Quote one list word so that systemd's splitter gives back exactly `word`."""
    if "\n" in word or "\r" in word or "\0" in word:
        raise Error(f"cannot write {word!r} to a settings file: line breaks are not allowed")
    # A backslash is literal, but one at the end of a line would continue it.
    if word and not any(c in word for c in _WHITESPACE + "'\"\\"):
        return word
    if "'" not in word:
        return f"'{word}'"
    if '"' not in word:
        return f'"{word}"'
    # Both kinds: close the single quotes around each ', as a shell does.
    return "'" + word.replace("'", "'\"'\"'") + "'"


def split_words(value: str) -> list[str]:
    """extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE) over the whole value."""
    words, word, quote, in_word = [], [], None, False
    for c in value:
        if quote:
            if c == quote:
                quote = None
            else:
                word.append(c)
        elif c in "'\"":
            quote, in_word = c, True
        elif c in _WHITESPACE:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(c)
            in_word = True
    if quote:
        raise _Unreadable("unbalanced quotes")
    if in_word:
        words.append("".join(word))
    return words


def parse_bool(value: str) -> bool:
    """systemd's parse_boolean()."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _Unreadable(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ---------------------------------------------------------------- the file as lines

@dataclass
class _Line:
    """One logical line: its original text (several physical lines when
    continued) and, for an assignment, where it is and what it says."""

    text: str
    section: str | None = None
    key: str | None = None
    value: str | None = None
    image: str | None = None


def _continues(physical: str) -> bool:
    trailing = len(physical) - len(physical.rstrip("\\"))
    return trailing % 2 == 1


def _read_lines(text: str) -> list[_Line]:
    lines, section, pending = [], None, []
    for physical in text.splitlines():
        pending.append(physical)
        stripped = physical.strip()
        if _continues(physical) and not stripped.startswith(("#", ";")):
            continue
        raw, pending = "\n".join(pending), []
        # The joined value: each continuing backslash becomes a space.
        logical = " ".join(p.strip()[:-1] if _continues(p) else p.strip()
                           for p in raw.split("\n")).strip()
        line = _Line(raw, section)
        if logical.startswith(IMAGE_COMMENT.strip()):
            line.image = logical[len(IMAGE_COMMENT.strip()):].strip()
        elif not logical or logical.startswith(("#", ";")):
            pass
        elif logical.startswith("[") and logical.endswith("]"):
            section = line.section = logical[1:-1]
        elif "=" in logical:
            key, _, value = logical.partition("=")
            line.key, line.value = key.strip(), value.strip()
        lines.append(line)
    if pending:
        lines.append(_Line("\n".join(pending), section))
    return lines


# ---------------------------------------------------------------- reading settings

def _read_list(old: tuple[str, ...], value: str, check=None) -> tuple[str, ...]:
    if not value:
        return ()  # an empty assignment resets the list
    words = split_words(value)
    try:
        for word in words:
            if check:
                check(word)
    except Error as e:
        raise _Unreadable(str(e)) from None
    return old + tuple(words)


def _read_private_users(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("pick", "identity", "managed"):
        return True
    try:
        return parse_bool(value)
    except _Unreadable:
        pass
    # UID[:RANGE]: a fixed shift, still a user namespace.
    if all(part.isdigit() for part in value.split(":", 1)):
        return True
    raise _Unreadable(value)


def _read_path(value: str) -> str | None:
    if not value:
        return None
    try:
        check_path(value, "path")
    except Error as e:
        raise _Unreadable(str(e)) from None
    return value


def _read_bind(value: str, readonly: bool) -> Bind:
    parts = value.split(":")
    if len(parts) > 2:
        raise _Unreadable("mount options")  # e.g. :norbind, :idmap, kept verbatim
    try:
        for part in parts:
            check_bind_path(part, value)
    except Error as e:
        raise _Unreadable(str(e)) from None
    return Bind(parts[0], parts[-1], readonly)


def _read_assignment(state: dict, name: str, value: str) -> None:
    """Apply one known assignment to `state` (field -> value), or raise _Unreadable."""
    if name == "Boot":
        state["boot"] = parse_bool(value)
    elif name == "Parameters":
        state["command"] = _read_list(state["command"], value)
    elif name == "Environment":
        state["env"] = _read_list(state["env"], value, check=parse_env)
    elif name == "PrivateUsers":
        state["private_users"] = _read_private_users(value)
    elif name == "WorkingDirectory":
        state["working_dir"] = _read_path(value)
    elif name in ("User", "Hostname"):
        field = name.lower()
        try:
            replace(ContainerConfig(), **{field: value or None})
        except Error as e:
            raise _Unreadable(str(e)) from None
        state[field] = value or None
    elif name in ("Bind", "BindReadOnly"):
        state["binds"] = state["binds"] + (_read_bind(value, name == "BindReadOnly"),)
    elif name in ("VirtualEthernet", "Private"):
        state[name] = parse_bool(value)


def _interpret(lines: list[_Line], base: ContainerConfig) -> tuple[ContainerConfig, dict]:
    """The settings the lines describe, and which lines each field owns."""
    # Lists accumulate from empty: a file's Bind= lines replace base's binds.
    state: dict = {name: () for name in ("command", "env", "binds")}
    owned: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        if line.image is not None:
            state["image"] = line.image or None
            field = "image"
        elif (line.section, line.key) in _KEY_FIELD:
            field = _KEY_FIELD[line.section, line.key]
            try:
                _read_assignment(state, line.key, line.value)
            except _Unreadable:
                continue  # systemd ignores it too (with a warning); leave it be
        else:
            continue
        owned.setdefault(field, []).append(index)

    # Network: VirtualEthernet= decides; Private=no alone means the host's.
    # (Private=yes without veth, a private network with no link, has no
    # nspawnctl mode: it reads as the host's and is kept unless network changes.)
    veth, private = state.pop("VirtualEthernet", None), state.pop("Private", None)
    if veth is not None or private is False:
        state["network"] = "veth" if veth else "host"
    values = {name: value for name, value in state.items() if name in owned or name not in
              ("command", "env", "binds")}
    return replace(base, **values), owned


def parse_nspawn(text: str, base: ContainerConfig | None = None) -> ContainerConfig:
    """The settings a (possibly hand-edited) .nspawn file gives a container.

    Keys the file does not set keep `base`'s values (default: ContainerConfig(),
    whose defaults are those systemd-nspawn@.service starts containers with).
    Limits and restart policy are not in this file: they come from `base`.
    """
    return _interpret(_read_lines(text), base or ContainerConfig())[0]


# ---------------------------------------------------------------- writing settings

def _field_lines(cfg: ContainerConfig, field: str) -> list[tuple[str | None, str]]:
    """(section, line) pairs that write one field; no pairs for an unset one."""
    if field == "boot":
        return [("Exec", f"Boot={_yes(cfg.boot)}")]
    if field == "command":
        return [("Exec", "Parameters=" + " ".join(map(quote_word, cfg.command)))] if cfg.command else []
    if field == "private_users":
        # pick, as systemd-nspawn@.service's -U does: a UID range of its own.
        return [("Exec", "PrivateUsers=" + ("pick" if cfg.private_users else "no"))]
    if field == "env":
        return [("Exec", "Environment=" + quote_word(assignment)) for assignment in cfg.env]
    if field in ("working_dir", "user", "hostname"):
        value = getattr(cfg, field)
        key = FIELD_KEYS[field][0][1]
        return [("Exec", f"{key}={value}")] if value is not None else []
    if field == "binds":
        return [("Files", ("BindReadOnly=" if b.readonly else "Bind=")
                 + (b.source if b.source == b.dest else f"{b.source}:{b.dest}"))
                for b in cfg.binds]
    if field == "network":
        if cfg.network == "veth":
            return [("Network", "VirtualEthernet=yes")]
        return [("Network", "VirtualEthernet=no"), ("Network", "Private=no")]
    if field == "image":
        return [(None, IMAGE_COMMENT + cfg.image)] if cfg.image else []
    raise AssertionError(field)


def render_nspawn(cfg: ContainerConfig) -> str:
    """A fresh .nspawn file for `cfg`, every owned setting spelled out so the
    file means the same however systemd-nspawn is invoked on it."""
    pairs = [pair for field in ("image", *FIELD_KEYS) for pair in _field_lines(cfg, field)]
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
    for field in ("image", *FIELD_KEYS):
        if getattr(current, field) == getattr(cfg, field):
            continue
        new = _field_lines(cfg, field)
        if field in owned:
            dropped.update(owned[field])
            replaced[owned[field][0]] = [text for _, text in new]
        else:
            for section, line in new:
                appended.setdefault(section, []).append(line)

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
