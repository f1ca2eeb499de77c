"""export: a container's whole tree as one tarball or one-layer image ("build big, squash").

The tree is read as the container sees it: an --overlay container's through its mounted
overlay (its layers flattened), owners shifted back from the UID range the user namespace
stored them in (formats/tar.py).  A running container is frozen (systemd's FreezeUnit)
while its tree is read and thawed afterwards, whatever happens; a stopped one is read as it
is, under its lock, so it cannot start meanwhile.

The file is written under a temporary name beside FILE (.FILE.nspawnctl-export.PID.tmp) and
renamed to FILE once complete and synced: a killed export never leaves a partial FILE, and
its temporary file is deleted by the next export to the same FILE.  That rename replaces an
existing FILE only with --force (a user's archive is not lost to a mistyped name).
"""

import contextlib
import os
import re
import time
from pathlib import Path

from ..errors import Conflict, Error, NotFound, Usage
from ..formats.oci import RunConfig, write_archive
from ..formats.tar import Sink, write_tree
from ..fs.files import rename_noreplace
from ..fs.locks import pid_alive
from ..fs.mounts import mounts_under
from ..paths import service_unit
from ..runtime.context import Context
from ..runtime.lifecycle import running_for_copy
from ..settings.files import load_config
from ..settings.model import ContainerConfig
from ..store import overlay
from ..store.inits import find_init
from .common import require_root

# the image writer (and the OCI package it lives in) is imported only for images
IMAGE_FORMATS = ("oci-archive", "docker-archive")
FORMATS = ("tar",) + IMAGE_FORMATS
# file name endings and what they mean: (format, compression); an image archive's name is
# a tarball's with .oci or .docker before its .tar, as podman and skopeo users write them
SUFFIXES = ((".tar.gz", ("tar", "gzip")), (".tgz", ("tar", "gzip")),
            (".tar.zst", ("tar", "zstd")), (".tar.zstd", ("tar", "zstd")),
            (".tzst", ("tar", "zstd")), (".tar", ("tar", None)))
IMAGE_STEMS = ((".oci", "oci-archive"), (".docker", "docker-archive"))
TEMP_MARK = ".nspawnctl-export."


def format_of_name(file: Path) -> tuple[str, str | None] | None:
    """(format, compression) FILE's name says, or None when it says nothing.  A compressed
    image name (web.oci.tar.gz) says two things (image archives are never compressed, a
    compressed tarball is no image): refused, whatever --format says."""
    lower = file.name.lower()
    for suffix, (fmt, compression) in SUFFIXES:
        if not lower.endswith(suffix):
            continue
        stem = lower[:-len(suffix)]
        for mark, image in IMAGE_STEMS:
            if stem.endswith(mark) and stem != mark:
                if compression is None:
                    return image, None
                base = file.name[:len(stem) - len(mark)]
                raise Usage(f"{file.name!r} could be {_a(image)} or a {compression} tarball",
                            hint=f"image archives are not compressed: name it {base}{mark}"
                                 f".tar, or {base}{suffix} for a root tarball")
        return fmt, compression
    return None


def choose_format(file: Path, fmt: str | None) -> tuple[str, str | None]:
    """(format, compression) for FILE: --format if given, else what its name ends with; a
    name that says another format than --format is refused, so a file named as an OCI
    archive never holds a plain tarball."""
    by_name = format_of_name(file)
    if fmt is None:
        if by_name is None:
            raise Usage(f"cannot tell the format of {file.name!r} from its name",
                        hint="name it .tar, .tar.gz, .tar.zst, .oci.tar or .docker.tar, or "
                             "give --format tar, --format oci-archive or --format "
                             "docker-archive")
        return by_name
    if fmt not in FORMATS:
        raise Usage(f"unknown export format {fmt!r}", hint="use tar, oci-archive or "
                                                           "docker-archive")
    if by_name is not None and by_name[0] != "tar" and by_name[0] != fmt:
        raise Usage(f"{file.name!r} names {_a(by_name[0])}, not {_a(fmt)}",
                    hint="give the file a name that says what it holds, or leave --format "
                         "out")
    if fmt == "tar":
        return "tar", by_name[1] if by_name else None
    if by_name is not None and by_name[1] is not None:
        raise Usage(f"{fmt} archives are not compressed, but {file.name!r} says "
                    f"{by_name[1]}", hint="name it .tar (its layer is stored uncompressed)")
    return fmt, None


def _a(fmt: str) -> str:
    return f"{'an' if fmt[0] in 'aeiou' else 'a'} {fmt}"


