"""export: a container's tree as a tarball or a one-layer image, checked by the tools that
read them (machinectl import-tar, umoci, skopeo, podman) and by nspawnctl's own create; and
OCI images that carry an init but no command, which boot.

The container exported is the default one, started once so that its tree is stored in its
user namespace's UID range (systemd-nspawn -U chowns it): every round trip must give the
tree as the container sees it, root as 0.  podman, skopeo and umoci run on the machine the
tests run on, against the files inside the testbed (host.path).
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import imagetools  # noqa: E402

from tests.integration.helpers import MACHINES, guest_running, wait_for  # noqa: E402

pytestmark = pytest.mark.integration

SRC = "ex-src"
OUT = "/var/tmp/nspawnctl-export"
# what create gives every new container its own of
OWN_IDENTITY = {"etc/hostname", "etc/machine-id"}
NEED_TOOLS = pytest.mark.skipif(bool(imagetools.missing_tools()),
                                reason=f"needs {', '.join(imagetools.missing_tools())}")


def manifest(root: Path) -> dict:
    """Path -> (type, mode, uid, gid, size, sha256, link target) of every entry, owners as
    the container sees them (shifted back by its root's UID range, as systemd-nspawn does)."""
    top = root.lstat()
    shift = top.st_uid if top.st_uid % 0x10000 == 0 else 0
    out = {}
    pending = [root]
    while pending:
        d = pending.pop()
        for entry in os.scandir(d):
            p = Path(entry.path)
            st = p.lstat()
            rel = str(p.relative_to(root))
            digest = target = None
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                digest = h.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                pending.append(p)
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                        st.st_uid - shift, st.st_gid - shift,
                        st.st_size if digest else None, digest, target)
    return out


def differences(a: dict, b: dict, ignore=frozenset()) -> list[str]:
    diffs = [f"only in first: {p}" for p in sorted(a.keys() - b.keys() - ignore)]
    diffs += [f"only in second: {p}" for p in sorted(b.keys() - a.keys() - ignore)]
    diffs += [f"{p}: {a[p]} != {b[p]}" for p in sorted(a.keys() & b.keys() - ignore)
              if a[p] != b[p]]
    return diffs


def devices(m: dict) -> set:
    return {p for p, e in m.items() if stat.S_ISCHR(e[0]) or stat.S_ISBLK(e[0])}


def local(host, inside: str, tmp_path: Path) -> Path:
    """A copy of a file of the testbed on this machine: skopeo resolves the /proc/PID/root
    of host.path() as a symlink, to this machine's /."""
    copy = tmp_path / Path(inside).name
    shutil.copyfile(host.path(inside), copy)
    return copy


def tool(fn, *args):
    """fn(*args) of imagetools, failing the test with the tool's own words."""
    try:
        return fn(*args)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"{' '.join(map(str, e.cmd[:1] + e.cmd[-4:]))} failed:\n{e.stderr[-3000:]}")


@pytest.fixture
def podman():
    """podman with a private store; under a short path: podman refuses a runroot of more
    than 50 characters, which pytest's tmp_path of a long test name is."""
    work = Path(tempfile.mkdtemp(prefix="nsx-", dir="/tmp"))
    p = imagetools.Podman(work)
    yield p
    p.cleanup()
    shutil.rmtree(work, ignore_errors=True)


def can_freeze(host) -> bool:
    """systemd freezes units only on the unified cgroup hierarchy (its cgroup.freeze)."""
    return host.run(["stat", "-fc", "%T", "/sys/fs/cgroup"]).stdout.strip() == "cgroup2fs"


def freezer_state(host, name) -> str:
    return host.run(["systemctl", "show", "-P", "FreezerState",
                     f"systemd-nspawn@{name}.service"]).stdout.strip()


FORMATS = (("tar", "src.tar"), ("oci-archive", "src.oci.tar"),
           ("docker-archive", "src.docker.tar"))


