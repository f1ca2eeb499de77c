"""First-boot keys in stack files (stacks/firstboot.py): ssh-key, root-password-hashed,
root-password-file, timezone and locale read by create's parsers, every problem at once
with its line; create given what `create --ssh-key ... --timezone ...` gets; a later change
said, never a step (the container keeps what it was made with); no secret in the record,
the plan, --json or spec."""

import ctypes
import json

import pytest
import yaml

from nspawnctl.ops import create, reconfigure
from nspawnctl.settings.files import save_config
from nspawnctl.settings.firstboot import SSH_KEY
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.stacks import apply, model, plan, record, spec, yamlfile
from tests.unit.fakes import FakeBus, context

ED = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDpr7mQf0cQ0l7cJ0XlG7Y1uV1n3Nw3uQn0bq3m9oW6C "
      "me@laptop")
OTHER = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn9rT0xQ2m3l7cJ0XlG7Y1uV1n3Nw3uQn0bq3m9oW7D "
         "other@laptop")
HASH = "$6$saltsalt$" + "x" * 86
PASSWORD = "correct horse battery staple"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "k.pub").write_text(ED + "\n")
    (tmp_path / "other.pub").write_text(OTHER + "\n")
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    return tmp_path


def boxed(files, *lines: str) -> str:
    return ("name: st\ncontainers:\n  a:\n    network: none\n"
            + "".join(f"    {line}\n" for line in lines))


def load(text: str):
    doc, problems = yamlfile.parse(text)
    stack, more = model.load(doc, "st")
    return stack, [p.text("f") for p in problems + more]


def loaded(text: str):
    stack, problems = load(text)
    assert problems == []
    return stack.containers["a"]


def secrets_in(text: str) -> list[str]:
    return [s for s in (HASH, PASSWORD, "hunter2") if s in text]


# ---------------------------------------------------------------- the file

def test_the_keys_give_create_what_its_options_give(files):
    a = loaded(boxed(files, f"ssh_key: {files}/k.pub", f"root-password-file: {files}/pw",
                     "timezone: Europe/Berlin", "locale: C.UTF-8", "hostname: box"))
    # ssh-key: the credential create --ssh-key adds; timezone: Timezone=off, as create sets
    assert [c.name for c in a.config.credentials] == [SSH_KEY]
    assert a.config.credentials[0].secret == (ED + "\n").encode()
    assert a.config.timezone_mode == "off" and a.config.hostname == "box"
    identity = a.firstboot.identity()
    assert (identity.timezone, identity.locale) == ("Europe/Berlin", "C.UTF-8")
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    hashed = identity.root_hash
    assert hashed and hashed.startswith("$y$")
    assert lib.crypt(PASSWORD.encode(), hashed.encode()).decode() == hashed
    assert loaded(boxed(files, f"root-password-hashed: '{HASH}'")).firstboot.identity() \
        .root_hash == HASH
    # nothing shows a secret: the spec, its first-boot part, the identity create gets
    assert secrets_in(repr(a) + repr(identity)) == []


def test_bad_values_are_all_said_with_their_lines(files):
    (files / "id").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n")
    (files / "empty").write_text("\n")
    _stack, problems = load(
        "containers:\n"
        f"  a:\n    ssh-key: {files}/id\n    timezone: ../etc/passwd\n"
        "    locale: 'en US'\n    root-password-hashed: hunter2\n"
        f"  b:\n    root-password-file: {files}/empty\n    ssh_key: {files}/none.pub\n"
        f"  c:\n    root-password-hashed: '{HASH}'\n    root-password-file: {files}/pw\n"
        f"  d:\n    ssh-key: {files}/k.pub\n    credential: [{SSH_KEY}=x]\n"
        "  e:\n    overlay: true\n    timezone: UTC\n"
        "  f:\n    timezone: [UTC]\n")
    assert problems == [
        f"f:3: containers.a.ssh-key: --ssh-key {files}/id is a private key: give its public "
        "key (the .pub file)",
        "f:4: containers.a.timezone: invalid time zone '../etc/passwd': expected a zoneinfo "
        "name such as Europe/Berlin or UTC",
        "f:5: containers.a.locale: invalid locale 'en US': expected a name such as "
        "en_US.UTF-8, de_DE.UTF-8 or C.UTF-8",
        "f:6: containers.a.root-password-hashed: invalid --root-password-hashed: expected a "
        "crypt(3) hash such as mkpasswd or openssl passwd -6 print ($y$..., $6$...)",
        f"f:8: containers.b.root-password-file: --root-password-file {files}/empty: the "
        "first line is empty or holds NUL",
        f"f:9: containers.b.ssh_key: cannot read the file of credential "
        f"ssh.authorized_keys.root: {files}/none.pub: No such file or directory",
        "f:12: containers.c.root-password-file: root-password-hashed and root-password-file: "
        "give one of them",
        f"f:14: containers.d.ssh-key: ssh-key and credential {SSH_KEY}=... both give "
        f"credential {SSH_KEY}: give one of them",
        "f:17: containers.e.overlay: timezone: written into the tree, and an overlay's base "
        "is shared: not with overlay",
        "f:20: containers.f.timezone: expected a value, not a list",
    ]
    assert not any(secrets_in(p) for p in problems)


