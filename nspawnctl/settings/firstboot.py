"""First-boot identity handed in as systemd's own credentials (credentials.py), which the
container's systemd reads at its first boot: `--ssh-key FILE` is the credential
ssh.authorized_keys.root, which systemd-tmpfiles writes to /root/.ssh/authorized_keys (0600)
through tmpfiles.d/provision.conf (systemd 252 and later; Debian 12's systemd ships it) when
the file is not there yet, as in a fresh tree.  Nothing is written into the tree by nspawnctl.
"""

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
