"""Ways to get a root tree: each module produces a tree in a staging directory, nothing else."""

import shlex

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


def split_cmd(cmd: str) -> tuple[str, ...]:
    """create --cmd 'PROGRAM ARGS', split as a shell would (for scratch trees and images)."""
    try:
        argv = tuple(shlex.split(cmd))
    except ValueError as e:
        raise Error(f"invalid --cmd {cmd!r}: {e}") from None
    if not argv:
        raise Error("--cmd is empty", hint="say what to run, e.g. --cmd '/bin/program'")
    return argv