def test_unknown_keys_are_told_the_first_boot_keys():
    _stack, problems = load("containers:\n  a:\n    tz: UTC\n")
    assert "ssh-key, root-password-hashed, root-password-file, timezone, locale" \
        in problems[0]


def test_the_record_holds_digests_never_a_secret(files):
    text = boxed(files, f"ssh-key: {files}/k.pub", f"root-password-hashed: '{HASH}'",
                 "timezone: UTC", "credential: [api.token=hunter2]")
    kept = json.dumps(loaded(text).record())
    assert secrets_in(kept) == [] and "api.token" in kept
    said = json.loads(kept)["firstboot"]
    assert said["timezone"] == "UTC" and said["ssh-key"].startswith("sha256:")
    assert said["root-password-hashed"].startswith("scrypt:")
    # the same value gives the same digest at the next apply; another value another one
    assert loaded(text).record() == json.loads(kept)
    other = loaded(text.replace("x" * 86, "y" * 86)).record()["firstboot"]
    assert other["root-password-hashed"] != said["root-password-hashed"]
    # a password's digest is salted with the container's name: not one table for all
    pw = boxed(files, f"root-password-file: {files}/pw")
    one = loaded(pw).firstboot.record["root-password-file"]
    stack, _ = load(pw.replace("  a:\n", "  b:\n"))
    assert stack.containers["b"].firstboot.record["root-password-file"] != one
    assert loaded(pw).firstboot.record["root-password-file"] == one


# ---------------------------------------------------------------- the plan

class Bus(FakeBus):
    def list_units(self, patterns=()):
        return [{"name": "systemd-nspawn@a.service", "active_state": "active"}]


def made_from_file(paths, files, text):
    """Container a as apply made it from text: its settings, and the stack's record."""
    a = loaded(text)
    paths.tree("a").mkdir(parents=True)
    # its settings (the credentials' values in the store, as create saves them)
    save_config(paths, "a", ContainerConfig(**{f: getattr(a.config, f) for f in (
        "network", "timezone_mode", "start_timeout", "memory_max", "credentials")},
        stack="st"))
    kept = record.Record("st", {"a": a.record()})
    record.write(paths, kept)
    return kept


def plan_of(paths, text):
    stack, problems = load(text)
    assert problems == []
    return plan.make(context(paths, Bus()), stack, record.read(paths, "st"), False)


def test_a_changed_first_boot_key_is_said_not_done(paths, files):
    first = boxed(files, f"ssh-key: {files}/k.pub", f"root-password-file: {files}/pw",
                  "timezone: Europe/Berlin", "locale: C.UTF-8")
    made_from_file(paths, files, first)
    same = plan_of(paths, first)
    assert (same.steps, same.warnings) == ([], [])
    changed = (first.replace("Europe/Berlin", "UTC").replace("k.pub", "other.pub")
               .replace("    locale: C.UTF-8\n", ""))
    (files / "pw").write_text("another one\n")
    p = plan_of(paths, changed)
    # no step (not the credential's set, not a recreate): the tree keeps its own
    assert p.steps == []
    assert p.warnings == [
        "a: the file changed first-boot keys (ssh-key, root-password-file, timezone, "
        "locale), which are used only when its tree is made: a keeps what it was made with; "
        "to make it again with the file's (its data lost): nspawnctl remove a, then apply"]
    # a create-only key changed too: the tree is made again, with the file's keys
    p = plan_of(paths, changed.replace("network: none", "network: none\n    from: scratch"))
    assert [s.action for s in p.steps] == [plan.RECREATE, plan.START] and p.warnings == []


def test_a_credential_beside_ssh_key_is_still_a_setting(paths, files):
    first = boxed(files, f"ssh-key: {files}/k.pub", "credential: [api.token=one]")
    made_from_file(paths, files, first)
    p = plan_of(paths, first.replace("=one", "=two"))
    assert [s.text() for s in p.steps] == ["change a: credential", "restart a: for credential"]
    assert [c.name for c in p.steps[0].changes["credentials"]] == ["api.token", SSH_KEY]


