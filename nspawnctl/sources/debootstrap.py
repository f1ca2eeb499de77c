"""Bootstrap a Debian tree with mmdebstrap (or debootstrap) into a staging directory.

mmdebstrap is the default where it is installed: it is the faster of the two, and a tree that
nothing uses before its commit is built the fast way (dpkg under eatmydata and with
force-unsafe-io; the commit syncs the filesystem once, before its rename).  --bootstrapper
debootstrap asks for debootstrap.

The bootstrapper runs as a subprocess; its output goes to a log file, and the stage and package
counts it prints become progress lines.  On failure the user gets the reason (unknown suite,
unreachable mirror, full disk) and the log's path.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import Error, Usage
from ..fs.copy import clone_tree
from ..paths import Paths
from ..run import contained, need_tool, stream, tail
from ..store.images import apt_lists, held_image, is_cached
from . import aptinstall
from .base import Base, Plan, Request, Source

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
# What a tree needs so that systemd-nspawn -b boots it and machinectl can log into it.
BOOT_PACKAGES = ("systemd", "systemd-sysv", "dbus")
VARIANTS = ("minbase", "buildd", "fakechroot", "-")
BOOTSTRAPPERS = ("mmdebstrap", "debootstrap")  # the fastest first: "auto" takes the first found
MMDEBSTRAP_HOOKS = Path("/usr/share/mmdebstrap/hooks")
# What nspawnctl's mmdebstrap command line adds that changes the tree (the merged-usr hook, as
# debootstrap merges /usr): part of the key, so a tree built without it is not taken for one
# built with it.
MMDEBSTRAP_RECIPE = 3
# dpkg's own fsyncs while the tree is built (nothing uses it before the commit's syncfs); the
# file goes before the tree is done, so later installs in the container are safe again.
UNSAFE_IO_CONF = "etc/dpkg/dpkg.cfg.d/00nspawnctl-unsafe-io"

# mkosi's WithDocs=no: what a container does not need.  dpkg keeps honouring these inside the
# container, so later `apt-get install`s stay slim too.
SLIM_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/locale/*",
)
SLIM_APT_CONF = ('APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
                 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n')


@dataclass(frozen=True)
class BootstrapSpec:
    """Everything that changes what a bootstrap produces: its hash keys the base-tree cache."""
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    variant: str = "minbase"
    include: tuple[str, ...] = ()
    arch: str | None = None
    slim: bool = True
    bootstrapper: str = "auto"  # mmdebstrap where it is installed, else debootstrap

    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(BOOT_PACKAGES + self.include))

    def resolved(self) -> "BootstrapSpec":
        """This spec with "auto" replaced by the bootstrapper this host has."""
        if self.bootstrapper != "auto":
            return self
        found = next((b for b in BOOTSTRAPPERS if shutil.which(b)), BOOTSTRAPPERS[-1])
        return replace(self, bootstrapper=found)

    def key(self) -> str:
        data = asdict(self.resolved())
        data["include"] = sorted(set(self.include))
        if data["bootstrapper"] == "mmdebstrap":
            data["recipe"] = MMDEBSTRAP_RECIPE
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        extra = f" +{','.join(self.include)}" if self.include else ""
        return (f"debootstrap:{self.suite} {self.variant}{extra}"
                f"{' ' + self.arch if self.arch else ''}{' slim' if self.slim else ''}"
                f" with {self.resolved().bootstrapper}")


def incremental_key(base_key: str, packages) -> str:
    """The key of a base made from the cached base base_key by installing packages."""
    data = {"base": base_key, "packages": sorted(set(packages)), "recipe": "apt-get install"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def parse_packages(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(p.strip() for p in value.split(",") if p.strip())
    for name in names:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name):
            raise Usage(f"invalid package name {name!r} in --include")
    return names


def check_spec(spec: BootstrapSpec):
    if not re.fullmatch(r"[a-z][a-z0-9.-]*", spec.suite):
        raise Usage(f"invalid suite name {spec.suite!r}")
    if spec.bootstrapper not in ("auto",) + BOOTSTRAPPERS:
        raise Usage(f"unknown bootstrapper {spec.bootstrapper!r}",
                    hint="use mmdebstrap or debootstrap")
    if spec.variant not in VARIANTS:
        raise Usage(f"unknown variant {spec.variant!r}", hint="one of " + ", ".join(VARIANTS))
    if not re.match(r"(https?|file)://", spec.mirror):
        raise Usage(f"invalid mirror {spec.mirror!r}", hint="give a http://, https:// or "
                    "file:// URL, e.g. " + DEFAULT_MIRROR)
    if spec.arch and not re.fullmatch(r"[a-z0-9]+", spec.arch):
        raise Usage(f"invalid architecture {spec.arch!r}")
    # debootstrap's scripts are the suites it knows; asked for mmdebstrap too where debootstrap
    # is installed (as the README installs both), so an unknown suite is refused at once
    if not Path(f"/usr/share/debootstrap/scripts/{spec.suite}").exists() and \
            shutil.which("debootstrap"):
        raise Usage(f"unknown suite {spec.suite!r}: debootstrap has no script for it",
                    hint="see /usr/share/debootstrap/scripts/ for the suites it knows")


def bootstrap_argv(spec: BootstrapSpec, target: Path, debs: Path) -> list[str]:
    spec = spec.resolved()
    packages = ",".join(spec.packages())
    if spec.bootstrapper == "mmdebstrap":
        argv = ["mmdebstrap", f"--variant={spec.variant}", f"--include={packages}"]
        # /usr merged as debootstrap does it (not by the usrmerge package, which brings perl),
        # and dpkg under eatmydata: mmdebstrap's own hooks, where this mmdebstrap has them
        # (the eatmydata hook asks dpkg-architecture, of dpkg-dev, for the library's path)
        hooks = ["maybe-merged-usr"] + (["eatmydata"] if shutil.which("dpkg-architecture")
                                        else [])
        argv += [f"--hook-dir={MMDEBSTRAP_HOOKS / hook}" for hook in hooks
                 if (MMDEBSTRAP_HOOKS / hook).is_dir()]
        argv += [
            # share the .deb cache with debootstrap runs (mmdebstrap's documented recipe)
            f"--setup-hook=mkdir -p {shlex.quote(str(debs))} \"$1\"/var/cache/apt/archives/",
            f"--setup-hook=sync-in {shlex.quote(str(debs))} /var/cache/apt/archives/",
            f"--setup-hook=mkdir -p \"$1\"/{os.path.dirname(UNSAFE_IO_CONF)} && "
            f"echo force-unsafe-io > \"$1\"/{UNSAFE_IO_CONF}",
            f"--customize-hook=rm -f \"$1\"/{UNSAFE_IO_CONF}",
            f"--customize-hook=sync-out /var/cache/apt/archives {shlex.quote(str(debs))}"]
        if spec.arch:
            argv.append(f"--architectures={spec.arch}")
        if spec.slim:
            # Not SLIM_DPKG_EXCLUDES as --dpkgopt: with path-excludes mmdebstrap pipes every
            # essential package through its tar filter, which made the bootstrap 60% slower
            # here (29-32 s against 17-20 s).  slim_tree() removes the same paths afterwards
            # and writes the excludes for the container's later installs.
            argv.append("--aptopt=APT::Install-Recommends \"false\"")
        return argv + [spec.suite, str(target), spec.mirror]
    argv = ["debootstrap", f"--variant={spec.variant}", f"--include={packages}",
            f"--cache-dir={debs}"]
    if spec.arch:
        argv.append(f"--arch={spec.arch}")
    return argv + [spec.suite, str(target), spec.mirror]


# debootstrap's "I: <Stage> <package>..." lines
_PACKAGE_LINE = re.compile(r"I: (?:(Retrieving|Validating) \S+ \S+$|"
                           r"(Extracting|Unpacking|Configuring) \S+\.\.\.$)")
_STAGE_NAMES = {"Retrieving": "downloading", "Validating": "checking", "Extracting": "extracting",
                "Unpacking": "unpacking", "Configuring": "configuring"}


class Progress:
    """Turns bootstrapper output into "stage: N packages" updates."""

    def __init__(self, report: Callable[[str], None]):
        self.report = report
        self.stage: str | None = None
        self.count = 0

    def feed(self, line: str):
        m = _PACKAGE_LINE.match(line)
        verb = (m.group(1) or m.group(2)) if m else None
        if verb == "Validating" or line.startswith("I: Validating"):
            return  # alternates with Retrieving, package by package: part of downloading
        if verb:
            stage = _STAGE_NAMES[verb]
            if stage != self.stage:
                self.finish()
                self.stage, self.count = stage, 0
            self.count += 1
            if self.count % 25 == 0:
                self.report(f"  {self.stage}: {self.count} packages")
        elif line.startswith(("I: ", "W: ")) and not line.startswith("I: Keyring"):
            self.finish()
            self.report("  " + line[3:])

    def finish(self):
        if self.stage and self.count % 25:
            self.report(f"  {self.stage}: {self.count} packages")
        self.stage, self.count = None, 0


def bootstrap(spec: BootstrapSpec, target: Path, *, debs: Path, log_path: Path,
              report: Callable[[str], None] = print):
    """Make a Debian tree in target (an empty directory), slimmed if spec.slim."""
    spec = spec.resolved()
    check_spec(spec)
    need_tool(spec.bootstrapper)
    debs.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(target)
    argv = bootstrap_argv(spec, target, debs)
    progress = Progress(report)
    report(f"bootstrapping {spec.describe()} (log: {log_path})")
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(argv) + "\n")
        proc = stream(contained(argv))
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                progress.feed(line.rstrip("\n"))
            proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: do not leave the bootstrapper running
            proc.kill()
            proc.wait()
            raise
        progress.finish()
    if proc.returncode != 0:
        raise bootstrap_error(spec, log_path, proc.returncode)
    forget_build_host(target)
    if spec.slim:
        slim_tree(target)


def forget_build_host(root: Path):
    """debootstrap copies the building host's /etc/resolv.conf into the tree: its resolvers
    are none of a container's business (and may be a 127.x stub it cannot reach).  An empty
    file instead; a container's network writes the right one at every start, systemd-nspawn
    gives host-network containers the host's."""
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or not resolv.parent.is_dir():
        return
    resolv.write_text("")
    os.chmod(resolv, 0o644)


