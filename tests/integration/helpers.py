"""Small helpers the integration tests share."""

import json
import re
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


STATE = "/var/lib/nspawnctl"
STAGING_AREAS = (f"{MACHINES}/.nspawnctl-staging", f"{STATE}/images/.nspawnctl-staging",
                 f"{MACHINES}/.nspawnctl-overlays/.nspawnctl-staging",
                 f"{STATE}/oci/.nspawnctl-staging")

# One shell pass over everything a half-made or half-removed container could leave behind;
# each line it prints is "KIND PATH".
_SCAN = r"""
for d in %(staging)s; do
  [ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 -printf 'staging %%p\n'
done
for f in /etc/systemd/nspawn/*.nspawn; do
  [ -e "$f" ] && head -n1 "$f" | grep -q '^# Settings of an nspawnctl container' \
    && echo "settings $f"
done
for f in /etc/systemd/system/systemd-nspawn@*.service.d/50-nspawnctl.conf; do
  [ -e "$f" ] && echo "dropin $f"
done
for f in /etc/systemd/system/var-lib-machines-*.mount; do
  [ -e "$f" ] && echo "mountunit $f"
done
for f in /etc/systemd/system/local-fs.target.wants/var-lib-machines-*.mount; do
  [ -L "$f" ] && echo "mountlink $f"
done
for d in %(machines)s/.nspawnctl-overlays/*; do [ -d "$d" ] && echo "overlay $d"; done
for d in %(state)s/images/*; do  # a base tree is whole with its meta.json, kept layers with chain.json
  case "$d" in */layers-*) whole=chain.json ;; *) whole=meta.json ;; esac
  [ -d "$d" ] && [ ! -e "$d/$whole" ] && echo "partialimage $d"
done
for f in %(state)s/locks/*.lock %(state)s/images/.*.lock; do
  [ -e "$f" ] && ! flock -n "$f" true && echo "heldlock $f"
done
awk '$5 ~ "^%(machines)s/" {print "mount " $5}' /proc/self/mountinfo
ls -A %(machines)s | sed 's/^/tree /'
[ -e %(state)s/network/networks.json ] && python3 -c '
import json, sys
for leases in json.load(open(sys.argv[1])).get("leases", {}).values():
    for name in leases:
        print("lease", name)' %(state)s/network/networks.json
find /etc/systemd/system -path "*systemd-nspawn@*.service.d/60-nspawnctl-network.conf" \
    -printf 'netdropin %%p\n'
true
""" % {"staging": " ".join(STAGING_AREAS), "state": STATE, "machines": MACHINES}


def _unescape_unit(stem: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), stem)


def store_problems(host, nspawnctl, sweep: bool = True) -> list[str]:
    """What a killed or failed command left behind, after the next command's sweep (without
    sweep: as it is, e.g. right after a boot, before any nspawnctl command ran): staging
    directories, settings, drop-ins, mount units or overlay layers of containers that do not
    exist, overlay trees whose mount unit is not enabled, base-tree cache entries without
    their meta.json, locks still held by nobody's command, mounts on trees that are gone.
    Empty when the store is consistent."""
    if sweep:
        nspawnctl("list")  # any command sweeps what killed ones left
    lines = host.run(["sh", "-c", _SCAN]).stdout.splitlines()
    found = [line.split(" ", 1) for line in lines if " " in line]
    trees = {path for kind, path in found if kind == "tree"} - {".nspawnctl-staging"}
    links = {path.rsplit("/", 1)[-1] for kind, path in found if kind == "mountlink"}
    problems = []
    for kind, path in found:
        base = path.rsplit("/", 1)[-1]
        if kind in ("staging", "partialimage", "heldlock"):
            problems.append(f"{kind}: {path}")
        elif kind == "settings" and base[:-len(".nspawn")] not in trees:
            problems.append(f"settings without a tree: {path}")
        elif kind == "dropin" and path.split("systemd-nspawn@")[1].split(".service.d")[0] \
                not in trees:
            problems.append(f"drop-in without a tree: {path}")
        elif kind == "mountunit" and \
                _unescape_unit(base[len("var-lib-machines-"):-len(".mount")]) not in trees:
            problems.append(f"mount unit without a tree: {path}")
        elif kind == "mountunit" and base not in links:
            problems.append(f"overlay tree whose mount unit is not enabled: {path}")
        elif kind == "mountlink" and \
                _unescape_unit(base[len("var-lib-machines-"):-len(".mount")]) not in trees:
            problems.append(f"mount unit enabled without a tree: {path}")
        elif kind == "overlay" and base not in trees:
            problems.append(f"overlay layer without a tree: {path}")
        elif kind == "lease" and path not in trees:
            problems.append(f"address lease without a tree: {path}")
        elif kind == "netdropin" and path.split("systemd-nspawn@")[1].split(".service.d")[0] \
                not in trees:
            problems.append(f"network drop-in without a tree: {path}")
        elif kind == "mount" and path[len(MACHINES) + 1:].split("/")[0] not in trees:
            problems.append(f"mount on a removed tree: {path}")
    return problems


def guest_running(host, name) -> bool:
    r = host.run(["systemctl", "-M", name, "is-system-running"])
    return r.stdout.strip() in ("running", "degraded")
