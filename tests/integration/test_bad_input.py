"""Bad input to every command: one clear line, the right exit status, and nothing changed.

Each case is one command line as a user could mistype it: names systemd refuses, names that do
not exist, containers that exist or run when they must not, missing files and directories,
files that are not archives, sizes, CPU counts, task limits and signals that mean nothing,
unknown sources, and what click itself refuses (missing arguments, unknown options, values out
of range).  Every case must

- exit 2 when click refuses the command line (a usage error), 1 when nspawnctl does (Error);
  never 0, never 70 (an internal error: a bug),
- print exactly one line starting with "nspawnctl", naming the reason, and nothing on stdout;
  no traceback (`nspawnctl.fails`),
- change nothing: a listing of the store (trees, settings, drop-ins, enabled units, base trees,
  nspawnctl's state) and of machined's machines is the same before and after.

Two real containers make "exists", "is running" and "is not running" cases real: `idle`
(stopped) and `busy` (running), both from a small busybox OCI archive built on the host (no
debootstrap: this file must not warm the default base tree, which test_create expects cold).
"""

import gzip
import json
import shutil

import pytest

from nspawnctl.sources.oci import parse_platform
from tests import imagetools
from tests.integration.helpers import MACHINES, STATE, store_problems
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

IDLE = "badin-idle"    # exists, stopped
BUSY = "badin-busy"    # exists, running
NEW = "badin-new"      # a valid name that does not exist: for cases failing on something else
GONE = "badin-nosuch"  # a valid name that never exists
WORK = "/root/nspawnctl-bad-input"  # inside the host: the archives and files the cases name
ARCHIVE = f"{WORK}/busybox.tar"
LAYOUT = f"{WORK}/layout"           # the same image as an OCI layout directory (ref "latest")
NOT_AN_ARCHIVE = f"{WORK}/garbage.tar"
EMPTY = f"{WORK}/empty.tar"
BAD_CRC = f"{WORK}/bad-crc.tar.gz"
BAD_BZIP2 = f"{WORK}/garbage.tar.bz2"
MISSING = f"{WORK}/missing.tar"

# Cases about settings create from the archive, and cases about debootstrap's options name a
# mirror nobody listens on: if a check is missing, the case fails at once on the next step
# instead of running a real debootstrap (and warming the default base tree for test_create).
CREATE = ("create", NEW, "--from", f"oci-archive:{ARCHIVE}")
BOOTSTRAP = ("create", NEW, "--mirror", "http://127.0.0.1:9/debian")

# What a script reads from the exit status (errors.py): click's usage errors and any bad value
# on the command line 2, no such thing 3, exists / in use / wrong state 4, content refused 5,
# any other failure 1
USAGE, ERROR, NOT_FOUND, CONFLICT, INVALID = 2, 1, 3, 4, 5
EXEC_FAILED = 125  # exec and shell say their own failures so (podman's), apart from the command's

# Everything a command could change, listed cheaply.  Directories are listed without their
# mtime (a staging directory made and removed again changes it, not the store); files with
# size and mtime, so a rewritten .nspawn file or drop-in shows.  The lock files in
# STATE/locks are not listed: a failed command may leave an unheld, empty lock file behind
# (store_problems checks that none is held).  `machinectl list` without its addresses, which
# change by themselves while a container's network comes up.
SNAPSHOT = r"""
for spec in "%(machines)s 1" "/etc/systemd/nspawn 1" "/etc/systemd/system 2" "%(state)s 1" \
            "%(state)s/images 2" "%(machines)s/.nspawnctl-overlays 1" "%(state)s/network 1"; do
  set -- $spec
  [ -d "$1" ] || { echo "absent $1"; continue; }
  find "$1" -mindepth 1 -maxdepth "$2" \( -type d -printf '%%p %%y %%m %%u:%%g\n' \) \
       -o \( ! -type d -printf '%%p %%y %%m %%u:%%g %%s %%T@ %%l\n' \)
done | sort
awk '$5 ~ "^%(machines)s/" {print "mount", $5}' /proc/self/mountinfo
machinectl list --no-legend --no-pager | awk '{print "machine", $1, $2, $3}'
for m in %(idle)s %(busy)s; do
  echo "unit $m $(systemctl is-active systemd-nspawn@$m.service) \
$(systemctl is-enabled systemd-nspawn@$m.service 2>/dev/null)"
done
""" % {"machines": MACHINES, "state": STATE, "idle": IDLE, "busy": BUSY}


