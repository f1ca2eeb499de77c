"""Small helpers the integration tests share."""

import json
import time

MACHINES = "/var/lib/machines"


def wait_for(predicate, timeout=60, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def listing(nspawnctl) -> dict:
    return {row["name"]: row for row in json.loads(nspawnctl("list", "--json").stdout)}


def store_is_consistent(host, nspawnctl):
    """No staging leftovers of dead processes, and no settings without a tree."""
    nspawnctl("list")  # any command sweeps what killed ones left
    staging = host.run(["sh", "-c", f"find {MACHINES}/.nspawnctl-staging "
                        "/var/lib/nspawnctl/images/.nspawnctl-staging -mindepth 1 -maxdepth 1 "
                        "2>/dev/null"]).stdout
    trees = set(host.run(["ls", "-A", MACHINES]).stdout.split()) - {".nspawnctl-staging"}
    settings = {f[:-len(".nspawn")] for f in
                host.run(["ls", "-A", "/etc/systemd/nspawn"]).stdout.split()
                if f.endswith(".nspawn")}
    return staging.strip(), settings - trees


def guest_running(host, name) -> bool:
    r = host.run(["systemctl", "-M", name, "is-system-running"])
    return r.stdout.strip() in ("running", "degraded")
