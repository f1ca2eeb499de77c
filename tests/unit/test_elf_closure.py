"""create --from scratch: the shared-library closure (elfdeps.py) of the host's real programs
and of crafted ELF files (tests/unit/elfbuild.py), the plan and the tree (scratch.py), and the
command line through `python -m nspawnctl` under a private NSPAWNCTL_ROOT."""

import os
import shutil
import stat
from pathlib import Path

import pytest

from nspawnctl.errors import NOT_FOUND, USAGE, Error
from nspawnctl.sources import elfdeps, scratch
from tests.unit import elfbuild
from tests.unit.test_cli import assert_error, nspawnctl

HOST = elfbuild.MACHINE_NUMBERS.get(elfdeps.host_machine(), elfbuild.EM_X86_64)
OTHER = elfbuild.EM_AARCH64 if HOST != elfbuild.EM_AARCH64 else elfbuild.EM_X86_64
LS = shutil.which("ls") or "/bin/ls"
PYTHON = "/usr/bin/python3"


def closure_of(path: str, tree: str | None = None, **kw) -> dict[str, elfdeps.Place]:
    c = elfdeps.Closure(**kw)
    c.add(path, tree or path)
    return c.places


def write(path: Path, data: bytes, mode: int = 0o755) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


def interp_of(path: str) -> str:
    interp = elfdeps.read_elf(path, elfdeps.Budget()).interp
    assert interp
    return interp


# --- the closure of real programs -----------------------------------------------------------

def test_ls_brings_its_interpreter_and_libc():
    places = closure_of(LS)
    interp = interp_of(LS)
    assert places[os.path.normpath(interp)].host == os.path.normpath(interp)
    names = {os.path.basename(t) for t in places}
    assert "libc.so.6" in names
    for place in places.values():  # each where the loader opens it, and a real ELF file
        assert os.path.basename(place.tree) == os.path.basename(place.host)
        assert elfdeps.is_elf(place.host)


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="no python3 at /usr/bin")
def test_python3_and_its_extension_modules():
    real = os.path.realpath(PYTHON)
    version = os.path.basename(real).removeprefix("python")
    dynload = Path(f"/usr/lib/python{version}/lib-dynload")
    c = elfdeps.Closure()
    c.add(PYTHON, PYTHON)
    own = {os.path.basename(t) for t in c.places}
    assert {"libc.so.6", "libm.so.6"} <= own
    if dynload.is_dir():
        for module in sorted(dynload.glob("*.so"))[:40]:
            c.add(str(module), str(module))
        assert len(c.places) > len(own)


def test_the_closure_never_runs_a_program(monkeypatch):
    import subprocess

    def refuse(*a, **k):
        raise AssertionError("ran a program")
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "execv", refuse)
    assert closure_of(LS)


def test_a_static_program_needs_nothing(tmp_path):
    busybox = shutil.which("busybox")
    if busybox is None or elfdeps.read_elf(busybox, elfdeps.Budget()).interp:
        pytest.skip("no static busybox here")
    assert closure_of(busybox) == {}


# --- crafted files ----------------------------------------------------------------------------

def test_truncated_elf_is_refused(tmp_path):
    data = Path(LS).read_bytes()[:100]
    path = write(tmp_path / "ls", data)
    with pytest.raises(Error, match="is not a valid ELF file"):
        closure_of(path)
    path = write(tmp_path / "tiny.so", elfbuild.shared_object(needed=("libc.so.6",))[:70])
    with pytest.raises(Error, match="is not a valid ELF file"):
        closure_of(path)


def test_another_machine_is_refused(tmp_path):
    data = bytearray(Path(LS).read_bytes())
    data[18:20] = OTHER.to_bytes(2, "little")
    path = write(tmp_path / "ls", bytes(data))
    with pytest.raises(Error, match="for another architecture") as e:
        closure_of(path)
    assert "ls" in e.value.message


def test_missing_library_names_it_and_who_needs_it(tmp_path):
    path = write(tmp_path / "app", elfbuild.shared_object(
        needed=("libc.so.6", "libnowhere.so.1"), runpath=str(tmp_path / "lib"), machine=HOST))
    with pytest.raises(Error) as e:
        closure_of(path)
    assert e.value.message == f"cannot find library libnowhere.so.1, needed by {path}"
    assert str(tmp_path / "lib") in (e.value.hint or "")


def test_origin_runpath_is_followed_and_placed_beside_the_dest(tmp_path):
    lib = write(tmp_path / "opt/lib/libfoo.so.1", elfbuild.shared_object(
        needed=("libc.so.6",), machine=HOST), 0o644)
    app = write(tmp_path / "opt/bin/app", elfbuild.shared_object(
        needed=("libfoo.so.1",), runpath="$ORIGIN/../lib", machine=HOST))
    places = closure_of(app, "/srv/app/bin/app")
    assert places["/srv/app/lib/libfoo.so.1"].host == os.path.normpath(lib)
    assert any(t.endswith("/libc.so.6") for t in places)


