"""A minimal rtnetlink client: the few requests a container start needs, and no more.

Why not pyroute2 here: importing pyroute2 0.7 takes about 130 ms (its package scans every
installed distribution's entry points), and inside.py runs at every container start.  This
module imports only socket, struct, os and ctypes, and speaks to the kernel directly:
get a link, set it up, list and add IPv4 addresses, read and replace the default route,
turn on a bridge port's hairpin mode (and, not netlink, IPv6 off in a container's network
namespace).  Everything else (bridges, routes listing) uses pyroute2 in bridge.py and
state.py.
"""

import ctypes
import errno
import os
import socket
import struct

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_CREATE = 0x100, 0x400
RTM_GETLINK, RTM_SETLINK = 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_PROTINFO, IFLA_LINKINFO = 3, 5, 10, 12, 18
IFLA_INFO_SLAVE_DATA = 5
IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 26, 8, 1
IFLA_BRPORT_MODE = 4  # the bridge port's hairpin flag
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1
IFF_UP = 0x1
NLA_F_NESTED = 0x8000
CLONE_NEWNET = 0x40000000

_HDR = struct.Struct("=IHHII")       # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")   # ifinfomsg
_IFADDR = struct.Struct("=BBBBI")    # ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg
_ATTR = struct.Struct("=HH")         # rtattr


class Link:
    def __init__(self, index: int, flags: int, attrs: dict):
        self.index, self.flags, self.attrs = index, flags, attrs

    @property
    def name(self) -> str:
        return self.attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()

    def u32(self, key: int) -> int | None:
        value = self.attrs.get(key)
        return struct.unpack("=I", value[:4])[0] if value else None

    @property
    def hairpin(self) -> bool:
        """A bridge port's hairpin mode (its IFLA_INFO_SLAVE_DATA holds the port's flags)."""
        info = _attrs(self.attrs.get(IFLA_LINKINFO, b""), 0)
        port = _attrs(info.get(IFLA_INFO_SLAVE_DATA, b""), 0)
        return port.get(IFLA_BRPORT_MODE, b"\0")[:1] == b"\1"


