"""A host, its containers and its neighbours, each a network namespace of this machine.

    upstream (U)   203.0.113.2/24 "the internet": HTTP server; no route back to containers
    lan (L)        198.51.100.2/24 another machine on the host's LAN
    host (H)       eth-up 203.0.113.1/24 (default route via U), eth-lan 198.51.100.1/24,
                   nspawnctl's bridges and table, made by the library under test; services
                   of its own: on 127.0.0.1 only, on every address ([::]), and a DNS server
                   (the one nspawnctl hands to containers: DNS_SERVERS)
    c1, c2, evil   containers of the "default" network (192.0.2.0/25, bridge nsc-default)
    c3             a container of network "b" (192.0.2.128/25, bridge nsc-b)

A container is what systemd-nspawn makes for Bridge=: a veth pair, host side vb-NAME
enslaved to the bridge in H, the other end renamed host0 in the container's namespace, and
a process (here `sleep`) living in it; inside.configure_container() then configures it
from H.  The library runs in H only: Lab.in_host() forks a child that enters H (and checks
that it did) before it calls anything.  The lab's scaffolding uses `ip -n NS` only, so
nothing here can touch this machine's own interfaces, routes, sysctls or firewall.

Every address is in a documentation range (RFC 5737).  Namespace names start with
PREFIX and a per-run tag; sweep() removes a killed run's leftovers.
"""

import ctypes
import json
import os
import pickle
import secrets
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVERS = Path(__file__).resolve().parent / "servers.py"
PYTHON = "/usr/bin/python3"
PREFIX = "nsct"
CLONE_NEWNET = 0x40000000

UPSTREAM_ADDR, HOST_UP_ADDR = "203.0.113.2", "203.0.113.1"
LAN_ADDR, HOST_LAN_ADDR = "198.51.100.2", "198.51.100.1"
POOL = "192.0.2.0/25,192.0.2.128/25"
HOST_LO_PORT = 8999  # a service of H bound to 127.0.0.1 only: what the guard protects
HOST_ANY_PORT = 8998  # services of H on every address (TCP on [::], UDP on 0.0.0.0)
DNS_SERVERS = [HOST_LAN_ADDR]  # the host's resolver as nspawnctl hands it to containers

CONTAINERS = {"c1": "default", "c2": "default", "evil": "default", "c3": "b"}
# container -> published ports
PUBLISH = {"c1": ["8080:80", "127.0.0.1:8081:80", "5353:53/udp"], "c3": ["8090:80"]}