def test_an_incompatible_candidate_is_skipped(tmp_path):
    write(tmp_path / "a/libfoo.so.1", elfbuild.shared_object(machine=OTHER), 0o644)
    good = write(tmp_path / "b/libfoo.so.1", elfbuild.shared_object(machine=HOST), 0o644)
    app = write(tmp_path / "app", elfbuild.shared_object(
        needed=("libfoo.so.1",), runpath=f"{tmp_path}/a:{tmp_path}/b", machine=HOST))
    assert closure_of(app)[good].host == good


def test_rpath_of_the_loader_serves_its_libraries_unless_they_have_a_runpath(tmp_path):
    """ld.so: a library without RUNPATH is searched in its loaders' RPATHs too."""
    write(tmp_path / "r/liby.so.1", elfbuild.shared_object(machine=HOST), 0o644)
    write(tmp_path / "r/libx.so.1", elfbuild.shared_object(needed=("liby.so.1",),
                                                            machine=HOST), 0o644)
    app = write(tmp_path / "app", elfbuild.shared_object(
        needed=("libx.so.1",), rpath=f"{tmp_path}/r", machine=HOST))
    assert f"{tmp_path}/r/liby.so.1" in closure_of(app)
    # with a RUNPATH of its own, libx no longer gets its loader's RPATH
    write(tmp_path / "r/libx.so.1", elfbuild.shared_object(
        needed=("liby.so.1",), runpath="/nonexistent", machine=HOST), 0o644)
    with pytest.raises(Error, match="cannot find library liby.so.1"):
        closure_of(app)
    # and an RPATH is ignored next to a RUNPATH of the same object
    app2 = write(tmp_path / "app2", elfbuild.shared_object(
        needed=("liby.so.1",), rpath=f"{tmp_path}/r", runpath="/nonexistent", machine=HOST))
    with pytest.raises(Error, match="cannot find library liby.so.1"):
        closure_of(app2)


def test_ld_library_path_is_not_used(tmp_path, monkeypatch):
    write(tmp_path / "env/libenv.so.1", elfbuild.shared_object(machine=HOST), 0o644)
    app = write(tmp_path / "app", elfbuild.shared_object(needed=("libenv.so.1",), machine=HOST))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path / "env"))
    with pytest.raises(Error, match="cannot find library libenv.so.1"):
        closure_of(app)


def test_ld_so_conf_includes_globs_and_stops_on_loops(tmp_path):
    conf = tmp_path / "ld.so.conf"
    (tmp_path / "d").mkdir()
    conf.write_text("# comment\n/first\ninclude d/*.conf\n/last\n")
    (tmp_path / "d/a.conf").write_text("/from-a  # trailing\ninclude ../ld.so.conf\n")
    (tmp_path / "d/b.conf").write_text("/from-b:/from-b2\n")
    assert elfdeps.ld_so_conf(str(conf)) == ["/first", "/from-a", "/from-b", "/from-b2",
                                             "/last"]
    assert elfdeps.ld_so_conf(str(tmp_path / "missing")) == []


def test_conf_dirs_are_searched(tmp_path):
    lib = write(tmp_path / "conf/libconf.so.1", elfbuild.shared_object(machine=HOST), 0o644)
    app = write(tmp_path / "app", elfbuild.shared_object(needed=("libconf.so.1",), machine=HOST))
    assert closure_of(app, conf_dirs=[str(tmp_path / "conf")])[lib].host == lib


def test_the_number_of_elf_reads_is_bounded():
    with pytest.raises(Error, match="too many ELF files"):
        closure_of(LS, budget=elfdeps.Budget(2))


# --- the plan and the tree ---------------------------------------------------------------------

def test_tree_has_only_what_was_added_and_the_base_files(tmp_path):
    result = scratch.plan([LS], None)
    assert result.command == (os.path.abspath(LS),)
    scratch.make_tree(result, str(tmp_path / "t"))
    t = tmp_path / "t"
    assert stat.S_IMODE(os.lstat(t / "tmp").st_mode) == 0o1777
    assert (t / "usr").is_dir()  # systemd-nspawn looks for it
    assert "ID=scratch" in (t / "etc/os-release").read_text()
    assert "root:x:0:0:" in (t / "etc/passwd").read_text()
    assert "nobody:" in (t / "etc/passwd").read_text()
    assert sorted(os.listdir(t / "etc")) == ["group", "hosts", "nsswitch.conf", "os-release",
                                            "passwd"]
    assert (t / LS.lstrip("/")).read_bytes() == Path(LS).read_bytes()
    interp = interp_of(LS)
    assert (t / interp.lstrip("/")).is_file()
    # the interpreter and libc's ld-linux are one file: hard links in the tree
    ld = list(t.rglob("ld-linux*"))
    assert ld
    assert len({p.stat().st_ino for p in ld}) == 1, ld


