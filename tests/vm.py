"""The Vagrant VM tier: vagrant/Vagrantfile booted under libvirt, for what only a real kernel
with cgroup v2 can prove (limits enforced, a real reboot).

Same spirit as tests/testbed.py:
- The box (`debian/bookworm64`) is built here, once, with mmdebstrap: the cloud kernel,
  systemd, sshd, a `vagrant` user with Vagrant's insecure key, nspawnctl's own packages baked
  in (so provisioning finds them installed), an MBR disk with extlinux, as qcow2 +
  metadata.json.  It is cached in /var/cache/nspawnctl-vm under the hash of its recipe and
  added to a VAGRANT_HOME of its own there.
- libvirtd runs in a network namespace made for the run (`ip netns`), with its own
  /etc/libvirt, /var/lib/libvirt and /run/libvirt in the run directory, under `tini -s`
  (this host's PID 1 reaps slowly; libvirtd's daemonised qemu needs a reaper).  vagrant runs
  in the same namespaces.  The VM's only way out is the Debian mirror: the VM's
  deb.debian.org is the namespace side of its network, where socat carries port 80 over a
  unix socket to a socat on the host (as the testbed's mirror forward).
- No KVM here: the guest runs under TCG.  That and the test network live in an override
  Vagrantfile in $VAGRANT_HOME (Vagrant merges it), so vagrant/Vagrantfile stays what a user
  runs.  `vagrant up --provision-with mirror,nspawnctl` runs its provisioning unchanged, without
  its `test` provisioner (the whole suite: `make vm-test`).
- Teardown always runs; a killed run's leftovers (its processes, namespace, run directory) are
  removed by the next run.

Run as a script:  python -m tests.vm [--keep] [--test] [CMD...]
"""

import contextlib
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.outside import VM_MARKER
from tests.testbed import Result, _flock, children, comm, recipe_key, remove_run_dir

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("NSPAWNCTL_VM_CACHE", "/var/cache/nspawnctl-vm"))
RUNS = Path("/var/tmp")
RUN_PREFIX = "nspawnctl-vm."
NETNS_PREFIX = "nspawnctl-vm-"
SUITE = "bookworm"
BOX = "debian/bookworm64"
MIRROR_HOST = "deb.debian.org"
# vagrant-libvirt's management network, on a documentation range; its gateway (the namespace's
# side) is where the VM's mirror name points.  The upper half: the lower one is the LAN of the
# networking tests' outside world (tests/outside.py), which the VM builds too.
NETWORK = "198.51.100.128/25"
GATEWAY = "198.51.100.129"
BOX_MAX_IDLE = 24 * 3600  # seconds an unused box of another recipe is kept
VAGRANT_KEY = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")
# What a Vagrant box needs, plus what the tests use inside.  nspawnctl's own packages and the
# Makefile's test tools are added from their lists (recipe()), so provisioning is quick.
BOX_PACKAGES = ["linux-image-cloud-amd64", "initramfs-tools", "systemd", "systemd-sysv", "udev",
                "dbus", "openssh-server", "sudo", "rsync", "iproute2", "procps",
                "ca-certificates", "python3-pytest", "busybox-static", "make"]

# Merged by Vagrant before vagrant/Vagrantfile: software emulation (KVM guests hang on this
# machine), the network on a documentation range, and the mirror's name.  (No lv.serial here:
# vagrant-libvirt 0.11.2 fails to merge it from an override.)
OVERRIDE_VAGRANTFILE = f"""\
# Written by tests/vm.py: this machine's settings for vagrant/Vagrantfile, merged by Vagrant.
Vagrant.configure("2") do |config|
  config.vm.provider "libvirt" do |lv|
    lv.driver = "qemu"
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.management_network_name = "nspawnctl-vm"
    lv.management_network_address = "{NETWORK}"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
  config.vm.boot_timeout = 600
  config.vm.provision "mirror", type: "shell",
    inline: "grep -q ' {MIRROR_HOST}$' /etc/hosts || echo '{GATEWAY} {MIRROR_HOST}' >> /etc/hosts"
  config.vm.provision "isolated", type: "shell", inline: "touch {VM_MARKER}"
end
"""

NETWORKD_DHCP = """\
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""


def _run(argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, **kw)


def _words(argv) -> list[str]:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                          text=True).stdout.split()


def test_packages() -> list[str]:
    """The Makefile's TEST_PACKAGES: baked in too, so `make vm-test` installs nothing."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")  # make's continued lines
    return re.search(r"^TEST_PACKAGES :=(.*)$", text, re.M).group(1).split()