@pytest.fixture(scope="module")
def exported(host, nspawnctl, made):
    """The default container, started (its tree chowned into its UID range) and exported in
    the three formats: while it runs where systemd can freeze it, else once it is stopped
    (after its refusal while running); and the manifest of its tree."""
    made(SRC)
    nspawnctl("start", "--wait", SRC)
    host.run(["mkdir", "-p", OUT])
    files = {}
    freezes = can_freeze(host)
    if not freezes:
        r = nspawnctl.fails("export", SRC, f"{OUT}/src.tar")
        assert f"{SRC} is running and cannot be frozen" in r.error, str(r)
        assert "stop it first" in r.stderr, str(r)
        assert os.listdir(host.path(OUT)) == []
        assert guest_running(host, SRC)
        nspawnctl("stop", SRC)
    for fmt, name in FORMATS:
        info = json.loads(nspawnctl("export", SRC, f"{OUT}/{name}", "--format", fmt,
                                    "--json").stdout)
        assert info["frozen"] is freezes, info
        if freezes:
            assert freezer_state(host, SRC) == "running"  # thawed after each
        files[fmt] = f"{OUT}/{name}"
    tree = host.path(f"{MACHINES}/{SRC}")
    # Exported frozen, the files hold the running tree: the reference is that tree, taken
    # while it still runs (booted and idle).  The stop removes what the guest's services hold
    # only while they run (the VM showed logind's PrivateTmp directory in /var/tmp).
    running = manifest(tree) if freezes else None
    nspawnctl("stop", SRC)
    assert tree.lstat().st_uid >= 0x10000, "the started tree was expected to be chowned"
    yield files, running or manifest(tree)
    host.run(["rm", "-rf", OUT])


def test_tarball_owners_are_as_the_container_sees_them(host, figures, exported):
    files, _ = exported
    figures("export: systemd can freeze units in the testbed", can_freeze(host))
    r = host.run(["tar", "-tvf", files["tar"]])
    assert r.returncode == 0, str(r)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("drwxr-xr-x 0/0") and lines[0].endswith(" ./"), lines[0]
    # none from the UID range the tree is stored in
    owners = {int(i) for line in lines for i in line.split()[1].split("/")}
    assert max(owners - {65534}) < 0x10000, sorted(owners)


def test_archives_of_a_tree_with_secrets_are_private(host, exported):
    # its /etc/shadow is 0640: under the testbed's umask (022) the archive would be 0644
    files, _ = exported
    assert host.run(["sh", "-c", "umask"]).stdout.strip() == "0022"
    for fmt, path in files.items():
        assert oct(host.path(path).stat().st_mode & 0o777) == "0o600", fmt


def test_tar_is_accepted_by_machinectl_import_tar(host, nspawnctl, exported):
    files, source = exported
    r = host.run(["machinectl", "import-tar", files["tar"], "ex-imported"])
    assert r.returncode == 0, str(r)
    try:
        ours = manifest(host.path(f"{MACHINES}/ex-imported"))
        assert differences(source, ours) == []
    finally:
        host.run(["machinectl", "remove", "ex-imported"])


def test_oci_archive_round_trips_through_create(host, nspawnctl, made, exported):
    files, source = exported
    info = json.loads(nspawnctl("create", "ex-back", "--from",
                                f"oci-archive:{files['oci-archive']}", "--json").stdout)
    try:
        assert info["boot"] is True, info  # its command is its init: booted as here
        back = manifest(host.path(f"{MACHINES}/ex-back"))
        # device nodes are never unpacked from images (sources/unpack.py)
        assert differences(source, back, OWN_IDENTITY | devices(source)) == []
        nspawnctl("start", "--wait", "ex-back")
        assert guest_running(host, "ex-back")
    finally:
        nspawnctl("remove", "--force", "ex-back", check=False)


@NEED_TOOLS
def test_umoci_unpacks_the_same_tree(host, exported, tmp_path):
    files, source = exported
    archive = local(host, files["oci-archive"], tmp_path)
    layout = imagetools.skopeo_to_oci_dir(f"oci-archive:{archive}", tmp_path / "layout", "t")
    rootfs = imagetools.umoci_unpack(layout, "t", tmp_path / "bundle")
    assert differences(source, manifest(rootfs)) == []


@NEED_TOOLS
@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_skopeo_and_podman_accept_the_image(host, exported, tmp_path, podman, fmt):
    files, _ = exported
    path = local(host, files[fmt], tmp_path)
    r = imagetools.run("skopeo", "inspect", "--config", f"{fmt}:{path}")
    config = json.loads(r.stdout)
    assert config["config"]["Cmd"][0] in ("/sbin/init", "/lib/systemd/systemd",
                                          "/usr/lib/systemd/systemd"), config
    assert config["rootfs"]["diff_ids"], config
    r = tool(podman, "load", "-i", path)
    assert "Loaded image" in r.stdout + r.stderr, r
    images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert SRC in images, images