def snapshot(host) -> list[str]:
    r = host.run(["sh", "-c", SNAPSHOT])
    assert r.returncode == 0, str(r)
    return r.stdout.splitlines()


def busybox_image(work) -> tuple:
    """A one-layer busybox image whose entrypoint sleeps: the smallest container that runs."""
    busybox = imagetools.BUSYBOX.read_bytes()
    layer = ib.layer(
        ib.dir("bin"), ib.file("bin/busybox", busybox, 0o755),
        ib.symlink("bin/sh", "busybox"), ib.symlink("bin/sleep", "busybox"),
        ib.symlink("bin/true", "busybox"), ib.dir("usr"),  # nspawn wants /usr in an OS tree
        ib.dir("etc"), ib.file("etc/os-release", b"ID=busybox\nNAME=bad-input test image\n"),
        ib.dir("tmp", 0o1777))
    config = ib.image_config([ib.sha256(layer)], parse_platform(None).architecture,
                             Entrypoint=["/bin/sh", "-c", "exec sleep 3000000"], Cmd=None,
                             Env=["PATH=/bin"], WorkingDir="/", User=None,
                             ExposedPorts=None, Volumes=None)
    ib.oci_layout(work / "layout", [layer], config=config)
    return work / "layout", ib.tar_tree(work / "layout", work / "busybox.tar")


def bad_crc_gzip(data: bytes) -> bytes:
    """data gzipped, with the CRC in its trailer wrong: every byte decompresses fine."""
    packed = bytearray(gzip.compress(data, mtime=0))
    packed[-8] ^= 0xFF  # the trailer is CRC32 then ISIZE, 4 bytes each
    return bytes(packed)


@pytest.fixture(scope="module")
def world(host, nspawnctl, tmp_path_factory):
    """The files the cases name, and the containers idle (stopped) and busy (running).

    Yields restore(): puts the world back as it was, for after a case that changed it (a
    bug, reported by the case's assertion), so that one bug does not fail every later case."""
    layout, archive = busybox_image(tmp_path_factory.mktemp("bad-input"))
    host.run(["rm", "-rf", WORK])
    host.run(["mkdir", "-p", WORK])
    shutil.copyfile(archive, host.path(ARCHIVE))
    shutil.copytree(layout, host.path(LAYOUT))
    host.run(["sh", "-c", f"head -c 4096 /dev/urandom > {NOT_AN_ARCHIVE}; : > {EMPTY}; "
              f"printf 'BZh9junk' > {BAD_BZIP2}"])
    host.path(BAD_CRC).write_bytes(bad_crc_gzip(archive.read_bytes()))

    image = None

    def make(name):
        nonlocal image
        info = json.loads(nspawnctl("create", name, "--from", f"oci-archive:{ARCHIVE}",
                                    "--json").stdout)
        image = info["image"]

    def restore():
        names = set(host.run(["ls", "-A", MACHINES]).stdout.split()) - {".nspawnctl-staging"}
        for name in names - {IDLE, BUSY}:
            nspawnctl("remove", "--force", name, check=False)
        for name in (IDLE, BUSY):
            if name not in names:
                make(name)
            nspawnctl("disable", name, check=False)
        nspawnctl("stop", IDLE)
        nspawnctl("start", BUSY)

    make(IDLE)
    make(BUSY)
    nspawnctl("start", BUSY)
    yield restore
    nspawnctl("remove", "--force", IDLE, BUSY, check=False)
    # Only this file's base tree: others' cached trees stay for their tests.
    host.run(["rm", "-rf", f"{STATE}/images/{image}", WORK])


def case(id, *argv, exit=ERROR, says):
    return pytest.param(list(argv), exit, says, id=id)


BAD_NAMES = [
    ("empty", "", "container name is empty"),
    ("65-chars", "a" * 65, "longer than 64 characters"),
    ("slash", "a/b", "invalid container name"),
    ("dotdot", "..", "invalid container name"),
    ("dot", ".", "invalid container name"),
    ("dot-host", ".host", "reserved by machined"),
    ("leading-dash", "-x", "invalid container name"),
    ("leading-dot", ".hidden", "invalid container name"),
    ("trailing-dot", "a.", "invalid container name"),
    ("double-dot", "a..b", "invalid container name"),
    ("unicode", "contäiner", "invalid container name"),
    ("space", "a b", "invalid container name"),
    ("newline", "a\nb", "invalid container name"),
    ("colon", "a:b", "invalid container name"),
    ("traversal", "../../etc", "invalid container name"),
]

