"""An outside world for networking tests, made of network namespaces on the systemd host.

The testbed boots with --private-network: it has loopback and nothing else.  OutsideWorld gives
it two neighbours, each a network namespace created on the testbed host (`ip netns add`) and
joined to it by a veth pair:

    upstream (ow-upstream)  "the internet": 203.0.113.2, plus 203.0.113.80 (HTTP, a known page)
                            and 203.0.113.53 (DNS: dnsmasq answers upstream.test).  The testbed
                            host's default route goes to it and its resolv.conf points at it.
    lan (ow-lan)            another machine on the host's LAN: 198.51.100.2, on 198.51.100.0/25
                            (the VM tier's own network is the upper half).

    testbed host:  ow-up  203.0.113.1/24  <->  uplink 203.0.113.2/24 (upstream)
                   ow-lan 198.51.100.1/25 <->  eth0   198.51.100.2/25 (lan)

The upstream has only its connected route: no default route and no route back to container
subnets, and it does not forward.  So a container reaches it only through NAT on the host, and
the HTTP server's log then shows the host's address (203.0.113.1) as the client.  Nothing here
can leave the testbed: every address is in a documentation range, and the namespaces route
nowhere else.

It is built only on an isolated host: the testbed, or the VM tier's VM (tests/vm.py marks it
with VM_MARKER), whose only way out is the namespace made for it on this machine.  On a real
host a default route to a namespace and a new resolv.conf would cut it off its network.

Usage:
    with outside_world(host) as world:          # or world.up(host) ... world.down(host)
        host.run(["getent", "hosts", UPSTREAM_NAME])
        world.upstream_run(host, ["ss", "-tn"])
        world.http_clients(host)                # client addresses the HTTP server saw

up() is idempotent: what a killed run left (namespaces, links, servers, the saved resolv.conf)
is replaced.  down() removes every namespace, veth and process it made and puts resolv.conf back.
"""

import contextlib
import subprocess
import time

# --- addresses and names (all documentation ranges: RFC 5737) ------------------------------

UPSTREAM_NS = "ow-upstream"
LAN_NS = "ow-lan"
HOST_UPSTREAM_LINK = "ow-up"      # the testbed host's side of the veth to the upstream
HOST_LAN_LINK = "ow-lan"          # the testbed host's side of the veth to the lan
UPSTREAM_LINK = "uplink"          # the upstream's side
LAN_LINK = "eth0"                 # the lan machine's side

HOST_UPSTREAM_ADDR = "203.0.113.1"  # the testbed host, as the upstream sees it (NAT source)
UPSTREAM_ADDR = "203.0.113.2"       # the upstream's router address: the host's default gateway
UPSTREAM_NET = "203.0.113.0/24"
HTTP_ADDR = "203.0.113.80"          # "a web server on the internet"
DNS_ADDR = "203.0.113.53"           # "the internet's resolver"
HOST_LAN_ADDR = "198.51.100.1"      # the testbed host on the LAN
LAN_ADDR = "198.51.100.2"           # another machine on the LAN
LAN_NET = "198.51.100.0/25"
LAN_PREFIX = 25

UPSTREAM_NAME = "upstream.test"     # resolves to HTTP_ADDR through the upstream's DNS
HTTP_PAGE = "hello from upstream\n"
HTTP_URL = f"http://{HTTP_ADDR}/"

STATE = "/run/outside-world"        # on the testbed host: the page, server logs
HTTP_LOG = f"{STATE}/http.log"
SERVER_UNITS = {"outside-http.service": "http", "outside-dns.service": "dns"}
DNS_LOG = f"{STATE}/dns.log"
# The host's own resolv.conf, moved aside while the world is up (a file or a symlink, kept as
# it was).  In /etc, not /run, so a testbed reboot in between does not lose it.
RESOLV_CONF = "/etc/resolv.conf"
RESOLV_SAVED = "/etc/.resolv.conf.outside-world"
RESOLV_NONE = RESOLV_SAVED + ".none"  # there was no resolv.conf: down() removes ours
# Written in the VM tier's VM when it is provisioned (tests/vm.py): the host is a throwaway.
VM_MARKER = "/etc/nspawnctl-test-vm"


