"""OCI and Docker images run as containers: create, start, exec, list, status, stop, remove.

The images are made on the host (the testbed has no network): OCI layouts written entry by
entry with tests/unit/imagebuild.py from Debian's busybox-static, and a docker archive from
`podman save`.  Each archive is copied into the testbed and used there as a user would.
"""

import json
import shutil
from pathlib import Path

import pytest

from nspawnctl.sources.oci import parse_platform
from tests import imagetools
from tests.integration.helpers import MACHINES, listing, store_problems
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

IMAGES = "/var/lib/nspawnctl/images"
ENTRYPOINT = ["/bin/sh", "-c", "echo started; exec sleep 1000000"]
APPLETS = ("sh", "echo", "cat", "sleep", "env", "id", "ls", "pwd", "true", "false", "test",
           "find", "stat", "wc", "head")
OS_RELEASE = b'ID=busybox\nNAME=BusyBox\nPRETTY_NAME="BusyBox test image"\n'


def busybox_layer(*extra: ib.Entry) -> bytes:
    """A root tree of Debian's busybox-static with what systemd-nspawn needs (os-release)."""
    busybox = imagetools.BUSYBOX.read_bytes()
    return ib.layer(
        ib.dir("bin"), ib.file("bin/busybox", busybox, 0o755),
        *[ib.symlink(f"bin/{applet}", "busybox") for applet in APPLETS],
        ib.dir("usr"), ib.dir("usr/bin"), ib.symlink("usr/bin/env", "/bin/busybox"),
        ib.dir("etc"), ib.file("etc/os-release", OS_RELEASE),
        ib.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        ib.file("etc/group", b"root:x:0:\n"),
        ib.dir("root", 0o700), ib.dir("tmp", 0o1777),
        ib.dir("srv"), ib.dir("srv/app"), ib.file("srv/app/hello.txt", b"hello\n"),
        *extra)


BUSYBOX_PATHS = {  # what busybox_layer() makes, as `find -printf '%P %y'` names it
    "bin": "d", "bin/busybox": "f", **{f"bin/{a}": "l" for a in APPLETS},
    "usr": "d", "usr/bin": "d", "usr/bin/env": "l",
    "etc": "d", "etc/os-release": "f", "etc/passwd": "f", "etc/group": "f",
    "root": "d", "tmp": "d", "srv": "d", "srv/app": "d", "srv/app/hello.txt": "f",
}


def run_config(layers: list[bytes], **overrides) -> dict:
    config = {"Entrypoint": ENTRYPOINT, "Cmd": None,
              "Env": ["PATH=/bin:/usr/bin", "FOO=bar baz"], "WorkingDir": "/srv/app",
              "User": None, "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
              "Volumes": {"/data": {}}}
    return ib.image_config([ib.sha256(t) for t in layers], parse_platform(None).architecture,
                           **{**config, **overrides})


def oci_archive(work: Path, name: str, layers: list[bytes], tamper=None, **config) -> Path:
    """An OCI image layout with one image, tarred like `podman save --format oci-archive`."""
    layout = work / name
    built = ib.oci_layout(layout, layers, config=run_config(layers, **config))
    if tamper:
        tamper(layout, built)
    return ib.tar_tree(layout, work / f"{name}.tar")


def flip_a_byte_in_the_layer(layout: Path, built: ib.Built) -> None:
    blob = ib.blob_file(layout, built.layers[-1])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


# The multi-layer image: whiteouts hide only lower layers, files and directories replace each
# other, and a later layer may bring back what an earlier one whited out.
LAYER_CONTENT = ib.layer(
    ib.dir("a"), ib.file("a/keep", b"keep\n"), ib.file("a/gone", b"old\n"),
    ib.dir("a/gonedir"), ib.file("a/gonedir/inner"),
    ib.dir("opq"), ib.file("opq/old"), ib.dir("opq/sub"), ib.file("opq/sub/deep"),
    ib.file("f2d", b"a file\n"),
    ib.dir("d2f"), ib.file("d2f/child"), ib.dir("d2f/sub"), ib.file("d2f/sub/x"))
LAYER_CHANGES = ib.layer(
    ib.file("a/.wh.gone"), ib.file("a/.wh.gonedir"),           # plain whiteouts
    ib.dir("opq"), ib.file("opq/new", b"new\n"),               # same layer: survives the
    ib.file("opq/.wh..wh..opq"),                               # opaque marker after it
    ib.dir("f2d"), ib.file("f2d/child", b"child\n"),           # file -> directory
    ib.file("d2f", b"now a file\n"))                           # directory -> file
