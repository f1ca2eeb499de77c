"""A stack container's first-boot keys: ssh-key, root-password-hashed, root-password-file,
timezone and locale, create's options of the same names, read by the same parsers
(settings/firstboot.py).

They are used when the container's tree is made (create, and a recreate for a changed
create-only key), exactly as create uses them: the key as systemd's credential
ssh.authorized_keys.root, which the guest's systemd writes to root's authorized_keys at its
first boot; the password, the zone and the locale written into the tree.

A change to one of them alone does not make the tree again, as a changed create-only key
(from, include...) does: they are the container's first state, which its root may have
changed since (passwd, timedatectl, more keys in authorized_keys), the guest's systemd reads
the key only while root has no authorized_keys, and making the tree again would lose the
container's data for a changed zone or password, which no one expects.  So the container
keeps what it was made with, the stack's record says what that was (the record is only
rewritten for them when the tree is made), and every apply says, as a warning, that the file
differs and how to make the container again with the file's keys, until the two agree.

The record never holds a secret: the zone and the locale as they are, the key's digest, and
for a root password (its hash, or the password of a file) a digest made with scrypt and a
salt of the container's name, no cheaper to attack than the hash in the tree's /etc/shadow.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..settings.credentials import Credential
from ..settings.firstboot import (
    SSH_KEY,
    check_locale,
    check_root_hash,
    check_timezone,
    crypt,
    read_password_file,
    ssh_key,
)
from ..store.identity import Identity

KEYS = ("ssh-key", "root-password-hashed", "root-password-file", "timezone", "locale")
PASSWORD_KEYS = ("root-password-hashed", "root-password-file")
# scrypt's cost: 16 MiB and some 50 ms a digest, as yescrypt's default costs about
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class FirstBoot:
    """What a stack container's first-boot keys give its create; record: what the stack's
    record keeps of them (key -> text or digest, only the keys given)."""

    timezone: str | None = None
    locale: str | None = None
    ssh_key: Credential | None = None
    root_hash: str | None = field(default=None, repr=False)
    password: bytes | None = field(default=None, repr=False)
    record: dict[str, str] = field(default_factory=dict)

    def identity(self) -> Identity:
        """What create writes into the tree (a password hashed now, with a salt of its
        own, as create --root-password-file does)."""
        hashed = self.root_hash if self.password is None else crypt(self.password)
        return Identity(root_hash=hashed, timezone=self.timezone, locale=self.locale)


def parse(key: str, text: str) -> Any:
    """One key's value from its text, by create's parser (an Error names the problem)."""
    if key == "ssh-key":
        return ssh_key(text)
    if key == "root-password-hashed":
        return check_root_hash(text)
    if key == "root-password-file":
        return read_password_file(text)
    if key == "timezone":
        return check_timezone(text)
    assert key == "locale"
    return check_locale(text)


def make(container: str, values: dict[str, Any]) -> FirstBoot:
    """The first-boot keys of container, parsed (values: key -> parse's answer; at most one
    of the password keys, which the caller checks)."""
    record: dict[str, str] = {}
    for key, value in values.items():
        if key == "ssh-key":
            record[key] = f"sha256:{value.digest}"
        elif key in PASSWORD_KEYS:
            record[key] = secret_digest(container, key, value)
        else:
            record[key] = value
    hashed = values.get("root-password-hashed")
    return FirstBoot(timezone=values.get("timezone"), locale=values.get("locale"),
                     ssh_key=values.get("ssh-key"), root_hash=hashed,
                     password=values.get("root-password-file"),
                     record={k: record[k] for k in KEYS if k in record})


def secret_digest(container: str, key: str, value: str | bytes) -> str:
    """A digest that tells a changed secret without holding it; the salt is the container's
    name and the key, so the same value gives the same digest at every apply."""
    data = value.encode() if isinstance(value, str) else value
    salt = f"nspawnctl first boot {container} {key}".encode()
    return "scrypt:" + hashlib.scrypt(data, salt=salt, **_SCRYPT).hex()


def differ(recorded: dict, given: dict) -> list[str]:
    """The first-boot keys whose record (what the tree was made with) and file differ."""
    return [k for k in KEYS if recorded.get(k) != given.get(k)]


def said(container: str, keys: list[str]) -> str:
    """The warning for a container whose first-boot keys the file changed."""
    return (f"{container}: the file changed first-boot keys ({', '.join(keys)}), which are "
            f"used only when its tree is made: {container} keeps what it was made with; to "
            f"make it again with the file's (its data lost): nspawnctl remove {container}, "
            "then apply")


def keep_ssh_key(wanted: tuple, have: tuple) -> tuple:
    """wanted's credentials with have's ssh.authorized_keys.root instead of its own: a
    container keeps the key it was made with (its credential too, which its systemd writes
    only while root has no authorized_keys)."""
    return tuple(c for c in wanted if c.name != SSH_KEY) + tuple(
        c for c in have if c.name == SSH_KEY)