def test_format_follows_the_name_and_unknown_names_are_refused(host, nspawnctl, exported):
    nspawnctl("export", SRC, f"{OUT}/n.tar.zst")
    assert host.path(f"{OUT}/n.tar.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    nspawnctl("export", SRC, f"{OUT}/n.tar.gz")
    assert host.path(f"{OUT}/n.tar.gz").read_bytes()[:2] == b"\x1f\x8b"
    r = nspawnctl.fails("export", SRC, f"{OUT}/n.img")
    assert "cannot tell the format" in r.error and "--format" in r.stderr, str(r)
    assert not host.path(f"{OUT}/n.img").exists()


def test_failed_export_leaves_no_file_and_thaws(host, nspawnctl, exported):
    """A disk that fills up mid-export: an error, no file, no temporary, and (where it was
    frozen) the container running again."""
    tiny = f"{OUT}/tiny"
    host.run(["mkdir", "-p", tiny])
    assert host.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", tiny]).returncode == 0
    freezes = can_freeze(host)
    try:
        if freezes:
            nspawnctl("start", "--wait", SRC)
        r = nspawnctl.fails("export", SRC, f"{tiny}/full.tar")
        assert "No space left" in r.error, str(r)
        assert os.listdir(host.path(tiny)) == []
        if freezes:
            assert freezer_state(host, SRC) == "running"
            assert guest_running(host, SRC)
    finally:
        nspawnctl("stop", SRC, check=False)
        host.run(["umount", tiny])


def test_sigkill_leaves_no_file(host, nspawnctl, exported):
    target = f"{OUT}/killed.tar"
    proc = host.popen(["nspawnctl", "export", SRC, target, "--format", "oci-archive"])
    out = host.path(OUT)

    def temp():
        return [n for n in os.listdir(out) if n.startswith(".killed.tar.nspawnctl-export.")]

    def under_way():
        try:
            return any((out / n).stat().st_size > (1 << 20) for n in temp())
        except FileNotFoundError:
            return False

    try:
        wait_for(under_way, interval=0.005, what="the export to be under way")
    finally:
        for name in temp():  # .killed.tar.nspawnctl-export.PID.tmp: PID in the testbed
            host.run(["kill", "-KILL", name.rsplit(".", 2)[-2]])
        proc.wait()
    assert not host.path(target).exists()
    assert temp(), "the killed export's temporary file was expected to stay"
    nspawnctl("export", SRC, target)  # the next export to that name sweeps it
    assert temp() == [] and host.path(target).exists()


@NEED_TOOLS
def test_image_with_an_init_and_no_command_boots(host, nspawnctl, exported, tmp_path,
                                                 podman):
    """What `podman import` + `podman save` make of a Debian tree: no Cmd at all."""
    files, _ = exported
    tool(podman, "import", local(host, files["tar"], tmp_path), "localhost/nocmd:1")
    saved = podman.save("localhost/nocmd:1", "oci-archive", tmp_path / "nocmd.tar")
    r = imagetools.run("skopeo", "inspect", "--config", f"oci-archive:{saved}")
    assert not json.loads(r.stdout)["config"].get("Cmd"), r.stdout
    inside = f"{OUT}/nocmd.tar"
    shutil.copyfile(saved, host.path(inside))
    info = json.loads(nspawnctl("create", "ex-nocmd", "--from", f"oci-archive:{inside}",
                                "--json").stdout)
    try:
        assert info["boot"] is True and "no command" in info["why"], info
        nspawnctl("start", "--wait", "ex-nocmd")
        assert wait_for(lambda: guest_running(host, "ex-nocmd"), timeout=30)
        # --no-boot with --cmd overrides it
        nspawnctl("create", "ex-nocmd2", "--from", f"oci-archive:{inside}", "--cmd",
                  "/bin/sleep 1000")
        text = host.path("/etc/systemd/nspawn/ex-nocmd2.nspawn").read_text()
        assert "Boot=no" in text and "Parameters=/bin/sleep 1000" in text, text
    finally:
        nspawnctl("remove", "--force", "ex-nocmd", "ex-nocmd2", check=False)


def test_overlay_container_is_flattened(host, nspawnctl, made, exported):
    """Its base and its own changes (a new file, a file of the base deleted) in one layer,
    no whiteout; also when its overlay was not mounted (export mounts it, as boot would)."""
    made("ex-ov", "--overlay")
    tree = f"{MACHINES}/ex-ov"
    host.run(["sh", "-c", f"echo mine > {tree}/root/squashed && rm {tree}/etc/issue"])
    assert host.run(["umount", tree]).returncode == 0
    nspawnctl("export", "ex-ov", f"{OUT}/ov.tar")
    names = set(host.run(["tar", "-tf", f"{OUT}/ov.tar"]).stdout.split())
    assert {"./root/squashed", "./usr/bin/bash", "./etc/os-release"} <= names
    assert "./etc/issue" not in names and not any(".wh." in n for n in names)
    assert host.run(["tar", "-xOf", f"{OUT}/ov.tar", "./root/squashed"]).stdout == "mine\n"
