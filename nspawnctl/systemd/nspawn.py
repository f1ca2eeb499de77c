"""What the host's systemd-nspawn can do, told by its version (it has no feature query)."""

import re

from ..errors import Error, Usage
from ..run import run

# systemd 250 gave --bind=/Bind= the idmap option (uid N inside is uid N in the source);
# 252 added rootidmap, later releases owneridmap.  Debian 12's 252 has idmap.
IDMAP_SINCE = 250


def nspawn_version() -> int | None:
    """The host's systemd-nspawn release (252), or None when it is missing or says
    something else."""
    try:
        out = run(["systemd-nspawn", "--version"], timeout=10,
                  what="systemd-nspawn --version").stdout
    except Error:
        return None
    match = re.match(r"systemd ([0-9]{1,6})\b", out or "")
    return int(match.group(1)) if match else None


def has_idmap(version: int | None) -> bool:
    return version is not None and version >= IDMAP_SINCE


def require_idmap(what: str) -> None:
    """Refuse WHAT (a --bind with idmap, a --volume) on a host whose systemd-nspawn would
    refuse the idmap bind option at the container's next start."""
    version = nspawn_version()
    if not has_idmap(version):
        have = f"systemd-nspawn {version}" if version else "no systemd-nspawn"
        raise Usage(f"{what} needs an idmapped bind, which systemd-nspawn has from systemd "
                    f"{IDMAP_SINCE} on; this host has {have}",
                    hint="upgrade systemd-container, or use a plain --bind (its files show "
                         "as nobody inside)")
