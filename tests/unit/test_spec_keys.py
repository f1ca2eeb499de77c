"""spec (stacks/spec.py): containers as the stack file apply turns back into them.  A spec of
a config, dumped as YAML and read back by model.load as apply reads it, gives the same
settings; the image's env, create's defaults and what --requires implies are left out; how
the tree was made comes back from the made_from record (ops/create.py) or the stack's record;
what cannot be known is one line per container."""

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from nspawnctl.cli import App, cli
from nspawnctl.errors import Error
from nspawnctl.network.containers import network_state
from nspawnctl.ops.create import made_from, make_request
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import CLI_SETTINGS, ContainerConfig
from nspawnctl.settings.networking import parse_port
from nspawnctl.settings.nspawnfile import parse_nspawn, render_nspawn
from nspawnctl.settings.values import parse_bind
from nspawnctl.stacks import model, record, spec, yamlfile
from tests.unit.fakes import FakeBus, context

SCRATCH = ("scratch", "--add", "/bin/busybox", "--cmd", "busybox sleep 1d")


def made(**settings) -> ContainerConfig:
    """A container as create makes it (a start timeout, a made_from record), and settings."""
    return ContainerConfig(**{"start_timeout": 300, "made_from": SCRATCH, **settings})


CONFIGS = {
    "limits": dict(memory_max=64 << 20, cpu_quota=1.5, tasks_max=256, restart="on-failure",
                   start_timeout=600, network="default"),
    "odd sizes": dict(memory_max=1000, cpu_quota=0.25, start_timeout=math.inf),
    "percent": dict(memory_max="50%"),
    "ports": dict(network="n1", ports=(parse_port("18080:80"),
                                       parse_port("127.0.0.1:5353:53/udp"))),
    "env and binds": dict(env=("A=b c", "MODE=prod", "Q='x\"y'"),
                          binds=(parse_bind("/srv/a:/a:ro"), parse_bind("/srv/b"))),
    "order": dict(after=("cache", "db"), requires=("db",)),
    "order, required first": dict(after=("db", "cache"), requires=("db",)),
    "host": dict(network="host", private_users=False, hostname="web.example"),
    "create's defaults": dict(network="default"),
}


def through_file(keys: dict, name: str = "c") -> ContainerConfig:
    """What apply makes of one container's keys: YAML text, read back as apply reads it."""
    doc, problems = yamlfile.parse(yamlfile.dump({"containers": {name: keys}}))
    stack, more = model.load(doc, "s")
    assert problems + more == []
    return stack.containers[name].config


def settings(cfg: ContainerConfig) -> dict:
    return {s.name: getattr(cfg, s.name) for s in CLI_SETTINGS}


@pytest.mark.parametrize("what", CONFIGS)
def test_a_spec_read_back_gives_the_same_settings(what):
    cfg = made(**CONFIGS[what])
    keys = spec.container_keys(cfg, None, (), running=True)
    assert settings(through_file(keys)) == settings(cfg)


def test_only_what_create_would_not_do_is_said():
    cfg = ContainerConfig(network="default", start_timeout=300, made_from=("debootstrap:bookworm",))
    assert spec.container_keys(cfg, None, (), running=True) == {}
    keys = spec.container_keys(ContainerConfig(
        network="default", start_timeout=300, memory_max=64 << 20, after=("cache", "db"),
        requires=("db",), made_from=SCRATCH), None, (), running=False, enabled=True)
    assert keys == {"from": "scratch", "add": ["/bin/busybox"], "cmd": "busybox sleep 1d",
                    "memory": "64M", "after": ["cache"], "requires": ["db"],
                    "state": "stopped", "enabled": True}
    assert list(keys)[:3] == ["from", "cmd", "add"]  # a file's order, as from a stack record


def test_the_image_env_is_left_out():
    cfg = made(env=("PATH=/usr/bin", "HOME=/root", "MODE=prod"))
    keys = spec.container_keys(cfg, None, ("PATH=/usr/bin", "HOME=/root"), running=True)
    assert keys["env"] == ["MODE=prod"]
    bare = made(env=("PATH=/usr/bin",))
    assert "env" not in spec.container_keys(bare, None, ("PATH=/usr/bin",), running=True)


def test_an_env_set_over_the_image_one_is_refused():
    cfg = made(env=("MODE=prod",))
    with pytest.raises(Error, match="does not begin with its image's"):
        spec.container_keys(cfg, None, ("PATH=/usr/bin",))


def test_an_unknown_image_env_falls_back_on_the_stack_record_or_is_refused():
    cfg = made(env=("PATH=/usr/bin", "MODE=prod"))
    stacked = {"create": {"from": "oci-archive:/i.tar"}, "settings": {"env": ["MODE=prod"]}}
    keys = spec.container_keys(cfg, stacked, None, running=True)
    assert keys == {"from": "oci-archive:/i.tar", "network": "veth", "env": ["MODE=prod"]}
    with pytest.raises(Error, match="env its image gave it is not known"):
        spec.container_keys(cfg, None, None)


