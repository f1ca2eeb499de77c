"""Containers from scratch (`create --from scratch --add PATH[:DEST]...`), as a user makes
them in the testbed: the static busybox of busybox-static serving HTTP on the default network,
Python 3 with its standard library and the shared libraries both need, and bad input.

The programs are the testbed's own (/bin/busybox, /usr/bin/python3): nspawnctl runs there, so
it reads that system's ELF files and loader configuration.  Crafted ELF files (a missing
library, another machine, a truncated file) are written in from tests/unit/elfbuild.py.
"""

import json
import os

import pytest

from tests import outside
from tests.integration.helpers import MACHINES, listing, store_problems, wait_for
from tests.unit import elfbuild

pytestmark = pytest.mark.integration

PAGE = "hello from a scratch busybox\n"
TWO_MIB = 2 << 20
WORK = "/root/scratch-test"


@pytest.fixture(scope="module")
def work(host):
    """WORK in the testbed: a web root, a directory to bind, crafted ELF files."""
    host.run(["rm", "-rf", WORK])
    host.run(["mkdir", "-p", f"{WORK}/www", f"{WORK}/data", f"{WORK}/bad"])
    base = host.path(WORK)
    (base / "www/index.html").write_text(PAGE)
    (base / "data/note").write_text("bound in\n")
    machine = elfbuild.EM_X86_64 if os.uname().machine == "x86_64" else None
    (base / "bad/needy").write_bytes(elfbuild.shared_object(
        needed=("libc.so.6", "libnowhere.so.1"), runpath=f"{WORK}/nolib",
        machine=machine or elfbuild.EM_AARCH64))
    (base / "bad/foreign").write_bytes(elfbuild.shared_object(
        needed=("libc.so.6",), machine=elfbuild.EM_AARCH64 if machine else elfbuild.EM_X86_64))
    (base / "bad/truncated").write_bytes(elfbuild.shared_object(needed=("libc.so.6",))[:70])
    yield WORK
    host.run(["rm", "-rf", WORK])


def tree_files(host, name) -> dict[str, str]:
    r = host.run(["find", f"{MACHINES}/{name}", "-mindepth", "1", "-printf", "%P %y\n"])
    return dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())


def disk_bytes(host, name) -> int:
    r = host.run(["du", "-s", "--block-size=1", f"{MACHINES}/{name}"])
    return int(r.stdout.split()[0])


def memory_max(host, name) -> int:
    r = host.run(["busctl", "get-property", "org.freedesktop.systemd1",
                  f"/org/freedesktop/systemd1/unit/systemd_2dnspawn_40{name}_2eservice",
                  "org.freedesktop.systemd1.Service", "MemoryMax"])
    assert r.returncode == 0, str(r)
    return int(r.stdout.split()[1])


def test_static_busybox_serves_http(host, nspawnctl, made, work, figures):
    name = made("sbb", "--from", "scratch", "--add", "/bin/busybox",
                "--add", f"{work}/www:/www",
                "--cmd", "/bin/busybox httpd -f -v -p 80 -h /www",
                "--memory", "64M", "--bind", f"{work}/data:/data:ro")
    # only what was added, and the few files a program expects
    assert tree_files(host, name) == {
        "bin": "d", "bin/busybox": "f", "www": "d", "www/index.html": "f",
        "etc": "d", "etc/passwd": "f", "etc/group": "f", "etc/nsswitch.conf": "f",
        "etc/hosts": "f", "etc/os-release": "f", "etc/hostname": "f", "tmp": "d", "root": "d",
        "usr": "d"}
    assert host.run(["stat", "-c", "%a", f"{MACHINES}/{name}/tmp"]).stdout.strip() == "1777"
    size = disk_bytes(host, name)
    figures("scratch busybox tree on disk", f"{size} bytes")
    assert size < TWO_MIB, size
    os_release = host.path(f"{MACHINES}/{name}/etc/os-release").read_text()
    assert "ID=scratch" in os_release and "nspawnctl" in os_release

    assert nspawnctl("start", name).stdout.strip() == f"{name}: running"
    (address,) = listing(nspawnctl)[name]["address"]
    wait_for(lambda: outside.fetch(host, f"http://{address}/", timeout=2)[0], timeout=20,
             what="busybox httpd answering")
    assert outside.fetch(host, f"http://{address}/") == (True, PAGE)

    r = nspawnctl("exec", name, "--", "/bin/busybox", "cat", "/data/note", "/etc/hostname")
    assert r.stdout == f"bound in\n{name}\n"
    # a bare name is found on PATH, and the exit status passes through
    assert nspawnctl("exec", name, "--", "busybox", "sh", "-c", "exit 4",
                     check=False).returncode == 4
    # limits as for any container: on the running unit, and changed live
    assert memory_max(host, name) == 64 << 20
    nspawnctl("set", name, "--memory", "32M")
    assert memory_max(host, name) == 32 << 20
    assert json.loads(nspawnctl("status", name, "--json").stdout)["limits"]["memory"] == 32 << 20
    check_json(nspawnctl, name, address)
    # httpd -v logs each response on stderr, which the unit's journal keeps
    wait_for(lambda: "response:200" in nspawnctl("logs", name).stdout, timeout=10,
             what="httpd's log line")
    nspawnctl("stop", name)
    assert listing(nspawnctl)[name]["state"] != "running"


