"""export's parts without systemd: the tree as a tar stream (owners shifted back, links,
xattrs, compression), the one-pass image archives (digests, layout, config), the format
chosen from the file name, the temporary file, and the rule that decides if an image boots."""

import gzip
import hashlib
import json
import os
import platform
import stat
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from nspawnctl.errors import Error
from nspawnctl.formats import platforms
from nspawnctl.formats.oci import RunConfig, write_archive
from nspawnctl.formats.tar import NOBODY, Sink, uid_shift, write_tree
from nspawnctl.ops import export as export_op
from nspawnctl.ops.export import choose_format, run_config
from nspawnctl.paths import Paths
from nspawnctl.runtime.context import Context
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.sources import oci
from nspawnctl.sources.base import Args
from nspawnctl.sources.oci.source import boot_rule
from tests.unit.fakes import FakeBus

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="chown and mknod need root")
BASE = 0x50000  # a UID range systemd-nspawn -U could have picked


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch):
    monkeypatch.setattr(platforms, "ARCHES", {platform.machine(): "amd64"})


def make_tree(root: Path, shift: int = 0) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "sbin").mkdir()
    (root / "bin/prog").write_bytes(b"\x7fELF" + bytes(range(256)) * 1000)  # > SMALL_FILE
    os.chmod(root / "bin/prog", 0o4755)
    os.link(root / "bin/prog", root / "bin/prog-link")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.symlink("../bin/prog", root / "sbin/init")
    os.mkfifo(root / "etc/fifo")
    os.setxattr(root / "etc/passwd", "user.note", b"\xff\x00binary")
    if ROOT:
        for p in [root, *root.rglob("*")]:
            os.chown(p, shift, shift, follow_symlinks=False)
        os.chown(root / "etc/passwd", shift + 33, shift + 44)
        os.chown(root / "bin", 1000, 1000)  # outside the range: "nobody" inside
        os.chmod(root / "bin/prog", 0o4755)  # chown cleared the setuid bit
    return root


def tar_of(tree: Path, tmp: Path, compression=None) -> Path:
    out = tmp / "out.tar"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        sink = Sink(fd, compression)
        write_tree(tree, sink)
        sink.close()
    finally:
        os.close(fd)
    return out