# Less than this free and a bootstrap cannot succeed: the Packages index alone unpacks to about
# 45 MB, a minbase tree with systemd takes about 240 MB before it is slimmed.
MIN_FREE = 256 << 20


def check_free_space(target: Path):
    """Refuse at once when target's filesystem is too small.  debootstrap does not always say
    so itself: a Packages index cut short by a full disk fails as "Couldn't download ...",
    and the partial file is gone by the time it exits."""
    st = os.statvfs(target)
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE:
        mount = target.resolve()
        while not os.path.ismount(mount):
            mount = mount.parent
        raise Error(f"not enough disk space to bootstrap: {free >> 20} MB free on the "
                    f"filesystem of {mount}, about {MIN_FREE >> 20} MB needed",
                    hint="free some space, e.g. nspawnctl images prune")


def bootstrap_error(spec: BootstrapSpec, log_path: Path, code: int) -> Error:
    text = log_path.read_text(errors="replace")
    last = tail(text, 8)
    if "No space left on device" in text:
        reason = "the disk is full"
    elif "Failed getting release file" in text or "Failed getting release signature" in text \
            or "does not have a Release file" in text \
            or re.search(r"Failed to fetch \S+/dists/", text):  # (mmdebstrap's apt says so)
        if not mirror_reachable(spec.mirror):
            reason = f"the mirror {spec.mirror} is unreachable"
        else:
            reason = f"unknown suite {spec.suite!r}: the mirror {spec.mirror} does not have it"
    elif "Couldn't find these debs" in text or "Unable to locate package" in text \
            or "Couldn't download packages" in text:
        reason = "a package in --include does not exist in that suite"
    else:
        reason = f"{spec.bootstrapper} exited with status {code}"
    return Error(f"bootstrap failed: {reason}", hint=f"last lines of {log_path}:\n{last}")


