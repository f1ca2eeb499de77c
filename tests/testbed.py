"""A real systemd host for the integration tests, booted with systemd-nspawn.

The machines nspawnctl is developed on have no systemd as PID 1, so the tests boot one: a Debian
bookworm tree (built once with debootstrap and provisioned with vagrant/provision.sh, the same
script a Vagrant VM runs) is copied, booted with `systemd-nspawn -b` in its own network namespace
with only loopback, and nspawnctl runs inside it through nsenter exactly as a user would type it.

On a host whose PID 1 is systemd (a server, a Vagrant VM) the tests use the host itself instead:
see `LocalHost` and `open_host()`.

Run as a script for a manual session:  python -m tests.testbed [--keep] [CMD...]
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TESTBED_CACHE", "/var/cache/nspawnctl-testbed"))
RUNS = Path("/var/tmp")
RUN_PREFIX = "nspawnctl-testbed."
SRC_IN_TESTBED = "/usr/src/nspawnctl"
MIRROR_HOST = "deb.debian.org"
SUITE = "bookworm"
# debootstrap lays down an init and the tools the tests use inside (socat carries the testbed's
# only route out: HTTP to the Debian mirror, see below); vagrant/provision.sh then installs
# nspawnctl's own packages with apt, as it does on any host.  (debootstrap's own dependency
# resolver fails on some of those, e.g. python3-zstandard, when given them with --include.)
# docker-registry: the registry the pull tests run (test_registry*.py), not started at boot;
# openssh-server and -client: the sshd `nspawnctl --host` reaches over loopback
# (test_remote_host_real.py), not started at boot either.
EXTRA_PACKAGES = ["systemd", "systemd-sysv", "dbus", "iproute2", "procps", "socat",
                  "busybox-static", "make", "dnsmasq-base", "docker-registry",
                  "openssh-server", "openssh-client"]
# Installed with apt after provisioning (provision.sh --deps), as debootstrap cannot: with
# --include, it fails configuring python3-cryptography.  ansible-core: the collection's
# playbooks (test_ansible_playbooks.py).
APT_PACKAGES = ["ansible-core"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXIT_REBOOT = 133  # systemd-nspawn's exit status when the container rebooted
TREE_MAX_IDLE = 24 * 3600  # seconds an unused testbed tree of another recipe is kept


@dataclass
class Result:
    argv: list
    returncode: int
    stdout: str
    stderr: str

    def __str__(self):
        return (f"$ {' '.join(self.argv)}\n-> exit {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def _run(argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, **kw)


def provision_packages() -> list[str]:
    out = subprocess.run([REPO / "vagrant/provision.sh", "--print-packages"],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


# --- the cached host tree ------------------------------------------------------------------

MIRROR_UNIT = f"""\
[Unit]
Description=Forward {MIRROR_HOST}:80 to the host's mirror socket (the testbed has no network)

[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:80,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:/run/host-mirror/mirror.sock

[Install]
WantedBy=multi-user.target
"""


def recipe() -> dict:
    """Everything that decides the tree's content; its hash names the cached tree."""
    return {
        "suite": SUITE,
        "packages": sorted(EXTRA_PACKAGES),
        "apt-packages": sorted(APT_PACKAGES),
        "provisioned": provision_packages(),
        "provision.sh": (REPO / "vagrant/provision.sh").read_text(),
        "pyproject.toml": (REPO / "pyproject.toml").read_text(),
        "mirror-unit": MIRROR_UNIT,
        "version": 1,
    }


def recipe_key(recipe: dict) -> str:
    """A cache key that changes whenever anything in recipe does (the VM box uses it too)."""
    return hashlib.sha256(repr(sorted(recipe.items())).encode()).hexdigest()[:16]


def tree_key() -> str:
    return recipe_key(recipe())


def build_tree(log=print) -> Path:
    """The cached, provisioned testbed tree; built with debootstrap when missing or stale."""
    key = tree_key()
    tree = CACHE / f"tree-{key}"
    if tree.is_dir():
        os.utime(tree)  # in use: see the pruning below
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    with _flock(CACHE / "build.lock"):
        if tree.is_dir():  # another run built it while we waited
            return tree
        # Trees of other recipes (other branches, older commits) go once unused for a day:
        # a checkout beside this one may be about to copy its own.
        for old in CACHE.glob("tree-*"):
            if time.time() - old.stat().st_mtime > TREE_MAX_IDLE:
                shutil.rmtree(old, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
        try:
            t0 = time.monotonic()
            (CACHE / "debs").mkdir(exist_ok=True)
            log(f"testbed: debootstrap {SUITE} into {stage} (once; cached as {tree.name})")
            with open(CACHE / "build.log", "w") as logf:
                _run(["debootstrap", "--variant=minbase", f"--cache-dir={CACHE / 'debs'}",
                      "--include=" + ",".join(recipe()["packages"]), SUITE, stage,
                      f"http://{MIRROR_HOST}/debian"], stdout=logf, stderr=subprocess.STDOUT)
                log("testbed: provisioning with vagrant/provision.sh")
                _run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", stage,
                      f"--bind-ro={REPO}:{SRC_IN_TESTBED}", "--setenv=LANG=C.UTF-8",
                      f"{SRC_IN_TESTBED}/vagrant/provision.sh"],
                     stdout=logf, stderr=subprocess.STDOUT)
                _run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", stage,
                      f"--bind-ro={REPO}:{SRC_IN_TESTBED}", "--setenv=LANG=C.UTF-8",
                      f"{SRC_IN_TESTBED}/vagrant/provision.sh", "--deps", *APT_PACKAGES],
                     stdout=logf, stderr=subprocess.STDOUT)
            _configure_tree(stage)
            subprocess.run(["rm", "-rf", f"{stage}/var/cache/apt/archives"], check=False)
            stage.rename(tree)
            log(f"testbed: tree built in {time.monotonic() - t0:.0f} s")
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return tree


