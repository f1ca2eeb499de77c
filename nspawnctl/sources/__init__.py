"""Ways to get a root tree: each module produces a tree in a staging directory, nothing else."""

from ..errors import Error

KINDS = ("debootstrap", "tar", "dir", "oci-archive", "docker-archive", "oci")


def split_source(source: str) -> tuple[str, str]:
    if source == "scratch":  # the tree holds only what --add puts in it (scratch.py)
        return "scratch", ""
    kind, sep, rest = source.partition(":")
    if kind in KINDS and sep and rest:
        return kind, rest
    raise Error(f"unknown source {source!r}",
                hint="use debootstrap:SUITE, tar:PATH, dir:PATH, oci-archive:PATH, "
                     "docker-archive:PATH, oci:DIR[:REF] or scratch")
