"""The JSON interface for scripts (issue 30), on the real systemd: every command with --json
run as a user types it, on scratch busybox containers (they start in well under a second),
its stdout one JSON document of its kind (cli/jsonview.py, docs/json.md) and nothing else;
and the exit codes a script branches on for not found, conflict, usage and invalid input,
with --json as without: one line on stderr, nothing on stdout."""

import json

import pytest

from nspawnctl.cli import jsonview
from nspawnctl.errors import CONFLICT, INVALID_INPUT, NOT_FOUND, USAGE

pytestmark = pytest.mark.integration

BOX = ("--from", "scratch", "--add", "/bin/busybox", "--cmd", "/bin/busybox sleep 100000")
NAMES = ("jsn-a", "jsn-b", "jsn-c")
WORK = "/root/json-interface-test"


@pytest.fixture(scope="module")
def read(nspawnctl):
    """read(KIND, *ARGS): ARGS with --json, exit status 0, stdout of KIND (a list of them for
    [KIND]); the answer.  The module's containers and network go at its end."""
    def read(kind, *args, code=0):
        r = nspawnctl(*args, "--json", check=False)
        assert r.returncode == code, str(r)
        assert "Traceback" not in r.stderr, str(r)
        answer = json.loads(r.stdout)
        many = isinstance(kind, list)
        spec = [jsonview.schema(kind[0])] if many else jsonview.schema(kind)
        assert jsonview.check(spec, answer) == [], (args, answer)
        return answer

    yield read
    for name in reversed(NAMES):
        nspawnctl("remove", "--force", name, check=False)
    nspawnctl("network", "remove", "jsn-net", check=False)


def test_a_container_s_life_in_json(host, nspawnctl, read):
    assert read("version", "version")["schema_version"] == jsonview.SCHEMA_VERSION
    made = read("created", "create", "jsn-a", *BOX, "--memory", "64M")
    assert made["name"] == "jsn-a" and made["state"] is None
    assert read("configured", "set", "jsn-a", "--memory", "32M") == \
        {"name": "jsn-a", "changed": True, "running": False, "restart_for": []}

    assert read(["changed"], "start", "jsn-a") == \
        [{"name": "jsn-a", "state": "running", "changed": True}]
    assert read(["changed"], "start", "jsn-a")[0]["changed"] is False  # it ran already
    live = read("configured", "set", "jsn-a", "--memory", "48M", "--env", "A=b")
    assert live == {"name": "jsn-a", "changed": True, "running": True, "restart_for": ["env"]}
    assert read("configured", "set", "jsn-a", "--memory", "48M")["changed"] is False
    (row,) = [r for r in read(["container"], "list") if r["name"] == "jsn-a"]
    assert row["limits"]["memory"] == 48 << 20 and row["state"] == "running"
    assert read("status", "status", "jsn-a")["pending"] == {"env": ["A=b"]}
    assert read(["usage"], "stats", "jsn-a")[0]["pids"] >= 1
    assert read(["process"], "top", "jsn-a")[0]["command"] == \
        ["/bin/busybox", "sleep", "100000"]
    assert read(["killed"], "kill", "-s", "CONT", "jsn-a") == [{"name": "jsn-a", "signal": 18}]
    assert read(["enabled"], "enable", "jsn-a") == [{"name": "jsn-a", "enabled": True}]
    assert read(["enabled"], "disable", "jsn-a") == [{"name": "jsn-a", "enabled": False}]

    host.run(["mkdir", "-p", WORK])
    host.path(f"{WORK}/note").write_text("in json\n")
    assert read("copied", "cp", f"{WORK}/note", "jsn-a:/note") == \
        {"from": f"{WORK}/note", "to": "jsn-a:/note"}
    assert read("copied", "cp", "jsn-a:/note", f"{WORK}/back")["to"] == f"{WORK}/back"
    assert host.path(f"{WORK}/back").read_text() == "in json\n"

    (restarted,) = read(["changed"], "restart", "jsn-a")
    assert restarted == {"name": "jsn-a", "state": "running", "changed": True}
    assert read("status", "status", "jsn-a")["pending"] == {}  # env applied at the restart
    assert read(["changed"], "stop", "jsn-a") == \
        [{"name": "jsn-a", "state": "stopped", "changed": True}]
    assert read(["changed"], "stop", "jsn-a")[0]["changed"] is False


