"""Add packages to a copy of a cached Debian tree: how an incremental base is made.

`create --include PKGS` starts from the cached default base where there is one and installs
only what it lacks (mkosi's Incremental=), instead of bootstrapping from nothing.  Two steps:

1. download, with this host's apt, network and resolver (as mmdebstrap does it): the tree's
   own sources.list, keys and apt settings, the package lists kept per base tree outside it
   (the next build's `apt-get update` only asks whether they changed), the .debs into
   nspawnctl's .deb cache (shared with the bootstrappers);
2. install, with the tree's own apt-get chrooted into it, offline (an empty network
   namespace, --no-download): the same lists and the same settings resolve the same
   packages.  policy-rc.d keeps services from starting meanwhile, and dpkg skips its fsyncs
   (force-unsafe-io: nothing uses the tree before its commit, which syncs the filesystem).

The install runs in PID and mount namespaces of its own (as run.contained's), so a killed
nspawnctl leaves nothing running, and its mounts go with their namespace: what is left is the
staging directory, which the sweep removes.
"""

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import Error
from ..fs.locks import flocked
from ..fs.walk import remove_tree
from ..run import contained, need_tool, run

POLICY_RC_D = "usr/sbin/policy-rc.d"
# One download into the shared .deb cache at a time (apt's own lock there fails, not waits),
# and one build on a set of lists from their update to the install that reads them.
DEBS_LOCK = ".nspawnctl-download.lock"
LISTS_LOCK = ".nspawnctl-lists.lock"


def apt_config(tree: Path, lists: Path, debs: Path, arch: str) -> str:
    """apt's configuration for the download step: the tree is the system apt looks at."""
    return "".join(f'{key} "{value}";\n' for key, value in (
        ("Dir", f"{tree}/"),
        ("Dir::State::Lists", f"{lists}/"),
        ("Dir::Cache::Archives", f"{debs}/"),
        ("APT::Architecture", arch),
        ("APT::Architectures", arch),
        ("APT::Sandbox::User", "root"),  # no _apt of this host's owning files in the tree
        ("Acquire::Languages", "none"),
        ("Acquire::PDiffs", "false"),
    ))


# The install step's shell: constant text, the paths and packages come as its arguments.
# The binds are made in the step's own mount namespace and go with it; read-only, so the
# tree's slim apt setting (DPkg::Post-Invoke "rm -f /var/cache/apt/archives/*.deb") cannot
# empty the shared .deb cache.
INSTALL_SCRIPT = """\
tree=$1 lists=$2 debs=$3; shift 3
mount -o bind,ro "$lists" "$tree/var/lib/apt/lists"
mount -o bind,ro "$debs" "$tree/var/cache/apt/archives"
exec chroot "$tree" apt-get install --yes --no-download -o Debug::NoLocking=true \\
    -o Dpkg::Use-Pty=false -o DPkg::Options::=--force-unsafe-io -- "$@"
"""


def install_argv(tree: Path, lists: Path, debs: Path, packages: Sequence[str]) -> list[str]:
    """The install step: the tree's apt-get, offline, chrooted into the tree, in namespaces
    of its own (run.contained's, plus a network namespace with nothing in it and the /proc
    of its PID namespace in the tree): a killed nspawnctl leaves no process and no mount.
    (Not systemd-nspawn: it needs a cgroup or a scope of its own, which a command run from a
    login session or from outside a container's cgroup namespace does not have.)"""
    return contained(["sh", "-ec", INSTALL_SCRIPT, "sh", str(tree), str(lists), str(debs),
                      *packages], proc=f"{tree}/proc", network=False)


def tree_arch(tree: Path) -> str:
    try:
        return (tree / "var/lib/dpkg/arch").read_text().split()[0]
    except (OSError, IndexError):
        return run(["dpkg", "--print-architecture"]).stdout.strip()


def install(tree: Path, packages: Sequence[str], *, work: Path, lists: Path, debs: Path,
            log_path: Path, report: Callable[[str], None] = print):
    """apt-get install packages into tree (a copy of a cached base).  work: an empty directory
    beside it for the build's own files, removed afterwards; lists: where the package lists
    of trees like this one are kept, held (a lock) from their update until the install."""
    need_tool("apt-get", "apt")
    need_tool("unshare", "util-linux")
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    debs.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir()
    conf = work / "apt.conf"
    conf.write_text(apt_config(tree, lists, debs, tree_arch(tree)))
    env = dict(os.environ, APT_CONFIG=str(conf), DEBIAN_FRONTEND="noninteractive")
    report(f"installing {', '.join(packages)} into a copy of the cached base (log: {log_path})")
    policy = tree / POLICY_RC_D
    had_policy = os.path.lexists(policy)

    def waiting():
        report("waiting for another nspawnctl that is installing packages")

    try:
        with open(log_path, "w") as log, flocked(lists / LISTS_LOCK, waiting):
            with flocked(debs / DEBS_LOCK, waiting):
                _step(log, ["apt-get", "update"], env, "reading the package lists")
                _step(log, ["apt-get", "install", "--yes", "--download-only", "--", *packages],
                      env, "downloading")
            if not had_policy:  # no service starts in a tree that is being built
                policy.write_text("#!/bin/sh\nexit 101\n")
                os.chmod(policy, 0o755)
            for mountpoint in ("proc", "var/lib/apt/lists", "var/cache/apt/archives"):
                (tree / mountpoint).mkdir(parents=True, exist_ok=True)
            _step(log, install_argv(tree, lists, debs, packages), None, "installing")
    finally:
        if not had_policy:
            policy.unlink(missing_ok=True)
        remove_tree(work)


def _step(log, argv: list[str], env: dict | None, what: str):
    log.write("$ " + " ".join(argv) + "\n")
    log.flush()
    r = run(argv, env=env, check=False, what=what)
    log.write(r.stdout + r.stderr)
    log.flush()
    if r.returncode != 0:
        raise install_error(what, r.stdout + r.stderr, log.name)


def install_error(what: str, output: str, log_path: str) -> Error:
    """One line from apt's own first error ("Unable to locate package nosuch")."""
    errors = [m.group(1) for m in re.finditer(r"^E: (.*)$", output, re.M)]
    reason = errors[0] if errors else f"{what} failed"
    if "Unable to locate package" in reason:
        reason = reason.replace("Unable to locate package", "no package named") + \
            " in the suite of the base tree"
    return Error(f"cannot add packages to the base tree: {reason}",
                 hint=f"see {log_path}")