CASES = [
    # --- names systemd refuses: create takes each; every other command at least one ---
    *[case(f"create-name-{id}", "create", "--", name, exit=USAGE, says=says)
      for id, name, says in BAD_NAMES],
    case("start-name-traversal", "start", "../x", exit=USAGE, says="invalid container name"),
    case("stop-name-slash", "stop", "/", exit=USAGE, says="invalid container name"),
    case("restart-name-unicode", "restart", "ünï", exit=USAGE, says="invalid container name"),
    case("kill-name-dotdot", "kill", "..", exit=USAGE, says="invalid container name"),
    case("enable-name-space", "enable", "a b", exit=USAGE, says="invalid container name"),
    case("disable-name-65", "disable", "b" * 65, exit=USAGE, says="longer than 64 characters"),
    case("status-name-empty", "status", "", exit=USAGE, says="container name is empty"),
    case("set-name-dot-host", "set", ".host", "--memory", "1G",
         exit=USAGE, says="reserved by machined"),
    case("exec-name-dotdot", "exec", "..", "--", "true", exit=USAGE, says="invalid container name"),
    case("shell-name-slash", "shell", "a/b", exit=USAGE, says="invalid container name"),
    case("logs-name-leading-dot", "logs", ".x", exit=USAGE, says="invalid container name"),
    case("remove-name-dotdot", "remove", "..", exit=USAGE, says="invalid container name"),
    case("remove-name-slash-root", "remove", "/", exit=USAGE, says="invalid container name"),
    case("clone-src-slash", "clone", "../x", NEW, exit=USAGE, says="invalid container name"),
    case("clone-dst-dot-host", "clone", IDLE, ".host", exit=USAGE, says="reserved by machined"),
    case("clone-dst-slash", "clone", IDLE, "x/y", exit=USAGE, says="invalid container name"),

    # --- names that do not exist ---
    *[case(f"{cmd}-no-such", cmd, GONE, *rest, exit=NOT_FOUND,
           says=f"no container named '{GONE}'")
      for cmd, *rest in [("start",), ("stop",), ("restart",), ("kill",), ("enable",),
                         ("disable",), ("status",), ("set", "--memory", "1G"),
                         ("exec", "--", "true"), ("shell",), ("logs",), ("remove",),
                         ("remove", "--force")]],
    case("clone-no-such-src", "clone", GONE, NEW,
         exit=NOT_FOUND, says=f"no container named '{GONE}'"),
    case("remove-no-such-first", "remove", GONE, IDLE,
         exit=NOT_FOUND, says=f"no container named '{GONE}'"),

    # --- containers that exist, run, or do not run when that is wrong ---
    case("create-exists", "create", IDLE, "--from", f"oci-archive:{ARCHIVE}",
         exit=CONFLICT, says="already exists"),
    case("create-exists-running", "create", BUSY, exit=CONFLICT, says="already exists"),
    case("clone-dst-exists", "clone", IDLE, BUSY, exit=CONFLICT, says="already exists"),
    case("clone-onto-itself", "clone", IDLE, IDLE, exit=CONFLICT, says="already exists"),
    case("clone-running-src", "clone", BUSY, NEW, exit=CONFLICT, says=f"{BUSY} is running"),
    case("remove-running", "remove", BUSY, exit=CONFLICT, says=f"{BUSY} is running"),
    case("exec-not-running", "exec", IDLE, "--", "true",
         exit=CONFLICT, says=f"{IDLE} is not running"),
    case("shell-not-running", "shell", IDLE, exit=CONFLICT, says=f"{IDLE} is not running"),
    case("kill-not-running", "kill", IDLE, exit=CONFLICT, says=f"{IDLE} is not running"),
    # machined opens shells through the container's systemd: busy runs only a sleep
    case("shell-single-command", "shell", BUSY, exit=ERROR, says=f"{BUSY} runs a single command"),
    case("shell-user-invalid", "shell", BUSY, "--user", "bad user",
         exit=USAGE, says="invalid user name"),

    # --- paths for --from: missing, a directory for a file, a file for a directory, junk ---
    case("tar-missing", "create", NEW, "--from", f"tar:{MISSING}",
         exit=NOT_FOUND, says="no such tarball"),
    case("tar-is-a-directory", "create", NEW, "--from", f"tar:{WORK}",
         exit=NOT_FOUND, says="no such tarball"),
    case("tar-not-an-archive", "create", NEW, "--from", f"tar:{NOT_AN_ARCHIVE}",
         exit=INVALID, says=f"cannot import {NOT_AN_ARCHIVE}: tarball is not a valid tar archive"),
    case("tar-empty-file", "create", NEW, "--from", f"tar:{EMPTY}",
         exit=INVALID, says=f"cannot import {EMPTY}: tarball is not a valid tar archive"),
    # A gzip whose data is intact but whose CRC is not: tar stops before the CRC is read.
    case("tar-gzip-bad-checksum", "create", NEW, "--from", f"tar:{BAD_CRC}",
         exit=INVALID, says=f"cannot import {BAD_CRC}: tarball is corrupt: CRC check failed"),
    case("tar-bzip2-garbage", "create", NEW, "--from", f"tar:{BAD_BZIP2}",
         exit=INVALID, says=f"cannot import {BAD_BZIP2}: tarball is corrupt"),
    case("dir-missing", "create", NEW, "--from", f"dir:{WORK}/missing",
         exit=NOT_FOUND, says="no such directory"),
    case("dir-is-a-file", "create", NEW, "--from", f"dir:{ARCHIVE}",
         exit=NOT_FOUND, says="no such directory"),
    case("oci-archive-missing", "create", NEW, "--from", f"oci-archive:{MISSING}",
         exit=NOT_FOUND, says=MISSING),
    case("oci-archive-is-a-directory", "create", NEW, "--from", f"oci-archive:{LAYOUT}",
         exit=USAGE, says=LAYOUT),
    case("oci-archive-not-an-archive", "create", NEW, "--from",
         f"oci-archive:{NOT_AN_ARCHIVE}", exit=INVALID, says=NOT_AN_ARCHIVE),
    case("oci-archive-empty-file", "create", NEW, "--from", f"oci-archive:{EMPTY}",
         exit=INVALID, says=EMPTY),
    case("docker-archive-missing", "create", NEW, "--from", f"docker-archive:{MISSING}",
         exit=NOT_FOUND, says=MISSING),
    case("docker-archive-not-an-archive", "create", NEW, "--from",
         f"docker-archive:{NOT_AN_ARCHIVE}", exit=INVALID, says=NOT_AN_ARCHIVE),
    case("docker-archive-is-a-directory", "create", NEW, "--from", f"docker-archive:{WORK}",
         exit=USAGE, says=WORK),
    case("oci-dir-missing", "create", NEW, "--from", f"oci:{WORK}/missing",
         exit=NOT_FOUND, says="missing"),
    case("oci-dir-not-a-layout", "create", NEW, "--from", f"oci:{WORK}",
         exit=INVALID, says="oci-layout"),
    case("oci-dir-is-a-file", "create", NEW, "--from", f"oci:{ARCHIVE}", exit=USAGE, says=ARCHIVE),
    case("oci-dir-unknown-ref", "create", NEW, "--from", f"oci:{LAYOUT}:nosuchref",
         exit=NOT_FOUND, says="nosuchref"),
    case("platform-garbage", "create", NEW, "--from", f"oci-archive:{ARCHIVE}",
         "--platform", "bogus", exit=USAGE, says="invalid platform"),
    case("platform-absent", "create", NEW, "--from", f"oci-archive:{ARCHIVE}",
         "--platform", "linux/s390x", exit=NOT_FOUND, says="s390x"),

    # --- options that conflict: --overlay needs a cached base tree to share ---
    case("overlay-with-tar", "create", NEW, "--overlay", "--from", f"tar:{BAD_CRC}",
         exit=USAGE, says="--overlay needs a cached base tree"),
    case("overlay-with-dir", "create", NEW, "--overlay", "--from", f"dir:{WORK}",
         exit=USAGE, says="--overlay needs a cached base tree"),
    case("overlay-exists", "create", IDLE, "--overlay", "--from", f"oci-archive:{ARCHIVE}",
         exit=CONFLICT, says="already exists"),
    case("overlay-bad-archive", "create", NEW, "--overlay", "--from",
         f"oci-archive:{NOT_AN_ARCHIVE}", exit=INVALID, says=NOT_AN_ARCHIVE),

    # --- sources ---
    case("source-unknown-kind", "create", NEW, "--from", "foo:bar",
         exit=USAGE, says="unknown source"),
    case("source-no-kind", "create", NEW, "--from", "bookworm", exit=USAGE, says="unknown source"),
    case("source-empty", "create", NEW, "--from", "", exit=USAGE, says="unknown source"),
    case("source-debootstrap-empty", "create", NEW, "--from", "debootstrap:",
         exit=USAGE, says="unknown source"),
    case("source-tar-empty", "create", NEW, "--from", "tar:", exit=USAGE, says="unknown source"),
    case("source-unknown-suite", *BOOTSTRAP, "--from", "debootstrap:nosuchsuite",
         exit=USAGE, says="unknown suite"),
    case("source-suite-uppercase", *BOOTSTRAP, "--from", "debootstrap:Bookworm",
         exit=USAGE, says="invalid suite name"),
    case("source-suite-traversal", *BOOTSTRAP, "--from", "debootstrap:../../etc",
         exit=USAGE, says="invalid suite name"),
    case("variant-unknown", *BOOTSTRAP, "--variant", "bogus", exit=USAGE, says="unknown variant"),
    case("bootstrapper-unknown", *BOOTSTRAP, "--bootstrapper", "bogus", exit=USAGE,
         says="invalid value for '--bootstrapper'"),
    case("mirror-not-a-url", *BOOTSTRAP, "--mirror", "ftp://example.org/debian",
         exit=USAGE, says="invalid mirror"),
    case("include-bad-package", *BOOTSTRAP, "--include", "Bad Pkg",
         exit=USAGE, says="invalid package name"),
    case("arch-garbage", *BOOTSTRAP, "--arch", "x86 64", exit=USAGE, says="invalid architecture"),

    # --- sizes, CPU counts, task limits (create and set share the parsers) ---
    case("memory-garbage", *CREATE, "--memory", "lots", exit=USAGE, says="invalid size"),
    case("memory-negative", *CREATE, "--memory=-1G", exit=USAGE, says="invalid size"),
    case("memory-zero", *CREATE, "--memory", "0", exit=USAGE, says="invalid size"),
    case("memory-unknown-unit", *CREATE, "--memory", "12Q", exit=USAGE, says="invalid size"),
    case("memory-empty", *CREATE, "--memory", "", exit=USAGE, says="invalid size"),
    case("memory-two-dots", *CREATE, "--memory", "1.5.5M", exit=USAGE, says="invalid size"),
    case("memory-exponent", *CREATE, "--memory", "1e9", exit=USAGE, says="invalid size"),
    case("memory-overflow", *CREATE, "--memory", "99999999E", exit=USAGE, says="invalid size"),
    case("set-memory-garbage", "set", IDLE, "--memory", "lots", exit=USAGE, says="invalid size"),
    case("set-memory-negative-running", "set", BUSY, "--memory=-5M",
         exit=USAGE, says="invalid size"),
    case("set-memory-overflow-running", "set", BUSY, "--memory", "16E",
         exit=USAGE, says="too large"),
    case("cpus-garbage", *CREATE, "--cpus", "abc", exit=USAGE, says="invalid CPU count"),
    case("cpus-negative", *CREATE, "--cpus=-1", exit=USAGE, says="invalid CPU count"),
    case("cpus-zero", *CREATE, "--cpus", "0", exit=USAGE, says="invalid CPU count"),
    case("cpus-too-small", *CREATE, "--cpus", "0.00001", exit=USAGE, says="invalid CPU count"),
    case("cpus-nan", *CREATE, "--cpus", "nan", exit=USAGE, says="invalid CPU count"),
    case("cpus-inf", *CREATE, "--cpus", "inf", exit=USAGE, says="invalid CPU count"),
    case("cpus-comma", *CREATE, "--cpus", "1,5", exit=USAGE, says="invalid CPU count"),
    case("cpus-overflow", *CREATE, "--cpus", "9" * 30, exit=USAGE, says="invalid CPU count"),
    case("set-cpus-garbage-running", "set", BUSY, "--cpus", "two",
         exit=USAGE, says="invalid CPU count"),
    case("set-cpus-overflow-running", "set", BUSY, "--cpus", "1000000",
         exit=USAGE, says="more than"),
    case("tasks-garbage", *CREATE, "--tasks", "many", exit=USAGE, says="invalid task limit"),
    case("tasks-negative", *CREATE, "--tasks=-5", exit=USAGE, says="invalid task limit"),
    case("tasks-zero", *CREATE, "--tasks", "0", exit=USAGE, says="invalid task limit"),
    case("tasks-fraction", *CREATE, "--tasks", "1.5", exit=USAGE, says="invalid task limit"),
    case("tasks-superscript", *CREATE, "--tasks", "²", exit=USAGE, says="invalid task limit"),
    case("tasks-overflow", *CREATE, "--tasks", "9" * 25, exit=USAGE, says="invalid task limit"),
    case("set-tasks-garbage", "set", IDLE, "--tasks", "lots",
         exit=USAGE, says="invalid task limit"),
    case("set-tasks-overflow-running", "set", BUSY, "--tasks", str(1 << 64),
         exit=USAGE, says="too large"),
    case("start-timeout-garbage", *CREATE, "--start-timeout", "soon",
         exit=USAGE, says="invalid time span"),
    case("start-timeout-zero", *CREATE, "--start-timeout", "0",
         exit=USAGE, says="invalid time span"),
    case("start-timeout-days", *CREATE, "--start-timeout", "2d",
         exit=USAGE, says="invalid time span"),
    case("start-timeout-overflow", *CREATE, "--start-timeout", "9" * 5000,
         exit=USAGE, says="too large"),
    case("set-start-timeout-negative-running", "set", BUSY, "--start-timeout=-5",
         exit=USAGE, says="invalid time span"),

    # --- other settings ---
    case("bind-relative", *CREATE, "--bind", "srv:/srv", exit=USAGE, says="absolute path"),
    case("bind-too-many-colons", *CREATE, "--bind", "/a:/b:/c:/d",
         exit=USAGE, says="invalid bind mount"),
    case("env-no-equals", *CREATE, "--env", "NOVALUE", exit=USAGE, says="invalid environment"),
    case("env-bad-name", *CREATE, "--env", "1X=y", exit=USAGE, says="invalid environment"),
    case("hostname-space", *CREATE, "--hostname", "bad host", exit=USAGE, says="invalid hostname"),
    case("set-hostname-dash", "set", IDLE, "--hostname=-bad", exit=USAGE, says="invalid hostname"),
    case("set-bind-relative-running", "set", BUSY, "--bind", "rel",
         exit=USAGE, says="absolute path"),
    case("network-unknown", *CREATE, "--network", "bridge",
         exit=NOT_FOUND, says="no network named 'bridge'"),
    case("network-bad-name", *CREATE, "--network", "Bad_Net",
         exit=USAGE, says="invalid network name"),
    case("set-network-unknown", "set", IDLE, "--network", "nosuch",
         exit=NOT_FOUND, says="no network named 'nosuch'"),
    case("port-zero", *CREATE, "--port", "0:80", exit=USAGE, says="out of range"),
    case("port-too-high", *CREATE, "--port", "80:65536", exit=USAGE, says="out of range"),
    case("port-protocol", *CREATE, "--port", "80:80/sctp", exit=USAGE, says="unknown protocol"),
    case("port-host-network", *CREATE, "--network", "host", "--port", "80:80",
         exit=USAGE, says="need an nspawnctl network"),
    case("set-no-port-unset", "set", IDLE, "--no-port", "4444",
         exit=USAGE, says="nothing to remove"),
    case("restart-policy-unknown", "set", IDLE, "--restart", "sometimes", exit=USAGE,
         says="invalid value for '--restart'"),
    case("set-nothing", "set", IDLE, exit=USAGE, says="nothing to change"),

    # --- signals ---
    case("signal-name-unknown", "kill", BUSY, "--signal", "BOGUS",
         exit=USAGE, says="unknown signal"),
    case("signal-zero", "kill", BUSY, "-s", "0", exit=USAGE, says="unknown signal"),
    case("signal-too-big", "kill", BUSY, "-s", "65", exit=USAGE, says="unknown signal"),
    case("signal-negative", "kill", BUSY, "--signal=-9", exit=USAGE, says="unknown signal"),
    case("signal-empty", "kill", BUSY, "--signal", "", exit=USAGE, says="unknown signal"),
    case("signal-superscript", "kill", BUSY, "--signal", "²", exit=USAGE, says="unknown signal"),
    case("signal-not-a-signal", "kill", BUSY, "--signal", "SIG_DFL",
         exit=USAGE, says="unknown signal"),

    # --- what click refuses: missing arguments, unknown options, values out of range ---
    *[case(f"{'-'.join(argv)}-missing-argument", *argv, exit=USAGE, says="missing argument")
      for argv in [("create",), ("clone",), ("clone", IDLE), ("remove",), ("start",),
                   ("stop",), ("restart",), ("kill",), ("enable",), ("disable",), ("status",),
                   ("set",), ("exec",), ("exec", BUSY), ("shell",), ("logs",)]],
    case("create-extra-argument", "create", NEW, "extra", exit=USAGE,
         says="unexpected extra argument"),
    case("create-unknown-option", "create", NEW, "--bogus", exit=USAGE, says="no such option"),
    case("create-option-without-value", "create", NEW, "--memory", exit=USAGE,
         says="requires an argument"),
    case("list-extra-argument", "list", "extra", exit=USAGE, says="unexpected extra argument"),
    case("list-unknown-option", "list", "--bogus", exit=USAGE, says="no such option"),
    case("images-unknown-command", "images", "bogus", exit=USAGE, says="no such command"),
    case("images-prune-extra-argument", "images", "prune", "extra", exit=USAGE,
         says="unexpected extra argument"),
    case("unknown-command", "bogus", exit=USAGE, says="no such command"),
    case("unknown-global-option", "--bogus", "list", exit=USAGE, says="no such option"),
    case("start-timeout-zero", "start", IDLE, "--timeout", "0", exit=USAGE,
         says="invalid value for '--timeout'"),
    case("start-timeout-garbage", "start", IDLE, "--timeout", "soon", exit=USAGE,
         says="invalid value for '--timeout'"),
    case("stop-timeout-negative", "stop", BUSY, "--timeout=-1", exit=USAGE,
         says="invalid value for '--timeout'"),
    case("restart-timeout-zero", "restart", BUSY, "--timeout", "0", exit=USAGE,
         says="invalid value for '--timeout'"),
    case("logs-lines-negative", "logs", IDLE, "-n", "-1", exit=USAGE,
         says="invalid value for '--lines'"),
    case("logs-lines-garbage", "logs", IDLE, "--lines", "ten", exit=USAGE,
         says="invalid value for '--lines'"),

    # --- several names, the last one bad: nothing may have happened to the first ---
    case("remove-then-no-such", "remove", IDLE, GONE,
         exit=NOT_FOUND, says=f"no container named '{GONE}'"),
    case("stop-then-no-such", "stop", BUSY, GONE,
         exit=NOT_FOUND, says=f"no container named '{GONE}'"),
    case("start-then-bad-name", "start", IDLE, "a/b", exit=USAGE, says="invalid container name"),
    case("enable-then-no-such", "enable", IDLE, GONE,
         exit=NOT_FOUND, says=f"no container named '{GONE}'"),
]


@pytest.mark.parametrize("argv, exit, says", CASES)
def test_bad_input_fails_clearly_and_changes_nothing(host, nspawnctl, world, argv, exit, says):
    before = snapshot(host)
    try:
        r = nspawnctl.fails(*argv)
        print(f"\n  {r.error}")
        after = snapshot(host)
        assert after == before, f"{r}\nchanged:\n" + "\n".join(
            [f"- {line}" for line in before if line not in after]
            + [f"+ {line}" for line in after if line not in before])
        assert says.lower() in r.error.lower(), str(r)
        if argv[0] in ("exec", "shell") and r.returncode == EXEC_FAILED:
            exit = EXEC_FAILED  # their own failures are 125 (the exec work), not the command's
        assert r.returncode == exit, str(r)
        assert r.stdout == "", str(r)
    except AssertionError:
        world()  # put idle and busy back for the next cases
        raise


def test_bad_input_leaves_no_leftovers(host, nspawnctl, world, figures):
    """After every case above: no staging directory, held lock or orphaned settings."""
    assert store_problems(host, nspawnctl) == []
    figures("bad input: cases, each one clear line and no change", len(CASES))