class OutsideWorld:
    """The upstream and lan namespaces of one systemd host (the testbed)."""

    def __init__(self):
        self.servers = []  # Popen objects of `ip netns exec NS server` (nsenter on this machine)

    # --- bring up and tear down -------------------------------------------------------------

    def up(self, host, timeout=20):
        _check_isolated(host)
        self._remove(host)  # a killed run's leftovers, or our own earlier up()
        self._make_upstream(host)
        self._make_lan(host)
        self._point_resolver(host)
        self._start_servers(host, timeout)
        return self

    def down(self, host):
        self._remove(host)

    def _remove(self, host):
        host.run(["systemctl", "stop", *SERVER_UNITS])
        for ns in (UPSTREAM_NS, LAN_NS):
            # Every process in the namespace, whoever started it (an earlier run too).
            pids = host.run(["ip", "netns", "pids", ns]).stdout.split()
            if pids:
                host.run(["kill", "-KILL", *pids])
            # The veth pair goes with the namespace that holds one of its ends.
            host.run(["ip", "netns", "delete", ns])
        for link in (HOST_UPSTREAM_LINK, HOST_LAN_LINK):
            host.run(["ip", "link", "delete", link])  # in case the namespace was gone already
        for p in self.servers:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:  # nsenter itself; its child is dead already
                p.kill()
                p.wait()
        self.servers = []
        _sh(host, f"""
            if [ -e {RESOLV_SAVED} ] || [ -L {RESOLV_SAVED} ]; then
                rm -f {RESOLV_CONF} && mv {RESOLV_SAVED} {RESOLV_CONF}
            elif [ -e {RESOLV_NONE} ]; then
                rm -f {RESOLV_CONF} {RESOLV_NONE}
            fi
            rm -rf {STATE}""")

    def _make_upstream(self, host):
        _sh(host, f"""
            ip netns add {UPSTREAM_NS}
            ip link add {HOST_UPSTREAM_LINK} type veth peer name {UPSTREAM_LINK} netns {UPSTREAM_NS}
            ip addr add {HOST_UPSTREAM_ADDR}/24 dev {HOST_UPSTREAM_LINK}
            ip link set {HOST_UPSTREAM_LINK} up
            ip route replace default via {UPSTREAM_ADDR} dev {HOST_UPSTREAM_LINK}
            ip -n {UPSTREAM_NS} link set lo up
            ip -n {UPSTREAM_NS} addr add {UPSTREAM_ADDR}/24 dev {UPSTREAM_LINK}
            ip -n {UPSTREAM_NS} addr add {HTTP_ADDR}/32 dev {UPSTREAM_LINK}
            ip -n {UPSTREAM_NS} addr add {DNS_ADDR}/32 dev {UPSTREAM_LINK}
            ip -n {UPSTREAM_NS} link set {UPSTREAM_LINK} up
            # The internet routes nothing back to private ranges: only NATed traffic returns.
            ip netns exec {UPSTREAM_NS} sysctl -qw net.ipv4.ip_forward=0""")

    def _make_lan(self, host):
        _sh(host, f"""
            ip netns add {LAN_NS}
            ip link add {HOST_LAN_LINK} type veth peer name {LAN_LINK} netns {LAN_NS}
            ip addr add {HOST_LAN_ADDR}/{LAN_PREFIX} dev {HOST_LAN_LINK}
            ip link set {HOST_LAN_LINK} up
            ip -n {LAN_NS} link set lo up
            ip -n {LAN_NS} addr add {LAN_ADDR}/{LAN_PREFIX} dev {LAN_LINK}
            ip -n {LAN_NS} link set {LAN_LINK} up""")

    def _point_resolver(self, host):
        # /etc/hosts (deb.debian.org -> the mirror forwarder on 127.0.0.1) comes first in
        # nsswitch and is left alone; only names it does not know go to the upstream's DNS.
        _sh(host, f"""
            if [ -e {RESOLV_CONF} ] || [ -L {RESOLV_CONF} ]; then
                mv {RESOLV_CONF} {RESOLV_SAVED}
            else
                touch {RESOLV_NONE}
            fi
            printf 'nameserver {DNS_ADDR}\\noptions timeout:1 attempts:2\\n' > {RESOLV_CONF}""")

    def _start_servers(self, host, timeout):
        _sh(host, f"""
            mkdir -p {STATE}/www
            printf '%s' '{HTTP_PAGE}' > {STATE}/www/index.html""")
        http = (f"exec python3 -u -m http.server --bind {HTTP_ADDR} --directory {STATE}/www 80"
                f" >>{HTTP_LOG} 2>&1")
        # --local: the .test zone is answered here only (NXDOMAIN, NODATA), never forwarded.
        dns = (f"exec dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts"
               f" --user=root --pid-file= --bind-interfaces --listen-address={DNS_ADDR}"
               f" --local=/test/ --address=/{UPSTREAM_NAME}/{HTTP_ADDR}"
               f" --log-queries --log-facility=- >>{DNS_LOG} 2>&1")
        # Transient units of the host's systemd, in the upstream's namespace: a shutdown of the
        # host (a test rebooting the testbed) stops them like any service, where processes
        # entered from outside would be waited for until systemd's final SIGKILL.
        for unit, script in SERVER_UNITS.items():
            host.run(["systemd-run", f"--unit={unit}", "--collect", "--quiet",
                      f"--property=NetworkNamespacePath=/run/netns/{UPSTREAM_NS}",
                      "sh", "-c", {"http": http, "dns": dns}[script]])
        deadline = time.monotonic() + timeout
        while True:
            listening = self.upstream_run(host, ["ss", "-Hln"]).stdout
            if f"{HTTP_ADDR}:80" in listening and f"{DNS_ADDR}:53" in listening:
                return
            if time.monotonic() > deadline:
                logs = _sh(host, f"tail -n 20 {HTTP_LOG} {DNS_LOG}", check=False).stdout
                raise RuntimeError(f"outside world: servers did not start\n{listening}\n{logs}")
            time.sleep(0.1)

    # --- using it ---------------------------------------------------------------------------

    def upstream_run(self, host, argv, **kw):
        """argv inside the upstream namespace."""
        return host.run(["ip", "netns", "exec", UPSTREAM_NS, *argv], **kw)

    def lan_run(self, host, argv, **kw):
        """argv inside the lan namespace."""
        return host.run(["ip", "netns", "exec", LAN_NS, *argv], **kw)

    def upstream_popen(self, host, argv, **kw):
        """A process in the upstream, killed by down()."""
        p = host.popen(["ip", "netns", "exec", UPSTREAM_NS, *argv], **kw)
        self.servers.append(p)
        return p

    def lan_popen(self, host, argv, **kw):
        """A process on the lan machine, killed by down()."""
        p = host.popen(["ip", "netns", "exec", LAN_NS, *argv], **kw)
        self.servers.append(p)
        return p

    def http_clients(self, host) -> list[str]:
        """Client addresses of every request the upstream HTTP server answered, in order."""
        text = host.run(["cat", HTTP_LOG]).stdout
        return [line.split()[0] for line in text.splitlines() if '"GET ' in line]


