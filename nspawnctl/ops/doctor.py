"""`nspawnctl doctor`: is this host fit for containers?  One line per check, and the command
that fixes what is wrong.  Nothing here changes the host: fixes are printed, never applied.

Every reading goes through a Probe: a root prefix for the files (/proc, /sys, /run) and
callables for what is not a file (the nftables ruleset, the system bus, free space), so the
unit tests feed a good and a bad host without touching this one.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Error
from ..network import containers as network
from ..network import firewall
from ..paths import Paths
from ..run import run
from ..settings.networking import BRIDGE_PREFIX
from ..systemd.nspawn import IDMAP_SINCE, nspawn_version

ERROR, WARNING = "error", "warning"
INOTIFY_WANTED = 4096      # 128 (the kernel default) boots about 16 containers; 4096 boots 60+
INOTIFY_PER_CONTAINER = 8
MIN_FREE = 1 << 30
SYSCTL_FILE = "/etc/sysctl.d/60-nspawnctl.conf"
WANTED_CONTROLLERS = ("cpu", "memory", "pids")
# The kernel release from which each filesystem can be the source of an idmapped mount
# (FS_ALLOW_IDMAP): what --volume and --bind SRC:DST:idmap need where the volume or SRC is.
IDMAP_FILESYSTEMS = {"ext4": (5, 12), "vfat": (5, 12), "xfs": (5, 12), "btrfs": (5, 15),
                     "f2fs": (5, 18), "overlay": (5, 19), "erofs": (6, 5), "tmpfs": (6, 3)}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    severity: str          # what a failure costs: ERROR (exit status) or WARNING
    message: str
    fix: str | None = None  # a command the admin can run; None when there is none

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def failed(checks: list[Check]) -> bool:
    """The exit status rule: any failed check of severity error."""
    return any(not c.ok and c.severity == ERROR for c in checks)


def to_json(checks: list[Check]) -> dict:
    return {"ok": not failed(checks), "checks": [c.to_json() for c in checks]}


# --- where readings come from ---------------------------------------------------------------

def read_ruleset() -> dict:
    """`nft -j list ruleset`, through python3-nftables when it is there."""
    try:
        import nftables
    except ImportError:
        return json.loads(run(["nft", "-j", "list", "ruleset"]).stdout or "{}")
    nft = nftables.Nftables()
    nft.set_json_output(True)
    rc, out, err = nft.cmd("list ruleset")
    if rc != 0:
        raise Error(f"nft list ruleset failed: {err.strip()}")
    return json.loads(out or "{}")


def read_legacy_rules() -> str:
    return run(["iptables-legacy-save"]).stdout


def free_bytes(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent  # /var/lib/machines is made by the first create
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def bus_reachable(socket_path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(socket_path))
        except OSError:
            return False
    return True


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass
class Probe:
    """This host (root=/) or a fake one."""
    root: Path = Path("/")
    ruleset: Callable[[], dict] = read_ruleset
    legacy_rules: Callable[[], str] = read_legacy_rules
    which: Callable[[str], str | None] = shutil.which
    importable: Callable[[str], bool] = _importable
    free_bytes: Callable[[Path], int] = free_bytes
    bus_reachable: Callable[[Path], bool] = bus_reachable
    environ: dict = field(default_factory=lambda: dict(os.environ))
    nspawn_version: Callable[[], int | None] = nspawn_version

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def read(self, p: str) -> str | None:
        try:
            return self.path(p).read_text()
        except OSError:
            return None

    def kernel(self) -> tuple[int, int]:
        release = (self.read("/proc/sys/kernel/osrelease") or "0.0").strip()
        major, minor = (release.split("-")[0].split(".") + ["0"])[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


# --- the checks -----------------------------------------------------------------------------

def run_checks(paths: Paths, probe: Probe | None = None) -> list[Check]:
    probe = probe or Probe()
    checks = [check_systemd(probe), check_bus(probe), check_cgroups(probe),
              check_overlayfs(probe), check_idmapped(probe), check_idmapped_binds(paths, probe),
              check_space(paths, probe),
              *check_inotify(probe), check_forwarding(probe), check_firewall(probe),
              check_private_dirs(paths)]
    checks += check_legacy_iptables(probe)
    checks += check_forward_chains(probe)
    return checks


def check_systemd(probe: Probe) -> Check:
    comm = (probe.read("/proc/1/comm") or "").strip()
    ok = comm == "systemd" and probe.path("/run/systemd/system").is_dir()
    return Check("systemd", ok, ERROR,
                 "PID 1 is systemd" if ok else
                 f"PID 1 is {comm or 'unknown'}, not systemd: nspawnctl runs containers as "
                 f"systemd units and needs a host booted with systemd")


def check_bus(probe: Probe) -> Check:
    address = probe.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    if address.startswith("unix:path="):
        sock = Path(address.removeprefix("unix:path=").split(",")[0])
    else:
        sock = probe.path("/run/dbus/system_bus_socket")
    ok = probe.bus_reachable(sock)
    return Check("system bus", ok, ERROR,
                 f"the system bus answers at {sock}" if ok else
                 f"the system bus is not reachable at {sock}",
                 None if ok else "systemctl start dbus.socket dbus.service")


def check_cgroups(probe: Probe) -> Check:
    mounts = {}
    for line in (probe.read("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts[fields[1]] = fields[2]
    if mounts.get("/sys/fs/cgroup") != "cgroup2":
        kind = "hybrid" if mounts.get("/sys/fs/cgroup/unified") == "cgroup2" else "v1"
        return Check("cgroups", False, WARNING,
                     f"cgroup {kind}, not cgroup2 at /sys/fs/cgroup: limits (--memory, --cpus) "
                     f"may not be enforced; boot with systemd.unified_cgroup_hierarchy=1")
    have = (probe.read("/sys/fs/cgroup/cgroup.controllers") or "").split()
    missing = [c for c in WANTED_CONTROLLERS if c not in have]
    return Check("cgroups", not missing, WARNING,
                 f"cgroup2, controllers: {' '.join(have) or 'none'}" if not missing else
                 f"cgroup2 lacks the {', '.join(missing)} controller(s): those limits are not "
                 f"enforced")


def check_overlayfs(probe: Probe) -> Check:
    names = [line.split()[-1] for line in (probe.read("/proc/filesystems") or "").splitlines()
             if line.strip()]
    if "overlay" in names:
        return Check("overlayfs", True, WARNING, "overlayfs is available (create --overlay)")
    return Check("overlayfs", False, WARNING,
                 "overlayfs is not loaded: create --overlay will fail", "modprobe overlay")


def check_idmapped(probe: Probe) -> Check:
    kernel = probe.kernel()
    version = f"{kernel[0]}.{kernel[1]}"
    if kernel < (5, 12):
        return Check("idmapped mounts", False, WARNING,
                     f"kernel {version} has no idmapped mounts (5.12+): private user ranges "
                     f"mean chowning every file of a tree on its first start")
    if kernel < (5, 19):
        return Check("idmapped mounts", True, WARNING,
                     f"kernel {version} has idmapped mounts, but overlayfs cannot be an "
                     f"idmapped lower layer before 5.19")
    return Check("idmapped mounts", True, WARNING,
                 f"kernel {version}: idmapped mounts, overlayfs included")


def check_idmapped_binds(paths: Paths, probe: Probe) -> Check:
    """Whether --volume and --bind SRC:DST:idmap work here: systemd-nspawn's idmap bind
    option, and a kernel that idmaps mounts of the filesystem the volumes are on."""
    version = probe.nspawn_version()
    kernel = probe.kernel()
    fs = _filesystem_of(probe, paths.state)
    where = f"{fs} ({paths.state})" if fs else str(paths.state)
    if version is None or version < IDMAP_SINCE:
        have = f"systemd-nspawn {version}" if version else "no systemd-nspawn"
        return Check("idmapped binds", False, WARNING,
                     f"{have}: the idmap bind option came with systemd {IDMAP_SINCE}, so "
                     f"--volume and --bind SRC:DST:idmap are refused here")
    since = IDMAP_FILESYSTEMS.get(fs or "")
    if since is None or kernel < since:
        return Check("idmapped binds", False, WARNING,
                     f"systemd-nspawn {version} has the idmap bind option, but kernel "
                     f"{kernel[0]}.{kernel[1]} cannot idmap mounts of {where}: containers "
                     f"with --volume fail to start")
    return Check("idmapped binds", True, WARNING,
                 f"systemd-nspawn {version} and kernel {kernel[0]}.{kernel[1]} idmap binds "
                 f"of {where}: files in volumes keep the owners containers see")


def _filesystem_of(probe: Probe, path: Path) -> str | None:
    """The type of the filesystem mounted where path is (its longest mount point in
    /proc/self/mounts), or None when unknown."""
    best, kind = "", None
    for line in (probe.read("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_space(paths: Paths, probe: Probe) -> Check:
    free = probe.free_bytes(paths.machines)
    ok = free >= MIN_FREE
    return Check("disk space", ok, WARNING,
                 f"{free / (1 << 30):.1f} GB free in {paths.machines}"
                 + ("" if ok else ": under 1 GB, a default image needs about 100 MB, a "
                                  "debootstrap run about 300 MB"))


def check_private_dirs(paths: Paths) -> Check:
    """The container trees and nspawnctl's state: 0700, or an image's setuid binaries are
    within local users' reach."""
    wide = []
    for path in (paths.machines, paths.state):
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            wide.append((path, mode))
    if not wide:
        return Check("directory modes", True, WARNING,
                     f"{paths.machines} and {paths.state} are private (0700)")
    return Check("directory modes", False, WARNING,
                 ", ".join(f"{path} is {mode:04o}" for path, mode in wide)
                 + ": local users can reach the containers' setuid binaries",
                 "chmod 0700 " + " ".join(str(path) for path, _ in wide))