LAYER_BACK = ib.layer(ib.file("a/gone", b"back\n"))
LAYERED_PATHS = BUSYBOX_PATHS | {
    "a": "d", "a/keep": "f", "a/gone": "f", "opq": "d", "opq/new": "f",
    "f2d": "d", "f2d/child": "f", "d2f": "f",
    "etc/hostname": "f",  # written by create: the container's own name
}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """Every image the tests use, built once on the host."""
    work = tmp_path_factory.mktemp("oci-containers")
    base = busybox_layer()
    made = {
        "oci": oci_archive(work, "busybox", [base]),
        "layered": oci_archive(work, "layered", [busybox_layer(), LAYER_CONTENT, LAYER_CHANGES,
                                                 LAYER_BACK]),
        "nocommand": oci_archive(work, "nocommand", [base], Entrypoint=None, Cmd=None),
        # Another image than "oci" (else its layer would be a cache hit): one more file.
        "corrupt": oci_archive(work, "corrupt", [busybox_layer(ib.file("etc/corrupt"))],
                               tamper=flip_a_byte_in_the_layer),
    }
    if shutil.which("podman"):
        made["docker"] = podman_docker_archive(work)
    return made


def podman_docker_archive(work: Path) -> Path:
    """`podman import` of a busybox tree with run settings, then `podman save` (docker format)."""
    tree = imagetools.make_busybox_tree(work / "podman-tree")
    (tree / "srv/www").mkdir(parents=True)
    rootfs = work / "podman-rootfs.tar"
    imagetools.run("tar", "--numeric-owner", "-C", tree, "-cf", rootfs, ".")
    podman = imagetools.Podman(work)
    try:
        podman("import",
               "--change", f"ENTRYPOINT {json.dumps(ENTRYPOINT)}",
               "--change", "ENV FOO=from-podman", "--change", "WORKDIR /srv/www",
               "--change", "EXPOSE 80/tcp", "--change", "VOLUME /var/www",
               rootfs, "localhost/nspawnctl-bb:1")
        return podman.save("localhost/nspawnctl-bb:1", "docker-archive", work / "docker.tar")
    finally:
        podman.cleanup()


@pytest.fixture(scope="module", autouse=True)
def unused_images_pruned(nspawnctl):
    """Earlier modules build the same busybox image (same digest, so the same cache key):
    without the ones no container uses, the first create here is a real unpack."""
    nspawnctl("images", "prune")


@pytest.fixture
def copy_in(host, archives):
    """Copy an archive into the testbed; returns its path there."""
    copied = []

    def copy(which: str, inside: str = "/root/img.tar") -> str:
        if which not in archives:
            pytest.skip("podman is not installed")
        shutil.copyfile(archives[which], host.path(inside))
        copied.append(inside)
        return inside

    yield copy
    for inside in copied:
        host.run(["rm", "-f", inside])


def image_keys(nspawnctl) -> dict:
    return {row["key"]: row for row in json.loads(nspawnctl("images", "--json").stdout)}


def tree_paths(host, name: str) -> dict:
    out = host.run(["find", f"{MACHINES}/{name}", "-mindepth", "1", "-printf", r"%P %y\n"])
    return dict(line.rsplit(" ", 1) for line in out.stdout.splitlines())


def image_store(host) -> set[str]:
    """Every entry of the base tree cache: base trees and the layers' trees kept with them."""
    return set(host.run(["sh", "-c", f"ls -A {IMAGES} | grep -v '^\\.' ; true"]).stdout.split())


def leaves_nothing(host, nspawnctl, name: str, images_before: dict, store_before: set[str]):
    assert name not in listing(nspawnctl)
    assert host.run(["test", "-e", f"{MACHINES}/{name}"]).returncode != 0
    assert host.run(["test", "-e", f"/etc/systemd/nspawn/{name}.nspawn"]).returncode != 0
    assert image_keys(nspawnctl).keys() == images_before.keys()
    assert store_problems(host, nspawnctl) == []
    assert image_store(host) == store_before


