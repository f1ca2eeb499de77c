"""Benchmark: TCP throughput into a container through nspawnctl's published ports.

In the network-namespace lab of tests/netns (a host, its bridge and table made by the
library, a container attached like systemd-nspawn attaches one, a LAN machine), N MiB of
zeros go to a sink in the container, each way interleaved with the others, timed by the
sender from connect until the sink has counted every byte:

- from the LAN machine to the host's published port (nft DNAT, forwarded), beside a
  userspace proxy on the host (socat with 128 KiB buffers: what a user runs where the
  kernel does not forward; systemd-nspawn's Port= never publishes on 127.0.0.1,
  systemd#6106);
- from the host to the port published on 127.0.0.1 (DNAT in the output hook, masqueraded
  into the bridge), beside the host sending straight to the container's address (no NAT) and
  beside socat on 127.0.0.1.

Figures are MB/s (10^6 bytes), higher is faster: ratio = nspawnctl / anchor, so here above
1 is faster.  Root only; nothing leaves the namespaces.

    python -m tests.bench.bench_network [--quick]
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.netns.lab import HOST_LAN_ADDR, PYTHON, SERVERS, Lab  # noqa: E402

SINK_PORT = 5001
PUBLISHED = 8082          # HOSTPORT:5001 on every host address
PUBLISHED_LO = 8083       # 127.0.0.1:HOSTPORT:5001
SOCAT_LAN, SOCAT_LO = 9091, 9092


from .common import Rate  # noqa: E402


def run(quick: bool) -> list[tuple]:
    mib, n = (50, 3) if quick else (200, 5)
    lab = Lab(Path(tempfile.mkdtemp(prefix="bench-network-")),
              publish={"c1": [f"{PUBLISHED}:{SINK_PORT}",
                              f"127.0.0.1:{PUBLISHED_LO}:{SINK_PORT}"]})
    try:
        lab.up()
        c1 = lab.addresses["c1"]
        lab.start("c1", "sink", "0.0.0.0", SINK_PORT)
        for listen, port in ((HOST_LAN_ADDR, SOCAT_LAN), ("127.0.0.1", SOCAT_LO)):
            lab.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", lab.ns("host"), "socat", "-b", "131072",
                 f"TCP4-LISTEN:{port},bind={listen},fork,reuseaddr",
                 f"TCP4:{c1}:{SINK_PORT}"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        _wait_listening(lab, SOCAT_LAN)
        _wait_listening(lab, SOCAT_LO)

        ways = {
            "lan published": ("lan", HOST_LAN_ADDR, PUBLISHED),
            "lan socat": ("lan", HOST_LAN_ADDR, SOCAT_LAN),
            "host published 127.0.0.1": ("host", "127.0.0.1", PUBLISHED_LO),
            "host straight": ("host", c1, SINK_PORT),
            "host socat 127.0.0.1": ("host", "127.0.0.1", SOCAT_LO),
        }
        for role, addr, port in ways.values():  # warm up: ARP, conntrack, socat's fork
            _send(lab, role, addr, port, 1)
        samples = {k: [] for k in ways}
        for _ in range(n):
            for key, (role, addr, port) in ways.items():
                samples[key].append(mib * 2**20 / 1e6 / _send(lab, role, addr, port, mib))
        for key, values in samples.items():
            print(f"bench: network: {key}: " + ", ".join(f"{v:.0f}" for v in values) +
                  " MB/s", flush=True)
    finally:
        lab.down()
        shutil.rmtree(lab.workdir, ignore_errors=True)

    def row(figure, ours, anchor, theirs):
        # (figure, ours, theirs, anchor) as the report's table takes them; rates, so a ratio
        # above 1 is faster here
        return (f"{figure}, {mib} MiB TCP (ratio above 1: faster)", Rate(samples[ours]),
                Rate(samples[theirs]), anchor)

    return [
        row("LAN -> published port (nft DNAT)", "lan published",
            "socat proxy on the host", "lan socat"),
        row("host -> port published on 127.0.0.1 (DNAT + masquerade)",
            "host published 127.0.0.1", "straight to the container's address",
            "host straight"),
        row("host -> port published on 127.0.0.1 (DNAT + masquerade)",
            "host published 127.0.0.1", "socat proxy on 127.0.0.1", "host socat 127.0.0.1"),
    ]


def _send(lab, role, addr, port, mib) -> float:
    r = lab.exec(role, PYTHON, SERVERS, "send", addr, port, mib, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"sending {mib} MiB from {role} to {addr}:{port} failed: "
                           f"{r.stdout}{r.stderr}")
    return float(r.stdout.strip())


def _wait_listening(lab, port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.exec("host", "ss", "-Htln", f"sport = :{port}").stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"socat never listened on {port}")


def _fmt(values) -> str:
    return (f"{statistics.median(values):.0f} MB/s "
            f"(min {min(values):.0f}, max {max(values):.0f})")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("the network benchmark needs root (network namespaces)")
    for r in run(quick="--quick" in sys.argv):
        print(f"| {r['figure']} | {r['value']} | {r['anchor']} | {r['anchor_value']} | "
              f"{r['ratio']} | {r['n']} |")
