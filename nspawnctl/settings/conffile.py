"""systemd's configuration file syntax, read exactly as systemd reads it (conf-parser.c).

.nspawn files and unit drop-ins are read by systemd and by nspawnctl, and nspawnctl writes back
what it read.  If nspawnctl split a file into lines anywhere systemd does not (Python's
str.splitlines() also splits at U+2028, U+0085, \\v, \\f, \\x1c-\\x1e), a value that is one line
for systemd would come back as several real lines after nspawnctl's next edit: an image's
environment variable could turn into `PrivateUsers=no`.  So both readers use this one, and it
follows systemd's, step by step:

- lines end at \\n, \\r or NUL, and at any run of distinct ones of those (\\r\\n, \\n\\r, \\r\\n\\0
  ... are one end; \\n\\n is two: read_line_full());
- a line whose first non-blank character is # or ; is a comment, dropped even in the middle
  of a continued line;
- a line ending in an unescaped backslash continues on the next; the backslash becomes a
  space and the next line is appended as it is;
- a UTF-8 byte order mark before the first line is dropped;
- the logical line is stripped of blanks (space, tab) and read as [Section] or KEY=VALUE,
  each side stripped again.
"""

import re
from dataclasses import dataclass

# read_line_full()'s line ends: a run of distinct EOL characters, NUL only last.
_EOL = re.compile(r"(?:\n\r?|\r\n?)\0?|\0")
_BLANKS = " \t\n\r"  # systemd's WHITESPACE
_COMMENTS = "#;"
_BOM = "\ufeff"


@dataclass
class Line:
    """One logical line: its physical lines as written (for writing back unchanged), what it
    says once continued, and for an assignment or a section header what that is.  A comment
    line is a Line of its own with `comment` set (record comments are nspawnctl's: "# TAG:
    VALUE"); a comment inside a continued line is part of that line's `physical` only."""

    physical: list[str]
    text: str = ""            # the logical line, stripped
    section: str | None = None  # the section it is in (or, for a header, the one it opens)
    key: str | None = None
    value: str | None = None
    header: bool = False
    comment: bool = False


def physical_lines(text: str) -> list[str]:
    """The lines of text as systemd's read_line() cuts them (no line ends kept)."""
    pieces = _EOL.split(text)
    if pieces and pieces[-1] == "":  # a last line end ends the last line; it starts none
        pieces.pop()
    return pieces


def continues(text: str) -> bool:
    """Whether text ends in a backslash that no backslash before it escapes."""
    trailing = len(text) - len(text.rstrip("\\"))
    return trailing % 2 == 1


def read_lines(text: str) -> list[Line]:
    """Every logical line of a configuration file, blank lines and comments included, in
    order, each with the section it belongs to."""
    if text.startswith(_BOM):
        text = text[1:]
    lines: list[Line] = []
    section: str | None = None
    pending: Line | None = None  # a continued line still being read
    joined = ""
    for physical in physical_lines(text):
        if physical.lstrip(_BLANKS)[:1] in tuple(_COMMENTS):
            if pending is not None:
                pending.physical.append(physical)  # skipped by systemd, kept by us
            else:
                lines.append(Line([physical], text=physical.strip(_BLANKS), section=section,
                                  comment=True))
            continue
        if pending is None:
            pending, joined = Line([physical]), physical
        else:
            pending.physical.append(physical)
            joined += physical
        if continues(joined):
            joined = joined[:-1] + " "
            continue
        section = _interpret(pending, joined, section)
        lines.append(pending)
        pending = None
    if pending is not None:  # the file ended inside a continued line: systemd reads it so
        _interpret(pending, joined, section)
        lines.append(pending)
    return lines


def _interpret(line: Line, joined: str, section: str | None) -> str | None:
    """Fill in what a logical line says (parse_line()); returns the section after it."""
    text = joined.strip(_BLANKS)
    line.text, line.section = text, section
    if text.startswith("["):
        if text.endswith("]") and len(text) > 1:
            line.header, line.section = True, text[1:-1]
            return line.section
        return section  # systemd: "Invalid section header", ignored
    key, sep, value = text.partition("=")
    if sep:
        line.key, line.value = key.strip(_BLANKS), value.strip(_BLANKS)
    return section