SYSCTL_UNIT = "60-nspawnctl.conf"  # units/60-nspawnctl.conf, installed as SYSCTL_FILE


def shipped_sysctl() -> dict[str, int]:
    """key -> value of the sysctl drop-in nspawnctl ships (units/60-nspawnctl.conf)."""
    from ..systemd.unitfiles import template
    wanted = {}
    for line in template(SYSCTL_UNIT).splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith(("#", ";")) and value.strip().isdigit():
            wanted[key.strip()] = int(value)
    return wanted


def sysctl_install_fix() -> str:
    """The command that installs and applies the shipped drop-in (what provision.sh does)."""
    from ..systemd.unitfiles import shipped
    return (f"install -m 0644 {shipped(SYSCTL_UNIT)} {SYSCTL_FILE} && "
            f"/lib/systemd/systemd-sysctl {SYSCTL_FILE}")


def check_inotify(probe: Probe) -> list[Check]:
    """The inotify limits booted containers need (every one is charged to root on the host),
    against the values of the drop-in nspawnctl ships."""
    wanted = shipped_sysctl()
    checks = []
    for key, name in (("fs.inotify.max_user_instances", "inotify instances"),
                      ("fs.inotify.max_user_watches", "inotify watches")):
        want = wanted.get(key, INOTIFY_WANTED)
        text = (probe.read("/proc/sys/" + key.replace(".", "/")) or "0").strip()
        value = int(text) if text.isdigit() else 0
        ok = value >= want
        why = ""
        if not ok and key.endswith("instances"):
            why = (f": about {value // INOTIFY_PER_CONTAINER} booted containers fit, the rest "
                   "fail with 'Too many open files'")
        elif not ok:
            why = f": under the {want} nspawnctl's {SYSCTL_FILE} sets"
        checks.append(Check(name, ok, WARNING, f"{key} = {value}{why}",
                            None if ok else sysctl_install_fix()))
    return checks