def test_oci_archive_runs_its_entrypoint(host, nspawnctl, copy_in):
    archive = copy_in("oci")
    info = json.loads(nspawnctl("create", "bb", "--from", f"oci-archive:{archive}",
                                "--json").stdout)
    assert info["image"].startswith("oci-") and info["cached"] is False
    try:
        r = nspawnctl("start", "bb")
        assert r.stdout.strip() == "bb: running", str(r)

        # Env (with a space in a value) and WorkingDir reach exec; the exit status passes.
        r = nspawnctl("exec", "bb", "--", "sh", "-c", 'echo "$FOO"; pwd')
        assert r.stdout == "bar baz\n/srv/app\n", str(r)
        assert nspawnctl("exec", "bb", "--", "sh", "-c", "exit 3", check=False).returncode == 3
        r = nspawnctl("exec", "-i", "bb", "--", "cat", input="through stdin\n")
        assert r.stdout == "through stdin\n", str(r)
        assert nspawnctl("exec", "bb", "--", "cat", "hello.txt").stdout == "hello\n"
        # The entrypoint is the container's PID 1, still in its shell's exec'd sleep.
        r = nspawnctl("exec", "bb", "--", "cat", "/proc/1/cmdline")
        assert r.stdout.split("\0")[:2] == ["sleep", "1000000"], str(r)
        log = host.run(["journalctl", "-u", "systemd-nspawn@bb.service", "-o", "cat",
                        "--no-pager"]).stdout
        assert "started" in log.splitlines(), log[-2000:]
        # exec is confined as the container's own processes are (issue 11): its unit's
        # cgroup, which stop kills and the limits hold, and its capability bounding set.
        leader = json.loads(nspawnctl("status", "bb", "--json").stdout)["leader"]
        leader_caps = host.run(["grep", "CapBnd", f"/proc/{leader}/status"]).stdout
        r = nspawnctl("exec", "bb", "--", "sh", "-c", "grep CapBnd /proc/self/status")
        assert r.stdout == leader_caps and int(leader_caps.split()[1], 16) != 2**41 - 1, str(r)
        r = host.run(["sh", "-c", "nspawnctl exec bb -- sleep 300 >/dev/null 2>&1 & "
                      "sleep 1; pgrep -f -x 'sleep 300'"])
        sleeper = r.stdout.strip()
        assert sleeper.isdigit(), str(r)
        unit_procs = host.run(["systemctl", "show", "-p", "ControlGroup", "--value",
                               "systemd-nspawn@bb.service"]).stdout.strip()
        cgroup = host.run(["cat", f"/proc/{sleeper}/cgroup"]).stdout
        assert unit_procs and unit_procs in cgroup, (unit_procs, cgroup)

        row = listing(nspawnctl)["bb"]
        assert row["state"] == "running" and row["image"] == info["image"]
        assert row["os"] == "BusyBox test image"

        status = json.loads(nspawnctl("status", "bb", "--json").stdout)
        assert status["state"] == "running" and status["boot"] is False
        assert status["command"] == ENTRYPOINT
        assert status["working_dir"] == "/srv/app"
        assert "FOO=bar baz" in status["env"]
        assert sorted(status["exposed_ports"]) == ["53/udp", "8080/tcp"]
        assert status["volumes"] == ["/data"]
        assert status["leader"]
        # The human form shows them too.
        text = nspawnctl("status", "bb").stdout
        assert "8080/tcp" in text and "/data" in text, text

        assert nspawnctl("stop", "bb").stdout.strip() == "bb: stopped"
        assert listing(nspawnctl)["bb"]["state"] == "stopped"
        assert host.run(["test", "-e", f"/proc/{sleeper}"]).returncode != 0, \
            "an exec'd process outlived its container's stop"
        r = nspawnctl.fails("exec", "bb", "--", "true")
        assert "bb is not running" in r.error

        # Starts again after a stop (private users were chowned on the first start).
        assert nspawnctl("start", "bb").stdout.strip() == "bb: running"
        assert nspawnctl("exec", "bb", "--", "true").returncode == 0
        nspawnctl("stop", "bb")
    finally:
        nspawnctl("remove", "--force", "bb", check=False)
    assert "bb" not in listing(nspawnctl)
    assert host.run(["test", "-e", f"{MACHINES}/bb"]).returncode != 0


def test_exec_without_a_user_namespace_is_refused(host, nspawnctl, copy_in):
    """Without a user namespace, a process entered from outside would be the host's root
    without the container's seccomp filter: exec says so instead (issue 11)."""
    archive = copy_in("oci")
    nspawnctl("create", "bbroot", "--from", f"oci-archive:{archive}", "--no-private-users")
    try:
        nspawnctl("start", "bbroot")
        r = nspawnctl.fails("exec", "bbroot", "--", "true")
        assert "runs without a user namespace" in r.error
    finally:
        nspawnctl("remove", "--force", "bbroot", check=False)


