"""Credentials: secrets handed to a container through systemd's credentials mechanism
(systemd.exec(5) LoadCredential=, $CREDENTIALS_DIRECTORY), never through its tree.

Where they live, and why:

- The value is copied into nspawnctl's own store, /var/lib/nspawnctl/credentials/NAME/CRED
  (directories 0700, files 0600, root's): for `--credential CRED=@FILE` too, so the container
  keeps working when the user's file moves or changes, and a secret is in one place nspawnctl
  controls.  Snapshots and exports never copy this store (a snapshot keeps the settings, which
  name the credentials only).
- The .nspawn file names them only (X-NspawnctlCredential=CRED, a key systemd ignores): it is
  0644 and read by anyone, and `status`, `--json` and `spec` show what it says.
- systemd-nspawn 252 (Debian 12) reads no credential from a .nspawn file (its
  SetCredential=/LoadCredential= keys came later), only from --load-credential= on its command
  line.  So a drop-in repeats the template's ExecStart= with one
  --load-credential=CRED:/var/lib/nspawnctl/credentials/%i/CRED per credential: the command
  line (which `ps` shows) holds a path, never a value.  SetCredential= (the value inline) is
  never used, in any file or command line.

A Credential compares by name and the digest of its value, never shows its value (repr, str),
and holds the value itself only between the CLI and the store (`secret`); read back from disk
it has the digest of what the store holds, so the same value again is no change (a stack file
applied twice changes nothing).
"""

import contextlib
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Usage
from ..fs.files import write_atomic
from ..paths import Paths
from ..systemd.unitfiles import render

# systemd's CREDENTIAL_SIZE_MAX: systemd-nspawn refuses a larger one at start.
CREDENTIAL_MAX = 1 << 20
# systemd's credential_name_valid(): a file name (not '.' or '..', no '/', at most 255 bytes)
# and an fd name (printable ASCII, no ':').  Of those, nspawnctl takes the ones that need no
# quoting or escaping in the ExecStart= line they land in (no blank, quote, backslash or '%',
# which systemd would read as a specifier): systemd's own names (passwd.hashed-password.root,
# ssh.authorized_keys.root, firstboot.locale) all fit.
_NAME_RE = re.compile(r"[A-Za-z0-9_.@+,~-]{1,255}", re.ASCII)
DROPIN_NAME = "70-nspawnctl-credentials.conf"


def check_name(name: str) -> str:
    """A credential name systemd takes (credential_name_valid) and a unit line holds as is."""
    if not _NAME_RE.fullmatch(name) or name in (".", ".."):
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise Usage(f"invalid credential name {shown!r}: expected 1-255 letters, digits and "
                    ". _ - @ + , ~ (systemd's names, such as ssh.authorized_keys.root), not "
                    "'.' or '..'")
    return name


