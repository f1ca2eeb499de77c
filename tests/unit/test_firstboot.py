"""--ssh-key (issue 32): root's authorized keys as the credential ssh.authorized_keys.root,
which the container's systemd-tmpfiles (provision.conf, systemd 252) writes at its first boot;
the file is checked to be OpenSSH public keys, one a line, bounded."""

import os
import stat

import pytest
from click.testing import CliRunner

from nspawnctl.cli import cli
from nspawnctl.errors import Error
from nspawnctl.settings import firstboot
from nspawnctl.store.identity import Identity, write_identity

ED = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDpr7mQf0cQ0l7cJ0XlG7Y1uV1n3Nw3uQn0bq3m9oW6C "
      "me@laptop")
RSA = "ssh-rsa " + "A" * 372 + "== other"


def test_public_keys_become_the_credential(tmp_path):
    (tmp_path / "k.pub").write_text(f"# mine\n{ED}\n\n  {RSA}  \n")
    c = firstboot.ssh_key(str(tmp_path / "k.pub"))
    assert c.name == "ssh.authorized_keys.root"
    assert c.secret == f"{ED}\n{RSA}\n".encode()


@pytest.mark.parametrize("content, said", [
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", "is a private key"),
    ("", "no public key in it"),
    ("ssh-ed25519\n", "key 1 is not an OpenSSH public key"),
    (f"{ED}\ncommand=\"/bin/sh\" {ED}\n", "key 2 is not an OpenSSH public key"),
    (f"{ED}\nssh-ed25519 AAAA;rm -rf /\n", "key 2 is not"),
    ("x" * (firstboot.SSH_KEYS_MAX + 1), "larger than 16 KiB"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDpr7mQf0cQ0l7cJ0X \u00e9\n", "not ASCII"),
])
def test_what_is_not_a_public_key_is_one_line(tmp_path, content, said):
    (tmp_path / "k.pub").write_text(content)
    with pytest.raises(Error) as exc:
        firstboot.ssh_key(str(tmp_path / "k.pub"))
    assert said in exc.value.message and "\n" not in exc.value.message


def test_a_missing_key_file_is_one_line(tmp_path):
    with pytest.raises(Error) as exc:
        firstboot.ssh_key(str(tmp_path / "nope.pub"))
    assert exc.value.message == ("cannot read the file of credential ssh.authorized_keys.root"
                                 f": {tmp_path}/nope.pub: No such file or directory")


def test_create_refuses_the_key_twice_before_making_anything(tmp_path, monkeypatch):
    (tmp_path / "k.pub").write_text(ED + "\n")
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    r = CliRunner().invoke(cli, ["create", "c1", "--from", "scratch", "--ssh-key",
                                  str(tmp_path / "k.pub"), "--credential",
                                  "ssh.authorized_keys.root=x"])
    assert r.exit_code != 0
    assert r.exception.message == ("--ssh-key and --credential ssh.authorized_keys.root=... "
                                   "both give credential ssh.authorized_keys.root: give one "
                                   "of them")
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------- written into the tree

def _tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc/default").mkdir(parents=True)
    (tree / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (tree / "usr/share/zoneinfo/Europe/Berlin").write_bytes(b"TZif")
    (tree / "etc/shadow").write_text("root:*:19000:0:99999:7:::\ndaemon:*:19000::::::\n")
    os.chmod(tree / "etc/shadow", 0o640)
    return tree


HASH = "$y$j9T$.IkHAl7DK/wSJG2imtSqq.$MRxhd2uBvdE7Y0QeeCSmVmP2gsk6EuZ7et2fulprI86"


def test_the_identity_lands_in_the_tree(tmp_path):
    tree = _tree(tmp_path)
    write_identity(tree, Identity(root_hash=HASH, timezone="Europe/Berlin",
                                  locale="de_DE.UTF-8"))
    assert (tree / "etc/shadow").read_text() == f"root:{HASH}:19000:0:99999:7:::\n" \
                                                 "daemon:*:19000::::::\n"
    assert stat.S_IMODE(os.stat(tree / "etc/shadow").st_mode) == 0o640
    assert os.readlink(tree / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    assert (tree / "etc/timezone").read_text() == "Europe/Berlin\n"
    assert (tree / "etc/locale.conf").read_text() == "LANG=de_DE.UTF-8\n"
    assert (tree / "etc/default/locale").read_text() == "LANG=de_DE.UTF-8\n"


def test_a_hostile_tree_cannot_make_it_write_outside(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "shadow").write_text("root:host:1::::::\n")
    (host / "timezone").write_text("host\n")
    tree = _tree(tmp_path)
    (tree / "etc/shadow").unlink()
    os.symlink(host / "shadow", tree / "etc/shadow")         # absolute, out of the tree
    os.symlink(host / "timezone", tree / "etc/timezone")
    os.symlink("../../../host/locale", tree / "etc/locale.conf")
    with pytest.raises(Error, match="no /etc/shadow"):
        write_identity(tree, Identity(root_hash=HASH))
    write_identity(tree, Identity(timezone="Europe/Berlin", locale="C.UTF-8"))
    assert (host / "shadow").read_text() == "root:host:1::::::\n"
    assert (host / "timezone").read_text() == "host\n"
    assert not (host / "locale").exists() and not (tmp_path / "host/locale").exists()
    assert (tree / "etc/timezone").read_text() == "Europe/Berlin\n"  # replaced, not followed
    # /etc itself a link out: resolved inside the tree, as the container would
    tree2 = tmp_path / "tree2"
    tree2.mkdir()
    os.symlink(str(host), tree2 / "etc")
    with pytest.raises(Error):
        write_identity(tree2, Identity(locale="C.UTF-8"))
    assert sorted(os.listdir(host)) == ["shadow", "timezone"]


def test_a_zone_the_image_lacks_is_one_line(tmp_path):
    with pytest.raises(Error) as exc:
        write_identity(_tree(tmp_path), Identity(timezone="Asia/Tokyo"))
    assert exc.value.message == "--timezone Asia/Tokyo: the image has no " \
                                "/usr/share/zoneinfo/Asia/Tokyo"


@pytest.mark.parametrize("check, value", [
    (firstboot.check_timezone, "../../etc/passwd"), (firstboot.check_timezone, "Europe/Ber lin"),
    (firstboot.check_timezone, ""), (firstboot.check_locale, "de_DE.UTF-8\nLC_ALL=x"),
    (firstboot.check_locale, "english"), (firstboot.check_root_hash, "plainpassword"),
    (firstboot.check_root_hash, "$6$salt:x$abc"), (firstboot.check_root_hash, "$6$a b$cdefghij"),
])
def test_values_that_land_in_the_tree_are_checked(check, value):
    with pytest.raises(Error) as exc:
        check(value)
    assert "\n" not in exc.value.message and (check is not firstboot.check_root_hash
                                              or value not in exc.value.message)


@pytest.mark.parametrize("check, value", [
    (firstboot.check_timezone, "Europe/Berlin"), (firstboot.check_timezone, "UTC"),
    (firstboot.check_timezone, "Etc/GMT+5"), (firstboot.check_timezone,
                                             "America/Argentina/Buenos_Aires"),
    (firstboot.check_locale, "de_DE.UTF-8"), (firstboot.check_locale, "C.UTF-8"),
    (firstboot.check_locale, "sr_RS@latin"), (firstboot.check_root_hash, HASH),
])
def test_real_values_are_taken(check, value):
    assert check(value) == value


def test_a_password_file_is_hashed_here_and_never_kept(tmp_path):
    (tmp_path / "pw").write_text("hunter2\n")
    hashed = firstboot.hash_password_file(str(tmp_path / "pw"))
    assert hashed.startswith("$y$") and "hunter2" not in hashed
    assert firstboot.crypt(b"hunter2") != hashed  # a salt of its own each time
    import ctypes
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    assert lib.crypt(b"hunter2", hashed.encode()).decode() == hashed  # it checks out
