"""First-boot identity, checked here.

`--ssh-key FILE` is handed in as systemd's own credential ssh.authorized_keys.root
(credentials.py), which the container's systemd-tmpfiles writes to /root/.ssh/authorized_keys
(0600) through tmpfiles.d/provision.conf (systemd 252 and later; Debian 12's ships it) when the
file is not there yet, as in a fresh tree.

The root password, time zone and locale are written into the tree at create
(store/identity.py): systemd-firstboot reads them from credentials too (passwd.hashed-password.
root, passwd.plaintext-password.root, firstboot.timezone, firstboot.locale), but it leaves each
alone once its file exists (/etc/passwd with /etc/shadow, /etc/localtime, /etc/locale.conf),
and every Debian tree has the first, so on Debian 12's systemd 252 the credential would do
nothing.
"""

import ctypes
import re

from ..errors import Usage
from .credentials import Credential, digest, read_secret_file

SSH_KEY = "ssh.authorized_keys.root"
# authorized_keys is read line by line; 16 KiB holds a few dozen keys, RSA-8192 ones too.
SSH_KEYS_MAX = 16 << 10
# One public key as OpenSSH writes it to a .pub file: its type, base64, an optional comment.
# No options (command=, from=...): a --ssh-key is a key, not a policy.
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
              "sk-ecdsa-sha2-nistp256@openssh.com")
_KEY_RE = re.compile(r"(%s) [A-Za-z0-9+/]{16,16384}={0,3}( [\x20-\x7e]{0,1024})?"
                     % "|".join(re.escape(t) for t in _KEY_TYPES), re.ASCII)


def ssh_key(path: str) -> Credential:
    """--ssh-key FILE: root's authorized keys, checked to be OpenSSH public keys, one a line."""
    data = read_secret_file(path, SSH_KEY)
    if len(data) > SSH_KEYS_MAX:
        raise Usage(f"--ssh-key {path}: larger than {SSH_KEYS_MAX >> 10} KiB; expected "
                    "public keys, one a line")
    if b"PRIVATE KEY" in data:
        raise Usage(f"--ssh-key {path} is a private key: give its public key (the .pub file)")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise Usage(f"--ssh-key {path}: not an OpenSSH public key (not ASCII text)") from None
    keys = [line.strip() for line in text.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]
    for number, line in enumerate(keys, 1):
        if not _KEY_RE.fullmatch(line):
            raise Usage(f"--ssh-key {path}: key {number} is not an OpenSSH public key "
                        f"(expected TYPE BASE64 [COMMENT], TYPE one of {', '.join(_KEY_TYPES)})")
    if not keys:
        raise Usage(f"--ssh-key {path}: no public key in it")
    secret = ("\n".join(keys) + "\n").encode()
    return Credential(SSH_KEY, digest(secret), secret)


# ---------------------------------------------------------------- written into the tree

# A zoneinfo name as the host's /usr/share/zoneinfo spells them: Europe/Berlin, Etc/GMT+5,
# America/Argentina/Buenos_Aires, UTC; no '.', so never '..'.
_ZONE_RE = re.compile(r"[A-Za-z0-9_+-]{1,64}(/[A-Za-z0-9_+-]{1,64}){0,3}", re.ASCII)
# A POSIX locale name: language[_TERRITORY][.codeset][@modifier], or C, C.UTF-8, POSIX.
_LOCALE_RE = re.compile(r"(C|POSIX|[a-z]{2,3}(_[A-Z]{2})?)(\.[A-Za-z0-9-]{1,20})?"
                        r"(@[A-Za-z0-9]{1,20})?", re.ASCII)
# crypt(3) hashes as shadow(5) holds them: $id$[params$]salt$hash, nothing a shadow line
# would split on (':') and no blank or line break.
_HASH_RE = re.compile(r"\$(y|gy|7|2[abxy]|6|5|sha1|md5|1)\$[A-Za-z0-9./$=,+-]{8,512}", re.ASCII)
PASSWORD_MAX = 4096


def check_timezone(zone: str) -> str:
    if not _ZONE_RE.fullmatch(zone):
        raise Usage(f"invalid time zone {zone[:60]!r}: expected a zoneinfo name such as "
                    "Europe/Berlin or UTC")
    return zone


def check_locale(locale: str) -> str:
    if not _LOCALE_RE.fullmatch(locale):
        raise Usage(f"invalid locale {locale[:60]!r}: expected a name such as en_US.UTF-8, "
                    "de_DE.UTF-8 or C.UTF-8")
    return locale


def check_root_hash(hashed: str) -> str:
    """A crypt(3) hash (never shown: it is as good as the password to a dictionary)."""
    if not _HASH_RE.fullmatch(hashed):
        raise Usage("invalid --root-password-hashed: expected a crypt(3) hash such as "
                    "mkpasswd or openssl passwd -6 print ($y$..., $6$...)",
                    hint="for a password in a file use --root-password-file FILE")
    return hashed


def hash_password_file(path: str) -> str:
    """--root-password-file FILE: the password (its first line; the file as systemd's
    passwd.plaintext-password.root credential takes it), hashed here with the host's crypt(3)
    (yescrypt, as Debian's passwd does).  Never on a command line."""
    return crypt(read_password_file(path))


def read_password_file(path: str) -> bytes:
    """--root-password-file FILE's password, checked: its first line, not empty."""
    data = read_secret_file(path, "passwd.plaintext-password.root")
    if len(data) > PASSWORD_MAX:
        raise Usage(f"--root-password-file {path}: larger than {PASSWORD_MAX} bytes")
    password = data.split(b"\n", 1)[0]
    if not password or b"\0" in password:
        raise Usage(f"--root-password-file {path}: the first line is empty or holds NUL")
    return password


def crypt(password: bytes) -> str:
    """libcrypt's (libxcrypt) crypt_gensalt + crypt: a yescrypt hash with a random salt."""
    lib = ctypes.CDLL("libcrypt.so.1", use_errno=True)
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$y$", 0, None, 0)
    hashed = lib.crypt(password, salt) if salt else None
    if not hashed or hashed.startswith(b"*"):
        raise Usage("cannot hash the root password: this host's crypt(3) failed")
    return check_root_hash(hashed.decode())
