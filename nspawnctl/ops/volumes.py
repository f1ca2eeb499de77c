"""volume create, list, inspect and remove: named volumes, which outlive their containers
(store/volumes.py); containers mount them with --volume NAME:/PATH."""

import contextlib
import os
from pathlib import Path

from ..errors import Conflict, Error, Usage
from ..formats.tar import Sink, write_tree
from ..fs.files import rename_noreplace
from ..fs.locks import pid_alive
from ..runtime.context import Context
from ..sources.tarball import import_tar
from ..store import volumes
from .common import require_root

TEMP_MARK = ".nspawnctl-volume."  # .FILE.nspawnctl-volume.PID.tmp: an export being written


def create(ctx: Context, name: str) -> dict:
    require_root()
    ctx.store.sweep()  # a killed create's or remove's staging directory goes first
    return volumes.create(ctx.paths, name)


def list_volumes(ctx: Context) -> list[dict]:
    return volumes.list_volumes(ctx.paths)


def inspect(ctx: Context, name: str) -> dict:
    return volumes.describe(ctx.paths, name)


def remove(ctx: Context, name: str) -> dict:
    """Remove volume NAME and its data; refused while a container's settings mount it."""
    require_root()
    ctx.store.sweep()
    return volumes.remove(ctx.paths, name)


def export(ctx: Context, name: str, file: Path) -> dict:
    """Write volume NAME's data to FILE as a tar, owners as the containers see them (the
    volume holds them so: its binds are idmapped).  FILE is made whole or not at all (a
    temporary file renamed), 0600 (a volume may hold anything), never over an existing one.
    Read as it is: a container writing meanwhile may be caught halfway through a file."""
    require_root()
    volumes.require(ctx.paths, name)
    _sweep_temps(file)
    if os.path.lexists(file):
        raise Conflict(f"{file} already exists", hint="give another name, or remove it first")
    tmp = file.with_name(f".{file.name}{TEMP_MARK}{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise Error(f"cannot write {file}: {e.strerror or e}") from None
    try:
        try:
            sink = Sink(fd)
            counts = write_tree(ctx.paths.volume_data(name), sink)
            sink.close()
            os.fsync(fd)
        finally:
            os.close(fd)
        rename_noreplace(tmp, file)  # the commit point
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, FileExistsError):
            raise Conflict(f"{file} already exists") from None
        if isinstance(e, OSError):
            raise Error(f"exporting volume {name} to {file} failed: {e.strerror or e}",
                        hint="nothing was written under that name") from None
        raise
    return {"name": name, "file": str(file), "entries": counts.entries,
            "bytes": counts.bytes, "size": file.stat().st_size}


def import_(ctx: Context, name: str, file: Path) -> dict:
    """Make volume NAME from the tar FILE (plain or compressed), owners as the tar says
    (as containers see them).  The tar is hostile input: it goes through the one bounded
    unpacker images use (sources/unpack.py), into the staging directory; the volume
    appears whole at the end, or not at all."""
    require_root()
    if file.is_dir():
        raise Usage(f"{file} is a directory", hint="give a tar file")
    ctx.store.sweep()
    volumes.create(ctx.paths, name,
                   fill=lambda data: import_tar(file, data, warn=ctx.report))
    return volumes.describe(ctx.paths, name)


def _sweep_temps(file: Path) -> None:
    """Delete what exports to FILE killed before their rename left (their process is
    gone)."""
    prefix, suffix = f".{file.name}{TEMP_MARK}", ".tmp"
    with contextlib.suppress(OSError):
        for entry in os.listdir(file.parent):
            pid = entry[len(prefix):-len(suffix)]
            if entry.startswith(prefix) and entry.endswith(suffix) and pid.isdigit() \
                    and not pid_alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file.parent / entry)
