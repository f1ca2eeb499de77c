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