def test_directory_is_added_whole_with_links_and_elf_closure(tmp_path):
    src = tmp_path / "app"
    write(src / "bin/tool", Path(LS).read_bytes())
    write(src / "share/data.txt", b"data\n", 0o640)
    os.symlink("tool", src / "bin/alias")
    os.symlink("/etc/passwd", src / "share/outside")
    result = scratch.plan([f"{src}:/opt/app"], "/opt/app/bin/alias -l")
    scratch.make_tree(result, str(tmp_path / "t"))
    t = tmp_path / "t/opt/app"
    assert os.readlink(t / "bin/alias") == "tool"
    assert os.readlink(t / "share/outside") == "/etc/passwd"  # kept as a link, not followed
    assert stat.S_IMODE(os.lstat(t / "share/data.txt").st_mode) == 0o640
    assert (tmp_path / "t" / interp_of(LS).lstrip("/")).is_file()


def test_cmd_default_and_lookup(tmp_path):
    assert scratch.plan([LS], "ls -l").command == ("ls", "-l")  # found on PATH in the tree
    assert scratch.plan([LS, LS], None).command == (os.path.abspath(LS),)  # one, twice
    with pytest.raises(Error, match="/bin/sh, which was not added"):
        scratch.plan([LS], "/bin/sh -c true")
    with pytest.raises(Error, match="nope, which was not added"):
        scratch.plan([LS], "nope")
    data = write(tmp_path / "data.txt", b"x", 0o644)
    with pytest.raises(Error, match="needs --cmd: no executable"):
        scratch.plan([data], None)
    with pytest.raises(Error, match="needs --cmd: 2 executable"):
        scratch.plan([LS, f"{LS}:/other/ls"], None)
    with pytest.raises(Error, match="invalid --cmd"):
        scratch.plan([LS], "ls 'unclosed")


@pytest.mark.parametrize("spec,says", [
    ("/nonexistent/x", "no such file or directory: /nonexistent/x"),
    (f"{LS}:relative/dest", "DEST must be an absolute path"),
    (f"{LS}:/a/../b", "must not contain '..'"),
    ("/", "the host's root directory"),
    ("/dev/null", "not a regular file or directory"),
])
def test_bad_adds(spec, says):
    with pytest.raises(Error, match=None) as e:
        scratch.plan([spec], "/x")
    assert says in e.value.message


def test_nothing_goes_under_a_link(tmp_path):
    src = tmp_path / "d"
    src.mkdir()
    os.symlink("/etc", src / "etc")
    with pytest.raises(Error, match="is a symlink there"):
        scratch.plan([f"{src}:/", LS], "ls")


def test_two_files_at_one_dest(tmp_path):
    other = write(tmp_path / "other", b"#!/bin/sh\n")
    with pytest.raises(Error, match="two files to put at /bin/x"):
        scratch.plan([f"{LS}:/bin/x", f"{other}:/bin/x"], "/bin/x")


# --- the command line ----------------------------------------------------------------------------

def test_create_from_scratch_in_a_private_root(tmp_path):
    r = nspawnctl(tmp_path, "create", "tiny", "--from", "scratch", "--add", LS,
                  "--network", "none")
    assert r.returncode == 0, r
    assert "created tiny (scratch" in r.stdout
    nspawn = (tmp_path / "etc/systemd/nspawn/tiny.nspawn").read_text()
    assert "Boot=no" in nspawn and f"Parameters={os.path.abspath(LS)}" in nspawn
    assert (tmp_path / "var/lib/machines/tiny/etc/hostname").read_text() == "tiny\n"


@pytest.mark.parametrize("args,line,code", [
    (("--add", LS), "nspawnctl: --add puts files in a tree made from scratch", USAGE),
    (("--from", "scratch"), "nspawnctl: --from scratch needs something to put in the tree",
     USAGE),
    (("--from", "scratch", "--add", "/nonexistent"),
     "nspawnctl: no such file or directory: /nonexistent", NOT_FOUND),
    (("--cmd", "true"), "nspawnctl: --cmd names the one command", USAGE),
])
def test_create_bad_scratch_arguments_make_nothing(tmp_path, args, line, code):
    assert_error(nspawnctl(tmp_path, "create", "x", "--network", "none", *args), line, code)
    assert not (tmp_path / "var/lib/machines/x").exists()
    assert not (tmp_path / "etc/systemd/nspawn/x.nspawn").exists()


def test_the_number_of_files_is_bounded(tmp_path, monkeypatch):
    for i in range(30):
        write(tmp_path / "many" / f"f{i}", b"x", 0o644)
    monkeypatch.setattr(scratch, "MAX_FILES", 20)
    with pytest.raises(Error, match="more than 20 files to add"):
        scratch.plan([f"{tmp_path}/many:/many", LS], "ls")
