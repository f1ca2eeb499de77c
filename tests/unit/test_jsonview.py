"""--json: one type per key everywhere (issue 34).  Every listing command runs for real on a
store with containers, a network, an image and a snapshot (the bus a fake), and what it
prints goes through its kind's schema (cli/jsonview.py): every key present, its type, lists
never null, times RFC 3339, limits values.  A key a command prints that its kind does not
have, or one of another type, fails here."""

import json
import time

import pytest
from click.testing import CliRunner

from nspawnctl.cli import App, cli, jsonview
from nspawnctl.errors import CONFLICT
from nspawnctl.network.containers import network_state
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.networking import parse_port
from nspawnctl.store.snapshots import snapshot_dir
from tests.unit.fakes import FakeBus, context


class Bus(FakeBus):
    """systemd and machined with c1 running (an address, a leader, memory in use) and c2
    stopped."""

    def list_units(self, patterns):
        return [{"name": "systemd-nspawn@c1.service", "active_state": "active"}]

    def list_machines(self):
        return [{"name": "c1"}]

    def machine_addresses(self, name):
        return ["192.0.2.5"]

    def unit_properties(self, unit):
        return {"ActiveState": "active" if "c1" in unit else "inactive", "SubState": "running"}

    def machine_properties(self, name):
        return {"Leader": 4242} if name == "c1" else {}

    def get_all(self, *args):
        return {"MemoryCurrent": 1 << 20}


@pytest.fixture
def store(paths, monkeypatch):
    """c1: limits, a port, an env, created now, on a network of its own; c2: nothing set and
    no creation time (made before nspawnctl kept one); a network, a base tree, a snapshot
    whose meta.json is an older nspawnctl's (a float time, a key no longer shown)."""
    network_state(paths).create("n1")
    (paths.machines / "c1/etc").mkdir(parents=True)
    (paths.machines / "c2").mkdir(parents=True)
    (paths.machines / "c1/etc/os-release").write_text('PRETTY_NAME="Debian"\n')
    save_config(paths, "c1", ContainerConfig(
        network="n1", memory_max=512 << 20, cpu_quota=1.5, ports=(parse_port("8080:80"),),
        env=("A=b",), image="debootstrap-x", created="2026-12-06T12:00:00Z"))
    network_state(paths).lease("n1", "c1")
    save_config(paths, "c2", ContainerConfig(network="none"))
    (paths.images / "debootstrap-x").mkdir(parents=True)
    (paths.images / "debootstrap-x/meta.json").write_text(json.dumps(
        {"key": "debootstrap-x", "source": "debootstrap:bookworm", "suite": "bookworm",
         "size": 1000, "created": time.time()}))
    snap = snapshot_dir(paths, "c1", "t1")
    snap.mkdir(parents=True)
    (snap / "meta.json").write_text(json.dumps(
        {"running": False, "method": "reflink", "tag": "t1", "name": "c1", "size": 12,
         "created": 1764000000.5, "frozen": False}))
    monkeypatch.setattr(App, "ctx", property(lambda self: context(paths, bus=Bus())))
    return paths


def run_json(*args):
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("args, kind", [
    (["list"], "container"), (["images"], "image"), (["network", "list"], "network"),
    (["snapshot", "list", "c1"], "snapshot")])
def test_every_listings_json_is_its_kinds(store, args, kind):
    rows = run_json(*args)
    assert rows and isinstance(rows, list)
    spec = jsonview.schema(kind)
    for row in rows:
        assert jsonview.check(spec, row) == [], row
        assert list(row) == list(spec)  # every entry the same keys, in one order


@pytest.mark.parametrize("name", ["c1", "c2"])
def test_status_json_is_a_containers_and_more(store, name):
    record = run_json("status", name)
    assert jsonview.check(jsonview.schema("status"), record) == [], record


