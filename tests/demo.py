"""The main job, end to end: create a container, start it, run something in it, list it,
and leave it running to shell into.

On a host whose PID 1 is systemd this runs nspawnctl right there.  Elsewhere (our development
machines) it boots the testbed, a real systemd host in a container, and does the same inside;
the testbed keeps its base-tree cache in /var/lib/nspawnctl-demo so the second run is a cache
hit, and stays up afterwards so you can log into the container.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import testbed  # noqa: E402

NAME = "demo"
PERSIST = Path("/var/lib/nspawnctl-demo")


def step(host, *args, check=True):
    print(f"\n$ nspawnctl {' '.join(args)}", flush=True)
    r = host.run(["nspawnctl", *args])
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if check and r.returncode != 0:
        sys.exit(f"demo: 'nspawnctl {' '.join(args)}' failed with exit {r.returncode}")
    return r


def main():
    binds = []
    if not testbed.host_has_systemd():
        for sub in ("state", "cache"):
            (PERSIST / sub).mkdir(parents=True, exist_ok=True)
        binds = [(PERSIST / "state", "/var/lib/nspawnctl"),
                 (PERSIST / "cache", "/var/cache/nspawnctl")]
    with testbed.open_host(binds=binds) as host:
        testbed.prepare_networks(host)
        step(host, "--version")
        if "demo" not in step(host, "list").stdout.split():
            step(host, "create", NAME)
        step(host, "start", NAME)
        step(host, "exec", NAME, "--", "cat", "/etc/os-release")
        step(host, "list")
        if isinstance(host, testbed.Testbed):
            host.detach()
            print(f"\nThe container runs inside the testbed (a systemd host booted with "
                  f"systemd-nspawn, leader PID {host.leader}). Log into it with:\n"
                  f"  nsenter -t {host.leader} -a -r -w nspawnctl shell {NAME}   (as root)\n"
                  f"The next 'make demo' or 'make test' removes this testbed.")
        else:
            print(f"\n{NAME} is running. Log into it with (as root):  nspawnctl shell {NAME}")


if __name__ == "__main__":
    main()