def test_tree_as_tar_keeps_what_a_root_tree_holds(tmp_path):
    tree = make_tree(tmp_path / "tree")
    with tarfile.open(tar_of(tree, tmp_path)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.getnames()[0] == "." and tar.members[0].isdir()
        assert list(members) == [".", "./bin", "./bin/prog", "./bin/prog-link", "./etc",
                                 "./etc/fifo", "./etc/passwd", "./sbin", "./sbin/init"]
        prog = members["./bin/prog"]
        assert prog.isreg() and prog.mode == 0o4755
        assert tar.extractfile(prog).read() == (tree / "bin/prog").read_bytes()
        link = members["./bin/prog-link"]
        assert link.islnk() and link.linkname == "./bin/prog"
        assert members["./sbin/init"].issym() and members["./sbin/init"].linkname == "../bin/prog"
        assert members["./etc/fifo"].isfifo()
        value = members["./etc/passwd"].pax_headers["SCHILY.xattr.user.note"]
        assert value.encode("utf-8", "surrogateescape") == b"\xff\x00binary"
        assert all(m.uname == "" and m.gname == "" for m in members.values())


@needs_root
def test_owners_are_shifted_back_to_what_the_container_sees(tmp_path):
    tree = make_tree(tmp_path / "tree", shift=BASE)
    assert uid_shift(tree.lstat()) == BASE
    with tarfile.open(tar_of(tree, tmp_path)) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["."] == (0, 0) and owners["./bin/prog"] == (0, 0)
    assert owners["./etc/passwd"] == (33, 44)
    assert owners["./bin"] == (NOBODY, NOBODY)


@needs_root
def test_an_unshifted_tree_keeps_its_owners(tmp_path):
    tree = make_tree(tmp_path / "tree", shift=0)
    assert uid_shift(tree.lstat()) == 0
    with tarfile.open(tar_of(tree, tmp_path)) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["./etc/passwd"] == (33, 44) and owners["./bin"] == (1000, 1000)


@needs_root
def test_device_nodes_are_kept(tmp_path):
    tree = tmp_path / "tree"
    (tree / "dev").mkdir(parents=True)
    os.mknod(tree / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(tree / "dev/null", 0o666)
    with tarfile.open(tar_of(tree, tmp_path)) as tar:
        null = tar.getmember("./dev/null")
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3) and null.mode == 0o666


@pytest.mark.parametrize("compression,open_", [
    ("gzip", lambda p: gzip.open(p)),
    ("zstd", lambda p: __import__("zstandard").ZstdDecompressor().stream_reader(open(p, "rb"))),
])
def test_compressed_streams_hold_the_same_tar(tmp_path, compression, open_):
    tree = make_tree(tmp_path / "tree")
    plain = tar_of(tree, tmp_path).read_bytes()
    packed = tar_of(tree, tmp_path, compression)
    with open_(packed) as f:
        assert f.read() == plain


def test_same_tree_same_bytes(tmp_path):
    tree = make_tree(tmp_path / "tree")
    assert tar_of(tree, tmp_path).read_bytes() == tar_of(tree, tmp_path).read_bytes()


def write_image(tree: Path, out: Path, fmt: str, run: RunConfig) -> dict:
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        return write_archive(fd, fmt, lambda sink: write_tree(tree, sink), run, "web",
                             "nspawnctl export web")
    finally:
        os.close(fd)


RUN = RunConfig(cmd=("/bin/prog", "-x"), env=("A=b",), working_dir="/srv", user="33",
                exposed_ports=("80/tcp",))


def test_oci_archive_digests_and_layout(tmp_path):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "img.tar"
    digests = write_image(tree, out, "oci-archive", RUN)
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], name
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    manifest_desc = index["manifests"][0]
    assert manifest_desc["digest"] == digests["manifest"]
    manifest = json.loads(files["blobs/sha256/" + digests["manifest"][7:]])
    layer = files["blobs/sha256/" + digests["layer"][7:]]
    assert manifest["layers"][0]["size"] == len(layer)
    assert layer == tar_of(tree, tmp_path).read_bytes()  # the same stream as a tarball
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["rootfs"]["diff_ids"] == [digests["layer"]]
    assert config["config"] == {"Cmd": ["/bin/prog", "-x"], "Env": ["A=b"],
                                "WorkingDir": "/srv", "User": "33",
                                "ExposedPorts": {"80/tcp": {}}}
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_image_archives_unpack_to_the_same_tree(tmp_path, fmt):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "img.tar"
    write_image(tree, out, fmt, RUN)
    dest = tmp_path / "unpacked"
    dest.mkdir()
    config = oci.unpack_image(fmt, out, dest)
    assert config.cmd == ("/bin/prog", "-x") and config.env == ("A=b",)
    assert config.working_dir == "/srv" and config.exposed_ports == ("80/tcp",)
    for rel in ("bin/prog", "etc/passwd"):
        assert (dest / rel).read_bytes() == (tree / rel).read_bytes()
        assert (dest / rel).stat().st_mode == (tree / rel).stat().st_mode
    assert os.readlink(dest / "sbin/init") == "../bin/prog"
    assert (dest / "bin/prog").stat().st_ino == (dest / "bin/prog-link").stat().st_ino


def test_docker_archive_manifest_and_repositories(tmp_path):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "img.tar"
    digests = write_image(tree, out, "docker-archive", RUN)
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        repositories = json.load(tar.extractfile("repositories"))
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()
    assert manifest[0]["RepoTags"] == ["web:latest"]
    assert hashlib.sha256(layer).hexdigest() == digests["layer"][7:]
    assert repositories == {"web": {"latest": digests["layer"][7:]}}


