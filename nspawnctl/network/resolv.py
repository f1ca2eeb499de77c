"""The resolv.conf a container gets, and reading and writing files of a container's /etc
(resolv.conf, hosts) without following the links it may have made.

A container on a bridge cannot use the host's loopback resolvers (systemd-resolved's stub
127.0.0.53, a local dnsmasq on 127.0.0.1): those are the host's own lo.  So it gets the
host's other nameservers, or, when the host has only a loopback stub, the uplink servers
systemd-resolved itself uses (/run/systemd/resolve/resolv.conf).  IPv6 servers are left
out: nspawnctl's networks are IPv4 only, and an unreachable server costs every lookup a
timeout.
"""

import contextlib
import errno
import ipaddress
import os
import stat
from pathlib import Path

from ..errors import Error, InvalidInput

RESOLVED_UPLINK = Path("/run/systemd/resolve/resolv.conf")
MAXNS = 3  # glibc reads no more nameserver lines than this
MAX_READ = 1 << 20  # /etc/hosts and friends are small; a container may make them huge


def container_resolv_conf(host_resolv_text: str, resolved_uplink_text: str | None = None
                          ) -> str | None:
    """resolv.conf text for a container, or None if the host has no usable nameserver
    (the caller warns: the container then resolves nothing)."""
    servers, others = _choose(host_resolv_text, resolved_uplink_text)
    if not servers:
        return None
    lines = ["# written by nspawnctl from the host's resolvers"]
    lines += [f"nameserver {s}" for s in servers]
    lines += others
    return "\n".join(lines) + "\n"


def container_nameservers(host_resolv_text: str, resolved_uplink_text: str | None = None
                          ) -> list[str]:
    """The nameservers container_resolv_conf() writes: the firewall opens DNS on the host to
    containers at exactly these (when one is a host address: a resolver on the LAN address)."""
    return _choose(host_resolv_text, resolved_uplink_text)[0]


def container_resolv_conf_for_host() -> str | None:
    """container_resolv_conf() of this host's /etc/resolv.conf and resolved's uplink file."""
    return container_resolv_conf(*_host_files())


def container_nameservers_for_host() -> list[str]:
    """container_nameservers() of this host's files."""
    return container_nameservers(*_host_files())


def _host_files() -> tuple[str, str | None]:
    def read(path) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None
    return read("/etc/resolv.conf") or "", read(RESOLVED_UPLINK)


def _choose(host_resolv_text: str, resolved_uplink_text: str | None
            ) -> tuple[list[str], list[str]]:
    """(nameservers, search/domain/options lines) a container gets."""
    servers, others = _parse(host_resolv_text)
    if not servers and resolved_uplink_text:
        servers, uplink_others = _parse(resolved_uplink_text)
        others = others or uplink_others
    return servers[:MAXNS], others


def _parse(text: str) -> tuple[list[str], list[str]]:
    """(usable nameservers, search/domain/options lines) of a resolv.conf."""
    servers, others = [], []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) >= 2:
            try:
                addr = ipaddress.ip_address(words[1])
            except ValueError:
                continue  # a scoped IPv6 address (fe80::1%eth0) or garbage
            if addr.version == 4 and not (addr.is_loopback or addr.is_unspecified) \
                    and str(addr) not in servers:
                servers.append(str(addr))
        elif words[0] in ("search", "domain", "options"):
            others.append(" ".join(words))
    return servers, others


def write_etc_file(tree, name: str, text: str):
    """Write TREE/etc/NAME with text, never following a symlink the container made.

    tree is a path or an open directory fd of the container's root.  Every component is
    opened with O_NOFOLLOW relative to the one before; the file is written beside the old
    one and renamed over it, which replaces a symlink (to a host path, say) rather than
    following it.  It is owned by the owner of the tree's etc directory, so a tree shifted
    into a user-namespace UID range keeps its own root's file.
    """
    with _etc(tree, name) as etc:
        try:
            _replace(etc, name, text.encode())
        except OSError as exc:
            raise Error(f"cannot write the container's /etc/{name}: {exc.strerror}") from None


def read_etc_file(tree, name: str) -> str | None:
    """TREE/etc/NAME's text; None if it is missing or a symlink (never followed: the
    container may point it anywhere on the host).  A FIFO, a device or a file larger than
    MAX_READ is refused: the container controls what is there."""
    with _etc(tree, name) as etc:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=etc)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise Error(f"cannot read the container's /etc/{name}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidInput(f"the container's /etc/{name} is not a regular file")
            if st.st_size > MAX_READ:
                raise InvalidInput(f"the container's /etc/{name} is too large "
                                   f"({st.st_size} bytes, at most {MAX_READ})")
            chunks, size = [], 0
            while size <= MAX_READ:
                chunk = os.read(fd, MAX_READ + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
    if len(data) > MAX_READ:  # it grew meanwhile
        raise InvalidInput(f"the container's /etc/{name} is too large (at most {MAX_READ} bytes)")
    return data.decode(errors="replace")


@contextlib.contextmanager
def _etc(tree, name: str):
    """An O_NOFOLLOW fd of TREE/etc for the with-block (name is checked to be one plain
    file name in it)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root = tree if isinstance(tree, int) else os.open(tree, flags)
    try:
        try:
            etc = os.open("etc", flags, dir_fd=root)
        except OSError as exc:
            why = "a symlink or not a directory" if exc.errno in (errno.ELOOP, errno.ENOTDIR) \
                else exc.strerror
            raise InvalidInput(f"cannot reach the container's /etc/{name}: its /etc is {why}",
                               hint="nspawnctl never follows links out of a container's tree"
                               ) from None
        try:
            yield etc
        finally:
            os.close(etc)
    finally:
        if not isinstance(tree, int):
            os.close(root)


def _replace(dirfd: int, name: str, data: bytes):
    st = os.fstat(dirfd)
    tmp = f".{name}.nspawnctl-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dirfd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dirfd)
        except FileNotFoundError:
            pass
        raise
