"""Ways to get a root tree, one Source plugin each (base.py says what a source is).

`create --from KIND:REST` asks the source of KIND; --from's help and the docs list them from
here.  A new source is a module with its Source and one line in SOURCES.  Each makes a tree in
a staging directory and nothing else: where it goes, and the container's settings, are
create's (ops/create.py).
"""

from ..errors import Usage
from .base import Request, Source
from .debootstrap import DebootstrapSource
from .oci.source import ImageSource
from .registry.source import RegistrySource
from .scratch import ScratchSource
from .tarball import DirectorySource, TarballSource

SOURCES: dict[str, Source] = {s.kind: s for s in (
    DebootstrapSource(),
    TarballSource(),
    DirectorySource(),
    ImageSource("oci-archive", "oci-archive:PATH",
                "an OCI image archive (podman save --format oci-archive)"),
    ImageSource("docker-archive", "docker-archive:PATH",
                "a docker save / podman save archive"),
    ImageSource("oci", "oci:DIR[:REF]", "an OCI image layout directory (REF: its tag)"),
    RegistrySource(),
    ScratchSource(),
)}


def syntaxes() -> str:
    """What --from takes, as the help and errors list it."""
    names = [s.syntax for s in SOURCES.values()]
    return ", ".join(names[:-1]) + " or " + names[-1]


def lookup(text: str) -> tuple[Source, str]:
    """The source a --from value names, and the rest of the value (after KIND:)."""
    kind, sep, rest = text.partition(":")
    source = SOURCES.get(kind)
    takes_rest = source is not None and ":" in source.syntax  # KIND:REST, or KIND alone
    if source is not None and (bool(rest) if takes_rest else not sep):
        return source, rest
    raise Usage(f"unknown source {text!r}", hint=f"use {syntaxes()}")


def which(test) -> str:
    """The sources for which test(source) holds, as a hint names them."""
    return ", ".join(s.syntax.split(":")[0] + (":" if ":" in s.syntax else "")
                     for s in SOURCES.values() if test(s))


def check(source: Source, request: Request, overlay: bool):
    """Refuse the options a source cannot honour, before anything is made."""
    if request.adds and not source.takes_adds:
        raise Usage("--add puts files in a tree made from scratch",
                    hint=f"use it with --from {which(lambda s: s.takes_adds)}")
    if request.cmd is not None and not source.takes_cmd:
        raise Usage(f"--cmd names the one command of a container that runs one: a "
                    f"{source.kind} tree is booted",
                    hint=f"use it with {which(lambda s: s.takes_cmd)}")
    if request.args is not None and not source.image:
        raise Usage("--args are arguments for an image's entrypoint",
                    hint=f"use them with {which(lambda s: s.image)} sources")
    if request.args is not None and request.cmd is not None:
        raise Usage("--cmd and --args both say what to run: give one",
                    hint="--cmd replaces the image's whole command; --args only its Cmd")
    if request.boot is not None and not source.image:
        raise Usage("--boot and --no-boot choose how an image runs",
                    hint=f"use them with {which(lambda s: s.image)} sources")
    if (request.pull is not None or request.tls_verify is not None) and not source.pulls:
        raise Usage("--pull and --tls-verify are for images from registries",
                    hint=f"use them with {which(lambda s: s.pulls)} sources")
    if overlay and not source.cached:
        raise Usage(f"--overlay needs a cached base tree, and {source.kind}: sources are "
                    "imported once", hint=f"use it with {which(lambda s: s.cached)} sources")
