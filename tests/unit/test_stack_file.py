"""Stack files (stacks/yamlfile.py, model.py) and the plan (plan.py) without a host: the file
bounded and checked whole, with lines; the plan's steps from what the store holds."""

import dataclasses
import os

import pytest

from nspawnctl.errors import Error, InvalidInput
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import CLI_SETTINGS, ContainerConfig
from nspawnctl.stacks import model, plan, record, yamlfile
from nspawnctl.stacks.apply import load_file
from tests.unit.fakes import FakeBus, context


def load(text: str, name: str = "st"):
    doc, problems = yamlfile.parse(text)
    stack, more = model.load(doc, name)
    return stack, [p.text("f") for p in problems + more]


# ---------------------------------------------------------------- the file, bounded

def test_aliases_cannot_expand_past_the_bound():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdef":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join(['*' + prev] * 10)}]\n"
    with pytest.raises(InvalidInput, match="expands to more than 100000 values"):
        yamlfile.parse(bomb)


def test_a_large_file_is_refused_before_it_is_read_whole(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("containers:\n" + "#" * yamlfile.MAX_BYTES)
    with pytest.raises(InvalidInput, match="larger than 1024 KiB"):
        load_file(str(big))


@pytest.mark.parametrize("text, said", [
    ("a: [", "line 1: not valid YAML"),
    ("- a\n- b\n", "line 1: the file must be a mapping"),
    ("", "the file is empty"),
    ("a: 1\n---\nb: 2\n", "not valid YAML"),
])
def test_what_is_not_a_stack_file_is_one_line(text, said):
    with pytest.raises(InvalidInput) as error:
        yamlfile.parse(text)
    assert said in error.value.message


def test_python_tags_are_not_loaded_and_duplicates_are_said():
    doc, problems = yamlfile.parse("a: !!python/object/apply:os.system [true]\n"
                                   "c: !!python/name:os.system x\nb: 1\nb: 2\n")
    assert doc["a"] is None and doc["c"] is None
    said = [p.text("f") for p in problems]
    assert said[0] == ("f:1: a: a value tagged 'tag:yaml.org,2002:python/object/apply:"
                       "os.system': a stack file holds plain lists and mappings")
    assert said[1].startswith("f:2: c: bad value: could not determine a constructor")
    assert said[2] == "f:4: b: given twice (also on line 3)"


def test_merge_keys_are_defaults_a_mapping_overrides():
    doc, problems = yamlfile.parse("x: &d\n  memory: 64M\n  cpus: 1\n"
                                   "c:\n  <<: *d\n  memory: 128M\n")
    assert problems == []
    assert doc["c"] == {"memory": "128M", "cpus": 1}
    assert doc["c"].line_of("memory") == 6 and doc["c"].line_of("cpus") == 3


# ---------------------------------------------------------------- the file, checked

def test_every_setting_of_the_table_is_a_key():
    keys = set(model.SETTING_KEYS)
    assert keys == {s.flag[2:] for s in CLI_SETTINGS if s.flag}
    assert {"memory", "port", "env", "after", "network", "start-timeout"} <= keys
    assert not keys & set(model.CREATE_KEYS) and not keys & set(model.RUN_KEYS)


def test_a_file_makes_the_configs_create_would():
    stack, problems = load("name: shop\nnetworks:\n  backend:\n    subnet: 198.51.100.0/24\n"
                           "containers:\n  db:\n    include: [postgresql]\n"
                           "    network: backend\n    memory: 512M\n    enabled: true\n"
                           "  web:\n    from: docker://registry.example/shop/web:1.4\n"
                           "    network: backend\n    port: ['8080:80']\n    after: [db]\n"
                           "    env: [MODE=prod]\n    state: stopped\n    start_timeout: 10\n")
    assert problems == []
    assert stack.name == "shop" and stack.networks["backend"].subnet == "198.51.100.0/24"
    db, web = stack.containers["db"], stack.containers["web"]
    assert db.create == {"include": ["postgresql"]} and db.enabled and db.state == "running"
    assert db.config.memory_max == 512 << 20 and db.config.network == "backend"
    assert db.config.start_timeout == 300  # create's default, as `create` gives it
    assert web.source == "docker://registry.example/shop/web:1.4" and web.state == "stopped"
    assert web.config.after == ("db",) and web.config.env == ("MODE=prod",)
    assert web.config.start_timeout == 10  # start_timeout spelled with _ is the same key
    assert model.order(stack) == ["db", "web"]


def test_every_problem_at_once_with_line_and_key():
    _stack, problems = load("name: st\ncolour: red\nnetworks:\n  Bad_Net: {}\n"
                            "containers:\n"
                            "  a:\n    memory: lots\n    enabled: yes please\n    cpus: [1]\n"
                            "  b:\n    port: ['8080:80']\n"
                            "  c:\n    port: ['8080:80']\n    from: 1\n"
                            "  d:\n    after: [e]\n  e:\n    requires: [d]\n"
                            "  -bad:\n    restart: sometimes\n")
    text = "\n".join(problems)
    for said in ("f:2: colour: unknown key",
                 "f:4: networks.Bad_Net: invalid network name 'Bad_Net'",
                 "f:7: containers.a.memory: invalid size 'lots'",
                 "f:8: containers.a.enabled: expected true or false, not 'yes please'",
                 "f:9: containers.a.cpus: expected a value, not a list",
                 "f:12: containers.c.port: port 8080/tcp is published by b too",
                 "f:15: containers.d: the order makes a cycle: d -> e -> d",
                 "f:19: containers.-bad: invalid container name '-bad'",
                 "f:20: containers.-bad.restart: invalid restart 'sometimes'"):
        assert said in text, text


def test_a_stack_needs_a_name():
    _stack, problems = load("containers: {}\n", name="")
    assert problems == ["f:1: name: stack name is empty: give the stack a name (name:)"]


# ---------------------------------------------------------------- the plan

class Bus(FakeBus):
    def __init__(self, active=()):
        super().__init__()
        self.active = set(active)

    def list_units(self, patterns=()):
        return [{"name": f"systemd-nspawn@{n}.service", "active_state": "active"}
                for n in self.active]


def made(paths, name, **settings):
    paths.tree(name).mkdir(parents=True)
    save_config(paths, name, ContainerConfig(**{"network": "none", **settings}))


def plan_of(paths, text, active=(), prune=False, kept=None):
    stack, problems = load(text)
    assert problems == []
    ctx = context(paths, Bus(active))
    return plan.make(ctx, stack, kept or record.read(paths, stack.name), prune)


FILE = "containers:\n  a:\n    network: none\n    memory: 64M\n    env: [MODE=prod]\n"


def test_a_plan_creates_starts_and_then_has_nothing_to_do(paths):
    steps = plan_of(paths, FILE).steps
    assert [s.text() for s in steps] == ["create a: from debootstrap:bookworm", "start a"]
    spec = load(FILE)[0].containers["a"]
    made(paths, "a", memory_max=64 << 20, env=("IMAGE=1", "MODE=prod"), stack="st",
         start_timeout=300)
    kept = record.Record("st", {"a": spec.record()})
    assert plan_of(paths, FILE, active=["a"], kept=kept).steps == []
    # the image's env stays; the file's changes; memory applies live, env at a restart
    changed = FILE.replace("64M", "96M").replace("MODE=prod", "MODE=test")
    steps = plan_of(paths, changed, active=["a"], kept=kept).steps
    assert [s.text() for s in steps] == ["change a: env, memory", "restart a: for env"]
    assert steps[0].changes == {"memory_max": 96 << 20, "env": ("IMAGE=1", "MODE=test")}
    # stopped, the same change needs no restart
    assert [s.text() for s in plan_of(paths, changed, kept=kept).steps] == [
        "change a: env, memory", "start a"]


def test_a_create_key_changed_makes_the_tree_again(paths):
    made(paths, "a", memory_max=64 << 20, env=("MODE=prod",), stack="st", start_timeout=300)
    old = load(FILE)[0].containers["a"].record()
    kept = record.Record("st", {"a": dict(old, create={"from": "scratch"})})
    steps = plan_of(paths, FILE, active=["a"], kept=kept).steps
    assert [s.text() for s in steps] == [
        "recreate a: from changed: its tree is made again", "start a"]
    # without a record of how it was made, the tree is kept (its data with it)
    assert plan_of(paths, FILE, active=["a"]).steps == []


def test_another_owners_container_is_a_problem_not_a_step(paths):
    made(paths, "a")  # by hand
    p = plan_of(paths, FILE)
    assert p.steps == [] or all(s.name != "a" for s in p.steps)
    assert [x.text("f") for x in p.problems] == [
        "f:2: containers.a: a container of that name exists, not made by a stack: apply "
        "never touches another's container"]
    made(paths, "b", stack="other")
    p = plan_of(paths, "containers:\n  b: {network: none}\n")
    assert "stack other's" in p.problems[0].message


def test_prune_removes_only_the_stacks_own(paths):
    made(paths, "old", stack="st")
    made(paths, "theirs", stack="other")
    made(paths, "hand")
    kept = record.Record("st", networks={"gone": {"subnet": None}})
    from nspawnctl.network.containers import network_state
    network_state(paths).create("gone", None)
    p = plan_of(paths, "containers: {}\n", kept=kept)
    assert p.steps == [] and p.left == ["container old", "network gone"]
    p = plan_of(paths, "containers: {}\n", kept=kept, prune=True)
    assert [s.text() for s in p.steps] == ["remove old: no longer in the file",
                                           "remove network gone: no longer in the file"]
    # a network the stack made and someone removed by hand is forgotten, not said or pruned
    network_state(paths).remove("gone")
    p = plan_of(paths, "containers: {}\n", kept=kept, prune=True)
    assert [s.text() for s in p.steps] == ["remove old: no longer in the file"]
    assert p.forgotten == ["gone"] and p.left == []


def test_the_host_is_checked_before_any_step(paths):
    p = plan_of(paths, "containers:\n  a:\n    network: nowhere\n    after: [ghost]\n")
    assert sorted(x.message for x in p.problems) == [
        "no network named 'nowhere', in the file or on this host",
        "ordered after 'ghost': no such container, in the file or on this host"]


def test_the_record_is_checked_when_read(paths):
    paths.stacks.mkdir(parents=True)
    (paths.stacks / "st.json").write_text('{"containers": []}')
    with pytest.raises(Error, match="stack record .* is damaged"):
        record.read(paths, "st")
    rec = record.Record("st", {"a": {"create": {}, "settings": {}}})
    record.write(paths, rec)
    assert record.read(paths, "st") == rec
    assert oct((paths.stacks / "st.json").stat().st_mode & 0o777) == "0o600"


def test_a_clone_is_not_the_stacks():
    cfg = ContainerConfig(network="none", stack="st")
    assert dataclasses.replace(cfg, stack=None).stack is None


def test_a_restart_that_never_came_is_planned(paths):
    """An apply killed between its set and its restart (or a set by hand) left saved
    settings the running container does not have: the next apply restarts it."""
    from nspawnctl.settings import running
    made(paths, "a", memory_max=64 << 20, env=("MODE=prod",), stack="st", start_timeout=300)
    kept = record.Record("st", {"a": load(FILE)[0].containers["a"].record()})
    assert plan_of(paths, FILE, active=["a"], kept=kept).steps == []
    running.record(paths, "a", ContainerConfig(network="none", memory_max=64 << 20,
                                               env=("MODE=old",), stack="st",
                                               start_timeout=300), os.getpid())
    assert [s.text() for s in plan_of(paths, FILE, active=["a"], kept=kept).steps] == [
        "restart a: for env"]


def test_what_requires_a_container_is_said_and_started_again(paths):
    """systemd stops (or restarts) what Requires= a container with it: a restart's line
    names them, and after a container is made again they are started again."""
    text = ("containers:\n  db: {network: none, env: [A=1]}\n"
            "  web: {network: none, requires: [db]}\n")
    stack = load(text)[0]
    made(paths, "db", env=("A=1",), stack="st", start_timeout=300)
    made(paths, "web", requires=("db",), after=("db",), stack="st", start_timeout=300)
    kept = record.Record("st", {n: s.record() for n, s in stack.containers.items()})
    steps = plan_of(paths, text.replace("A=1", "A=2"), active=["db", "web"], kept=kept).steps
    assert [s.text() for s in steps] == ["change db: env",
                                         "restart db: for env (web, which requires it, with it)"]
    kept.containers["db"] = dict(kept.containers["db"], create={"from": "scratch"})
    steps = plan_of(paths, text, active=["db", "web"], kept=kept).steps
    assert [s.text() for s in steps] == [
        "recreate db: from changed: its tree is made again", "start db", "start web"]


def test_only_a_regular_file_is_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero", str(tmp_path)):
        with pytest.raises(InvalidInput, match="not a regular file"):
            load_file(path)
    with pytest.raises(Error, match="no such file"):
        load_file(str(tmp_path / "missing.yaml"))
