"""Image references, read as podman reads them (the distribution grammar, Docker Hub's
completion), and every malformed one refused with one line before it reaches skopeo."""

import pytest

from nspawnctl.errors import Error
from nspawnctl.sources.registry.reference import parse, parse_user

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, name", [
    # Docker Hub's completion, as podman and skopeo make it
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("docker.io/library/alpine:3.19", "docker.io/library/alpine:3.19"),
    ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
    ("docker.io/someone/tool:v1", "docker.io/someone/tool:v1"),
    ("docker://docker.io/alpine", "docker.io/library/alpine:latest"),
    # other registries: the first component is a host when it has "." or ":" or is localhost
    ("quay.io/org/app", "quay.io/org/app:latest"),
    ("registry.example.org:5000/a/b/c:tag_1.2-x", "registry.example.org:5000/a/b/c:tag_1.2-x"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("203.0.113.5:5000/app", "203.0.113.5:5000/app:latest"),
    ("Registry.Example.ORG/app", "Registry.Example.ORG/app:latest"),
    # by digest: the digest names the image; a tag beside it is dropped (podman drops it)
    (f"quay.io/org/app@{D}", f"quay.io/org/app@{D}"),
    (f"quay.io/org/app:v1@{D}", f"quay.io/org/app@{D}"),
    ("docker.io/a__b/c.d-e---f:x", "docker.io/a__b/c.d-e---f:x"),
])
def test_qualified_names(text, name):
    ref = parse_user(text)
    assert not ref.short and ref.name == name


@pytest.mark.parametrize("text, path", [
    ("alpine", "alpine"),
    ("alpine:3", "alpine"),
    ("library/alpine", "library/alpine"),      # "library" is no host: still a short name
    ("org/app/sub", "org/app/sub"),
    ("docker://alpine", "alpine"),             # podman: docker://NAME is still resolved
    (f"alpine@{D}", "alpine"),
    ("localhost", "localhost"),                # alone, it is a repository name
])
def test_short_names_stay_short(text, path):
    ref = parse_user(text)
    assert ref.short and ref.path == path and ref.domain == ""


def test_docker_hub_completion_of_a_short_name_when_asked():
    assert parse("alpine", normalize=True).name == "docker.io/library/alpine:latest"
    assert parse("org/app:1", normalize=True).name == "docker.io/org/app:1"


@pytest.mark.parametrize("text, says", [
    ("", "empty image reference"),
    ("docker://", "empty image reference"),
    ("Alpine", "repository names must be lowercase"),
    ("quay.io/Org/app", "repository names must be lowercase"),
    ("quay.io/org/app:", "invalid tag"),
    ("quay.io/org/app:-x", "invalid tag"),
    ("quay.io/org/app:" + "t" * 129, "invalid tag"),
    ("quay.io/org/app@sha256:abc", "invalid digest"),
    ("quay.io/org/app@sha512:" + "a" * 128, "only sha256 digests"),
    ("quay.io/org/app@md5:" + "a" * 32, "only sha256 digests"),
    ("quay.io/org/../etc", "invalid repository name"),
    ("quay.io//app", "invalid repository name"),
    ("-rf/app", "invalid repository name"),
    ("--tls-verify=false", "invalid"),
    ("quay.io/app name", "invalid"),
    ("quay.io/app\nx", "invalid"),
    ("bad_host.io:port/app", "invalid registry"),
    ("-bad.io/app", "invalid registry"),
    ("quay.io/" + "a/" * 130 + "b", "longer than 255"),
    ("a" * 2000, "longer than 1020"),
])
def test_malformed_references_are_refused(text, says):
    with pytest.raises(Error) as e:
        parse_user(text)
    assert says in e.value.message and "\n" not in e.value.message


def test_a_reference_never_reaches_skopeo_as_an_option():
    """Whatever parses starts with a letter or digit: no "-" can lead skopeo's argument."""
    for text in ["quay.io/x", "alpine", "localhost:1/x"]:
        assert parse_user(text).name[0].isalnum()
