"""What every operation shares: the root check and the progress callback type."""

import os
from collections.abc import Callable

from ..errors import Error, Usage
from ..paths import Paths
from ..store import volumes as store_volumes
from ..systemd.nspawn import require_idmap

# Operations tell the user what they are doing through a callback; the CLI prints to stderr.
Report = Callable[[str], None]


def require_root():
    # NSPAWNCTL_ROOT points all paths at a private tree (the unit tests): no root needed there.
    if os.geteuid() != 0 and "NSPAWNCTL_ROOT" not in os.environ:
        raise Error("this command needs root", hint="run it with sudo")


def check_bind_sources(binds) -> None:
    """Refuse a bind mount whose source is not on the host: systemd-nspawn would refuse it
    only at the next start, far from where it was typed (create, set)."""
    for bind in binds:
        if not os.path.exists(bind.source):
            raise Usage(f"bind mount source {bind.source} does not exist",
                        hint="create it first, or fix the path")


def check_mounts(paths: Paths, binds, volumes, private_users: bool = True) -> None:
    """Refuse what systemd-nspawn would refuse only at the next start, far from where it was
    typed (create, set): a bind source that is not there, a volume that does not exist, an
    idmapped bind without a user namespace (nspawn: "Failed to map ids for bind mount"), and
    one (a volume's, with a user namespace) on a host whose systemd-nspawn has none."""
    binds, volumes = list(binds), list(volumes)
    check_bind_sources(binds)
    for mount in volumes:
        store_volumes.require(paths, mount.name)
    idmapped = [str(b) for b in binds if b.idmap]
    if idmapped and not private_users:
        raise Usage(f"--bind {idmapped[0]}: idmap needs a user namespace, and this container "
                    "runs without one (--no-private-users)",
                    hint="leave idmap out: without a user namespace uid N inside already is "
                         "uid N on the host")
    idmapped += [f"--volume {v}" for v in volumes if v.idmap]
    if idmapped:
        require_idmap(idmapped[0])
