"""First-boot identity written into a new container's tree at create (store/commit.py), for
what the image's systemd would not set from its credentials: systemd-firstboot (252, and
Debian 12's unit without --force) leaves the root password alone once /etc/passwd and
/etc/shadow exist, the time zone once /etc/localtime does, the locale once /etc/locale.conf
does, and every Debian tree has the first two.  So nspawnctl writes them itself, once, into
the staged tree before its commit.

The tree is an image's, hostile: /etc is resolved in the root (fs/resolve.py), and every
file in it is read and replaced through that directory's descriptor without following a
symlink; a file is replaced by a rename, never written through.
"""

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from ..fs import resolve
from ..fs.locks import owner_token

SHADOW_MAX = 1 << 20


@dataclass(frozen=True)
class Identity:
    """What create writes into the tree (None: left as the image has it)."""

    root_hash: str | None = field(default=None, repr=False)  # a secret: never shown
    timezone: str | None = None
    locale: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.root_hash, self.timezone, self.locale))


def write_identity(tree: Path, identity: Identity):
    """identity into tree's /etc (refused with one line when the image cannot take it)."""
    rootfd = resolve.open_root(tree)
    try:
        try:
            etc = resolve.open_dir_in_root(rootfd, ["etc"])
        except OSError as exc:
            raise resolve.describe(exc, "the image's /etc") from None
        try:
            owner = os.fstat(etc)
            if identity.root_hash is not None:
                _set_root_hash(etc, identity.root_hash)
            if identity.timezone is not None:
                _check_zone(rootfd, identity.timezone)
                _replace(etc, "localtime", owner,
                         link=f"../usr/share/zoneinfo/{identity.timezone}")
                _replace(etc, "timezone", owner, text=identity.timezone + "\n")
            if identity.locale is not None:
                line = f"LANG={identity.locale}\n"
                _replace(etc, "locale.conf", owner, text=line)
                try:
                    default = resolve.open_dir_in_root(rootfd, ["etc", "default"])
                except OSError:
                    default = None
                if default is not None:
                    try:
                        _replace(default, "locale", owner, text=line)
                    finally:
                        os.close(default)
        finally:
            os.close(etc)
    finally:
        os.close(rootfd)


def _check_zone(rootfd: int, zone: str):
    try:
        fd = resolve.in_root(rootfd, f"/usr/share/zoneinfo/{zone}", os.O_PATH)
    except OSError:
        raise InvalidInput(f"--timezone {zone}: the image has no /usr/share/zoneinfo/{zone}",
                           hint="add the time zone data: --include tzdata") from None
    os.close(fd)


def _set_root_hash(etc: int, hashed: str):
    try:
        fd = os.open("shadow", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=etc)
    except OSError as exc:
        raise InvalidInput(f"--root-password: the image has no /etc/shadow to set it in "
                           f"({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput("--root-password: the image's /etc/shadow is not a file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(SHADOW_MAX + 1)
    finally:
        os.close(fd)
    if len(data) > SHADOW_MAX:
        raise InvalidInput("--root-password: the image's /etc/shadow is too large")
    lines = data.split(b"\n")
    for index, line in enumerate(lines):
        fields = line.split(b":")
        if fields[0] == b"root" and len(fields) >= 2:
            fields[1] = hashed.encode()
            lines[index] = b":".join(fields)
            break
    else:
        raise InvalidInput("--root-password: the image's /etc/shadow has no root entry")
    _replace(etc, "shadow", st, data=b"\n".join(lines), mode=stat.S_IMODE(st.st_mode))


def _replace(directory: int, name: str, owner: os.stat_result, text: str | None = None,
             data: bytes | None = None, link: str | None = None, mode: int = 0o644):
    """directory/name replaced by a new file (or symlink), owned as owner, by a rename: what
    was there (a symlink too) is replaced, never followed."""
    tmp = f".{name}.{owner_token()}.nspawnctl"
    try:
        if link is not None:
            os.symlink(link, tmp, dir_fd=directory)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=directory)
            try:
                with open(fd, "wb", closefd=False) as f:  # write() until all of it is out
                    f.write(data if data is not None else (text or "").encode())
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chown(tmp, owner.st_uid, owner.st_gid, dir_fd=directory, follow_symlinks=False)
        os.rename(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=directory)
        raise
