"""spec on the real systemd (issue 29): `spec NAME...` prints the stack file that `apply`
turns back into the same containers.  The round trip: spec, remove, apply the file, spec
again gives the same file, and the new containers' settings (status --json) are the old
ones'; for containers made by hand with create (limits, a port, env, ordering, a network of
their own, enabled) and for a stack's container from an OCI image whose Env the file must
not repeat.  A container whose making nspawnctl did not record is one line."""

import json
import shutil

import pytest
import yaml

from nspawnctl.settings.model import SETTINGS
from tests.integration.test_oci_containers import busybox_layer, oci_archive

pytestmark = pytest.mark.integration

DIR = "/root/spec-test"
HTTPD = "/bin/busybox httpd -f -p 80 -h /www"
IMAGE_ENV = ["PATH=/bin:/usr/bin", "FOO=bar baz"]  # test_oci_containers.run_config's
# What a new container cannot have the same: when it was made, and which stack made it.
NOT_COMPARED = {"created", "stack"}


def settings(nspawnctl, name: str) -> dict:
    """Every setting status --json shows, and whether it runs and starts at boot."""
    shown = json.loads(nspawnctl("status", name, "--json").stdout)
    return {**{s.public: shown[s.public] for s in SETTINGS if s.public not in NOT_COMPARED},
            "state": shown["state"], "enabled": shown["enabled"]}


@pytest.fixture
def gone(nspawnctl):
    """Containers, networks and stacks to remove at the end, whatever happened."""
    made: dict[str, list[str]] = {"containers": [], "networks": [], "stacks": []}
    yield made
    for name in made["stacks"]:
        nspawnctl("apply", "-f", "-", "--prune", input=f"name: {name}\n", check=False)
    if made["containers"]:
        nspawnctl("remove", "--force", *made["containers"], check=False)
    for name in made["networks"]:
        nspawnctl("network", "remove", name, check=False)


def test_containers_made_by_hand_round_trip(host, nspawnctl, gone):
    host.run(["mkdir", "-p", f"{DIR}/www"])
    gone["containers"] += ["spc-web", "spc-db"]
    gone["networks"].append("spc")
    gone["stacks"].append("handmade")
    nspawnctl("network", "create", "spc", "--subnet", "203.0.113.0/24")
    scratch = ["--from", "scratch", "--add", "/bin/busybox", "--add", f"{DIR}/www:/www",
               "--cmd", HTTPD]
    nspawnctl("create", "spc-db", *scratch, "--network", "spc", "--tasks", "64")
    nspawnctl("create", "spc-web", *scratch, "--network", "spc", "--memory", "64M",
              "--port", "18090:80", "--env", "MODE=prod", "--env", "GREETING=a b",
              "--after", "spc-db")
    nspawnctl("enable", "spc-web")
    nspawnctl("start", "spc-db")
    before = {n: settings(nspawnctl, n) for n in ("spc-db", "spc-web")}

    # web is named first: the file has db first all the same (apply makes it first)
    r = nspawnctl("spec", "spc-web", "spc-db", "--name", "handmade")
    first = r.stdout
    assert r.stderr == "", str(r)
    assert yaml.safe_load(first) == {
        "name": "handmade",
        "networks": {"spc": {"subnet": "203.0.113.0/24"}},
        "containers": {
            "spc-db": {"from": "scratch", "add": ["/bin/busybox", f"{DIR}/www:/www"],
                       "cmd": HTTPD, "network": "spc", "tasks": 64},
            "spc-web": {"from": "scratch", "add": ["/bin/busybox", f"{DIR}/www:/www"],
                        "cmd": HTTPD, "network": "spc", "port": ["18090:80/tcp"],
                        "memory": "64M", "env": ["MODE=prod", "GREETING=a b"],
                        "after": ["spc-db"], "state": "stopped", "enabled": True}}}, first
    # without --name, containers made by hand have no stack: no name: (apply then names
    # the stack after the file)
    assert "name" not in yaml.safe_load(nspawnctl("spec", "spc-db").stdout)

    host.path(f"{DIR}/handmade.yaml").write_text(first)
    nspawnctl("remove", "--force", "spc-web", "spc-db")
    nspawnctl("network", "remove", "spc")
    nspawnctl("apply", "-f", f"{DIR}/handmade.yaml")

    assert nspawnctl("spec", "spc-web", "spc-db").stdout == first  # now stack handmade's
    assert {n: settings(nspawnctl, n) for n in before} == before


def test_a_stack_container_from_an_image_round_trips_without_its_image_env(
        host, nspawnctl, gone, tmp_path):
    archive = oci_archive(tmp_path, "spec-busybox", [busybox_layer()])
    host.run(["mkdir", "-p", DIR])
    shutil.copyfile(archive, host.path(f"{DIR}/image.tar"))
    gone["stacks"].append("ocistk")
    stack = (f"name: ocistk\ncontainers:\n  spo-app:\n    from: oci-archive:{DIR}/image.tar\n"
             "    env: [MODE=prod]\n    memory: 32M\n")
    host.path(f"{DIR}/ocistk.yaml").write_text(stack)
    nspawnctl("apply", "-f", f"{DIR}/ocistk.yaml")
    before = settings(nspawnctl, "spo-app")
    assert before["env"] == IMAGE_ENV + ["MODE=prod"] and before["state"] == "running"

    first = nspawnctl("spec", "spo-app").stdout
    assert yaml.safe_load(first) == {"name": "ocistk", "containers": {"spo-app": {
        "from": f"oci-archive:{DIR}/image.tar", "memory": "32M", "env": ["MODE=prod"]}}}
    # the spec applied to its own stack is what is there: nothing to do
    host.path(f"{DIR}/spec.yaml").write_text(first)
    r = nspawnctl("apply", "-f", f"{DIR}/spec.yaml", "--dry-run")
    assert r.stdout == "stack ocistk: nothing to do, the host matches the file\n", str(r)

    nspawnctl("remove", "--force", "spo-app")
    nspawnctl("apply", "-f", f"{DIR}/spec.yaml")
    assert nspawnctl("spec", "spo-app").stdout == first
    assert settings(nspawnctl, "spo-app") == before


def test_a_container_whose_making_was_not_recorded_is_one_line(host, nspawnctl, gone):
    gone["containers"].append("spc-old")
    nspawnctl("create", "spc-old", "--from", "scratch", "--add", "/bin/busybox")
    # as nspawnctl before made_from left it: the record line taken out of its .nspawn file
    host.run(["sed", "-i", "/^# nspawnctl-made-from:/d", "/etc/systemd/nspawn/spc-old.nspawn"])
    r = nspawnctl.fails("spec", "spc-old")
    assert r.error == ("nspawnctl: spc-old: how it was made is not known (it was made before "
                       "nspawnctl recorded create's --from and options)"), str(r)
    assert r.stdout == ""