def sweep():
    """Delete the namespaces a killed run left (ours only: PREFIX names)."""
    for ns in _netns_names():
        if ns.startswith(PREFIX):
            _kill_all_in(ns)
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _netns_names() -> list[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    return [n["name"] for n in json.loads(out or "[]")]


def _kill_all_in(ns: str):
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass


class Lab:
    def __init__(self, workdir: Path, publish: dict | None = None):
        self.tag = PREFIX + secrets.token_hex(2)
        self.publish = publish if publish is not None else PUBLISH
        self.workdir = Path(workdir)
        self.state_dir = self.workdir / "state"
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.sleepers: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}
        self.networks = []
        self.my_netns = os.stat("/proc/self/ns/net").st_ino

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    # --- scaffolding ---------------------------------------------------------------------

    def sh(self, *argv, check=True, timeout=30) -> subprocess.CompletedProcess:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, argv))} failed ({r.returncode}):\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    def ip(self, role: str, *args, check=True):
        """`ip -n NS ...`: never this machine's own namespace."""
        return self.sh("ip", "-n", self.ns(role), *args, check=check)

    def exec(self, role: str, *argv, check=False, timeout=30) -> subprocess.CompletedProcess:
        return self.sh("ip", "netns", "exec", self.ns(role), *argv, check=check,
                       timeout=timeout)

    def sysctl(self, role: str, key: str, value):
        self.exec(role, "sysctl", "-q", "-w", f"{key}={value}", check=True)

    def add_ns(self, role: str):
        self.sh("ip", "netns", "add", self.ns(role))
        self.made.append(self.ns(role))
        self.ip(role, "link", "set", "lo", "up")

    def start(self, role: str, *args, ready=True) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role), PYTHON, SERVERS,
                              *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if ready:
            line = p.stdout.readline().strip()
            if line != "ready":
                raise AssertionError(f"server {args} in {role} did not start: "
                                     f"{line}{p.stderr.read() if p.poll() is not None else ''}")
        return p

    # --- running the library in H --------------------------------------------------------

    def in_host(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) in a child that entered H's network namespace; its result, or
        its exception raised here."""
        return in_netns(self.ns("host"), self.my_netns, fn, *args, **kwargs)

    # --- building it ---------------------------------------------------------------------

    def up(self):
        sweep()
        for role in ("host", "upstream", "lan"):
            self.add_ns(role)
        self.ip("host", "link", "add", "eth-up", "type", "veth", "peer", "name", "uplink",
                "netns", self.ns("upstream"))
        self.ip("host", "addr", "add", f"{HOST_UP_ADDR}/24", "dev", "eth-up")
        self.ip("host", "link", "set", "eth-up", "up")
        self.ip("upstream", "addr", "add", f"{UPSTREAM_ADDR}/24", "dev", "uplink")
        self.ip("upstream", "link", "set", "uplink", "up")
        self.ip("host", "route", "add", "default", "via", UPSTREAM_ADDR)
        self.ip("host", "link", "add", "eth-lan", "type", "veth", "peer", "name", "eth0",
                "netns", self.ns("lan"))
        self.ip("host", "addr", "add", f"{HOST_LAN_ADDR}/24", "dev", "eth-lan")
        self.ip("host", "link", "set", "eth-lan", "up")
        self.ip("lan", "addr", "add", f"{LAN_ADDR}/24", "dev", "eth0")
        self.ip("lan", "link", "set", "eth0", "up")

        self.networks = self.in_host(_make_networks, self.state_dir, POOL)
        for name, network in CONTAINERS.items():
            self.add_container(name, network)
        self.apply()

        self.start("upstream", "http", "upstream", UPSTREAM_ADDR, 80)
        for name in CONTAINERS:
            self.start(name, "http", name, "0.0.0.0", 80)
        self.c1_udp_log = self.workdir / "c1-udp.log"
        self.start("c1", "udp", "c1", "0.0.0.0", 53, self.c1_udp_log)
        self.host_udp_log = self.workdir / "host-lo-udp.log"
        self.start("host", "http", "host-lo", "127.0.0.1", HOST_LO_PORT)
        self.start("host", "udp", "host-lo", "127.0.0.1", HOST_LO_PORT, self.host_udp_log)
        self.host_any_log = self.workdir / "host-any-udp.log"
        self.start("host", "http", "host-any", "::", HOST_ANY_PORT)
        self.start("host", "udp", "host-any", "0.0.0.0", HOST_ANY_PORT, self.host_any_log)
        self.start("host", "udp", "host-dns", "0.0.0.0", 53)
        self.start("host", "http", "host-dns", "0.0.0.0", 53)  # DNS over TCP, as a probe
        return self

    def add_container(self, name: str, network: str):
        self.add_ns(name)
        port = f"vb-{name}"
        self.ip("host", "link", "add", port, "type", "veth", "peer", "name", "host0",
                "netns", self.ns(name))
        self.ip("host", "link", "set", port, "master", f"nsc-{network}")
        self.ip("host", "link", "set", port, "up")
        sleeper = subprocess.Popen(["ip", "netns", "exec", self.ns(name), "sleep", "3600"])
        self.procs.append(sleeper)
        self.sleepers[name] = sleeper
        _wait_in_netns(sleeper.pid, self.ns(name))
        self.addresses[name] = str(self.in_host(_lease, self.state_dir, POOL, network, name))
        self.configure(name, network)

    def configure(self, name: str, network: str | None = None) -> list[str]:
        network = network or CONTAINERS[name]
        net = next(n for n in self.networks if n.name == network)
        return self.in_host(_configure, self.sleepers[name].pid, self.addresses[name],
                            net.prefixlen, str(net.gateway))

    def publications(self):
        from nspawnctl.settings.networking import parse_port
        return [(self.addresses[c], parse_port(p)) for c, ports in self.publish.items()
                for p in ports]

    def apply(self):
        self.in_host(_apply, self.networks, self.publications(), DNS_SERVERS)

    def nft(self, role: str, *args, check=True):
        return self.exec(role, "nft", *args, check=check)

    # --- traffic -------------------------------------------------------------------------

    def curl(self, role: str, url: str, timeout=3) -> str | None:
        """The body that role gets from url, or None if it cannot connect in time."""
        r = self.exec(role, "curl", "-sS", "--max-time", timeout, "--noproxy", "*", url,
                      timeout=timeout + 10)
        return r.stdout.strip() if r.returncode == 0 else None

    def udp(self, role: str, addr: str, port: int, message="ping") -> str | None:
        r = self.exec(role, PYTHON, SERVERS, "udpclient", addr, port, timeout=15)
        return r.stdout.strip() if r.returncode == 0 else None

    def forge(self, role: str, src: str, dst: str, port: int, message: str):
        """One UDP datagram from role with source address src, whatever role's own is."""
        self.exec(role, PYTHON, SERVERS, "forge", src, dst, port, message, check=True)

    def router_advertisement(self, role: str, ifname: str, prefix: str):
        self.exec(role, PYTHON, SERVERS, "ra", ifname, prefix, check=True)

    # --- tearing down --------------------------------------------------------------------

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.made):
            _kill_all_in(ns)
            self.sh("ip", "netns", "delete", ns, check=False)
        self.made = []