def test_snapshots_copies_and_removal_in_json(host, nspawnctl, read):
    if "jsn-a" not in {r["name"] for r in read(["container"], "list")}:
        read("created", "create", "jsn-a", *BOX)
    nspawnctl("stop", "jsn-a")
    host.run(["mkdir", "-p", WORK])
    snap = read("snapshot", "snapshot", "create", "jsn-a", "t1")
    assert snap["tag"] == "t1" and snap["name"] == "jsn-a"
    assert [s["tag"] for s in read(["snapshot"], "snapshots", "jsn-a")] == ["t1"]
    back = read("rolled_back", "rollback", "jsn-a", "t1")
    assert back["tag"] == "t1" and back["restarted"] is False
    assert read("cloned", "clone", "jsn-a", "jsn-b")["from"] == "jsn-a"
    assert read("renamed", "rename", "jsn-b", "jsn-c") == \
        {"name": "jsn-c", "from": "jsn-b", "enabled": False}
    exported = read("exported", "export", "jsn-c", f"{WORK}/c.tar", "--force")
    assert exported["format"] == "tar" and exported["entries"] > 0
    assert read("snapshot_removed", "snapshot", "rm", "jsn-a", "t1")["tag"] == "t1"

    net = read("network", "network", "create", "jsn-net")
    assert net["name"] == "jsn-net" and net["containers"] == []
    assert read(["network"], "network", "list")
    for image in read(["image"], "images"):
        assert image["key"]
    assert read("images_removed", "images", "prune", "--dry-run")["dry_run"] is True
    assert read("doctor", "doctor", code=nspawnctl("doctor", check=False).returncode)["checks"]
    assert isinstance(read("recovered", "recover")["done"], list)
    assert read("inspect", "inspect", "jsn-a")["name"] == "jsn-a"

    nspawnctl("start", "jsn-c")
    gone = read(["removed"], "remove", "--dry-run", "--force", "jsn-c")
    assert gone == [{"name": "jsn-c", "stopped": True, "dry_run": True, "snapshots": [],
                     "volumes": []}]
    assert read(["removed"], "remove", "--force", "jsn-c")[0]["stopped"] is True
    assert read(["network_removed"], "network", "remove", "jsn-net") == [{"name": "jsn-net"}]


@pytest.mark.parametrize("args, code", [
    (("start", "jsn-nosuch"), NOT_FOUND),
    (("status", "jsn-nosuch"), NOT_FOUND),
    (("snapshot", "rm", "jsn-a", "nosuch"), NOT_FOUND),
    (("images", "rm", "jsn-no-such-image"), NOT_FOUND),
    (("network", "remove", "jsn-nosuch"), NOT_FOUND),
    (("create", "jsn-a", *BOX), CONFLICT),
    (("set", "jsn-a", "--memory", "lots"), USAGE),
    (("start", "--no-such-option", "jsn-a"), USAGE),
    (("kill", "-s", "NOSUCH", "jsn-a"), USAGE),
])
def test_failures_are_a_line_and_their_code_with_json_too(nspawnctl, read, args, code):
    if "jsn-a" not in {r["name"] for r in read(["container"], "list")}:
        read("created", "create", "jsn-a", *BOX)
    r = nspawnctl.fails(*args, "--json")
    assert r.returncode == code, str(r)
    assert r.stdout == "", str(r)  # no JSON for a failure: the line and the code say it


def test_invalid_input_and_a_failure_partway(nspawnctl, read):
    r = nspawnctl("apply", "-f", "-", "--json", check=False,
                  input="name: jsn-bad\ncontainers:\n  jsn-x:\n    colour: red\n")
    assert r.returncode == INVALID_INPUT and r.stdout == "", str(r)
    # several names: the one that fails says so, what was done before it is on stdout
    read("network", "network", "create", "jsn-net")
    r = nspawnctl("network", "remove", "jsn-net", "jsn-nosuch", "--json", check=False)
    assert r.returncode == NOT_FOUND and "jsn-nosuch" in r.stderr, str(r)
    assert json.loads(r.stdout) == [{"name": "jsn-net"}], str(r)
