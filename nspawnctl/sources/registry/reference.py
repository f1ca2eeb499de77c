"""Image references as podman reads them: [DOMAIN/]PATH[:TAG][@DIGEST].

The grammar is the distribution project's (docker/reference, which containers/image vendors):
a name of lowercase path components, an optional domain before the first "/" when that first
component looks like a host (it has a "." or a ":", or is "localhost"), an optional tag and an
optional digest.  A name without such a domain is a *short name*: podman resolves it through
registries.conf (shortnames.py), and Docker Hub names are completed as podman completes them
("alpine" under docker.io is docker.io/library/alpine, index.docker.io is docker.io).

Every reference is checked here, before it reaches skopeo's command line or a path: no part of
it can be taken for an option, hold a "..", or be longer than the grammar allows.
"""

import re
from dataclasses import dataclass

from ...errors import Usage

DOCKER_HUB = "docker.io"
LEGACY_DOCKER_HUB = "index.docker.io"
OFFICIAL = "library"
DEFAULT_TAG = "latest"
MAX_NAME = 255                        # the distribution grammar's NameTotalLengthMax

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
HINT = "use [REGISTRY/]REPOSITORY[:TAG|@sha256:DIGEST], e.g. docker.io/library/debian:bookworm"


@dataclass(frozen=True)
class Reference:
    """A parsed reference.  domain is "" for a short name (resolved later); digest, when
    given, is the one image it names (a tag given beside it is dropped, as podman drops it)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def short(self) -> bool:
        return not self.domain

    @property
    def repository(self) -> str:
        """DOMAIN/PATH, or PATH alone for a short name."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def name(self) -> str:
        """The reference written out whole: REPOSITORY@DIGEST or REPOSITORY:TAG (latest when
        none was given), as podman names what it pulled."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        return self.name

    def with_repository(self, repository: str) -> "Reference":
        """This reference's tag or digest on another (fully qualified) repository: what an
        alias or a search registry makes of a short name."""
        domain, path = split_domain(repository, normalize=True)
        return Reference(domain, path, self.tag, self.digest)


def is_domain(text: str) -> bool:
    """Whether text is a registry's HOST[:PORT] as the grammar has it."""
    return bool(_DOMAIN.fullmatch(text))


def split_domain(name: str, normalize: bool) -> tuple[str, str]:
    """(domain, path) of a name without tag or digest.

    The first component is a domain when it has a "." or a ":" or is "localhost"; with
    normalize (a fully qualified name, or one completed for Docker Hub) a name without one is
    Docker Hub's, and Docker Hub's one-component names are its official images (library/).
    Without normalize a name without a domain stays short (domain "")."""
    first, sep, rest = name.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost"
                or (normalize and first.lower() != first)):
        domain, path = first, rest
    else:
        domain, path = (DOCKER_HUB if normalize else ""), name
    if normalize:
        if domain == LEGACY_DOCKER_HUB:
            domain = DOCKER_HUB
        if domain == DOCKER_HUB and "/" not in path:
            path = f"{OFFICIAL}/{path}"
    return domain, path


def parse_user(text: str) -> Reference:
    """A reference as the user typed it: a short name stays short (shortnames.py resolves
    it), a fully qualified one is normalized (docker.io/alpine is docker.io/library/alpine)."""
    ref = parse(text)
    return ref if ref.short else parse(text, normalize=True)


def parse(text: str, normalize: bool = False) -> Reference:
    """A reference from the user: Error (one line) unless it follows the grammar.

    A "docker://" in front is the transport's name and is dropped (podman: a reference with it
    is still a short name if it has no domain).  normalize: complete a name without a domain
    to Docker Hub's, as `skopeo` and podman's "docker://" references of a whole name do."""
    original = text
    if text.startswith("docker://"):
        text = text[len("docker://"):]
    if not text:
        raise Usage("empty image reference", hint=HINT)
    if len(text) > 4 * MAX_NAME:
        raise Usage(f"image reference is longer than {4 * MAX_NAME} characters", hint=HINT)
    shown = original if original.isprintable() else repr(original)
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise Usage(f"invalid image reference {shown}: invalid digest", hint=HINT)
    if at and not SHA256.fullmatch(digest):
        raise Usage(f"invalid image reference {shown}: only sha256 digests (sha256:64 hex "
                    "digits) are supported", hint=HINT)
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise Usage(f"invalid image reference {shown}: invalid tag {tag!r}", hint=HINT)
    first, sep, path = name.partition("/")
    is_domain = sep and (any(c in first for c in ".:") or first == "localhost"
                         or first.lower() != first)
    if is_domain and not _DOMAIN.fullmatch(first):
        raise Usage(f"invalid image reference {shown}: invalid registry {first!r}", hint=HINT)
    repo_path = path if is_domain else name
    if not _PATH.fullmatch(repo_path):
        why = ("repository names must be lowercase" if repo_path.lower() != repo_path
               and _PATH.fullmatch(repo_path.lower()) else "invalid repository name")
        raise Usage(f"invalid image reference {shown}: {why}", hint=HINT)
    if len(name) > MAX_NAME:
        raise Usage(f"invalid image reference {shown}: the name is longer than {MAX_NAME} "
                    "characters", hint=HINT)
    domain, repo_path = split_domain(name, normalize)
    return Reference(domain, repo_path, None if at else tag, digest or None)