def fetch(host, url=HTTP_URL, timeout=5, runner=None):
    """GET url with Python's urllib: (ok, body or error).  On the host, or through runner, e.g.
    `lambda argv: host.run(["nsenter", "-t", LEADER, "-n", *argv])` for a container's network
    namespace (the host's python3 there: the default image has none; bash's /dev/tcp works in
    it too).  No proxy: host.run's environment is clean."""
    code = ("import sys, urllib.request\n"
            "try:\n"
            f"    page = urllib.request.urlopen(sys.argv[1], timeout={timeout}).read()\n"
            "    print(page.decode(), end='')\n"
            "except Exception as e:\n"
            "    print(e, file=sys.stderr); sys.exit(1)\n")
    r = (runner or host.run)(["python3", "-c", code, url])
    return r.returncode == 0, r.stdout if r.returncode == 0 else r.stderr


@contextlib.contextmanager
def outside_world(host):
    """The world, up for the with-block and torn down after it, also on failure."""
    world = OutsideWorld()
    try:
        yield world.up(host)
    finally:
        world.down(host)


# --- helpers ----------------------------------------------------------------------------------

_DEVNULL = subprocess.DEVNULL


def _sh(host, script, check=True):
    r = host.run(["sh", "-ec", script])
    if check and r.returncode != 0:
        raise RuntimeError(f"outside world: setup step failed\n{r}")
    return r


def isolated(host) -> bool:
    """Whether the world may be built on host: the testbed, or the VM tier's VM."""
    if getattr(host, "leader", None) is not None:
        return True
    return host.run(["test", "-e", VM_MARKER]).returncode == 0


def _check_isolated(host):
    """Refuse anywhere but an isolated host (the testbed, the VM tier's VM): on a real machine
    a default route to a namespace and a new resolv.conf would cut it off its own network."""
    if not isolated(host):
        raise RuntimeError("the outside world is built only inside the testbed or the VM "
                           "tier's VM, never on a real host")
    if getattr(host, "leader", None) is None:
        # The VM keeps the default route of its own network (which leads only to the
        # namespace made for it): the world's, with metric 0, goes before it and leaves with
        # the world's link, so nothing needs putting back.
        return
    routes = host.run(["ip", "-4", "route", "show", "default"]).stdout
    for line in routes.splitlines():
        if f"dev {HOST_UPSTREAM_LINK}" not in line:
            raise RuntimeError(f"the host has a default route of its own: {line}")