def test_apply_keeps_the_record_of_what_the_tree_was_made_with(paths, files, monkeypatch):
    first = boxed(files, "timezone: Europe/Berlin", "memory: 64M")
    kept = made_from_file(paths, files, first)
    stack, _ = load(first.replace("Europe/Berlin", "UTC").replace("64M", "96M"))
    p = plan.make(context(paths, Bus()), stack, kept, False)
    assert [s.action for s in p.steps] == [plan.CHANGE]
    monkeypatch.setattr(reconfigure, "set_config", lambda *a, **k: [])
    apply._take(context(paths, Bus()), stack, kept, p.steps[0], ())
    assert record.read(paths, "st").containers["a"]["firstboot"] == {
        "timezone": "Europe/Berlin"}
    apply._finish(paths, stack, kept, p)
    assert record.read(paths, "st").containers["a"]["firstboot"] == {
        "timezone": "Europe/Berlin"}
    # a tree made by the apply is recorded with the file's
    recreate = plan.Step(plan.CREATE, "a")
    monkeypatch.setattr(apply, "_create", lambda ctx, stack, name: None)
    apply._take(context(paths, Bus()), stack, kept, recreate, ())
    apply._finish(paths, stack, kept, p)
    assert record.read(paths, "st").containers["a"]["firstboot"] == {"timezone": "UTC"}


def test_create_is_given_the_identity_and_the_key(paths, files, monkeypatch):
    stack, _ = load(boxed(files, f"ssh-key: {files}/k.pub", f"root-password-hashed: '{HASH}'",
                          "locale: C.UTF-8", "from: scratch", "add: [/bin/true]"))
    seen = {}
    monkeypatch.setattr(create, "create", lambda ctx, name, source, cfg, request, **kw:
                        seen.update(cfg=cfg, **kw))
    apply._create(context(paths, Bus()), stack, "a")
    assert seen["identity"].root_hash == HASH and seen["identity"].locale == "C.UTF-8"
    assert seen["cfg"].stack == "st" and seen["cfg"].timezone_mode is None
    assert [c.name for c in seen["cfg"].credentials] == [SSH_KEY]
    # without first-boot keys create gets none (an empty identity is not written)
    stack, _ = load(boxed(files, "from: scratch", "add: [/bin/true]"))
    apply._create(context(paths, Bus()), stack, "a")
    assert seen["identity"] is None


# ---------------------------------------------------------------- spec

def test_spec_gives_the_keys_back_but_never_a_password(paths, files):
    first = boxed(files, f"ssh-key: {files}/k.pub", f"root-password-hashed: '{HASH}'",
                  "timezone: Europe/Berlin", "credential: [api.token=one]")
    made_from_file(paths, files, first)
    store = paths.state / "credentials/a"
    save = record.read(paths, "st")
    save.containers["a"]["create"] = {"from": "scratch"}
    record.write(paths, save)
    made = spec.spec(context(paths, Bus()), ["a"])
    doc = yaml.safe_load(made.text())["containers"]["a"]
    assert doc["ssh-key"] == f"{store}/{SSH_KEY}" and doc["timezone"] == "Europe/Berlin"
    assert doc["credential"] == [f"api.token=@{store}/api.token"]
    assert "root-password-hashed" not in doc and secrets_in(made.text()) == []
    assert made.warnings == [
        "a was made with root-password-hashed, which is not in this file: a root password "
        "is never written out (its hash is in the tree's /etc/shadow); add the key by hand "
        "for a container made again"]
    # applied to its own stack, the spec changes nothing (the password's absence is said)
    p = plan_of(paths, made.text())
    assert p.steps == [] and "first-boot keys (root-password-hashed)" in p.warnings[0]


def test_spec_of_a_container_whose_one_credential_is_its_key(paths, files):
    made_from_file(paths, files, boxed(files, f"ssh-key: {files}/k.pub", "from: scratch"))
    save = record.read(paths, "st")
    save.containers["a"]["create"] = {"from": "scratch"}
    record.write(paths, save)
    doc = yaml.safe_load(spec.spec(context(paths, Bus()), ["a"]).text())["containers"]["a"]
    assert "credential" not in doc and doc["ssh-key"].endswith(f"/credentials/a/{SSH_KEY}")


def test_apply_says_it_on_stderr_and_in_json_and_shows_no_secret(paths, files, monkeypatch):
    from click.testing import CliRunner

    from nspawnctl.cli import App, cli
    first = boxed(files, f"root-password-file: {files}/pw", "timezone: UTC")
    made_from_file(paths, files, first)
    (files / "st.yaml").write_text(first.replace("UTC", "Europe/Berlin"))
    ctx = context(paths, Bus())
    monkeypatch.setattr(App, "ctx", property(lambda self: ctx))
    for json_flag in ([], ["--json"]):
        r = CliRunner(mix_stderr=False).invoke(cli, ["apply", "-f", str(files / "st.yaml"),
                                                      "--dry-run", *json_flag])
        assert r.exit_code == 0, r.output  # nothing to do: the plan has no step
        assert "warning: a: the file changed first-boot keys (timezone), which are used " \
            "only when its tree is made" in r.stderr
        assert secrets_in(r.stdout + r.stderr) == []
    assert json.loads(r.stdout)["warnings"] == [r.stderr.strip()[len("warning: "):]]