def run_config(cfg: ContainerConfig, tree: Path):
    """How the container runs here, as an image config (a writer.RunConfig): a booted
    container's command is its init (with the init's arguments), an application container's
    its command."""
    if cfg.boot:
        init = find_init(tree)
        if init is None:
            raise Error("the container boots, but its tree has no init to name as the "
                        "image's command", hint="set a command with nspawnctl set, or export "
                                                "--format tar")
        cmd = (init, *cfg.command)
    else:
        cmd = tuple(cfg.command)
    user = cfg.user if cfg.user and cfg.user != "root" else None
    ports = tuple(sorted({f"{p.container_port}/{p.proto}" for p in cfg.ports}))
    return RunConfig(cmd=cmd, env=tuple(cfg.env), working_dir=cfg.working_dir, user=user,
                     exposed_ports=ports)


def export(ctx: Context, name: str, file: Path, fmt: str | None = None,
           force: bool = False) -> dict:
    """Export NAME to FILE; an existing FILE is replaced only with force (checked first for a
    quick answer, and again by the rename that puts the archive in place)."""
    require_root()
    fmt, compression = choose_format(file, fmt)
    paths = ctx.paths
    ctx.store.require(name)
    file = Path(os.path.abspath(file))
    if not file.parent.is_dir():
        raise NotFound(f"no directory {file.parent} to write {file.name} in")
    if file.is_dir():
        raise Usage(f"{file} is a directory", hint="give the name of the file to write")
    if not force and os.path.lexists(file):
        raise _exists(file)
    t0 = time.monotonic()
    with ctx.holding(name):
        tree = paths.tree(name)
        if overlay.is_overlay(paths, name) and str(tree) not in mounts_under(tree):
            lower = overlay.lower_of(paths, name)
            if lower is None:
                raise Error(f"the overlay unit of {name} names no base tree")
            overlay.mount_tree(paths, name, lower)  # what its mount unit does at boot
        run = run_config(load_config(paths, name), tree) if fmt != "tar" else None
        with _frozen(ctx, name) as frozen:
            info = _write(tree, file, fmt, compression, run, name, force)
    info.update(name=name, file=str(file), format=fmt, compression=compression,
                frozen=frozen, seconds=round(time.monotonic() - t0, 3))
    return info


@contextlib.contextmanager
def _frozen(ctx: Context, name: str):
    """Freeze NAME's unit for the with-block if it runs (yields whether it did); thawed on
    the way out, also on an error or Ctrl-C."""
    bus = ctx.bus
    if not running_for_copy(ctx, name):
        yield False
        return
    unit = service_unit(name)
    reason = bus.freeze_unit(unit)
    if reason is not None:
        raise Conflict(f"{name} is running and cannot be frozen to be read consistently: "
                       f"{reason}", hint=f"stop it first (nspawnctl stop {name}); systemd "
                                         "freezes units only with the unified cgroup hierarchy "
                                         "(cgroup v2)")
    ctx.report(f"{name} is running: frozen while its tree is read")
    try:
        yield True
    finally:
        bus.thaw_unit(unit)


def _exists(file: Path) -> Error:
    return Conflict(f"{file} already exists", hint="give --force to replace it, or another name")


def _write(tree: Path, file: Path, fmt: str, compression: str | None, run, name: str,
           force: bool = True) -> dict:
    _sweep_temps(file)
    tmp = file.with_name(f".{file.name}{TEMP_MARK}{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            counts = None
            if fmt == "tar":
                sink = Sink(fd, compression=compression)
                counts = write_tree(tree, sink)
                sink.close()
                info: dict = {}
            else:
                assert run is not None
                holder: list = []

                def layer(sink: Sink):
                    holder.append(write_tree(tree, sink))

                info = write_archive(fd, fmt, layer, run, name, f"nspawnctl export {name}")
                counts = holder[0]
            mode = archive_mode(counts.private)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.rename(tmp, file)
        else:  # the one place that decides: a FILE made meanwhile is kept
            rename_noreplace(tmp, file)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, FileExistsError):
            raise _exists(file) from None
        if isinstance(e, OSError):
            where = f" ({e.filename})" if e.filename else ""
            raise Error(f"exporting {name} to {file} failed: {e.strerror or e}{where}",
                        hint="nothing was written under that name") from None
        raise
    info.update(entries=counts.entries, bytes=counts.bytes, size=file.stat().st_size,
                mode=f"{mode:04o}")
    if counts.skipped:
        info["skipped"] = counts.skipped[:20]
    return info


def archive_mode(private: bool) -> int:
    """The export's mode: what the umask lets a new file have, as for any file a command
    makes, and no more than 0600 when the tree holds anything others may not read there
    (every OS tree has /etc/shadow): the archive must not hand it to every local user."""
    mask = _umask()
    return (0o666 & ~mask) & (0o600 if private else 0o666)


def _umask() -> int:
    try:  # read, not set: os.umask() would change it for every thread meanwhile
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


_TEMP = re.compile(r"^\.(?P<name>.+)" + re.escape(TEMP_MARK) + r"(?P<pid>\d+)\.tmp$")


def _sweep_temps(file: Path):
    """Delete the temporary files killed exports to FILE left (their process is gone)."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(file.parent):
            m = _TEMP.match(entry)
            if m and m["name"] == file.name and not pid_alive(int(m["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file.parent / entry)
