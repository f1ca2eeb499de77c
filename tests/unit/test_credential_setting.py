"""--credential (issue 32): names checked as systemd checks them, values bounded, kept in
nspawnctl's 0600 store and handed to systemd-nspawn by path; a value is never in the .nspawn
file, the drop-in, status, --json, spec or any message."""

import json
import os
import stat
from dataclasses import replace

import click
import pytest
from click.testing import CliRunner

from nspawnctl.cli import options as cli_options
from nspawnctl.errors import Error
from nspawnctl.paths import Paths
from nspawnctl.settings import credentials
from nspawnctl.settings.credentials import CREDENTIAL_MAX, Credential, parse_credential
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig, describe, edit, parse_cli
from nspawnctl.settings.nspawnfile import render_nspawn
from nspawnctl.stacks import spec as spec_module
from nspawnctl.store.containers import Store

SECRET = "s3cr3t-Value-93817"


def _paths(root):
    return Paths(machines=root / "machines", nspawn=root / "nspawn", units=root / "units",
                 state=root / "state", cache=root / "cache")


def _every_file(root) -> str:
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out.append(f"{dirpath}/{f}: {fh.read().decode(errors='replace')}")
    return "\n".join(out)


@pytest.mark.parametrize("name", ["a/b", "..", ".", "a:b", "a b", "x" * 256, "", "a%i",
                                  "a\nb", "é", 'a"b', "a\\b"])
def test_a_name_systemd_refuses_or_a_unit_line_cannot_hold_is_one_line(name):
    with pytest.raises(Error) as exc:
        parse_credential(f"{name}={SECRET}")
    assert "invalid credential name" in exc.value.message
    assert SECRET not in exc.value.message and "\n" not in exc.value.message.replace(
        repr(name), "")


@pytest.mark.parametrize("name", ["passwd.hashed-password.root", "ssh.authorized_keys.root",
                                  "firstboot.locale", "db_password", "a", "x" * 255])
def test_systemds_own_names_are_taken(name):
    assert parse_credential(f"{name}=v").name == name


def test_text_without_a_name_is_refused_without_showing_it():
    with pytest.raises(Error) as exc:
        parse_credential(SECRET)
    assert SECRET not in exc.value.message and "NAME=VALUE" in exc.value.message


def test_a_value_from_a_file_keeps_every_byte(tmp_path):
    data = b"line one\nline two\x00\x01\xff\n"
    (tmp_path / "f").write_bytes(data)
    c = parse_credential(f"k=@{tmp_path / 'f'}")
    assert c.secret == data and c.digest == credentials.digest(data)


@pytest.mark.parametrize("what", ["missing", "directory", "fifo", "large", "empty-name"])
def test_a_bad_file_is_one_line_naming_the_credential(tmp_path, what):
    path = tmp_path / "f"
    if what == "directory":
        path.mkdir()
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "large":
        path.write_bytes(b"x" * (CREDENTIAL_MAX + 1))
    arg = "k=@" if what == "empty-name" else f"k=@{path}"
    with pytest.raises(Error) as exc:
        parse_credential(arg)
    assert "credential k" in exc.value.message and "\n" not in exc.value.message


def test_a_value_is_never_shown(tmp_path):
    cfg = ContainerConfig(credentials=(parse_credential(f"db={SECRET}"),))
    for text in (repr(cfg), str(cfg.credentials[0]), json.dumps(describe(cfg)),
                 render_nspawn(cfg)):
        assert SECRET not in text
    assert describe(cfg)["credential"] == ["db"]