def test_second_create_from_the_same_image_is_a_cache_hit(host, nspawnctl, copy_in):
    archive = copy_in("oci")
    first = json.loads(nspawnctl("create", "bb1", "--from", f"oci-archive:{archive}",
                                 "--json").stdout)
    r = nspawnctl("create", "bb2", "--from", f"oci-archive:{archive}", "--json")
    second = json.loads(r.stdout)
    try:
        assert second["cached"] is True and second["image"] == first["image"], r.stderr
        assert f"using cached base tree {first['image']}" in r.stderr
        row = image_keys(nspawnctl)[first["image"]]
        assert len(row["containers"]) >= 2 and row["source"] == f"oci-archive:{archive}"
        assert host.run(["cat", f"{MACHINES}/bb2/etc/hostname"]).stdout == "bb2\n"
        nspawnctl("start", "bb2")
        assert nspawnctl("exec", "bb2", "--", "cat", "/etc/hostname").stdout == "bb2\n"
    finally:
        nspawnctl("remove", "--force", "bb1", "bb2", check=False)


def test_docker_archive_from_podman_runs(host, nspawnctl, copy_in):
    archive = copy_in("docker", "/root/docker.tar")
    info = json.loads(nspawnctl("create", "dk", "--from", f"docker-archive:{archive}",
                                "--json").stdout)
    try:
        assert info["image"].startswith("oci-")
        assert nspawnctl("start", "dk").stdout.strip() == "dk: running"
        r = nspawnctl("exec", "dk", "--", "sh", "-c", 'echo "$FOO"; pwd; id -u')
        assert r.stdout == "from-podman\n/srv/www\n0\n", str(r)
        assert nspawnctl("exec", "dk", "--", "sh", "-c", "exit 7", check=False).returncode == 7
        status = json.loads(nspawnctl("status", "dk", "--json").stdout)
        assert status["exposed_ports"] == ["80/tcp"] and status["volumes"] == ["/var/www"]
        assert listing(nspawnctl)["dk"]["state"] == "running"
        nspawnctl("stop", "dk")
    finally:
        nspawnctl("remove", "--force", "dk", check=False)


def test_layers_with_whiteouts_give_the_right_tree(host, nspawnctl, copy_in):
    archive = copy_in("layered")
    nspawnctl("create", "layered", "--from", f"oci-archive:{archive}")
    try:
        assert tree_paths(host, "layered") == LAYERED_PATHS
        contents = host.run(["cat", *(f"{MACHINES}/layered/{p}" for p in
                                      ("a/keep", "a/gone", "opq/new", "f2d/child", "d2f"))])
        assert contents.stdout == "keep\nback\nnew\nchild\nnow a file\n"
        # And it runs, seeing the same tree from inside.
        nspawnctl("start", "layered")
        r = nspawnctl("exec", "layered", "--", "sh", "-c",
                      "cd / && find a opq f2d | sort && cat d2f")
        assert r.stdout.split("\n") == ["a", "a/gone", "a/keep", "f2d", "f2d/child", "opq",
                                        "opq/new", "now a file", ""], str(r)
    finally:
        nspawnctl("remove", "--force", "layered", check=False)


def test_image_without_a_command_is_refused(host, nspawnctl, copy_in):
    archive = copy_in("nocommand")
    before, store = image_keys(nspawnctl), image_store(host)
    r = nspawnctl.fails("create", "nocmd", "--from", f"oci-archive:{archive}")
    assert "has no command to run (no Entrypoint or Cmd)" in r.error, str(r)
    assert "hint: " in r.stderr, str(r)
    leaves_nothing(host, nspawnctl, "nocmd", before, store)


def test_corrupted_archive_is_refused_and_leaves_nothing(host, nspawnctl, copy_in):
    archive = copy_in("corrupt")
    before, store = image_keys(nspawnctl), image_store(host)
    r = nspawnctl.fails("create", "broken", "--from", f"oci-archive:{archive}")
    assert "image layer blob sha256:" in r.error and "does not match its digest" in r.error, \
        str(r)
    assert "hint: the image is corrupt or was tampered with" in r.stderr, str(r)
    leaves_nothing(host, nspawnctl, "broken", before, store)
    # Not half-cached either: the same name is free and a good image still works.
    good = copy_in("oci", "/root/good.tar")
    nspawnctl("create", "broken", "--from", f"oci-archive:{good}")
    nspawnctl("remove", "broken")


def test_missing_archive_is_one_clear_line(host, nspawnctl):
    r = nspawnctl.fails("create", "ghost", "--from", "oci-archive:/root/nonexistent.tar")
    assert "ghost" not in listing(nspawnctl), str(r)
    assert "Traceback" not in r.stderr
