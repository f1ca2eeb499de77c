"""How each kind of setting is spelled in a .nspawn file or a unit drop-in.

A setting's declaration (model.py) names one of these codecs; nspawnfile.py and dropin.py are
generic and only ask the codecs.  A .nspawn codec reads the file's assignments one at a time
into a partial value (lists accumulate, a later scalar wins, as systemd-nspawn reads them) and
writes a value back as lines of its section.  A value the codec cannot represent raises
Unreadable: systemd ignores such a line with a warning, and nspawnctl leaves it to its author.

The syntax follows systemd's conf-parser as systemd-nspawn reads it: Parameters= and
Environment= are lists split like extract_first_word() with EXTRACT_UNQUOTE|
EXTRACT_RETAIN_ESCAPE (whitespace separates words, '...' and "..." quote, adjacent pieces join
into one word, a backslash is an ordinary character); an empty assignment resets a list;
booleans are parse_boolean()'s; no %-specifiers or $-variables are expanded.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import Error, Usage
from ..paths import Paths
from .conffile import continues
from .credentials import Credential
from .values import Bind, VolumeMount, check_bind_path, check_text

_TRUE = ("1", "yes", "y", "true", "t", "on")
_FALSE = ("0", "no", "n", "false", "f", "off")
_WHITESPACE = " \t\n\r"


class Unreadable(Exception):
    """A value nspawnctl cannot represent: the line is left to its author."""


class _Unset:
    def __repr__(self):
        return "UNSET"


UNSET: Any = _Unset()  # no assignment for the setting was read (yet)


# ---------------------------------------------------------------- words and booleans

def quote_word(word: str) -> str:
    """Quote one list word so that systemd's splitter gives back exactly `word`."""
    check_text(word, "word")
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
    words: list[str] = []
    word: list[str] = []
    quote, in_word = None, False
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
        raise Unreadable("unbalanced quotes")
    if in_word:
        words.append("".join(word))
    return words


def check_raw(value: str, what: str) -> str:
    """A value written unquoted after KEY= (or in a record comment): it must come back from
    the file as it went in.  systemd strips blanks around it, and a backslash at its end
    would continue the line, swallowing the next one into it."""
    check_text(value, what)
    if value != value.strip(_WHITESPACE):
        raise Usage(f"invalid {what} {value!r}: leading or trailing blanks are not allowed")
    if continues(value):
        raise Usage(f"invalid {what} {value!r}: it may not end in a backslash")
    return value


def parse_bool(value: str) -> bool:
    """systemd's parse_boolean()."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise Unreadable(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _checked(check: Callable[[str], Any] | None, value: str) -> None:
    try:
        if check:
            check(value)
    except Error as e:
        raise Unreadable(str(e)) from None


# ---------------------------------------------------------------- .nspawn codecs

class NspawnKey:
    """A setting written as one or more keys of one .nspawn section."""

    section: str
    names: tuple[str, ...]
    # reads only some of its keys' lines (Unreadable for the rest), so it is asked first
    # when another setting's codec shares those keys
    narrow = False

    def __init__(self, section: str, *names: str):
        self.section, self.names = section, names

    @property
    def keys(self) -> tuple[tuple[str, str], ...]:
        return tuple((self.section, name) for name in self.names)

    def read(self, partial: Any, name: str, raw: str) -> Any:
        raise NotImplementedError

    def done(self, partial: Any, default: Any) -> Any:
        """The setting's value once every line is read; default when none set it."""
        return default if partial is UNSET else partial

    def lines(self, value: Any) -> list[str]:
        raise NotImplementedError


class Flag(NspawnKey):
    """A boolean, always written out (yes/no) so the file means the same however it is used."""

    def read(self, partial, name, raw):
        return parse_bool(raw)

    def lines(self, value):
        return [f"{self.names[0]}={_yes(value)}"]


class Text(NspawnKey):
    """An optional scalar taken raw (no quotes), checked by `check`."""

    def __init__(self, section: str, name: str, check: Callable[[str], Any] | None = None):
        super().__init__(section, name)
        self.check = check

    def read(self, partial, name, raw):
        if not raw:
            return None
        _checked(self.check, raw)
        return raw

    def lines(self, value):
        if value is None:
            return []
        return [f"{self.names[0]}={check_raw(value, self.names[0] + '= value')}"]


class Words(NspawnKey):
    """A list of words: on one line (Parameters=) or one line per word (Environment=)."""

    def __init__(self, section: str, name: str, check: Callable[[str], Any] | None = None,
                 one_per_line: bool = False):
        super().__init__(section, name)
        self.check, self.one_per_line = check, one_per_line

    def read(self, partial, name, raw):
        if not raw:
            return ()  # an empty assignment resets the list
        words = split_words(raw)
        for word in words:
            _checked(self.check, word)
        return (() if partial is UNSET else partial) + tuple(words)

    def lines(self, value):
        if not value:
            return []
        if self.one_per_line:
            return [f"{self.names[0]}={quote_word(word)}" for word in value]
        return [f"{self.names[0]}=" + " ".join(map(quote_word, value))]