def test_the_store_holds_the_value_0600_and_the_files_hold_its_name(tmp_path):
    paths = _paths(tmp_path)
    cfg = ContainerConfig(credentials=(parse_credential(f"db={SECRET}"),
                                       parse_credential("token=t")))
    save_config(paths, "c1", cfg)
    stored = credentials.store_dir(paths, "c1")
    assert (stored / "db").read_text() == SECRET
    assert stat.S_IMODE(os.stat(stored / "db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(stored.parent).st_mode) == 0o700
    # the settings name it; only the store holds the value
    assert SECRET not in _every_file(paths.nspawn) + _every_file(paths.units)
    assert "X-NspawnctlCredential=db" in paths.nspawn_file("c1").read_text()
    dropin = (paths.dropin_dir("c1") / credentials.DROPIN_NAME).read_text()
    line = [ln for ln in dropin.splitlines() if ln.startswith("ExecStart=systemd-nspawn")][0]
    assert line.endswith(f" --load-credential=db:{paths.state}/credentials/%i/db "
                         f"--load-credential=token:{paths.state}/credentials/%i/token")
    assert "\nExecStart=\n" in dropin  # the template's command replaced, not a second one
    loaded = load_config(paths, "c1")
    assert loaded == cfg  # the same names and values: `set` says nothing changed


def test_set_replaces_a_value_and_no_credential_removes_it(tmp_path):
    paths = _paths(tmp_path)
    save_config(paths, "c1", ContainerConfig(credentials=(parse_credential("a=1"),
                                                          parse_credential("b=2"))))
    old = load_config(paths, "c1")
    same = edit(old, {"credentials": ("b=2",)})
    assert same == old
    new = edit(old, {"credentials": ("a=changed",), "no_credentials": ("b",)})
    assert new != old and [c.name for c in new.credentials] == ["a"]
    save_config(paths, "c1", new)
    assert os.listdir(credentials.store_dir(paths, "c1")) == ["a"]
    assert (credentials.store_dir(paths, "c1") / "a").read_text() == "changed"
    save_config(paths, "c1", replace(new, credentials=()))
    assert not credentials.store_dir(paths, "c1").exists()
    assert not (paths.dropin_dir("c1") / credentials.DROPIN_NAME).exists()


def test_remove_and_rename_copy_take_the_values_with_the_container(tmp_path):
    paths = _paths(tmp_path)
    save_config(paths, "c1", ContainerConfig(credentials=(parse_credential(f"a={SECRET}"),)))
    credentials.copy(paths, "c1", "c2")
    assert (credentials.store_dir(paths, "c2") / "a").read_text() == SECRET
    assert stat.S_IMODE(os.stat(credentials.store_dir(paths, "c2") / "a").st_mode) == 0o600
    Store(paths).remove_settings("c1")
    assert not credentials.store_dir(paths, "c1").exists()


def test_clone_gets_its_own_copy_of_the_values(tmp_path):
    paths = _paths(tmp_path)
    save_config(paths, "src", ContainerConfig(credentials=(parse_credential(f"a={SECRET}"),)))
    save_config(paths, "dst", load_config(paths, "src"), like="src")
    assert (credentials.store_dir(paths, "dst") / "a").read_text() == SECRET
    assert load_config(paths, "dst") == load_config(paths, "src")


def test_spec_names_the_stored_file_and_apply_reads_the_same_value(tmp_path):
    paths = _paths(tmp_path)
    save_config(paths, "c1", ContainerConfig(credentials=(parse_credential(f"a={SECRET}"),)))
    cfg = load_config(paths, "c1")
    said = credentials.spelled(paths, "c1", cfg.credentials[0])
    assert SECRET not in said
    assert parse_credential(said) == cfg.credentials[0]
    keys = spec_module.container_keys(replace(cfg, made_from=("scratch",), start_timeout=300), None, ())
    assert SECRET not in json.dumps(keys)


def test_the_cli_takes_it_on_create_and_set():
    seen = {}

    @click.command()
    @cli_options.config_options(editing=True)
    def probe(**options):
        seen.update(parse_cli(options))
        seen["no"] = options["no_credentials"]

    r = CliRunner().invoke(probe, ["--credential", f"k={SECRET}", "--no-credential", "j"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert seen["credentials"] == (Credential("k", credentials.digest(SECRET.encode())),)
    assert seen["no"] == ("j",)