def test_values_as_a_script_reads_them(store):
    rows = {r["name"]: r for r in run_json("list")}
    c1, c2 = rows["c1"], rows["c2"]
    assert c1["limits"] == {"memory": 512 << 20, "cpus": 1.5, "tasks": None}
    assert c1["created"] == "2026-12-06T12:00:00Z" and c2["created"] is None
    assert c1["port"] == ["8080:80/tcp"] and c2["port"] == [] and c2["address"] == []
    assert c1["address"] and c1["state"] == "running"
    status = run_json("status", "c1")
    assert (status["memory"], status["cpus"], status["env"]) == (512 << 20, 1.5, ["A=b"])
    assert "memory_max" not in status and "cpu_quota" not in status
    (image,) = run_json("images")
    assert image["containers"] == ["c1"] and image["created"].endswith("Z")
    (net,) = run_json("network", "list")
    assert net["containers"] == ["c1"]
    (snap,) = run_json("snapshot", "list", "c1")
    assert snap["created"] == "2025-11-24T16:00:00Z" and "frozen" not in snap


def test_the_same_thing_has_the_same_keys_and_types_everywhere():
    container, status = jsonview.schema("container"), jsonview.schema("status")
    assert all(repr(status[k]) == repr(v) for k, v in container.items())
    for kind in jsonview.KINDS:  # a key an operation left out is there all the same
        assert list(jsonview.view(kind, {})) == list(jsonview.schema(kind))
    # a key shared by kinds has one type in all of them ('created' a time, 'containers' names)
    seen: dict = {}
    for kind in jsonview.KINDS:
        for key, spec in jsonview.schema(kind).items():
            if isinstance(spec, dict):
                continue
            seen.setdefault(key, {}).setdefault(repr(spec).replace("Null(", "").rstrip(")"),
                                                []).append(kind)
    mixed = {key: kinds for key, kinds in seen.items() if len(kinds) > 1}
    assert mixed == {}, mixed