class PrivateUsers(NspawnKey):
    """PrivateUsers=: pick (a UID range of its own, as systemd-nspawn@.service's -U) or no.
    identity, managed and a fixed UID[:RANGE] are user namespaces too."""

    def __init__(self):
        super().__init__("Exec", "PrivateUsers")

    def read(self, partial, name, raw):
        if raw.lower() in ("pick", "identity", "managed"):
            return True
        try:
            return parse_bool(raw)
        except Unreadable:
            pass
        if all(part.isdigit() for part in raw.split(":", 1)):
            return True
        raise Unreadable(raw)

    def lines(self, value):
        return ["PrivateUsers=" + ("pick" if value else "no")]


class Binds(NspawnKey):
    """Bind= and BindReadOnly=, with nspawn's idmap option or none; a bind with other mount
    options (:norbind, :rootidmap) is the author's."""

    def __init__(self):
        super().__init__("Files", "Bind", "BindReadOnly")

    def read(self, partial, name, raw):
        parts = raw.split(":")
        if len(parts) > 3 or (len(parts) == 3 and parts[2] != "idmap"):
            raise Unreadable("mount options")
        for part in parts[:2]:
            _checked(lambda p: check_bind_path(p, raw), part)
        bind = Bind(parts[0], parts[min(1, len(parts) - 1)], name == "BindReadOnly",
                    len(parts) == 3)
        return (() if partial is UNSET else partial) + (bind,)

    def lines(self, value):
        return [("BindReadOnly=" if b.readonly else "Bind=")
                + (b.source if b.source == b.dest and not b.idmap else f"{b.source}:{b.dest}")
                + (":idmap" if b.idmap else "") for b in value]


class Volumes(NspawnKey):
    """Named volumes (store/volumes.py): the Bind= and BindReadOnly= lines whose source is a
    volume's data directory, idmapped in a user-namespaced container, so that a file keeps
    the owner its container gave it in every container that mounts the volume (uid 1000
    inside is uid 1000 in the volume; without a user namespace a plain bind does that).
    `narrow`: it reads only those lines, and is asked before Binds, which would take them as
    plain binds."""

    narrow = True

    def __init__(self):
        super().__init__("Files", "Bind", "BindReadOnly")

    def read(self, partial, name, raw):
        source, _, rest = raw.partition(":")
        dest, _, options = rest.partition(":")
        prefix, suffix = str(Paths.from_env().volumes) + "/", "/data"
        if options not in ("", "idmap") or not (source.startswith(prefix)
                                                 and source.endswith(suffix)):
            raise Unreadable(raw)
        try:
            mount = VolumeMount(source[len(prefix):-len(suffix)], dest, name == "BindReadOnly",
                                options == "idmap")
        except Error as e:
            raise Unreadable(str(e)) from None
        return (() if partial is UNSET else partial) + (mount,)

    def lines(self, value):
        paths = Paths.from_env()
        return [("BindReadOnly=" if v.readonly else "Bind=")
                + f"{paths.volume_data(v.name)}:{v.dest}" + (":idmap" if v.idmap else "")
                for v in value]


