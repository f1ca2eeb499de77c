"""Which platform an image is for, and which one the host runs."""

import platform as host_platform
from dataclasses import dataclass

from ..errors import Usage

ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def matches(self, os_: object, arch: object, variant: object = None) -> bool:
        return (os_ == self.os and arch == self.architecture
                and (self.variant is None or variant == self.variant))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(spec: str | None) -> Platform:
    """OS/ARCH[/VARIANT], or the host's own platform for None."""
    if spec is None:
        machine = host_platform.machine()
        return Platform("linux", ARCHES.get(machine, machine))
    parts = spec.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise Usage(f"invalid platform '{spec}'", hint="use OS/ARCH[/VARIANT], e.g. linux/arm64")
    return Platform(*parts)