@pytest.mark.parametrize("name,fmt,want", [
    ("a.tar", None, ("tar", None)), ("a.tar.gz", None, ("tar", "gzip")),
    ("a.TGZ", None, ("tar", "gzip")), ("a.tar.zst", None, ("tar", "zstd")),
    ("a.img", "oci-archive", ("oci-archive", None)), ("a.tar", "docker-archive",
                                                       ("docker-archive", None)),
    ("a.bin", "tar", ("tar", None)), ("a.tar.zst", "tar", ("tar", "zstd")),
])
def test_format_from_the_name_or_the_option(name, fmt, want):
    assert choose_format(Path(name), fmt) == want


@pytest.mark.parametrize("name,fmt,message", [
    ("a.img", None, "cannot tell the format"),
    ("a.oci", None, "cannot tell the format"),
    ("a.tar.gz", "oci-archive", "not compressed"),
])
def test_formats_refused(name, fmt, message):
    with pytest.raises(Error, match=message) as e:
        choose_format(Path(name), fmt)
    assert e.value.hint


def test_booted_container_exports_its_init_as_the_command(tmp_path):
    tree = make_tree(tmp_path / "tree")
    assert run_config(ContainerConfig(), tree).cmd == ("/sbin/init",)
    run = run_config(ContainerConfig(boot=False, command=("/bin/prog", "a b"),
                                     env=("X=1",), working_dir="/w", user="root"), tree)
    assert run == RunConfig(cmd=("/bin/prog", "a b"), env=("X=1",), working_dir="/w")
    with pytest.raises(Error, match="no init"):
        run_config(ContainerConfig(), tmp_path)


def test_failed_write_leaves_nothing_and_dead_temps_are_swept(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".x.tar.nspawnctl-export.999999999.tmp"  # no such process
    stale.write_text("half")
    others = out / ".y.tar.nspawnctl-export.999999999.tmp"  # another FILE's: not ours
    others.write_text("half")

    def broken(tree, sink):
        sink.write(b"x" * 5000)
        sink.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_op, "write_tree", broken)
    with pytest.raises(Error, match="No space left"):
        export_op._write(tree, out / "x.tar", "tar", None, None, "web")
    assert sorted(os.listdir(out)) == [others.name]
    monkeypatch.undo()
    info = export_op._write(tree, out / "x.tar", "tar", None, None, "web")
    assert info["entries"] == 9
    assert sorted(os.listdir(out)) == [others.name, "x.tar"]
    assert oct((out / "x.tar").stat().st_mode & 0o777) == "0o644"  # all public, umask 022