def mirror_reachable(mirror: str) -> bool:
    """Whether anything answers at the mirror's address (debootstrap does not say why a
    download failed, so ask the network ourselves)."""
    import socket
    from urllib.parse import urlsplit
    url = urlsplit(mirror)
    if url.scheme == "file":
        return Path(url.path).is_dir()
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname, port), timeout=5):
            return True
    except (OSError, ValueError):
        return False


def slim_tree(root: Path):
    """Drop what SLIM_DPKG_EXCLUDES keeps out of future installs, and apt's caches and lists."""
    dpkg_cfg = root / "etc/dpkg/dpkg.cfg.d/01-nspawnctl-slim"
    dpkg_cfg.parent.mkdir(parents=True, exist_ok=True)
    dpkg_cfg.write_text("# Written by nspawnctl --slim: no docs, man pages, locales\n"
                        + "\n".join(SLIM_DPKG_EXCLUDES) + "\n")
    apt_conf = root / "etc/apt/apt.conf.d/01-nspawnctl-slim"
    apt_conf.parent.mkdir(parents=True, exist_ok=True)
    apt_conf.write_text(SLIM_APT_CONF)
    for sub in ("usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/lintian",
                "usr/share/linda", "usr/share/locale"):
        _empty_dir(root / sub)
    doc = root / "usr/share/doc"
    if doc.is_dir() and not doc.is_symlink():
        for pkg in os.listdir(doc):
            pkgdir = doc / pkg
            if pkgdir.is_dir() and not pkgdir.is_symlink():
                for entry in os.listdir(pkgdir):
                    if entry != "copyright":
                        _remove(pkgdir / entry)
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
        _empty_dir(root / sub, keep_dirs=True)
    for cache in ("var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
                  "var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old"):
        _remove(root / cache)


