"""A container's root against the host-side commands that read what it wrote (issue 26).

`list` and `status` read every container's os-release.  A running container's root makes it a
FIFO (read by path from the host, every `nspawnctl list` would hang), points its /etc at a host
directory, or writes an OS name holding terminal escape sequences and a line break.  The
commands return at once, read nothing of the host, and print the name escaped.
"""

import pytest

from tests.integration.test_oci_containers import busybox_layer, oci_archive

pytestmark = pytest.mark.integration

WORK = "/root/nspawnctl-hostile-container"


@pytest.fixture(scope="module")
def running(host, nspawnctl, made, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-container")
    archive = oci_archive(work, "busybox", [busybox_layer()])
    host.run(["mkdir", "-p", WORK])
    host.path(f"{WORK}/busybox.tar").write_bytes(archive.read_bytes())
    name = made("hostile-root", "--from", f"oci-archive:{WORK}/busybox.tar")
    nspawnctl("start", name)
    yield name
    host.run(["rm", "-rf", WORK])


def inside(nspawnctl, name, script):
    nspawnctl("exec", name, "--", "/bin/busybox", "sh", "-c", script)


def test_a_fifo_os_release_does_not_hang_list(host, nspawnctl, running):
    inside(nspawnctl, running, "busybox rm -f /etc/os-release; busybox mkfifo /etc/os-release")
    for command in (["list"], ["status", running]):
        r = host.run(["timeout", "30", "nspawnctl", *command])
        assert r.returncode == 0, str(r)


def test_an_escaping_os_name_is_shown_escaped(host, nspawnctl, running):
    inside(nspawnctl, running, "busybox rm -f /etc/os-release; "
           r"busybox printf 'ID=x\nPRETTY_NAME=\033]0;owned\007evil\n' > /etc/os-release")
    out = nspawnctl("list").stdout
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "\\x1b]0;owned\\x07evil" in out


def test_etc_pointing_at_the_host_reads_nothing_of_it(host, nspawnctl, running):
    host.run(["sh", "-c", "mkdir -p /root/host-etc && "
              "printf 'ID=host\\nPRETTY_NAME=HOSTSECRET\\n' > /root/host-etc/os-release"])
    inside(nspawnctl, running, "busybox mv /etc /etc.old && busybox ln -s /root/host-etc /etc")
    try:
        assert "HOSTSECRET" not in nspawnctl("list").stdout
    finally:
        host.run(["rm", "-rf", "/root/host-etc"])