@pytest.fixture
def umask():
    """Set this process's umask for the test (restored after)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, secret, want", [
    (0o022, False, 0o644), (0o027, False, 0o640), (0o077, False, 0o600),
    (0o022, True, 0o600), (0o002, True, 0o600), (0o077, True, 0o600), (0o277, True, 0o400),
], ids=lambda v: f"{v:04o}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
def test_the_archive_is_no_more_readable_than_the_umask_or_its_secrets(tmp_path, umask, mask,
                                                                        secret, want):
    tree = make_tree(tmp_path / "tree")
    if secret:  # as /etc/shadow is in every OS tree
        (tree / "shadow").write_text("root:$6$secret:::\n")
        (tree / "shadow").chmod(0o640)
    umask(mask)
    info = export_op._write(tree, tmp_path / "x.tar", "tar", None, None, "web")
    assert stat.S_IMODE((tmp_path / "x.tar").stat().st_mode) == want
    assert info["mode"] == f"{want:04o}"


def image(entrypoint=(), cmd=()):
    return SimpleNamespace(entrypoint=entrypoint, cmd=cmd)


@pytest.fixture
def with_init(tmp_path):
    return make_tree(tmp_path / "booting")


@pytest.fixture
def without_init(tmp_path):
    (tmp_path / "app/bin").mkdir(parents=True)
    return tmp_path / "app"


def test_boot_rule(with_init, without_init):
    # no command, an init: booted; no command, no init: refused
    assert boot_rule(image(), with_init, None, ())[:2] == (True, ())
    with pytest.raises(Error, match="no command to run"):
        boot_rule(image(), without_init, None, ())
    # an init as the command: booted, the rest its arguments
    assert boot_rule(image(cmd=("/sbin/init", "quiet")), with_init, None, ())[:2] == \
        (True, ("quiet",))
    # a bare shell: booted if there is an init, else the shell stays
    for shell in (("/bin/bash",), ("sh",), ("bash", "-l")):
        assert boot_rule(image(cmd=shell), with_init, None, ())[:2] == (True, ())
        assert boot_rule(image(cmd=shell), without_init, None, ())[:2] == (False, shell)
    # a shell that runs something, or any other command: run as the image says
    said = ("/bin/sh", "-c", "exec httpd")
    assert boot_rule(image(cmd=said), with_init, None, ())[:2] == (False, said)
    assert boot_rule(image(("/app",), ("--port", "80")), with_init, None, ())[:2] == \
        (False, ("/app", "--port", "80"))
    # the flags decide when given
    assert boot_rule(image(cmd=said), with_init, True, ())[:2] == (True, ())
    assert boot_rule(image(), with_init, None, ("/bin/x",))[:2] == (False, ("/bin/x",))
    assert boot_rule(image(cmd=("bash",)), with_init, False, ())[:2] == (False, ("bash",))
    with pytest.raises(Error, match="--boot: the image has no init"):
        boot_rule(image(cmd=said), without_init, True, ())
    with pytest.raises(Error, match="--no-boot: the image has no command"):
        boot_rule(image(), with_init, False, ())
    # --args: the image's entrypoint with them, in place of its Cmd (podman run IMAGE ARGS)
    args = Args(("-p", "8080"))
    assert boot_rule(image(("/app",), ("--port", "80")), with_init, None, args)[:2] == \
        (False, ("/app", "-p", "8080"))
    assert boot_rule(image(cmd=("/sbin/init",)), with_init, None, args)[:2] == \
        (False, ("-p", "8080"))  # no entrypoint: they are the command, as Docker's
    with pytest.raises(Error, match="--args are for the image's own command"):
        boot_rule(image(("/app",)), with_init, True, args)


def test_init_is_resolved_inside_the_tree(tmp_path):
    """/sbin/init -> /lib/systemd/systemd, an absolute link: found in the tree, never on the
    host (where /lib/systemd/systemd may well exist)."""
    tree = tmp_path / "t"
    (tree / "sbin").mkdir(parents=True)
    os.symlink("/lib/systemd/systemd", tree / "sbin/init")
    assert boot_rule(image(), tree, None, ("x",))[0] is False
    with pytest.raises(Error):
        boot_rule(image(), tree, True, ())
    (tree / "lib/systemd").mkdir(parents=True)
    (tree / "lib/systemd/systemd").write_bytes(b"")
    os.chmod(tree / "lib/systemd/systemd", 0o755)
    assert boot_rule(image(), tree, None, ())[0] is True


def test_sink_counts_and_hashes(tmp_path):
    h = hashlib.sha256()
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        sink = Sink(fd, hasher=h)
        src = tmp_path / "src"
        src.write_bytes(os.urandom(300_000))
        with open(src, "rb") as f:
            assert sink.copy_file(f.fileno(), 300_000) == 300_000
        sink.write(b"tail")
        sink.close()
    finally:
        os.close(fd)
    data = (tmp_path / "f").read_bytes()
    assert data == src.read_bytes() + b"tail"  # the bytes themselves, in order
    assert sink.count == len(data) == 300_004 and h.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("type_,extra", [
    (tarfile.REGTYPE, {"size": 12345}), (tarfile.DIRTYPE, {}),
    (tarfile.SYMTYPE, {"linkname": "../x/y"}), (tarfile.LNKTYPE, {"linkname": "./a/b"}),
    (tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}), (tarfile.FIFOTYPE, {}),
    (tarfile.DIRTYPE, {"name": "./"}), (tarfile.DIRTYPE, {"name": "./etc/"}),
    (tarfile.REGTYPE, {"name": "./" + "n" * 120}),           # long: pax
    (tarfile.REGTYPE, {"name": "./caf\udce9"}),               # not UTF-8: pax, binary
    (tarfile.REGTYPE, {"uid": 1 << 22}),                      # too big for ustar: pax
])
def test_fast_headers_are_tarfiles_own(type_, extra):
    """The one-block headers made directly are byte for byte what tarfile writes; what does
    not fit one ustar block goes through tarfile itself."""
    from nspawnctl.formats.tar import _ustar
    info = tarfile.TarInfo("./etc/some/name")
    info.type, info.mode, info.uid, info.gid, info.mtime = type_, 0o4755, 33, 65534, 1700000000
    info.uname = info.gname = ""
    for key, value in extra.items():
        setattr(info, key, value)
    fast = _ustar(info)
    if len(extra.get("name", "")) > 100 or "\udce9" in extra.get("name", "") or "uid" in extra:
        assert fast is None
    else:
        assert fast == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_id_carrying_xattrs_are_shifted_back():
    import struct

    from nspawnctl.formats.tar import _shift_acl, _shift_caps
    inside = lambda i: i - BASE if BASE <= i < BASE + 0x10000 else NOBODY  # noqa: E731
    acl = struct.pack("<I", 2) + struct.pack("<HHI", 0x01, 7, 0xFFFFFFFF) \
        + struct.pack("<HHI", 0x02, 5, BASE + 1000) + struct.pack("<HHI", 0x08, 4, BASE + 33)
    shifted = _shift_acl(acl, inside, BASE)
    assert struct.unpack_from("<HHI", shifted, 12) == (0x02, 5, 1000)
    assert struct.unpack_from("<HHI", shifted, 20) == (0x08, 4, 33)
    assert shifted[:12] == acl[:12]
    v3 = struct.pack("<I", 0x03000001) + bytes(range(16)) + struct.pack("<I", BASE)
    v2 = _shift_caps(v3, inside, BASE)
    assert v2 == struct.pack("<I", 0x02000001) + bytes(range(16))
    assert _shift_caps(v2, inside, BASE) == v2


@pytest.mark.parametrize("running", [True, False])
def test_a_running_container_is_thawed_after_an_error(monkeypatch, running):
    """systemd's freezer cannot be reached in the testbed (hybrid cgroups), so the order of
    the calls is pinned here: frozen before the read, thawed after, also when it fails."""
    monkeypatch.setattr(export_op, "running_for_copy", lambda ctx, name: running)
    bus = FakeBus()
    with pytest.raises(KeyboardInterrupt):
        with export_op._frozen(Context(Paths.from_env(), lambda m: None, bus), "web") as frozen:
            assert frozen is running
            assert bus.calls == ([("freeze", "systemd-nspawn@web.service")] if running else [])
            raise KeyboardInterrupt
    assert bus.calls == ([("freeze", "systemd-nspawn@web.service"),
                          ("thaw_unit", ("systemd-nspawn@web.service",))] if running else [])


def test_a_running_container_is_read_while_frozen(tmp_path, monkeypatch):
    """export of a running container, whole: the tree is read between the freeze and the
    thaw (the read is logged into the same list as the bus calls), not only frozen at some
    point of the command."""
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    paths = Paths.from_env()
    make_tree(paths.tree("web"))
    save_config(paths, "web", ContainerConfig())
    bus = FakeBus()
    monkeypatch.setattr(export_op, "running_for_copy", lambda ctx, name: True)
    real = export_op.write_tree

    def logged(tree, sink):
        bus.calls.append(("read", tree.name))
        return real(tree, sink)
    monkeypatch.setattr(export_op, "write_tree", logged)
    info = export_op.export(Context(paths, lambda m: None, bus), "web", tmp_path / "web.tar")
    assert bus.calls == [("freeze", "systemd-nspawn@web.service"), ("read", "web"),
                         ("thaw_unit", ("systemd-nspawn@web.service",))]
    assert info["frozen"] is True
    with tarfile.open(tmp_path / "web.tar") as t:
        assert t.extractfile("./etc/passwd").read() == b"root:x:0:0::/root:/bin/sh\n"


def test_a_container_systemd_cannot_freeze_is_refused(monkeypatch):
    monkeypatch.setattr(export_op, "running_for_copy", lambda ctx, name: True)
    bus = FakeBus(freeze_error="Unit does not support freeze/thaw")
    with pytest.raises(Error, match="web is running and cannot be frozen") as e:
        with export_op._frozen(Context(Paths.from_env(), lambda m: None, bus), "web"):
            raise AssertionError("read while running")
    assert "stop it first" in e.value.hint
    assert bus.calls == [("freeze", "systemd-nspawn@web.service")]


@pytest.mark.parametrize("name,fmt,want", [
    ("web.oci.tar", None, ("oci-archive", None)), ("WEB.OCI.TAR", None, ("oci-archive", None)),
    ("web.docker.tar", None, ("docker-archive", None)),
    ("web.oci.tar", "oci-archive", ("oci-archive", None)),
    ("web.docker.tar", "docker-archive", ("docker-archive", None)),
    ("oci.tar", None, ("tar", None)), ("web-oci.tar.gz", None, ("tar", "gzip")),
])
def test_image_formats_from_the_name(name, fmt, want):
    """An image archive is named as podman and skopeo users name them: the name alone says
    which, as it does for a compressed tarball."""
    assert choose_format(Path(name), fmt) == want


@pytest.mark.parametrize("name,fmt,message", [
    ("web.oci.tar", "tar", "'web.oci.tar' names an oci-archive, not a tar"),
    ("web.docker.tar", "tar", "'web.docker.tar' names a docker-archive, not a tar"),
    ("web.oci.tar", "docker-archive", "names an oci-archive, not a docker-archive"),
    ("web.docker.tar", "oci-archive", "names a docker-archive, not an oci-archive"),
    ("web.oci.tar.gz", None, "'web.oci.tar.gz' could be an oci-archive or a gzip tarball"),
    ("web.docker.tar.zst", None, "could be a docker-archive or a zstd tarball"),
    ("web.oci.tgz", "tar", "could be an oci-archive or a gzip tarball"),
])
def test_names_that_contradict_or_are_ambiguous_are_refused(name, fmt, message):
    """`export web web.oci.tar --format tar` (or a name that could mean two things) writes
    nothing: the name a user gave must not end up on a file of another kind."""
    with pytest.raises(Error, match=message) as e:
        choose_format(Path(name), fmt)
    assert e.value.hint and "\n" not in e.value.message


def _container(tmp_path, monkeypatch) -> Context:
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    paths = Paths.from_env()
    make_tree(paths.tree("web"))
    save_config(paths, "web", ContainerConfig())
    monkeypatch.setattr(export_op, "running_for_copy", lambda ctx, name: False)
    return Context(paths, lambda m: None, FakeBus())


def test_an_existing_file_is_kept_without_force(tmp_path, monkeypatch):
    from nspawnctl.errors import CONFLICT
    ctx = _container(tmp_path, monkeypatch)
    mine = tmp_path / "web.oci.tar"
    mine.write_bytes(b"the user's OCI archive")
    with pytest.raises(Error, match="web.oci.tar already exists") as e:
        export_op.export(ctx, "web", mine)
    assert e.value.exit_code == CONFLICT and "--force" in (e.value.hint or "")
    assert mine.read_bytes() == b"the user's OCI archive"
    assert sorted(os.listdir(tmp_path)) == ["root", "web.oci.tar"]
    info = export_op.export(ctx, "web", mine, force=True)
    assert info["format"] == "oci-archive"
    with tarfile.open(mine) as t:
        assert "oci-layout" in t.getnames()


def test_a_file_made_while_the_export_ran_is_kept(tmp_path, monkeypatch):
    """The check before the export is only for a quick answer: the rename that puts the
    archive in place is the one that refuses to replace a file (RENAME_NOREPLACE)."""
    ctx = _container(tmp_path, monkeypatch)
    out = tmp_path / "web.tar"
    real = export_op.write_tree

    def meanwhile(tree, sink):
        out.write_text("made meanwhile")
        return real(tree, sink)
    monkeypatch.setattr(export_op, "write_tree", meanwhile)
    with pytest.raises(Error, match="web.tar already exists"):
        export_op.export(ctx, "web", out)
    assert out.read_text() == "made meanwhile"
    assert sorted(os.listdir(tmp_path)) == ["root", "web.tar"]  # no temporary file left