def check_json(nspawnctl, name, address):
    """--json as a script reads it, from a real running container: every command's output of
    its kind (cli/jsonview.py), every key there and of its one type (issue 34)."""
    from nspawnctl.cli import jsonview

    def read(*args):
        return json.loads(nspawnctl(*args, "--json").stdout)

    def holds(kind, value):
        assert jsonview.check(jsonview.schema(kind), value) == [], (kind, value)

    rows = read("list")
    for row in rows:
        holds("container", row)
    (row,) = [r for r in rows if r["name"] == name]
    assert row["address"] == [address] and row["limits"]["memory"] == 32 << 20
    assert row["created"].endswith("Z") and row["state"] == "running"
    status = read("status", name)
    holds("status", status)
    assert {k: status[k] for k in row} == row  # the same container, the same keys and values
    assert status["bind"] and status["port"] == [] and status["leader"] > 1
    networks = read("network", "list")
    for net in networks:
        holds("network", net)
    assert any(name in net["containers"] for net in networks)
    for image in read("images"):
        holds("image", image)
    assert read("snapshot", "list", name) == []
    made = read("create", f"{name}-j", "--from", "scratch", "--add", "/bin/busybox",
                "--cmd", "/bin/busybox true", "--network", "none")
    try:
        holds("created", made)
        assert made["address"] == [] and made["command"] == ["/bin/busybox", "true"]
    finally:
        nspawnctl("remove", f"{name}-j")


def test_python3_with_its_libraries_runs(host, nspawnctl, made, work, figures):
    code = "import json, sqlite3, ssl, time; print(json.dumps({'hello': 'scratch'})," \
           " flush=True); time.sleep(100000)"
    name = made("spy", "--from", "scratch", "--add", "/usr/bin/python3",
                "--add", "/usr/lib/python3.11", "--cmd", f"python3 -c \"{code}\"")
    libs = [p for p, kind in tree_files(host, name).items()
            if kind == "f" and ".so." in p and "/python3.11/" not in p]
    figures("scratch python3: shared libraries brought", len(libs))
    assert len(libs) >= 5, libs
    assert any(p.startswith("lib64/ld-linux") for p in libs) or \
        any("/ld-linux" in p for p in libs), libs
    figures("scratch python3 tree on disk", f"{disk_bytes(host, name)} bytes")

    nspawnctl("start", name)
    wait_for(lambda: '{"hello": "scratch"}' in nspawnctl("logs", name).stdout, timeout=20,
             what="python's output in the logs")
    r = nspawnctl("exec", name, "--", "python3", "-c",
                  "import ssl, ctypes, hashlib; print(hashlib.sha256(b'x').hexdigest()[:8])")
    assert r.stdout == "2d711642\n", r
    assert nspawnctl("exec", name, "--", "/bin/sh", "-c", "true", check=False).returncode != 0
    nspawnctl("stop", name)


BAD = [
    (("--add", "/nonexistent/program"), "no such file or directory: /nonexistent/program"),
    (("--add", f"{WORK}/bad/needy", "--cmd", "/x"),
     f"cannot find library libnowhere.so.1, needed by {WORK}/bad/needy"),
    (("--add", f"{WORK}/bad/foreign"), "for another architecture"),
    (("--add", f"{WORK}/bad/truncated"), "is not a valid ELF file"),
    (("--add", "/bin/busybox", "--cmd", "/bin/sh -c true"), "/bin/sh, which was not added"),
    (("--add", "/bin/busybox", "--add", "/usr/bin/python3"), "needs --cmd"),
    ((), "--from scratch needs something to put in the tree"),
]


@pytest.mark.parametrize("args,says", BAD, ids=[
    "missing-path", "missing-library", "foreign-machine", "truncated-elf", "cmd-not-added",
    "two-programs-no-cmd", "no-add"])
def test_bad_scratch_input_is_one_line_and_leaves_nothing(host, nspawnctl, work, args, says):
    try:
        r = nspawnctl.fails("create", "sbad", "--from", "scratch", *args)
    except AssertionError:  # made by mistake: not left for the next case to trip on
        nspawnctl("remove", "--force", "sbad", check=False)
        raise
    assert says in r.error, r.error
    assert "sbad" not in listing(nspawnctl)
    assert not host.path(f"{MACHINES}/sbad").exists()
    assert not host.path("/etc/systemd/nspawn/sbad.nspawn").exists()
    assert store_problems(host, nspawnctl) == []


def test_add_needs_scratch(host, nspawnctl):
    r = nspawnctl.fails("create", "sbad", "--from", "tar:/nonexistent.tar", "--add", "/bin/ls")
    assert "--add puts files in a tree made from scratch" in r.error
    assert not host.path(f"{MACHINES}/sbad").exists()