class NetworkMode(NspawnKey):
    """The network mode: "host" (VirtualEthernet=no, Private=no), "none" (Private=yes, no
    link: loopback only), an nspawnctl network ("default" or a name made with `nspawnctl
    network create`: Bridge= its bridge, systemd-nspawn puts the container's veth on it), or
    "veth" (VirtualEthernet=yes alone: the link systemd-nspawn@.service makes, which nobody
    configures; what a file that says nothing else means).  Bridge= decides when present;
    then VirtualEthernet=; Private=no alone means the host's network.

    A network whose name is too long for "nsc-" + name has a hashed bridge, which cannot be
    turned back into its name: X-NspawnctlNetwork= (ignored by systemd) says the name, and
    counts only while its bridge is the one Bridge= names, so a hand-edited Bridge= wins."""

    def __init__(self, bridge_of: Callable[[str], str], check_name: Callable[[str], str]):
        super().__init__("Network", "Bridge", "VirtualEthernet", "Private", "X-NspawnctlNetwork")
        self.bridge_of, self.check_name = bridge_of, check_name
        self.prefix = bridge_of("")

    def read(self, partial, name, raw):
        seen = {} if partial is UNSET else dict(partial)
        if name == "Bridge":
            if raw and not raw.startswith(self.prefix):
                raise Unreadable(raw)  # a bridge nspawnctl does not manage: the author's
            seen[name] = raw if raw[len(self.prefix):] else None
        elif name == "X-NspawnctlNetwork":
            _checked(self.check_name, raw)
            seen[name] = raw
        else:
            seen[name] = parse_bool(raw)
        return seen

    def done(self, partial, default):
        if partial is UNSET:
            return default
        bridge, named = partial.get("Bridge"), partial.get("X-NspawnctlNetwork")
        veth, private = partial.get("VirtualEthernet"), partial.get("Private")
        if bridge:
            if named and self.bridge_of(named) == bridge:
                return named
            return bridge[len(self.prefix):]
        if veth:
            return "veth"
        if veth is False and private:
            return "none"
        if veth is not None or private is False:
            return "host"
        return default

    def lines(self, value):
        if value == "veth":
            return ["VirtualEthernet=yes"]
        if value == "host":
            return ["VirtualEthernet=no", "Private=no"]
        if value == "none":
            return ["VirtualEthernet=no", "Private=yes"]
        bridge = self.bridge_of(value)
        if bridge == self.prefix + value:
            return ["VirtualEthernet=yes", f"Bridge={bridge}"]
        return ["VirtualEthernet=yes", f"Bridge={bridge}", f"X-NspawnctlNetwork={value}"]


class Ports(NspawnKey):
    """Published ports, one X-NspawnctlPort= line each.  systemd ignores X- keys; nspawn's own
    Port= is not used because it never forwards from 127.0.0.1 (systemd #6106): nspawnctl's
    firewall table does the forwarding."""

    def __init__(self, parse: Callable[[str], Any]):
        super().__init__("Network", "X-NspawnctlPort")
        self.parse = parse

    def read(self, partial, name, raw):
        if not raw:
            return ()
        try:
            port = self.parse(raw)
        except Error as e:
            raise Unreadable(str(e)) from None
        return (() if partial is UNSET else partial) + (port,)

    def lines(self, value):
        return [f"X-NspawnctlPort={port}" for port in value]


class Credentials(NspawnKey):
    """The names of the container's credentials, one X-NspawnctlCredential= line each: never
    a value (credentials.py says where values live and how systemd-nspawn gets them)."""

    def __init__(self):
        super().__init__("Exec", "X-NspawnctlCredential")

    def read(self, partial, name, raw):
        if not raw:
            return ()
        try:
            credential = Credential(raw)
        except Error as e:
            raise Unreadable(str(e)) from None
        return (() if partial is UNSET else partial) + (credential,)

    def lines(self, value):
        return [f"X-NspawnctlCredential={c.name}" for c in value]


class Comment(NspawnKey):
    """A record nspawnctl keeps for itself in a comment at the top ("# nspawnctl-image: X")."""

    def __init__(self, tag: str):
        super().__init__("", tag)
        self.tag = tag

    @property
    def prefix(self) -> str:
        return f"# {self.tag}: "

    def read(self, partial, name, raw):
        return raw or None

    def lines(self, value):
        return [self.prefix + check_raw(value, self.tag)] if value else []


class CommentWords(Comment):
    """A record of several words in a comment, quoted as Parameters= is
    ("# nspawnctl-made-from: scratch --cmd 'sleep 1d'")."""

    def read(self, partial, name, raw):
        return tuple(split_words(raw))

    def lines(self, value):
        return [self.prefix + " ".join(map(quote_word, value))] if value else []


class Record(Comment):
    """A typed record in a comment ("# nspawnctl-health-interval: 30"): written as
    format(value) unless it is the default (no line means the default), read back with
    parse; a line parse refuses is left to its author, as systemd leaves a bad key."""

    def __init__(self, tag: str, parse: Callable[[str], Any], default: Any,
                 format: Callable[[Any], str] = str):
        super().__init__(tag)
        self.parse, self.default, self.format = parse, default, format

    def read(self, partial, name, raw):
        try:
            return self.parse(raw)
        except Error as e:
            raise Unreadable(str(e)) from None

    def lines(self, value):
        if value == self.default:
            return []
        return [self.prefix + check_raw(self.format(value), self.tag)]


# ---------------------------------------------------------------- unit drop-in codecs

@dataclass(frozen=True)
class UnitKey:
    """A setting of the container's unit drop-in (in its [Service] section unless `section`
    says [Unit]), and (for limits) the D-Bus property that applies it to the running unit:
    `live(value)` is its value."""

    name: str
    format: Callable[[Any], str]
    parse: Callable[[str], Any]
    dbus: str | None = None
    live: Callable[[Any], Any] | None = None  # an int, or (property, int) to pick one
    section: str = "Service"
