"""Tiny servers and clients for the network-namespace tests, run with `ip netns exec NS`.

    servers.py http NAME ADDR PORT          HTTP: every GET answers "NAME CLIENT_IP" (ADDR "::":
                                            IPv6 and IPv4, as a host service on [::] listens)
    servers.py udp NAME ADDR PORT [LOG]     UDP: answers "NAME CLIENT_IP", appends to LOG
    servers.py sink ADDR PORT               TCP: reads to EOF, answers the byte count
    servers.py udpclient ADDR PORT          one datagram, prints the answer (3 s timeout)
    servers.py send ADDR PORT MB            sends MB MiB to a sink, prints seconds
    servers.py forge SRC DST PORT MESSAGE   one UDP datagram with any IPv4 source (a raw
                                            socket, as a container's root can send)
    servers.py ra IFNAME PREFIX             router advertisements on IFNAME (from its
                                            link-local address): "route through me, take an
                                            address in PREFIX"

Servers print "ready" once they listen.  Only the standard library: the namespaces run the
Debian python3, not the venv.
"""

import http.server
import ipaddress
import socket
import socketserver
import struct
import sys
import time


def http_server(name, addr, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            client = self.client_address[0].removeprefix("::ffff:")  # IPv4 on [::]
            body = f"{name} {client}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        allow_reuse_address = True
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

        def server_bind(self):
            if self.address_family == socket.AF_INET6:  # [::] answers IPv4 too
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    server = Server((addr, int(port)), Handler)
    print("ready", flush=True)
    server.serve_forever()


def udp_server(name, addr, port, log=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, int(port)))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(2048)
        if log:
            with open(log, "a") as f:
                f.write(f"{peer[0]} {data.decode(errors='replace')}\n")
        sock.sendto(f"{name} {peer[0]}\n".encode(), peer)


def sink(addr, port):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            total = 0
            while True:
                chunk = self.request.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
            self.request.sendall(f"{total}\n".encode())

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server((addr, int(port)), Handler)
    print("ready", flush=True)
    server.serve_forever()


def udp_client(addr, port, message="ping"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    sock.sendto(message.encode(), (addr, int(port)))
    try:
        print(sock.recvfrom(2048)[0].decode().strip())
    except socket.timeout:
        print("timeout")
        sys.exit(1)


def send(addr, port, mib):
    """MIB MiB of zeros to a sink; the time from connect until the sink has counted them."""
    chunk = bytes(1 << 20)
    total = int(mib) << 20
    t0 = time.perf_counter()
    with socket.create_connection((addr, int(port)), timeout=30) as sock:
        for _ in range(int(mib)):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile().readline().strip()
    seconds = time.perf_counter() - t0
    if answer != str(total):
        print(f"sink counted {answer!r} bytes, not {total}")
        sys.exit(1)
    print(f"{seconds:.6f}")


def forge(src, dst, port, message):
    """A UDP datagram from src, whatever this namespace's addresses are: IPPROTO_RAW writes
    the IPv4 header itself (the kernel fills in its checksum); UDP checksum 0 is "none"."""
    payload = message.encode()
    udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP,
                         0, socket.inet_aton(src), socket.inet_aton(dst))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        sock.sendto(header + udp, (dst, 0))


def router_advertisement(ifname, prefix, count=3):
    """RFC 4861 router advertisements to all nodes: a default router for 1800 s and a prefix
    for SLAAC, sent with hop limit 255 from ifname's link-local address (the kernel computes
    an ICMPv6 raw socket's checksum)."""
    net = ipaddress.IPv6Network(prefix)
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    info = struct.pack("!BBBBIII", 3, 4, net.prefixlen, 0xC0, 86400, 14400, 0)  # on-link, auto
    packet = ra + info + net.network_address.packed
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        for _ in range(int(count)):
            sock.sendto(packet, ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))
            time.sleep(0.1)


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    {"http": http_server, "udp": udp_server, "sink": sink, "udpclient": udp_client,
     "send": send, "forge": forge, "ra": router_advertisement}[what](*args)