class Rtnl:
    """One NETLINK_ROUTE socket, in this network namespace or in the one of netns_path
    (a socket stays in the namespace it was made in, so only its creation switches)."""

    def __init__(self, netns_path: str | None = None):
        if netns_path is None:
            self.sock = _socket()
        else:
            with _in_netns(netns_path):
                self.sock = _socket()
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- requests ------------------------------------------------------------------------

    def link(self, name: str | None = None, index: int = 0) -> Link | None:
        """The link called name (or with that index), None if there is none."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if name is not None:
            body += _attr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            (msg,) = self._request(RTM_GETLINK, 0, body)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        _, _, index, flags, _ = _IFINFO.unpack_from(msg)
        return Link(index, flags, _attrs(msg, _IFINFO.size))

    def set_up(self, link: Link):
        if not link.flags & IFF_UP:
            self._request(RTM_SETLINK, NLM_F_ACK,
                          _IFINFO.pack(socket.AF_UNSPEC, 0, link.index, IFF_UP, IFF_UP))

    def addresses(self, index: int) -> list[tuple[str, int]]:
        """(address, prefixlen) of the link's IPv4 addresses."""
        found = []
        for msg in self._request(RTM_GETADDR, NLM_F_DUMP, _IFADDR.pack(socket.AF_INET, 0, 0,
                                                                        0, 0)):
            _, prefixlen, _, _, ifindex = _IFADDR.unpack_from(msg)
            attrs = _attrs(msg, _IFADDR.size)
            local = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if ifindex == index and local:
                found.append((socket.inet_ntoa(local), prefixlen))
        return found

    def add_address(self, index: int, address: str, prefixlen: int, broadcast: str):
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, socket.inet_aton(address))
        body += _attr(IFA_ADDRESS, socket.inet_aton(address))
        body += _attr(IFA_BROADCAST, socket.inet_aton(broadcast))
        self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body)

    def default_routes(self) -> list[tuple[str | None, int | None]]:
        """(gateway, output index) of the main table's IPv4 default routes."""
        found = []
        for msg in self._request(RTM_GETROUTE, NLM_F_DUMP,
                                 _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
            _, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(msg)
            attrs = _attrs(msg, _RTMSG.size)
            if RTA_TABLE in attrs:
                table = struct.unpack("=I", attrs[RTA_TABLE])[0]
            if dst_len == 0 and table == RT_TABLE_MAIN and rtype == RTN_UNICAST:
                gw = attrs.get(RTA_GATEWAY)
                oif = attrs.get(RTA_OIF)
                found.append((socket.inet_ntoa(gw) if gw else None,
                              struct.unpack("=I", oif)[0] if oif else None))
        return found

    def replace_default_route(self, gateway: str, index: int):
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC,
                           RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        body += _attr(RTA_GATEWAY, socket.inet_aton(gateway))
        body += _attr(RTA_OIF, struct.pack("=I", index))
        self._request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body)

    def no_ipv6_link_local(self, link: Link):
        """Make no IPv6 link-local address on the link when it comes up (addr_gen_mode none).
        Containers get IPv4 only; machined would list the fe80:: address first, and without
        its scope nothing can use it (libnss-mymachines resolving a container's name)."""
        mode = _attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
        spec = _attr(IFLA_AF_SPEC | NLA_F_NESTED, _attr(socket.AF_INET6 | NLA_F_NESTED, mode))
        self._request(RTM_SETLINK, NLM_F_ACK,
                      _IFINFO.pack(socket.AF_UNSPEC, 0, link.index, 0, 0) + spec)

    def set_hairpin(self, index: int):
        """Let the bridge send a frame back out of the port it came in by (see inside.py)."""
        body = _IFINFO.pack(socket.AF_BRIDGE, 0, index, 0, 0)
        body += _attr(IFLA_PROTINFO | NLA_F_NESTED, _attr(IFLA_BRPORT_MODE, b"\x01"))
        self._request(RTM_SETLINK, NLM_F_ACK, body)

    # --- the wire ------------------------------------------------------------------------

    def _request(self, mtype: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; the payloads of the answers (one, or a dump's), or OSError."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_HDR.pack(_HDR.size + len(body), mtype, NLM_F_REQUEST | flags, seq, 0)
                       + body)
        answers: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, rtype, _, rseq, _ = _HDR.unpack_from(data, offset)
                payload = data[offset + _HDR.size: offset + length]
                offset += (length + 3) & ~3
                if rseq != seq:
                    continue
                if rtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return answers  # the ACK
                if rtype == NLMSG_DONE:
                    return answers
                answers.append(payload)
                if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                    return answers


def ipv6_off_in(netns_path: str, ifname: str) -> bool:
    """Turn IPv6 off on ifname in the network namespace of netns_path (its disable_ipv6
    sysctl, opened while this thread is in that namespace: /proc/sys/net shows the opener's).
    False when that namespace has no IPv6 (nothing to turn off)."""
    with _in_netns(netns_path):
        try:
            fd = os.open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6",
                         os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
    try:
        os.write(fd, b"1\n")
    finally:
        os.close(fd)
    return True


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def _attr(kind: int, value: bytes) -> bytes:
    length = _ATTR.size + len(value)
    return _ATTR.pack(length, kind) + value + b"\0" * ((4 - length % 4) % 4)


def _attrs(msg: bytes, offset: int) -> dict[int, bytes]:
    found = {}
    while offset + _ATTR.size <= len(msg):
        length, kind = _ATTR.unpack_from(msg, offset)
        if length < _ATTR.size:
            break
        found[kind & ~NLA_F_NESTED] = msg[offset + _ATTR.size: offset + length]
        offset += (length + 3) & ~3
    return found


class _in_netns:
    """The calling thread in another network namespace for the with-block, then back."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(self.home)
            raise
        try:
            self._setns(target)
        finally:
            os.close(target)

    def __exit__(self, *exc):
        try:
            self._setns(self.home)
        finally:
            os.close(self.home)

    def _setns(self, fd: int):
        if self.libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")