def check_forwarding(probe: Probe) -> Check:
    # the words and the fix are the ones `start` says (network.reach_warnings)
    ok = network.forwarding_on(probe.path(str(network.IP_FORWARD)))
    return Check("ip forwarding", ok, ERROR,
                 "IPv4 forwarding is on" if ok else network.FORWARDING_OFF,
                 None if ok else network.FORWARDING_FIX)


def check_firewall(probe: Probe) -> Check:
    missing = [pkg for pkg, there in (("nftables", probe.which("nft")),
                                      ("python3-nftables", probe.importable("nftables")))
               if not there]
    return Check("firewall", not missing, ERROR,
                 "nftables: nft and python3-nftables are installed" if not missing else
                 f"{', '.join(missing)} not installed: nspawnctl's networks need nftables",
                 None if not missing else f"apt-get install {' '.join(missing)}")


def check_legacy_iptables(probe: Probe) -> list[Check]:
    """Rules in iptables-legacy tables apply beside nftables and do not show in `nft list`.
    Read only when some legacy table exists, so that the read loads no module."""
    tables = (probe.read("/proc/net/ip_tables_names") or "").split()
    if not tables:
        return []
    try:
        dump = probe.legacy_rules()
    except Error as e:
        return [Check("iptables-legacy", False, WARNING,
                      f"iptables-legacy tables exist ({', '.join(tables)}) but cannot be read: "
                      f"{e.message.splitlines()[0]}")]
    rules = sum(1 for line in dump.splitlines() if line.startswith("-A "))
    if any(line.startswith(":FORWARD DROP") for line in dump.splitlines()):
        return [Check("iptables-legacy", False, ERROR,
                      f"iptables-legacy's FORWARD chain drops by default ({rules} legacy rules):"
                      f" containers cannot reach out nor be reached",
                      f"iptables-legacy -I FORWARD -i {BRIDGE_PREFIX}+ -j ACCEPT && "
                      f"iptables-legacy -I FORWARD -o {BRIDGE_PREFIX}+ -j ACCEPT")]
    return [Check("iptables-legacy", rules == 0, WARNING,
                  f"{rules} iptables-legacy rules in {', '.join(tables)}: they apply too, and "
                  f"`nft list ruleset` does not show them (iptables-legacy-save does)")]


def check_forward_chains(probe: Probe) -> list[Check]:
    """Another table's forward base chain with policy drop drops what nspawnctl's table
    accepts (an accept ends only its own chain): Docker and ufw leave `ip filter FORWARD` so."""
    try:
        chains = firewall.blocking_chains(probe.ruleset())
    except Error as e:
        return [Check("forward chains", False, WARNING,
                      f"cannot read the nftables ruleset: {e.message.splitlines()[0]}")]
    checks = [Check(f"forward chain {' '.join(key)}", False, ERROR,
                    f"table {key[0]} {key[1]} chain {key[2]} drops forwarded packets "
                    f"(policy drop): containers cannot reach out nor be reached",
                    firewall.forward_fix(*key)) for key in chains]
    return checks or [Check("forward chains", True, ERROR,
                            "no other table drops forwarded packets by default")]
