"""Every path nspawnctl touches, in one object.

The defaults are systemd's own locations so machinectl, systemctl and journalctl see the same
containers.  NSPAWNCTL_ROOT prefixes all of them: unit tests use it to work in a temporary tree.
Only files move: the host's network (bridges, firewall table, sysctls) is one for the whole
machine, so only the host's own paths may drive it (Paths.relocated, ops/network.py).
"""

import os
from dataclasses import dataclass
from pathlib import Path

# Where nspawnctl marks the containers it holds stopped (store/hold.py); each container's drop-in
# asserts that its mark is absent.  Under /run: a hold never outlives a reboot.
HOLDS = "/run/nspawnctl/holds"


def service_unit(name: str) -> str:
    """The unit a container runs as: systemd's own template, so machinectl starts it the same."""
    return f"systemd-nspawn@{name}.service"


@dataclass(frozen=True)
class Paths:
    machines: Path      # container trees: /var/lib/machines/NAME
    nspawn: Path        # settings: /etc/systemd/nspawn/NAME.nspawn (trusted location)
    units: Path         # drop-ins: /etc/systemd/system/systemd-nspawn@NAME.service.d/
    state: Path         # nspawnctl's own state: locks, staging, base trees
    cache: Path         # downloads that can be thrown away: .deb files, bootstrap logs
    # runtime drop-ins systemd writes for SetUnitProperties(runtime=True): they override /etc
    control: Path = Path("/run/systemd/system.control")
    holds: Path = Path(HOLDS)

    @classmethod
    def from_env(cls) -> "Paths":
        return cls.under(Path(os.environ.get("NSPAWNCTL_ROOT", "/")))

    @classmethod
    def under(cls, root: Path) -> "Paths":
        return cls(machines=root / "var/lib/machines",
                   nspawn=root / "etc/systemd/nspawn",
                   units=root / "etc/systemd/system",
                   state=root / "var/lib/nspawnctl",
                   cache=root / "var/cache/nspawnctl",
                   control=root / "run/systemd/system.control",
                   holds=root / HOLDS.lstrip("/"))

    @property
    def relocated(self) -> bool:
        """Whether these are not the host's own paths (NSPAWNCTL_ROOT, or a test's own): the
        state here does not describe the host's bridges and firewall table, and must never
        replace them.  Compared as written, so any other spelling of / counts as elsewhere."""
        return self != Paths.under(Path("/"))

    def tree(self, name: str) -> Path:
        return self.machines / name

    def nspawn_file(self, name: str) -> Path:
        return self.nspawn / f"{name}.nspawn"

    def dropin_dir(self, name: str) -> Path:
        return self.units / f"{service_unit(name)}.d"

    def control_dir(self, name: str) -> Path:
        """systemd's runtime drop-ins of NAME's unit (live limits): gone only at reboot."""
        return self.control / f"{service_unit(name)}.d"

    @property
    def running(self) -> Path:
        """What running containers were started with, while `set` has saved other settings
        for their next start (settings/running.py).  Under /run: no run outlives a boot."""
        return self.holds.parent / "running"

    @property
    def health(self) -> Path:
        """The last health check of each container that has one (runtime/health.py), as
        status, list and wait read it: state, not settings, so under /run."""
        return self.holds.parent / "health"

    def health_timer_dropin_dir(self, name: str) -> Path:
        """Where nspawnctl wrote the drop-in of NAME's health timer, before one scheduler ran
        all checks (settings/files.py removes it)."""
        return self.units / f"nspawnctl-health@{name}.timer.d"

    @property
    def images(self) -> Path:
        """Read-only base trees, one directory per cache key."""
        return self.state / "images"

    @property
    def pulled(self) -> Path:
        """Images pulled from registries: one OCI image layout, its blobs shared by all of
        them (store/blobs.py)."""
        return self.state / "oci"

    @property
    def overlays(self) -> Path:
        """The layers of --overlay containers (overlay.py): hidden beside their trees."""
        return self.machines / ".nspawnctl-overlays"

    @staticmethod
    def staging_in(parent: Path) -> Path:
        """Where half-made things for parent are built: beside their final place, on the same
        filesystem, so the final move is a rename; hidden, so machinectl does not list it."""
        return parent / ".nspawnctl-staging"

    @property
    def volumes(self) -> Path:
        """Named volumes (store/volumes.py): VOLUME/data is what containers mount,
        VOLUME/volume.json what nspawnctl knows of it; each outlives its containers."""
        return self.state / "volumes"

    def volume_data(self, name: str) -> Path:
        return self.volumes / name / "data"

    @property
    def stacks(self) -> Path:
        """What each stack (nspawnctl apply) made and what its file said: one record each."""
        return self.state / "stacks"

    @property
    def locks(self) -> Path:
        return self.state / "locks"

    @property
    def debs(self) -> Path:
        return self.cache / "debs"

    @property
    def logs(self) -> Path:
        return self.cache / "logs"