def digest(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


@dataclass(frozen=True)
class Credential:
    """One credential: its name, and the digest of its value (None: not in the store).  The
    value (secret) is carried only from the CLI to save_config; it is never shown."""

    name: str
    digest: str | None = field(default=None, repr=False)
    secret: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        check_name(self.name)
        if self.secret is not None and len(self.secret) > CREDENTIAL_MAX:
            raise Usage(f"credential {self.name} is larger than {CREDENTIAL_MAX >> 10} KiB "
                        "(systemd's limit)")

    def __str__(self) -> str:
        return self.name


def parse_credential(text: str) -> Credential:
    """'NAME=VALUE' or 'NAME=@FILE' (the file read now, bounded, and copied into the store
    when the settings are saved).  An error names the credential, never its value."""
    name, sep, value = text.partition("=")
    if not sep:
        # not shown: it may be a value typed without its name
        raise Usage("invalid --credential: expected NAME=VALUE or NAME=@FILE (there is no "
                    "'=' in it)")
    check_name(name)
    if value.startswith("@"):
        secret = read_secret_file(value[1:], name)
    else:
        # argv's bytes as they came (click decodes with surrogateescape)
        secret = value.encode("utf-8", "surrogateescape")
    return Credential(name, digest(secret), secret)


def read_secret_file(path: str, name: str) -> bytes:
    """A credential's file: a regular file of at most CREDENTIAL_MAX bytes, read once."""
    if not path:
        raise Usage(f"invalid --credential {name}=@: the file name is missing")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise Usage(f"cannot read the file of credential {name}: {path}: "
                    f"{exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Usage(f"the file of credential {name} is not a regular file: {path}")
        data = b""
        while len(data) <= CREDENTIAL_MAX:
            chunk = os.read(fd, CREDENTIAL_MAX + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > CREDENTIAL_MAX:
        raise Usage(f"the file of credential {name} is larger than {CREDENTIAL_MAX >> 10} KiB "
                    f"(systemd's limit): {path}")
    return data


def removes(credential: Credential, text: str) -> bool:
    """set --no-credential NAME."""
    return credential.name == check_name(text)


# ---------------------------------------------------------------- the store

def store_dir(paths: Paths, container: str) -> Path:
    return paths.state / "credentials" / container


def spelled(paths: Paths, container: str, credential: Credential) -> str:
    """A credential as a stack file says it without its value: NAME=@ its value's file in
    the store (spec prints this; apply reads the file, the same value)."""
    return f"{credential.name}=@{store_dir(paths, container) / credential.name}"


def stored_digest(paths: Paths, container: str, name: str) -> str | None:
    """The digest of the value the store holds for NAME (None: none)."""
    try:
        with open(store_dir(paths, container) / name, "rb") as f:
            return digest(f.read(CREDENTIAL_MAX + 1))
    except OSError:  # none, or not root's eyes (list and status need no root)
        return None


def save(paths: Paths, container: str, credentials: tuple[Credential, ...],
         like: str | None = None):
    """The store as credentials say: new values written (0600, whole or not at all), the
    values of credentials no longer set deleted; with like (clone), a credential without a
    new value takes like's."""
    directory = store_dir(paths, container)
    wanted = {c.name for c in credentials}
    if credentials:
        _mkdir_private(directory)
    for c in credentials:
        if c.secret is not None:
            write_atomic(directory / c.name, c.secret, mode=0o600)
        elif like is not None and not (directory / c.name).exists():
            source = store_dir(paths, like) / c.name
            with contextlib.suppress(FileNotFoundError):
                write_atomic(directory / c.name, source.read_bytes(), mode=0o600)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(directory):
            if entry not in wanted and not entry.startswith("."):
                os.unlink(directory / entry)
    if not credentials:
        remove(paths, container)


def remove(paths: Paths, container: str):
    """Every value of the container's credentials (remove, a failed create)."""
    directory = store_dir(paths, container)
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return
    for entry in entries:  # only files nspawnctl wrote: one level, nothing followed
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / entry)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)


def copy(paths: Paths, src: str, dst: str) -> Path | None:
    """src's values as dst's (rename copies before its commit point); returns the new
    directory, which a failed rename deletes, or None when src has none."""
    source = store_dir(paths, src)
    if not source.is_dir():
        return None
    target = store_dir(paths, dst)
    _mkdir_private(target)
    for entry in sorted(os.listdir(source)):
        if not entry.startswith("."):
            write_atomic(target / entry, (source / entry).read_bytes(), mode=0o600)
    return target


def _mkdir_private(directory: Path):
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory.parent, 0o700)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)


# ---------------------------------------------------------------- the drop-in

def render_dropin(paths: Paths, credentials: tuple[Credential, ...]) -> str | None:
    """units/container-credentials.conf for these credentials (None: there are none)."""
    if not credentials:
        return None
    store = str(paths.state / "credentials")
    if any(c.isspace() or c in "\"'\\;%$" for c in store):
        raise Usage(f"nspawnctl's state directory {store!r} cannot be written in a unit "
                    "line", hint="use a path without blanks, quotes, backslashes, % or $")
    # %i: the container's name, so a renamed container's drop-in still says the right path
    return render("container-credentials.conf", load_credentials=" ".join(
        f"--load-credential={c.name}:{store}/%i/{c.name}" for c in credentials))