def test_view_refuses_a_key_its_kind_does_not_have():
    with pytest.raises(KeyError):
        jsonview.view("network", {"name": "n1", "members": 3})
    assert jsonview.view("network", {"name": "n1"})["containers"] == []
    assert jsonview.view("snapshot", {"created": 0.0})["created"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("spec, value", [
    ([str], None), (jsonview.TIME, 1764000000.0), (int, True), (int, 1.5),
    (jsonview.NUMBER, "1.5"), ({"a": int}, {}), ({"a": int}, {"a": 1, "b": 2}),
    (jsonview.TIME, "2026-12-06 12:00:00")])
def test_check_finds_each_kind_of_wrong(spec, value):
    assert jsonview.check(spec, value) != []


# ------------------------------------------------------------ every command's --json (issue 30)

def run_kind(args, kind, many=False):
    """ARGS with --json: stdout is one JSON document, KIND's (a list of them when MANY), and
    nothing else."""
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    spec = [jsonview.schema(kind)] if many else jsonview.schema(kind)
    assert jsonview.check(spec, answer) == [], answer
    return answer


@pytest.fixture
def quiet_ops(store, monkeypatch):
    """What needs a real systemd (start, stop, kill, enable) answers as it would: the
    operations' own tests and tests/integration/test_json_interface.py run them for real."""
    from nspawnctl.ops import lifecycle
    monkeypatch.setattr(lifecycle, "started", lambda ctx, name, wait=True, timeout=0:
                        ("running", name == "c2"))
    monkeypatch.setattr(lifecycle, "stop", lambda ctx, name, timeout=0: name == "c1")
    monkeypatch.setattr(lifecycle, "restart", lambda ctx, name, timeout=0: "running")
    for name in ("kill", "enable", "disable"):
        monkeypatch.setattr(lifecycle, name, lambda *args: None)
    return store


@pytest.mark.parametrize("args, kind, many", [
    (["start", "c1", "c2"], "changed", True), (["stop", "c1", "c2"], "changed", True),
    (["restart", "c1"], "changed", True), (["kill", "-s", "HUP", "c1"], "killed", True),
    (["enable", "c1"], "enabled", True), (["disable", "c1", "c2"], "enabled", True)])
def test_lifecycle_commands_json_is_their_kinds(quiet_ops, args, kind, many):
    answer = run_kind(args, kind, many)
    assert [entry["name"] for entry in answer] == [a for a in args[1:] if a[0] == "c"]


def test_what_lifecycle_commands_say_in_json(quiet_ops):
    assert run_kind(["start", "c1", "c2"], "changed", True) == [
        {"name": "c1", "state": "running", "changed": False},
        {"name": "c2", "state": "running", "changed": True}]
    assert [e["changed"] for e in run_kind(["stop", "c1", "c2"], "changed", True)] == \
        [True, False]
    assert run_kind(["kill", "-s", "HUP", "c1"], "killed", True) == \
        [{"name": "c1", "signal": 1}]
    assert run_kind(["disable", "c2"], "enabled", True) == [{"name": "c2", "enabled": False}]


def test_a_failure_partway_prints_what_was_done_and_its_code(quiet_ops, monkeypatch):
    from nspawnctl.errors import Conflict
    from nspawnctl.ops import lifecycle

    def start(ctx, name, wait=True, timeout=0):
        if name == "c2":
            raise Conflict("c2 is busy")
        return "running", True
    monkeypatch.setattr(lifecycle, "started", start)
    result = CliRunner().invoke(cli, ["start", "c1", "c2", "--json"])
    assert result.exception.exit_code == CONFLICT and str(result.exception) == "c2 is busy"
    assert json.loads(result.stdout) == [{"name": "c1", "state": "running", "changed": True}]
    first = CliRunner().invoke(cli, ["start", "c2", "c1", "--json"])
    assert first.exception.exit_code == CONFLICT and first.stdout == ""  # none done: no JSON


def test_set_remove_clone_rename_json_for_real_on_the_store(store, monkeypatch):
    # the operations themselves, on the store's files (the bus a fake); c1's network is not
    # the host's to change under a relocated root, and a dry run changes none of it anyway
    from nspawnctl.network import containers
    monkeypatch.setattr(containers, "require_host_network", lambda paths: None)
    done = run_kind(["set", "c2", "--memory", "64M", "--tasks", "50"], "configured")
    assert done == {"name": "c2", "changed": True, "running": False, "restart_for": []}
    assert run_kind(["set", "c2", "--memory", "64M"], "configured")["changed"] is False
    gone = run_kind(["remove", "--dry-run", "c1", "c2"], "removed", many=True)
    assert [(g["name"], g["dry_run"]) for g in gone] == [("c1", True), ("c2", True)]
    assert gone[0]["snapshots"] == [{"tag": "t1", "size": 12}]
    assert run_kind(["clone", "c2", "c3"], "cloned") == \
        {"name": "c3", "from": "c2", "method": run_kind(["clone", "c2", "c4"],
                                                       "cloned")["method"]}
    assert run_kind(["rename", "c4", "c5"], "renamed") == \
        {"name": "c5", "from": "c4", "enabled": False}
    assert run_kind(["remove", "c5"], "removed", many=True)[0]["dry_run"] is False


def test_snapshot_images_cp_recover_version_json_for_real_on_the_store(store, tmp_path):
    assert run_kind(["snapshot", "rm", "c1", "t1"], "snapshot_removed") == \
        {"name": "c1", "tag": "t1", "size": 12}
    pruned = run_kind(["images", "prune", "--dry-run"], "images_removed")
    assert pruned["dry_run"] is True and pruned["trees"] == []  # c1 uses the only tree
    refused = CliRunner().invoke(cli, ["images", "rm", "debootstrap-x", "--json"])
    assert refused.exception.exit_code == CONFLICT and refused.stdout == ""  # the line alone
    source = tmp_path / "note"
    source.write_text("hello\n")
    assert run_kind(["cp", str(source), "c2:/note"], "copied") == \
        {"from": str(source), "to": "c2:/note"}
    assert run_kind(["recover"], "recovered") == {"done": []}
    assert run_kind(["version"], "version")["schema_version"] == jsonview.SCHEMA_VERSION


def test_doctor_and_network_json_are_their_kinds(store, monkeypatch):
    from nspawnctl.network.model import Network
    from nspawnctl.ops import doctor, network
    monkeypatch.setattr(doctor, "run_checks", lambda paths: [
        doctor.Check("nftables", True, doctor.ERROR, "found"),
        doctor.Check("inotify", False, doctor.WARNING, "128 instances", fix="sysctl -w ...")])
    assert run_kind(["doctor"], "doctor")["checks"][1]["fix"] == "sysctl -w ..."
    # the host's bridges are not a unit test's to make: the operations answer as they would
    monkeypatch.setattr(network, "create_network",
                        lambda ctx, name, subnet: Network.make(name, subnet))
    monkeypatch.setattr(network, "remove_network", lambda ctx, name: None)
    assert run_kind(["network", "create", "n2", "--subnet", "198.51.100.0/24"], "network") == {
        "name": "n2", "subnet": "198.51.100.0/24", "gateway": "198.51.100.1",
        "bridge": "nsc-n2", "containers": []}
    assert run_kind(["network", "remove", "n2", "n3"], "network_removed", many=True) == \
        [{"name": "n2"}, {"name": "n3"}]


# ------------------------------------------------------------ every command, and the page

# The commands without --json, and why: their output is the container's (a program's, a
# terminal, a journal), or skopeo's, or they are the boot units' (hidden); a group's is its
# subcommands'; spec's is a stack file (YAML apply reads).  docs/json.md says the same.
WITHOUT_JSON = {"exec", "shell", "logs", "login", "logout", "spec", "install-units",
                "install-extras", "health-scheduler", "network", "network apply", "network watch",
                "network attach", "snapshot", "volume"}


def every_command():
    """(path, command) for every command and subcommand nspawnctl has, hidden ones too."""
    import click

    from nspawnctl.cli import COMMANDS

    def walk(path, command):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(f"{path} {name}", sub)
    ctx = click.Context(cli)
    for name in COMMANDS:
        yield from walk(name, cli.get_command(ctx, name))


def printed_by() -> dict[str, str]:
    """command -> the kind it prints, from jsonview.PRINTED_BY's text ('network list: [...];
    network create')."""
    import re
    found = {}
    for kind, text in jsonview.PRINTED_BY.items():
        for command in re.split(r"[;,]", re.sub(r"\([^)]*\)|: \[\.\.\.\]", "", text)):
            assert command.strip() not in found, command
            found[command.strip()] = kind
    return found


def test_every_command_has_json_and_a_kind_or_says_why_not():
    with_json = {path for path, command in every_command()
                 if any("--json" in getattr(p, "opts", ()) for p in command.params)}
    every = {path for path, _command in every_command()}
    kinds = printed_by()
    aliases = {"snapshots": "snapshot list", "rollback": "snapshot rollback"}
    # every command that has --json prints a kind; every kind's command has --json
    assert sorted(with_json - set(kinds) - set(aliases)) == []
    assert sorted(set(kinds) - with_json) == []
    assert sorted(every - with_json) == sorted(WITHOUT_JSON)
    assert set(kinds.values()) == set(jsonview.KINDS)


def test_docs_json_md_lists_every_kind_as_the_code_defines_it():
    # a kind changed (a key added, renamed, retyped) without docs/json.md fails here: run
    # `python -m nspawnctl.cli.jsonview` and put its output in the page (and if a key was
    # renamed, retyped or removed, the next SCHEMA_VERSION: docs/json.md#versions)
    from pathlib import Path
    page = (Path(__file__).resolve().parents[2] / "docs/json.md").read_text()
    assert jsonview.BEGIN in page and jsonview.END in page
    shown = page[page.index(jsonview.BEGIN):page.index(jsonview.END) + len(jsonview.END)]
    assert shown + "\n" == jsonview.reference()
    assert f"Schema version: **{jsonview.SCHEMA_VERSION}**" in shown


def test_the_reference_shows_each_type_as_a_reader_needs_it():
    text = jsonview.reference()
    assert "| `limits.memory` | bytes (integer) or null |" in text
    assert "| `steps[].why` | text or null |" in text
    assert "| `created` | time (RFC 3339 UTC text) |" in text
    assert "| `command` | list of text |" in text
