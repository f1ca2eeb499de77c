"""The resolv.conf a container gets, and writing it into a container's tree safely.

A container on a bridge cannot use the host's loopback resolvers (systemd-resolved's stub
127.0.0.53, a local dnsmasq on 127.0.0.1): those are the host's own lo.  So it gets the
host's other nameservers, or, when the host has only a loopback stub, the uplink servers
systemd-resolved itself uses (/run/systemd/resolve/resolv.conf).  IPv6 servers are left
out: nspawnctl's networks are IPv4 only, and an unreachable server costs every lookup a
timeout.
"""

import errno
import ipaddress
import os
from pathlib import Path

from ..errors import Error

RESOLVED_UPLINK = Path("/run/systemd/resolve/resolv.conf")
MAXNS = 3  # glibc reads no more nameserver lines than this


def container_resolv_conf(host_resolv_text: str, resolved_uplink_text: str | None = None
                          ) -> str | None:
    """resolv.conf text for a container, or None if the host has no usable nameserver
    (the caller warns: the container then resolves nothing)."""
    servers, others = _parse(host_resolv_text)
    if not servers and resolved_uplink_text:
        servers, uplink_others = _parse(resolved_uplink_text)
        others = others or uplink_others
    if not servers:
        return None
    lines = ["# written by nspawnctl from the host's resolvers"]
    lines += [f"nameserver {s}" for s in servers[:MAXNS]]
    lines += others
    return "\n".join(lines) + "\n"


def host_resolv_conf() -> str | None:
    """container_resolv_conf() of this host's /etc/resolv.conf and resolved's uplink file."""
    def read(path) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None
    return container_resolv_conf(read("/etc/resolv.conf") or "", read(RESOLVED_UPLINK))


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


def write_resolv_conf(tree, text: str):
    """Write TREE/etc/resolv.conf with text, never following a symlink the container made.

    tree is a path or an open directory fd of the container's root.  Every component is
    opened with O_NOFOLLOW relative to the one before; the file is written beside the old
    one and renamed over it, which replaces a symlink (to a host path, say) rather than
    following it.  It is owned by the owner of the tree's etc directory, so a tree shifted
    into a user-namespace UID range keeps its own root's file.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root = tree if isinstance(tree, int) else os.open(tree, flags)
    try:
        try:
            etc = os.open("etc", flags, dir_fd=root)
        except OSError as exc:
            why = "a symlink or not a directory" if exc.errno in (errno.ELOOP, errno.ENOTDIR) \
                else exc.strerror
            raise Error(f"cannot write the container's /etc/resolv.conf: its /etc is {why}",
                        hint="nspawnctl never follows links out of a container's tree"
                        ) from None
        try:
            _replace(etc, "resolv.conf", text.encode())
        except OSError as exc:
            raise Error(f"cannot write the container's /etc/resolv.conf: {exc.strerror}"
                        ) from None
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
