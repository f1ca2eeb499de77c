"""--ssh-key (issue 32): root's authorized keys as the credential ssh.authorized_keys.root,
which the container's systemd-tmpfiles (provision.conf, systemd 252) writes at its first boot;
the file is checked to be OpenSSH public keys, one a line, bounded."""

import pytest
from click.testing import CliRunner

from nspawnctl.cli import cli
from nspawnctl.errors import Error
from nspawnctl.settings import firstboot

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