def _empty_dir(path: Path, keep_dirs: bool = False):
    if not path.is_dir() or path.is_symlink():
        return
    for entry in os.listdir(path):
        child = path / entry
        if keep_dirs and child.is_dir() and not child.is_symlink():
            _empty_dir(child, keep_dirs=True)
        else:
            _remove(child)


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# ---------------------------------------------------------------- the source

class DebootstrapSource(Source):
    kind, syntax = "debootstrap", "debootstrap:SUITE"
    summary = ("a Debian tree (mmdebstrap, else debootstrap), booted; the default is "
               f"debootstrap:{DEFAULT_SUITE}")
    cached = True

    def plan(self, rest: str, request: Request) -> Plan:
        spec = replace(request.bootstrap or BootstrapSpec(), suite=rest).resolved()
        check_spec(spec)  # refused now, not after the lock
        return Plan(base=lambda: debootstrap_base(request.paths, spec, request.report))


def debootstrap_base(paths: Paths, spec: BootstrapSpec, report: Callable[[str], None]) -> Base:
    """The base tree of a debootstrap: source.  With --include, where the default base (the
    same spec without it) is cached and this one is not, an incremental base: a copy of the
    default with only the missing packages installed (sources/aptinstall.py), cached under
    its own key (the default's key and the sorted packages)."""
    key = "debootstrap-" + spec.key()
    meta = {"source": f"debootstrap:{spec.suite}", "suite": spec.suite,
            "spec": asdict(spec.resolved())}

    def build(tree: Path):
        log_path = paths.logs / f"bootstrap-{key}-{int(time.time())}.log"
        bootstrap(spec, tree, debs=paths.debs, log_path=log_path, report=report)

    direct = Base(key, meta, build)
    if not spec.include or is_cached(paths, key):
        return direct
    parent = debootstrap_base(paths, replace(spec, include=()), report)
    packages = sorted(set(spec.include))
    inc_key = "debootstrap-" + incremental_key(parent.key, packages)
    if not is_cached(paths, inc_key) and not is_cached(paths, parent.key):
        return direct  # nothing to start from: one bootstrap with every package

    def build_incremental(tree: Path):
        # held (shared) while it is copied and its package lists are used: `images prune`
        # cannot take them away meanwhile; rebuilt if it was pruned since it was looked at
        with held_image(paths, parent.key, parent.meta, parent.build, report) as (image, _):
            tree.rmdir()  # ensure_image's empty directory: clone_tree makes its own
            clone_tree(image / "tree", tree, trusted=True)  # a base tree: nspawnctl's
            aptinstall.install(tree, packages, work=tree.parent / "apt", debs=paths.debs,
                               lists=apt_lists(paths, parent.key),
                               log_path=paths.logs / f"install-{inc_key}-{int(time.time())}.log",
                               report=report)
        if spec.slim:
            slim_tree(tree)

    return Base(inc_key, dict(meta, base=parent.key, packages=packages), build_incremental)
