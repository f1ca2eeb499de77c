"""network.resolv: which nameservers a container gets, and writing them without following
links out of its tree."""

import os

import pytest

from nspawnctl.errors import Error
from nspawnctl.network.resolv import (
    container_nameservers,
    container_resolv_conf,
    read_etc_file,
    write_etc_file,
)

RESOLVED_STUB = """# This is /run/systemd/resolve/stub-resolv.conf (systemd-resolved)
nameserver 127.0.0.53
options edns0 trust-ad
search example.org
"""
RESOLVED_UPLINK = """# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).
nameserver 192.0.2.53
nameserver 2001:db8::53
nameserver 198.51.100.53
search example.org
"""


def servers(text):
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver")]


def test_plain_host_servers_are_kept_loopback_and_ipv6_dropped():
    text = container_resolv_conf("nameserver 127.0.0.1\nnameserver 203.0.113.53\n"
                                 "nameserver ::1\nnameserver fe80::1%eth0\n"
                                 "nameserver 2001:db8::1\nsearch lan\noptions ndots:2\n")
    assert servers(text) == ["203.0.113.53"]
    assert "search lan\n" in text and "options ndots:2\n" in text


def test_a_loopback_stub_uses_resolveds_uplinks():
    text = container_resolv_conf(RESOLVED_STUB, RESOLVED_UPLINK)
    assert servers(text) == ["192.0.2.53", "198.51.100.53"]
    assert "search example.org" in text and "options edns0 trust-ad" in text


def test_the_uplink_file_is_not_used_when_the_host_has_real_servers():
    text = container_resolv_conf("nameserver 203.0.113.53\n", RESOLVED_UPLINK)
    assert servers(text) == ["203.0.113.53"]


@pytest.mark.parametrize("host, uplink", [
    ("", None), (RESOLVED_STUB, None), (RESOLVED_STUB, "nameserver 127.0.0.1\n"),
    ("nameserver 127.0.1.1\n", ""), ("nameserver 0.0.0.0\n", None),
    ("nameserver 2001:db8::1\n", None),
])
def test_nothing_usable_is_none(host, uplink):
    assert container_resolv_conf(host, uplink) is None


def test_at_most_three_servers_and_no_duplicates():
    host = "".join(f"nameserver 192.0.2.{i}\n" for i in (1, 1, 2, 3, 4))
    assert servers(container_resolv_conf(host)) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    return root


def test_write_creates_and_replaces(tmp_path):
    root = tree(tmp_path)
    write_etc_file(root, "resolv.conf", "nameserver 192.0.2.1\n")
    assert (root / "etc/resolv.conf").read_text() == "nameserver 192.0.2.1\n"
    write_etc_file(str(root), "resolv.conf", "nameserver 192.0.2.2\n")
    assert (root / "etc/resolv.conf").read_text() == "nameserver 192.0.2.2\n"
    assert oct((root / "etc/resolv.conf").stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(root / "etc")) == ["resolv.conf"]


def test_a_symlink_to_a_host_file_is_replaced_not_followed(tmp_path):
    root = tree(tmp_path)
    victim = tmp_path / "host-file"
    victim.write_text("precious\n")
    (root / "etc/resolv.conf").symlink_to(victim)
    write_etc_file(root, "resolv.conf", "nameserver 192.0.2.1\n")
    assert victim.read_text() == "precious\n"
    assert not (root / "etc/resolv.conf").is_symlink()
    assert (root / "etc/resolv.conf").read_text() == "nameserver 192.0.2.1\n"


def test_a_symlinked_etc_is_refused(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (root / "etc").symlink_to(host_etc)
    with pytest.raises(Error) as err:
        write_etc_file(root, "resolv.conf", "nameserver 192.0.2.1\n")
    assert "symlink" in err.value.message
    assert os.listdir(host_etc) == []


def test_a_directory_in_the_way_is_one_line(tmp_path):
    root = tree(tmp_path)
    (root / "etc/resolv.conf").mkdir()
    (root / "etc/resolv.conf/x").write_text("")
    with pytest.raises(Error):
        write_etc_file(root, "resolv.conf", "nameserver 192.0.2.1\n")
    assert sorted(os.listdir(root / "etc")) == ["resolv.conf"]


def test_owner_is_the_owner_of_etc(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    root = tree(tmp_path)
    os.chown(root / "etc", 655360, 655360)  # a tree shifted into a user-namespace range
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_etc_file(fd, "resolv.conf", "nameserver 192.0.2.1\n")
    finally:
        os.close(fd)
    st = (root / "etc/resolv.conf").stat()
    assert (st.st_uid, st.st_gid) == (655360, 655360)


def test_read_etc_file(tmp_path):
    root = tree(tmp_path)
    assert read_etc_file(root, "hosts") is None
    write_etc_file(root, "hosts", "127.0.0.1\tlocalhost\n")
    assert read_etc_file(root, "hosts") == "127.0.0.1\tlocalhost\n"


def test_read_never_follows_a_symlink(tmp_path):
    root = tree(tmp_path)
    secret = tmp_path / "shadow"
    secret.write_text("root:x:0\n")
    (root / "etc/hosts").symlink_to(secret)
    assert read_etc_file(root, "hosts") is None
    write_etc_file(root, "hosts", "192.0.2.2\tweb\n")
    assert secret.read_text() == "root:x:0\n"
    assert read_etc_file(root, "hosts") == "192.0.2.2\tweb\n"


def test_read_refuses_fifos_and_huge_files(tmp_path):
    root = tree(tmp_path)
    os.mkfifo(root / "etc/hosts")  # a blocking read would hang the container's start
    with pytest.raises(Error, match="not a regular file"):
        read_etc_file(root, "hosts")
    os.unlink(root / "etc/hosts")
    with open(root / "etc/hosts", "wb") as f:
        f.truncate(2 << 20)
    with pytest.raises(Error, match="too large"):
        read_etc_file(root, "hosts")


@pytest.mark.parametrize("name", ["", ".", "..", "../passwd", "a/b"])
def test_etc_file_names_are_one_component(tmp_path, name):
    with pytest.raises(ValueError):
        write_etc_file(tree(tmp_path), name, "x")


@pytest.mark.parametrize("host, uplink", [
    ("nameserver 127.0.0.1\nnameserver 203.0.113.53\nnameserver 2001:db8::1\n", None),
    (RESOLVED_STUB, RESOLVED_UPLINK),
    ("".join(f"nameserver 192.0.2.{i}\n" for i in range(1, 6)), None),  # glibc reads 3
    ("nameserver 127.0.0.53\n", None),
])
def test_the_nameservers_the_firewall_opens_are_the_ones_written(host, uplink):
    """The table opens DNS on the host at container_nameservers(): exactly the servers the
    container's resolv.conf names, no more."""
    text = container_resolv_conf(host, uplink)
    assert container_nameservers(host, uplink) == (servers(text) if text else [])