def test_a_stack_container_gets_its_records_create_keys_as_the_file_said_them():
    cfg = made(made_from=("debootstrap:bookworm", "--include", "curl"))
    stacked = {"create": {"include": ["curl"], "from": "debootstrap:bookworm", "slim": True},
               "settings": {}}
    # exactly the record's: apply compares the next file's create keys with it (a recreate);
    # in the order a file has them (the record sorts them)
    keys = spec.container_keys(cfg, stacked, (), running=True)
    assert keys == {"from": "debootstrap:bookworm", "include": ["curl"], "slim": True,
                    "network": "veth"}
    assert list(keys) == ["from", "include", "slim", "network"]


def test_a_setting_create_always_gives_that_is_unset_is_refused():
    with pytest.raises(Error, match="--start-timeout is not set, and a stack file cannot "
                                    "say that \\(create sets 300\\)"):
        spec.container_keys(ContainerConfig(made_from=SCRATCH), None, ())


def test_a_container_without_made_from_is_refused():
    with pytest.raises(Error, match="how it was made is not known"):
        spec.container_keys(ContainerConfig(), None, ())


@pytest.mark.parametrize("source, options, overlay", [
    ("debootstrap:bookworm", {}, False),
    ("debootstrap:trixie", {"include": "curl,nginx-light", "mirror": "http://m.example/d",
                            "variant": "buildd", "arch": "arm64", "slim": False,
                            "bootstrapper": "debootstrap"}, True),
    ("scratch", {"adds": ("/bin/busybox", "/etc/x:/y"), "cmd": "busybox sh -c 'echo \"a b\"'"},
     False),
    ("docker://registry.example/a/b:1", {"boot": False, "platform": "linux/arm64",
                                         "pull_policy": "always", "tls_verify": False}, True),
    ("oci-archive:/srv/i.tar", {"boot": True, "cmd": "--log-level=debug"}, False),
])
def test_made_from_gives_back_the_request(paths, source, options, overlay):
    """made_from (what create records) read back as create keys, turned into a request as
    apply does (stacks/apply.py _create), gives the request the create was given; and the
    record survives the .nspawn file."""
    ctx = context(paths)
    request = make_request(ctx, **options)
    words = made_from(source, request, overlay)
    cfg = ContainerConfig(made_from=words)
    assert parse_nspawn(render_nspawn(cfg)).made_from == words
    keys = spec.parse_made_from(words)
    again = {model.CREATE_KEYS[k].option: v for k, v in keys.items()}
    assert again.pop("source", model.DEFAULT_SOURCE) == source
    assert again.pop("use_overlay", False) == overlay
    if "include" in again:
        again["include"] = ",".join(again["include"])
    assert make_request(ctx, **again) == request


def test_a_made_from_record_with_a_flag_create_does_not_take_is_said():
    with pytest.raises(Error, match="'--memory', which create does not take"):
        spec.parse_made_from(("scratch", "--memory", "1G"))
    with pytest.raises(Error, match="without a value"):
        spec.parse_made_from(("scratch", "--cmd"))


# ---------------------------------------------------------------- spec of a store

class Bus(FakeBus):
    def list_units(self, patterns):
        return [{"name": "systemd-nspawn@web.service", "active_state": "active"},
                {"name": "systemd-nspawn@db.service", "active_state": "active"}]


@pytest.fixture
def store(paths, monkeypatch):
    """db and web (web after db, a port, on network n1), both stack shop's and running; old
    (no made_from) and hand (made by create, stopped, enabled)."""
    network_state(paths).create("n1", "10.99.0.0/24")
    for name in ("db", "web", "old", "hand"):
        (paths.machines / name).mkdir(parents=True)
    save_config(paths, "web", ContainerConfig(
        network="n1", ports=(parse_port("18080:80"),), after=("db",), memory_max=64 << 20,
        stack="shop", made_from=SCRATCH, start_timeout=300))
    save_config(paths, "db", ContainerConfig(network="n1", stack="shop", made_from=SCRATCH,
                                             start_timeout=300))
    record.write(paths, record.Record("shop", {
        "web": {"create": {"from": "scratch", "add": ["/bin/busybox"]}, "settings": {}},
        "db": {"create": {"from": "scratch"}, "settings": {}}}))
    save_config(paths, "old", ContainerConfig(network="default"))
    save_config(paths, "hand", ContainerConfig(network="default", start_timeout=300,
                                               made_from=SCRATCH))
    (paths.units / "machines.target.wants").mkdir(parents=True)
    (paths.units / "machines.target.wants/systemd-nspawn@hand.service").symlink_to("/dev/null")
    ctx = context(paths, bus=Bus())
    monkeypatch.setattr(App, "ctx", property(lambda self: ctx))
    return ctx