def recipe() -> dict:
    """Everything that decides the box's content; its hash names the cached box."""
    return {
        "suite": SUITE,
        "packages": sorted(set(BOX_PACKAGES + test_packages()
                               + _words([REPO / "vagrant/provision.sh", "--print-packages"]))),
        "provision.sh": (REPO / "vagrant/provision.sh").read_text(),
        "pyproject.toml": (REPO / "pyproject.toml").read_text(),
        "networkd": NETWORKD_DHCP,
        "override": OVERRIDE_VAGRANTFILE,
        "builder": [inspect.getsource(f) for f in (_make_tree, _make_disk)],
        "version": 1,
    }


def box_key() -> str:
    return recipe_key(recipe())


# --- box builder ---------------------------------------------------------------------------

def build_box(log=print) -> Path:
    """VAGRANT_HOME holding the box of this recipe; built and added when missing."""
    key = box_key()
    home = CACHE / f"home-{key}"
    if (home / "ready").exists():
        os.utime(home)  # in use: see the pruning below
        return home
    CACHE.mkdir(parents=True, exist_ok=True)
    with _flock(CACHE / "build.lock"):
        if (home / "ready").exists():
            return home
        for old in CACHE.glob("home-*"):
            if old != home and time.time() - old.stat().st_mtime > BOX_MAX_IDLE:
                shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        for killed in CACHE.glob(".build-*"):  # a build killed while it held this lock
            _detach_loops(killed)
            shutil.rmtree(killed, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
        try:
            t0 = time.monotonic()
            with open(CACHE / "build.log", "w") as logf:
                log(f"vm: building the box with mmdebstrap (once; cached as {home.name})")
                _make_tree(stage / "tree", logf)
                _make_disk(stage / "tree", stage / "box.img", logf)
                shutil.rmtree(stage / "tree")
                (stage / "metadata.json").write_text(
                    '{"provider": "libvirt", "format": "qcow2", "virtual_size": 20}\n')
                _run(["tar", "-C", stage, "-cf", stage / "box.box", "metadata.json", "box.img"])
                (stage / "box.img").unlink()
                home.mkdir()
                (home / "Vagrantfile").write_text(OVERRIDE_VAGRANTFILE)
                _run(["vagrant", "box", "add", "--force", "--name", BOX, stage / "box.box"],
                     env=dict(os.environ, VAGRANT_HOME=str(home)), stdout=logf,
                     stderr=subprocess.STDOUT)
            (home / "ready").write_text(f"{time.monotonic() - t0:.0f}\n")
            log(f"vm: box built in {time.monotonic() - t0:.0f} s")
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        finally:
            _detach_loops(stage)
            shutil.rmtree(stage, ignore_errors=True)
    return home


def _make_tree(tree: Path, logf):
    # mmdebstrap resolves dependencies with apt (debootstrap stops at virtual ones and leaves
    # /debootstrap behind); the kernel's postinst makes the initramfs in the tree.
    _run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(recipe()["packages"]),
          "--aptopt=Acquire::Retries \"3\"", "--dpkgopt=path-exclude=/usr/share/doc/*",
          "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
          SUITE, tree, f"http://{MIRROR_HOST}/debian"], stdout=logf, stderr=subprocess.STDOUT)
    # provision.sh as the Vagrantfile runs it, on the source where Vagrant puts it: nspawnctl's
    # install is then in place (under emulation pip takes minutes), and `vagrant up` finds
    # it current and only checks.
    _run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", tree,
          f"--bind-ro={REPO}:/vagrant", "--setenv=LANG=C.UTF-8", "/vagrant/vagrant/provision.sh"],
         stdout=logf, stderr=subprocess.STDOUT)
    # ... but without nspawnctl's boot-time units: they would run at boot before Vagrant
    # copies the source to /vagrant, where the install points.  Provisioning puts them back.
    for unit in (tree / "etc/systemd/system").rglob("*nspawnctl-recover*"):
        unit.unlink()
    # the Vagrantfile's hostname already (Vagrant's Debian hostname step then only checks:
    # half a minute under emulation otherwise)
    (tree / "etc/hostname").write_text("nspawnctl\n")
    with open(tree / "etc/hosts", "a") as f:
        f.write("127.0.1.1 nspawnctl\n")
    (tree / "etc/fstab").write_text("/dev/vda1 / ext4 errors=remount-ro 0 1\n")
    (tree / "etc/systemd/network/50-dhcp.network").write_text(NETWORKD_DHCP)
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    (tree / "etc/machine-id").write_text("")  # made at first boot
    (tree / "etc/ssh/sshd_config.d/vagrant.conf").write_text("UseDNS no\n")
    # Vagrant's user: its insecure key (replaced by vagrant up), sudo without a password
    _run(["chroot", tree, "useradd", "-m", "-s", "/bin/bash", "vagrant"])
    ssh = tree / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(VAGRANT_KEY, ssh / "authorized_keys")
    _run(["chroot", tree, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"])
    (tree / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD: ALL\n")
    (tree / "etc/sudoers.d/vagrant").chmod(0o440)
    _run(["rm", "-rf", f"{tree}/var/cache/apt/archives", f"{tree}/var/lib/apt/lists"])
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True)


def _make_disk(tree: Path, image: Path, logf):
    """A 20 GB MBR disk, one ext4 partition with the tree and extlinux, as qcow2."""
    raw = image.with_suffix(".raw")
    _run(["truncate", "-s", "20G", raw])
    _run(["sfdisk", "-q", raw], input=b"2048,,L,*\n", stdout=logf, stderr=subprocess.STDOUT)
    _run(["dd", "if=/usr/lib/EXTLINUX/mbr.bin", f"of={raw}", "conv=notrunc", "bs=440",
          "count=1"], stdout=logf, stderr=subprocess.STDOUT)
    loop = subprocess.run(["losetup", "-f", "-P", "--show", raw], check=True,
                          capture_output=True, text=True).stdout.strip()
    mnt = image.parent / "mnt"
    mnt.mkdir()
    try:
        # The kernel's partition scan of a loop device does not always add the partition
        # here; partx does (and says it exists when it did).
        subprocess.run(["partx", "-a", loop], capture_output=True)
        part = Path(f"{loop}p1")
        for _ in range(50):
            if part.exists():
                break
            time.sleep(0.1)
        _run(["mkfs.ext4", "-q", "-L", "root", "-d", tree, part], stdout=logf,
             stderr=subprocess.STDOUT)
        _run(["mount", part, mnt])
        try:
            kernel = sorted(p.name for p in (mnt / "boot").glob("vmlinuz-*"))[-1]
            version = kernel.removeprefix("vmlinuz-")
            (mnt / "boot/extlinux").mkdir()
            (mnt / "boot/extlinux/extlinux.conf").write_text(
                f"DEFAULT linux\nTIMEOUT 0\nLABEL linux\n  LINUX /boot/{kernel}\n"
                f"  INITRD /boot/initrd.img-{version}\n"
                "  APPEND root=/dev/vda1 ro console=ttyS0 net.ifnames=0 quiet\n")
            _run(["extlinux", "--install", mnt / "boot/extlinux"], stdout=logf,
                 stderr=subprocess.STDOUT)
        finally:
            _run(["umount", mnt])
    finally:
        _run(["losetup", "-d", loop])
    _run(["qemu-img", "convert", "-O", "qcow2", raw, image])
    raw.unlink()


def _detach_loops(stage: Path):
    """The mount and loop devices a killed build left on its files."""
    subprocess.run(["umount", "-l", stage / "mnt"], capture_output=True)
    out = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        name, _, back = line.partition(" ")
        if back.strip().startswith(str(stage)):
            subprocess.run(["losetup", "-d", name], check=False)


# --- a run: libvirtd in its own namespaces, the VM ----------------------------------------

LIBVIRT_DIRS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt", "run": "/run/libvirt",
                "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}


class VM:
    """vagrant/Vagrantfile up under libvirt in a namespace of its own.  A context manager;
    teardown always runs."""

    def __init__(self, home: Path, log=print):
        self.home = home
        self.log = log
        self.run_dir: Path | None = None
        self.netns = ""
        self.libvirtd: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.up_seconds = 0.0

    def __enter__(self):
        cleanup_stale_runs(self.log)
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=RUNS))
        self.run_dir.chmod(0o755)  # libvirt's helpers drop privileges
        (self.run_dir / "owner").write_text(str(os.getpid()))
        try:
            self._start_libvirtd()
            t0 = time.monotonic()
            self.vagrant("up", "--provider=libvirt", "--provision-with", "mirror,isolated,nspawnctl",
                         timeout=1800)
            self.up_seconds = time.monotonic() - t0
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_libvirtd(self):
        self.netns = NETNS_PREFIX + self.run_dir.name.removeprefix(RUN_PREFIX)
        (self.run_dir / "netns").write_text(self.netns)
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        binds = []
        for name, path in LIBVIRT_DIRS.items():
            mine = self.run_dir / "libvirt" / name
            if name == "etc":
                shutil.copytree(path, mine, symlinks=True)
                with open(mine / "qemu.conf", "a") as f:
                    # no virtlogd, no dropping to libvirt-qemu (the run dir is root's)
                    f.write('\nstdio_handler = "file"\nuser = "root"\ngroup = "root"\n'
                            'security_driver = "none"\n')
            else:
                mine.mkdir(parents=True)
            binds.append(f"mount --bind {mine} {path}")
        # The mirror: on the host, the unix socket to the real mirror; in the namespace, port
        # 80 (where the VM's deb.debian.org points) carried to that socket.
        sock = self.run_dir / "mirror.sock"
        self._spawn(["socat", f"UNIX-LISTEN:{sock},fork,unlink-early", f"TCP:{MIRROR_HOST}:80"])
        self._spawn(["ip", "netns", "exec", self.netns, "socat",
                     f"TCP-LISTEN:80,fork,reuseaddr,bind={GATEWAY}",
                     f"UNIX-CONNECT:{sock}"], wait_for_gateway=True)
        # `ip netns exec` makes a mount namespace of its own: the binds stay in it.
        # its pid file in its own /run/libvirt: two runs at once (two checkouts) must not meet
        script = ("set -e; mkdir -p /run/libvirt; " + "; ".join(binds)
                  + "; exec libvirtd --pid-file /run/libvirt/libvirtd.pid")
        self.libvirtd = self._spawn(["ip", "netns", "exec", self.netns, "tini", "-s", "--",
                                     "sh", "-c", script], log_name="libvirtd.log")
        deadline = time.monotonic() + 60
        while self._libvirtd_pid() is None or self.virsh("version").returncode != 0:
            if self.libvirtd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not start:\n" + self._tail("libvirtd.log"))
            time.sleep(0.3)

    def _spawn(self, argv, log_name=None, wait_for_gateway=False):
        if wait_for_gateway:
            # bind= needs the address: socat is started by a shell that waits for the bridge
            argv = ["sh", "-c", f"while ! ip -n {self.netns} -4 addr | grep -q ' {GATEWAY}/'; "
                    "do sleep 0.5; done; exec \"$@\"", "sh", *argv]
        out = open(self.run_dir / log_name, "ab") if log_name else subprocess.DEVNULL
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        if log_name:
            out.close()
        self.procs.append(p)
        return p

    def _libvirtd_pid(self) -> int | None:
        """libvirtd: the child of tini, in the namespaces vagrant and virsh must enter."""
        if self.libvirtd is None:
            return None
        for pid in children(self.libvirtd.pid):  # ip netns exec execs tini itself
            if comm(pid) == "libvirtd":
                return pid
        return None

    def inside_ns(self, argv, cwd="/") -> list[str]:
        """argv in libvirtd's network and mount namespaces (on the host's filesystem);
        entering a mount namespace puts the process at its root: env -C goes back to cwd."""
        return ["nsenter", "-t", str(self._libvirtd_pid()), "-n", "-m", "--", "env", "-C",
                str(cwd), *map(str, argv)]

    def virsh(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(self.inside_ns(["virsh", "-q", "-c", "qemu:///system", *args]),
                              capture_output=True, text=True, timeout=60)

    # the vagrant commands whose output is the caller's (the rest goes to vagrant.log only)
    SAID = ("ssh", "ssh-config")

    def vagrant(self, *args, timeout=900, check=True) -> Result:
        """vagrant in the namespaces, on vagrant/Vagrantfile; its output goes to vagrant.log
        as it comes (stdout and stderr of the result are what this call printed)."""
        env = dict(os.environ, VAGRANT_HOME=str(self.home),
                   VAGRANT_DOTFILE_PATH=str(self.run_dir / "dotvagrant"),
                   VAGRANT_DEFAULT_PROVIDER="libvirt", VAGRANT_CHECKPOINT_DISABLE="1")
        t0 = time.monotonic()
        with open(self.run_dir / "vagrant.log", "a") as log, \
                tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            log.write(f"$ vagrant {' '.join(args)}\n")
            log.flush()
            p = subprocess.run(self.inside_ns(["vagrant", *args], cwd=REPO / "vagrant"),
                               stdout=out if args[0] in self.SAID else log, env=env,
                               stderr=err if args[0] in self.SAID else log, timeout=timeout)
            out.seek(0)
            err.seek(0)
            result = Result(["vagrant", *args], p.returncode, out.read(), err.read())
            log.write(f"{result.stdout}{result.stderr}"
                      f"-> exit {p.returncode} in {time.monotonic() - t0:.1f} s\n")
        if check and p.returncode != 0:
            raise RuntimeError(f"vagrant {' '.join(args)} failed ({p.returncode}):\n"
                               f"{self._tail('vagrant.log')}")
        return result

    def __exit__(self, *exc):
        if self.run_dir is None:
            return
        if self._libvirtd_pid():
            with contextlib.suppress(Exception):
                self.vagrant("destroy", "-f", timeout=120, check=False)
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        kill_netns(self.netns)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        # the last run's logs outlive it, for a failure seen after the fact
        for name in ("vagrant.log", "libvirtd.log"):
            with contextlib.suppress(OSError):
                shutil.copy(self.run_dir / name, CACHE / f"last-run-{name}")
        remove_run(self.run_dir, self.netns)
        self.run_dir = None

    # using it

    def run(self, argv, input=None, timeout=600, env=None) -> Result:
        """argv as root in the VM, through `vagrant ssh -c` (a login-like environment)."""
        import shlex
        assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        command = f"sudo {'env ' + assign + ' ' if assign else ''}{shlex.join(map(str, argv))}"
        if input is not None:
            raise NotImplementedError("input to a VM command")
        p = self.vagrant("ssh", "-c", command, "--", "-q", "-o", "LogLevel=ERROR",
                         timeout=timeout, check=False)
        return Result([str(a) for a in argv], p.returncode, p.stdout, p.stderr)

    def reboot(self, timeout=600):
        """A real reboot of the VM (its kernel, its systemd), waiting for ssh again."""
        self.vagrant("reload", "--no-provision", timeout=timeout)

    def _tail(self, name, lines=30) -> str:
        try:
            text = (self.run_dir / name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def open_vm(log=print):
    cleanup_stale_runs(log)  # before the build: a killed run's VM would take CPU from it
    t0 = time.monotonic()
    home = build_box(log)
    build_s = time.monotonic() - t0
    with VM(home, log) as vm:
        log(f"vm: box ready in {build_s:.0f} s, vagrant up in {vm.up_seconds:.0f} s")
        yield vm


# --- cleanup -------------------------------------------------------------------------------

def _ns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def kill_netns(netns: str):
    """SIGKILL every process in the namespace: libvirtd, qemu (daemonised, so no child of
    ours), dnsmasq, socat, a vagrant or ssh in flight."""
    inode = _ns_inode(netns) if netns else None
    if inode is None:
        return
    for _ in range(20):
        found = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if os.stat(proc / "ns/net").st_ino != inode:
                    continue
            except OSError:
                continue
            found = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.3)


def remove_run(run_dir: Path, netns: str):
    if netns:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    remove_run_dir(run_dir)


def cleanup_stale_runs(log=print):
    """What a SIGKILLed run left: its processes (in its namespace, or naming its run dir),
    the namespace, the run directory with the VM's disk."""
    for run_dir in RUNS.glob(RUN_PREFIX + "*"):
        try:
            owner = int((run_dir / "owner").read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and Path(f"/proc/{owner}").exists():
            continue
        log(f"vm: removing stale {run_dir}")
        try:
            netns = (run_dir / "netns").read_text().strip()
        except OSError:
            netns = ""
        if netns:
            kill_netns(netns)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(run_dir) in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
        time.sleep(0.3)
        remove_run(run_dir, netns)
    # a namespace whose run directory is already gone
    for ns in Path("/run/netns").glob(NETNS_PREFIX + "*") if Path("/run/netns").is_dir() else []:
        if not (RUNS / (RUN_PREFIX + ns.name.removeprefix(NETNS_PREFIX))).exists():
            kill_netns(ns.name)
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


def main(argv: list[str]):
    from tests.testbed import interrupt_on_sigterm
    interrupt_on_sigterm()
    keep = "--keep" in argv
    cmd = [a for a in argv if a != "--keep"]
    with open_vm() as vm:
        login = (f"cd {REPO}/vagrant && nsenter -t {vm._libvirtd_pid()} -n -m env -C $PWD "
                 f"VAGRANT_HOME={vm.home} VAGRANT_DOTFILE_PATH={vm.run_dir}/dotvagrant "
                 "vagrant ssh")
        print(f"vm up; to log in: {login}", flush=True)
        rc = 0
        if cmd:
            r = vm.run(cmd, timeout=24 * 3600)
            print(r.stdout, end="")
            print(r.stderr, end="", file=sys.stderr)
            rc = r.returncode
        if keep:
            print("Ctrl-C tears it down")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    sys.exit(rc)


if __name__ == "__main__":
    main(sys.argv[1:])