def _configure_tree(root: Path):
    os.chmod(root, 0o755)  # mkdtemp made it 0700: no one but root could use the tree
    (root / "etc/hostname").write_text("testbed\n")
    with open(root / "etc/hosts", "a") as f:
        # The mirror's name points at the forwarder on loopback, so nspawnctl's default mirror
        # works unchanged inside the testbed while nothing else can leave it.
        f.write(f"127.0.0.1 {MIRROR_HOST}\n")
    unit = root / "etc/systemd/system/testbed-mirror.service"
    unit.write_text(MIRROR_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")
    # The registry tests start their own registries, on their own addresses; the --host test
    # starts sshd.
    for started_by_a_test in ("docker-registry.service", "ssh.service"):
        with contextlib.suppress(FileNotFoundError):
            (wants / started_by_a_test).unlink()
    # machine-id is made at first boot of each copy, so every testbed gets its own.
    (root / "etc/machine-id").write_text("")


@contextlib.contextmanager
def _flock(path: Path):
    import fcntl
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# --- a booted copy of it -------------------------------------------------------------------

class Testbed:
    """A booted copy of the tree. Use as a context manager; teardown always runs."""

    def __init__(self, tree: Path, log=print, binds: list[tuple[Path, str]] = ()):
        self.tree = tree
        self.log = log
        self.binds = list(binds)  # (host dir, path inside) that outlive this testbed
        self.detached = False
        self.run_dir: Path | None = None
        self.nspawn: subprocess.Popen | None = None
        self.socat: subprocess.Popen | None = None
        self.leader: int | None = None
        self.boots = 0

    # lifecycle

    def __enter__(self):
        cleanup_stale_runs(self.log)
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=RUNS))
        (self.run_dir / "owner").write_text(str(os.getpid()))
        try:
            t0 = time.monotonic()
            _run(["cp", "-a", "--reflink=auto", self.tree, self.run_dir / "root"])
            self.copy_seconds = time.monotonic() - t0
            (self.run_dir / "sock").mkdir()
            self.socat = subprocess.Popen(
                ["socat", f"UNIX-LISTEN:{self.run_dir}/sock/mirror.sock,fork,unlink-early",
                 f"TCP:{MIRROR_HOST}:80"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.boot()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def detach(self):
        """Leave the testbed running after the with-block (the demo); the next testbed run
        removes it as stale, since its owner is gone by then."""
        self.detached = True

    def __exit__(self, *exc):
        if self.detached:
            return
        self.shutdown()
        if self.socat:
            self.socat.kill()
            self.socat.wait()
        if self.run_dir:
            remove_run_dir(self.run_dir)
            self.run_dir = None

    def boot(self, timeout=90):
        """Start systemd-nspawn and wait until the testbed's systemd says running."""
        t0 = time.monotonic()
        # The source is bound read-only, so Python inside could not write its bytecode cache
        # and would compile every module on every nspawnctl run: compile it here once.
        subprocess.run([sys.executable, "-m", "compileall", "-q", REPO / "nspawnctl"],
                       check=False)
        console = open(self.run_dir / "console.log", "ab")
        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-b", "--register=no", "--keep-unit", "--capability=all",
             "--private-network", "--console=read-only", "--machine=testbed",
             "-D", self.run_dir / "root",
             f"--bind-ro={REPO}:{SRC_IN_TESTBED}",
             f"--bind={self.run_dir / 'sock'}:/run/host-mirror",
             *[f"--bind={src}:{dst}" for src, dst in self.binds]],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True)
        console.close()
        (self.run_dir / "nspawn.pid").write_text(str(self.nspawn.pid))
        self.leader = self._wait_leader(time.monotonic() + timeout)
        (self.run_dir / "leader").write_text(str(self.leader))  # for cleanup_stale_runs
        state = ""
        while time.monotonic() < t0 + timeout:
            r = self.run(["systemctl", "is-system-running", "--wait"], timeout=timeout)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"testbed did not boot: state {state!r}\n{self.console_tail()}")
        if state == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend"]).stdout
            self.log(f"testbed: degraded at boot: {failed.strip()}")
        self.boots += 1
        self.boot_seconds = time.monotonic() - t0

    def _wait_leader(self, deadline) -> int:
        """PID (on the host) of the testbed's systemd: the child of systemd-nspawn."""
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.nspawn.returncode}\n"
                                   + self.console_tail())
            for pid in children(self.nspawn.pid):
                if comm(pid) == "systemd":
                    return pid
            time.sleep(0.05)
        raise RuntimeError("testbed's systemd did not start\n" + self.console_tail())

    def reboot(self, timeout=90):
        """`systemctl reboot` inside; systemd-nspawn exits 133 and is started again."""
        self.run(["systemctl", "reboot"])
        rc = self.nspawn.wait(timeout=timeout)
        if rc != EXIT_REBOOT:
            raise RuntimeError(f"systemd-nspawn exited {rc}, not {EXIT_REBOOT}, on reboot")
        self.boot(timeout)

    def crash(self, timeout=90):
        """A power cut: every process of the testbed dies at once (SIGKILL of its systemd,
        PID 1 of its PID namespace, takes all the others with it; then its systemd-nspawn),
        and it boots again.  What nspawnctl wrote survives as far as it reached the page
        cache, which a real power cut would lose too: commit points sync what they need."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.nspawn.pid, signal.SIGKILL)
        self.nspawn.wait(timeout=timeout)
        self.boot(timeout)

    def shutdown(self, timeout=60):
        if not self.nspawn or self.nspawn.poll() is not None:
            return
        # systemd-nspawn turns SIGTERM into a clean poweroff of the testbed.
        self.nspawn.terminate()
        try:
            self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.nspawn.pid, signal.SIGKILL)
            self.nspawn.wait()

    # using it

    @property
    def bus_address(self) -> str:
        """The testbed's system bus, for pystemd on the host."""
        return f"unix:path=/proc/{self.leader}/root/run/dbus/system_bus_socket"

    def inside(self, argv, env=None) -> list[str]:
        """argv entering every namespace of the testbed, with a clean login-like environment."""
        environ = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        environ.update(env or {})
        return ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "--", "env", "-i",
                *[f"{k}={v}" for k, v in environ.items()], *map(str, argv)]

    def run(self, argv, input=None, timeout=600, env=None) -> Result:
        p = subprocess.run(self.inside(argv, env), input=input, capture_output=True, text=True,
                           timeout=timeout)
        return Result([str(a) for a in argv], p.returncode, p.stdout, p.stderr)

    def popen(self, argv, **kw) -> subprocess.Popen:
        """A process inside the testbed that the test controls (signals, stdin)."""
        return subprocess.Popen(self.inside(argv), **kw)

    def path(self, inside: str) -> Path:
        """A path inside the testbed, seen from the host."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def console_tail(self, lines=30) -> str:
        try:
            text = (self.run_dir / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    can_reboot = True


class LocalHost:
    """This machine, when its PID 1 is systemd: commands run directly."""

    can_reboot = False
    bus_address = None

    def run(self, argv, input=None, timeout=600, env=None) -> Result:
        environ = dict(os.environ, **(env or {}))
        p = subprocess.run([str(a) for a in argv], input=input, capture_output=True, text=True,
                           timeout=timeout, env=environ)
        return Result([str(a) for a in argv], p.returncode, p.stdout, p.stderr)

    def popen(self, argv, **kw) -> subprocess.Popen:
        return subprocess.Popen([str(a) for a in argv], **kw)

    def path(self, inside: str) -> Path:
        return Path(inside)

    def reboot(self):
        raise RuntimeError("cannot reboot the machine the tests run on")


# The testbed's (and the VM's) containers live on documentation-range subnets (RFC 5737), never
# on the private ranges nspawnctl's own pool picks from on a real host: the default network here;
# the networks tests make name their subnets in 192.0.2.128/25.
DEFAULT_SUBNET = "192.0.2.0/25"


def prepare_networks(host):
    """Make the default network on DEFAULT_SUBNET before anything uses it, in the testbed and in
    the VM tier's VM (on a real systemd host, nspawnctl's own defaults apply)."""
    from tests.outside import isolated
    if not isolated(host):
        return
    listed = host.run(["nspawnctl", "network", "list", "--json"])
    if listed.returncode == 0 and '"default"' in listed.stdout:
        return
    made = host.run(["nspawnctl", "network", "create", "default", "--subnet", DEFAULT_SUBNET])
    if made.returncode != 0:
        raise RuntimeError(f"testbed: cannot make the default network:\n{made}")


def host_has_systemd() -> bool:
    return Path("/run/systemd/system").is_dir() and comm(1) == "systemd"


@contextlib.contextmanager
def open_host(log=print, binds=()):
    """The systemd host the integration tests use: this one if it runs systemd, else a testbed.

    NSPAWNCTL_TESTBED=always forces the testbed, =never the local host.
    """
    mode = os.environ.get("NSPAWNCTL_TESTBED", "auto")
    if mode == "never" or (mode == "auto" and host_has_systemd()):
        yield LocalHost()
        return
    with _one_testbed(log):
        t0 = time.monotonic()
        tree = build_tree(log)
        build_s = time.monotonic() - t0
        with Testbed(tree, log, binds) as bed:
            log(f"testbed: tree ready in {build_s:.1f} s, copied in {bed.copy_seconds:.1f} s, "
                f"booted in {bed.boot_seconds:.1f} s")
            yield bed


@contextlib.contextmanager
def _one_testbed(log):
    """One testbed at a time on a machine: two would share the host's cgroup tree, the machine
    name and the stale-run cleanup, and flake.  A second run waits here for the first."""
    import fcntl
    RUNS.mkdir(parents=True, exist_ok=True)
    with open(RUNS / "nspawnctl-testbed-lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("testbed: another testbed runs on this machine; waiting for it to end")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# --- cleanup -------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Child processes of pid, from all its threads."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids = []
    for tid in tasks:
        try:
            kids += map(int, Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except OSError:  # the process is gone meanwhile
            pass
    return kids


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_run_dir(run_dir: Path):
    """Unmount anything left below run_dir, then delete it."""
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        mountpoint = line.split()[4]
        if mountpoint.startswith(str(run_dir) + "/"):
            subprocess.run(["umount", "-l", mountpoint], check=False)
    shutil.rmtree(run_dir, ignore_errors=True)


def cleanup_stale_runs(log=print):
    """Remove what an earlier run that was SIGKILLed left: its testbed, socat and copy.

    The testbed's systemd outlives a killed systemd-nspawn, reparented to this host's PID 1,
    and nothing in its command line names the run: boot() writes its PID into the run dir."""
    for run_dir in RUNS.glob(RUN_PREFIX + "*"):
        try:
            owner = int((run_dir / "owner").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        log(f"testbed: removing stale {run_dir}")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(run_dir) in cmdline and int(proc.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
        try:  # killing PID 1 of the testbed's PID namespace ends everything in it
            leader = int((run_dir / "leader").read_text())
        except (OSError, ValueError):
            leader = 0
        if leader and comm(leader) == "systemd":
            with contextlib.suppress(ProcessLookupError):
                os.kill(leader, signal.SIGKILL)
        time.sleep(0.5)
        remove_run_dir(run_dir)


def interrupt_on_sigterm():
    """SIGTERM raises KeyboardInterrupt, so the testbed's teardown (systemd-nspawn, its socat,
    its run directory) runs on a kill as on Ctrl-C."""
    def terminate(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)


def main(argv: list[str]):
    interrupt_on_sigterm()
    keep = "--keep" in argv
    cmd = [a for a in argv if a != "--keep"]
    with open_host() as host:
        if cmd:
            r = host.run(cmd)
            print(r.stdout, end="")
            print(r.stderr, end="", file=sys.stderr)
        if keep and isinstance(host, Testbed):
            print(f"testbed up: nsenter -t {host.leader} -a -r -w bash   (Ctrl-C to tear down)",
                  flush=True)  # to a pipe too: a caller waits for this line
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()


if __name__ == "__main__":
    main(sys.argv[1:])