def test_a_stacks_containers_come_dependencies_first_with_their_network(store):
    made = spec.spec(store, ["web", "db"])
    assert made.warnings == []
    assert yaml.safe_load(made.text()) == {
        "name": "shop", "networks": {"n1": {"subnet": "10.99.0.0/24"}},
        "containers": {
            "db": {"from": "scratch", "network": "n1"},
            "web": {"from": "scratch", "add": ["/bin/busybox"], "network": "n1",
                    "port": ["18080:80/tcp"], "memory": "64M", "after": ["db"]}}}
    assert list(yaml.safe_load(made.text())["containers"]) == ["db", "web"]


def test_name_is_the_one_stack_or_given_or_left_out(store):
    assert "name" not in spec.spec(store, ["web", "hand"]).doc
    assert spec.spec(store, ["hand"], "mine").doc["name"] == "mine"
    with pytest.raises(Error, match="stack name"):
        spec.spec(store, ["hand"], "Bad Name!")


def test_a_dependency_left_out_is_a_warning(store):
    assert spec.spec(store, ["web"]).warnings == [
        "web is ordered after db, which is not in this spec: apply needs it on the host"]


def test_the_cli_prints_the_file_and_refuses_with_one_line_per_container(store):
    runner = CliRunner()
    result = runner.invoke(cli, ["spec", "hand"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == {"containers": {"hand": {
        "from": "scratch", "add": ["/bin/busybox"], "cmd": "busybox sleep 1d",
        "state": "stopped", "enabled": True}}}
    result = runner.invoke(cli, ["spec", "old"])
    assert result.exit_code != 0 and result.output == ""
    assert isinstance(result.exception, Error)
    assert result.exception.message.startswith("old: how it was made is not known")
    result = runner.invoke(cli, ["spec", "nosuch"])
    assert isinstance(result.exception, Error) and "nosuch" in result.exception.message


def test_every_problem_is_said_at_once(store, paths):
    save_config(paths, "hand", ContainerConfig(env=("MODE=x",), image="oci-sha256-1",
                                               made_from=SCRATCH))
    (paths.images / "oci-sha256-1").mkdir(parents=True)
    (paths.images / "oci-sha256-1/meta.json").write_text(json.dumps({"env": ["PATH=/b"]}))
    with pytest.raises(Error) as caught:
        spec.spec(store, ["old", "hand"])
    lines = caught.value.message.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("old: how it was made") and lines[1].startswith("hand: its env")


def test_a_value_that_does_not_survive_the_file_is_an_error_not_a_lie(store, monkeypatch):
    """A mutant that spells --memory wrong is caught by spec's own check of its file."""
    original = spec.setting_value
    monkeypatch.setattr(spec, "setting_value", lambda s, v: "1K" if s.name == "memory_max"
                        else original(s, v))
    with pytest.raises(Error, match="web: --memory cannot be said in a stack file"):
        spec.spec(store, ["web", "db"])


def test_a_made_from_word_no_nspawn_line_can_hold_is_refused():
    """create records made_from before it makes anything (ops/create.py): a --cmd with a line
    break is refused there, not after a bootstrap."""
    with pytest.raises(Error, match="invalid create option 'a\\\\nb'"):
        ContainerConfig(made_from=("scratch", "--cmd", "a\nb"))


def test_a_container_made_without_its_images_check_says_health_cmd_none(store, paths):
    """Its image has a Healthcheck (its base's meta says so, as sources/oci/source.py keeps
    it) and the container was made with --health-cmd none: the spec says none, so apply
    makes a new one without the check too; with the check, or an image without one, the
    key is what it was."""
    (paths.images / "oci-sha256-1").mkdir(parents=True)
    (paths.images / "oci-sha256-1/meta.json").write_text(json.dumps(
        {"env": [], "health_check": True}))
    archive = ("oci-archive:/i.tar",)
    save_config(paths, "hand", ContainerConfig(image="oci-sha256-1", made_from=archive,
                                               start_timeout=300, boot=False))
    keys = spec.spec(store, ["hand"]).doc["containers"]["hand"]
    assert keys["health-cmd"] == "none"
    assert model.load(yamlfile.parse(yamlfile.dump({"containers": {"hand": keys}}))[0],
                      "s")[0].containers["hand"].settings["health_cmd"] == "none"
    save_config(paths, "hand", ContainerConfig(image="oci-sha256-1", made_from=archive,
                                               start_timeout=300, boot=False,
                                               health_cmd=("/bin/sh", "-c", "true")))
    assert spec.spec(store, ["hand"]).doc["containers"]["hand"]["health-cmd"] == "true"
    (paths.images / "oci-sha256-1/meta.json").write_text(json.dumps({"env": []}))
    save_config(paths, "hand", ContainerConfig(image="oci-sha256-1", made_from=archive,
                                               start_timeout=300, boot=False))
    assert "health-cmd" not in spec.spec(store, ["hand"]).doc["containers"]["hand"]