# --- what the children run in H ---------------------------------------------------------

def _make_networks(state_dir, pool):
    from nspawnctl.network import bridge
    from nspawnctl.network.state import NetworkState
    state = NetworkState(state_dir, pool=pool)
    nets = [state.get("default"), state.create("b")]
    for net in nets:
        bridge.ensure_bridge(net)
    return nets


def _lease(state_dir, pool, network, name):
    from nspawnctl.network.state import NetworkState
    return NetworkState(state_dir, pool=pool).lease(network, name)


def _configure(pid, address, prefixlen, gateway):
    from nspawnctl.network.inside import configure_container
    return configure_container(pid, address, prefixlen, gateway)


def _apply(networks, publications, dns):
    from nspawnctl.network import firewall
    firewall.apply(networks, publications, dns)


# --- entering a namespace in a child ----------------------------------------------------

def in_netns(ns: str, home_inode: int, fn, *args, **kwargs):
    """Run fn in a forked child inside network namespace ns (/run/netns/NS); return its
    result or raise its exception.  The child refuses to run fn unless it is in a
    namespace other than home_inode (the caller's)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
                os.close(fd)
                if os.stat("/proc/thread-self/ns/net").st_ino == home_inode:
                    raise RuntimeError(f"not in {ns}: refusing to touch the caller's network")
                result = (True, fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the parent
                result = (False, exc)
            try:
                data = pickle.dumps(result)
            except Exception:  # noqa: BLE001 - an unpicklable exception
                data = pickle.dumps((False, RuntimeError(repr(result[1]))))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the child in {ns} died")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


def _wait_in_netns(pid: int, ns: str, timeout=5):
    """Until pid (an `ip netns exec NS sleep`) has entered NS and exec'ed sleep."""
    target = os.stat(f"/run/netns/{ns}").st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == target and \
                    Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never entered {ns}")


if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
