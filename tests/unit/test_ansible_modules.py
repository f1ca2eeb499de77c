"""The Ansible collection's modules (ansible/, issue 30), each run as Ansible runs it (a
process given its arguments file), against a fake nspawnctl that records what it was asked
and answers from a table: the argv each module builds (lists, never a shell string), the
stack a container task turns into, check and diff modes, changed from the JSON, and a
failure's message being the CLI's line.  The real CLI behind them is proven in
tests/integration/test_ansible_playbooks.py."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ansible", reason="ansible-core is not installed (the README's make test "
                                      "installs it: Makefile TEST_PACKAGES)")

COLLECTION = Path(__file__).resolve().parents[2] / "ansible"
MODULES = ("stack", "container", "network", "image", "snapshot")

FAKE = r'''#!PYTHON
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
argv = sys.argv[1:]
data = sys.stdin.read() if not sys.stdin.isatty() else ""
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({"argv": argv, "stdin": data}) + "\n")
answers = json.load(open(os.path.join(here, "answers.json")))
words = [w for w in argv if w != "--json"]
for n in range(len(words), 0, -1):
    answer = answers.get(" ".join(words[:n]))
    if answer is not None:
        break
else:
    answer = {"rc": 2, "stderr": "nspawnctl: fake: no answer for %s" % argv}
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("rc", 0))
'''


class Fake:
    """A fake nspawnctl in a directory: answers[words] = {rc, stdout, stderr}, looked up by
    the longest prefix of the argv's words (--json left out); calls() is what it was run
    with, in order."""

    def __init__(self, path: Path):
        self.path = path
        self.exe = path / "nspawnctl"
        self.exe.write_text(FAKE.replace("PYTHON", sys.executable))
        self.exe.chmod(0o755)
        self.answers: dict = {}

    def answer(self, words: str, rc=0, stdout="", stderr="", js=None):
        self.answers[words] = {"rc": rc, "stdout": json.dumps(js) if js is not None else stdout,
                               "stderr": stderr}

    def calls(self) -> list:
        log = self.path / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] \
            if log.exists() else []


@pytest.fixture
def fake(tmp_path):
    return Fake(tmp_path)


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """ansible_collections/nspawnctl/containers -> this checkout's ansible/."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections" / "nspawnctl").mkdir(parents=True)
    (root / "ansible_collections" / "nspawnctl" / "containers").symlink_to(COLLECTION)
    return root


def run_module(collections, fake, module, check=False, diff=False, **params):
    """Run MODULE with params as Ansible does; returns its JSON result."""
    (fake.path / "answers.json").write_text(json.dumps(fake.answers))
    args = dict(params, executable=str(fake.exe), _ansible_check_mode=check,
                _ansible_diff=diff)
    path = fake.path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    r = subprocess.run([sys.executable, "-m",
                        f"ansible_collections.nspawnctl.containers.plugins.modules.{module}",
                        str(path)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(collections)))
    assert r.stdout.strip(), r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


APPLIED = {"stack": "web", "dry_run": False, "changed": True,
           "steps": [{"action": "create", "kind": "container", "name": "web",
                      "why": "from scratch"},
                     {"action": "start", "kind": "container", "name": "web", "why": None}],
           "left": [], "warnings": [], "seconds": 0.5}
NOTHING = dict(APPLIED, changed=False, steps=[])
STATUS = {"name": "web", "state": "running", "enabled": False, "stack": "web"}


def applies(fake):
    return [c for c in fake.calls() if c["argv"][0] == "apply"]


# ------------------------------------------------------------------------------ container


def test_container_is_a_stack_of_one_named_after_it(collections, fake):
    fake.answer("list", js=[])
    fake.answer("apply", js=APPLIED)
    fake.answer("status", js=STATUS)
    result = run_module(collections, fake, "container", name="web", **{"from": "scratch"},
                        memory="64M", port=["8080:80"], env={"MODE": "prod", "A": 1},
                        start_timeout=30, private_users=False, enabled=True)
    assert result["changed"] is True and result["container"] == STATUS, result
    [call] = applies(fake)
    assert call["argv"] == ["apply", "-f", "-", "--json"]
    assert json.loads(call["stdin"]) == {"name": "web", "containers": {"web": {
        "from": "scratch", "memory": "64M", "port": ["8080:80"], "env": ["A=1", "MODE=prod"],
        "start-timeout": 30, "private-users": False, "state": "running", "enabled": True}}}


def test_container_unchanged_when_apply_changes_nothing(collections, fake):
    fake.answer("list", js=[STATUS])
    fake.answer("apply", js=NOTHING)
    result = run_module(collections, fake, "container", name="web", **{"from": "scratch"})
    assert result["changed"] is False, result
    assert not [c for c in fake.calls() if c["argv"][0] == "status"]


def test_container_check_mode_is_a_dry_run_and_diff_the_plan(collections, fake):
    fake.answer("list", js=[])
    fake.answer("apply", rc=6, js=dict(APPLIED, dry_run=True))
    result = run_module(collections, fake, "container", check=True, diff=True, name="web",
                        **{"from": "scratch"})
    assert result["changed"] is True, result
    assert result["diff"] == {"prepared": "create web: from scratch\nstart web\n"}
    assert applies(fake)[0]["argv"] == ["apply", "-f", "-", "--dry-run", "--json"]
    assert [c["argv"][0] for c in fake.calls()] == ["list", "apply"]


def test_container_present_keeps_the_running_state_and_enabled(collections, fake):
    """present: a stopped container stays stopped, a running one running, and an enabled
    left out is what the host has (not the stack's default, false)."""
    for state, enabled in (("stopped", True), ("running", False)):
        fake.answer("list", js=[dict(STATUS, state=state, enabled=enabled)])
        fake.answer("apply", js=NOTHING)
        run_module(collections, fake, "container", name="web", state="present")
        spec = json.loads(applies(fake)[-1]["stdin"])["containers"]["web"]
        assert (spec["state"], spec["enabled"]) == (state, enabled)
    fake.answer("list", js=[])
    run_module(collections, fake, "container", name="web", state="present")
    spec = json.loads(applies(fake)[-1]["stdin"])["containers"]["web"]
    assert (spec["state"], spec["enabled"]) == ("stopped", False)


def test_container_fails_with_the_clis_line(collections, fake):
    line = "nspawnctl: -: containers.web.memory: invalid size 'lots': expected a number"
    fake.answer("list", js=[])
    fake.answer("apply", rc=5, stderr=line + "\nhint: see docs/stacks.md\n")
    result = run_module(collections, fake, "container", name="web", memory="lots")
    assert result["failed"] is True
    assert result["msg"] == line and result["rc"] == 5 and result["hint"] == "see docs/stacks.md"


def test_container_absent_prunes_its_stack_only_when_it_made_it(collections, fake):
    fake.answer("list", js=[STATUS])
    fake.answer("apply", js=dict(APPLIED, steps=[{"action": "remove", "kind": "container",
                                                  "name": "web", "why": None}]))
    result = run_module(collections, fake, "container", name="web", state="absent")
    assert result["changed"] is True
    [call] = applies(fake)
    assert call["argv"] == ["apply", "-f", "-", "--prune", "--json"]
    assert json.loads(call["stdin"]) == {"name": "web"}
    # made by hand: refused, nothing applied
    fake.answer("list", js=[dict(STATUS, stack=None)])
    result = run_module(collections, fake, "container", name="web", state="absent")
    assert result["failed"] and "made by hand" in result["msg"], result
    # its stack holds another container too: pruning it would remove that one
    fake.answer("list", js=[STATUS, dict(STATUS, name="db")])
    result = run_module(collections, fake, "container", name="web", state="absent")
    assert result["failed"] and "also holds db" in result["msg"], result
    assert len(applies(fake)) == 1
    # not there: nothing to do
    fake.answer("list", js=[])
    assert run_module(collections, fake, "container", name="web",
                      state="absent")["changed"] is False
    assert len(applies(fake)) == 1


def test_container_options_are_every_key_a_stack_takes(collections, fake):
    """A new create or set option is a new stack key (stacks/model.py); the module must take
    it too (documented, accepted and passed on), or a playbook cannot say it."""
    from nspawnctl.stacks.model import CREATE_KEYS, RUN_KEYS, SETTING_KEYS
    keys = {*CREATE_KEYS, *SETTING_KEYS, *RUN_KEYS}
    doc = yaml.safe_load(module_doc("container"))["options"]
    assert {name.replace("_", "-") for name in doc} - {"name", "executable"} == keys
    every = {name: True if o["type"] == "bool" else ["x"] if o["type"] == "list"
             else o.get("choices", ["x"])[0]
             for name, o in doc.items() if name not in ("name", "executable", "state")}
    fake.answer("list", js=[])
    fake.answer("apply", js=NOTHING)
    result = run_module(collections, fake, "container", name="web", **every)
    assert not result.get("failed"), result
    spec = json.loads(applies(fake)[0]["stdin"])["containers"]["web"]
    assert set(spec) == keys


# ------------------------------------------------------------------------------ stack


def test_stack_inline_definition_goes_on_stdin(collections, fake):
    fake.answer("apply", js=APPLIED)
    definition = {"name": "web", "containers": {"web": {"from": "scratch"}}}
    result = run_module(collections, fake, "stack", definition=definition, prune=True)
    assert result["changed"] is True and result["stack"] == "web"
    [call] = fake.calls()
    assert call["argv"] == ["apply", "-f", "-", "--prune", "--json"]
    assert json.loads(call["stdin"]) == definition


def test_stack_file_and_name(collections, fake):
    fake.answer("apply", js=NOTHING)
    result = run_module(collections, fake, "stack", src="/etc/shop.yaml", name="shop",
                        ignore_unsupported=True)
    assert result["changed"] is False
    assert fake.calls()[0]["argv"] == ["apply", "-f", "/etc/shop.yaml", "--name", "shop",
                                       "--ignore-unsupported", "--json"]


def test_stack_check_mode_reports_exit_6_as_a_change(collections, fake):
    fake.answer("apply", rc=6, js=dict(APPLIED, dry_run=True))
    result = run_module(collections, fake, "stack", check=True, diff=True, src="/s.yaml")
    assert result["changed"] is True and "create web" in result["diff"]["prepared"]
    fake.answer("apply", rc=0, js=dict(NOTHING, dry_run=True))
    result = run_module(collections, fake, "stack", check=True, src="/s.yaml")
    assert result["changed"] is False
    assert all("--dry-run" in c["argv"] for c in fake.calls())


def test_stack_absent_applies_an_empty_stack_with_prune(collections, fake):
    fake.answer("apply", js=NOTHING)
    run_module(collections, fake, "stack", name="shop", state="absent")
    [call] = fake.calls()
    assert call["argv"] == ["apply", "-f", "-", "--prune", "--json"]
    assert json.loads(call["stdin"]) == {"name": "shop"}


def test_stack_bad_arguments_fail_before_any_command(collections, fake):
    for params in ({"state": "absent"}, {}, {"src": "/a", "definition": {"name": "a"}}):
        assert run_module(collections, fake, "stack", **params)["failed"] is True
    assert fake.calls() == []


# ------------------------------------------------------------------------------ the others

NETWORK = {"name": "back", "subnet": "10.99.0.0/24", "gateway": "10.99.0.1",
           "bridge": "nsc-back", "containers": []}


def test_network(collections, fake):
    fake.answer("network list", js=[NETWORK])
    assert run_module(collections, fake, "network", name="back",
                      subnet="10.99.0.0/24")["changed"] is False
    result = run_module(collections, fake, "network", name="back", subnet="10.98.0.0/24")
    assert result["failed"] and "has subnet 10.99.0.0/24, not 10.98.0.0/24" in result["msg"]
    result = run_module(collections, fake, "network", name="back", state="absent", check=True)
    assert result["changed"] is True
    assert all(c["argv"][:2] == ["network", "list"] for c in fake.calls())
    fake.answer("network create", rc=4, stderr="nspawnctl: subnet 10.1.0.0/24 overlaps x\n")
    result = run_module(collections, fake, "network", name="new", subnet="10.1.0.0/24")
    assert result["msg"] == "nspawnctl: subnet 10.1.0.0/24 overlaps x"
    assert fake.calls()[-1]["argv"] == ["network", "create", "new", "--subnet", "10.1.0.0/24"]


def test_image(collections, fake):
    fake.answer("pull", js={"name": "busybox", "cached": True, "fetched_blobs": 0,
                            "unpacked": False})
    assert run_module(collections, fake, "image", name="busybox")["changed"] is False
    assert fake.calls()[-1]["argv"] == ["pull", "busybox", "--pull", "missing", "--json"]
    fake.answer("images rm", rc=3, stderr="nspawnctl: no image busybox\n")
    assert run_module(collections, fake, "image", name="busybox", state="absent")[
        "changed"] is False
    assert run_module(collections, fake, "image", name="busybox", check=True)["changed"] is True
    assert fake.calls()[-1]["argv"] == ["images", "rm", "busybox", "--dry-run"]
    fake.answer("images prune", stdout="would remove 0 base trees\n")
    assert run_module(collections, fake, "image", prune=True, check=True)["changed"] is False


def test_snapshot(collections, fake):
    fake.answer("snapshot list", js=[{"name": "web", "tag": "t1"}])
    fake.answer("snapshot create", js={"name": "web", "tag": "t2"})
    assert run_module(collections, fake, "snapshot", name="web", tag="t1")["changed"] is False
    assert run_module(collections, fake, "snapshot", name="web", tag="t2")["changed"] is True
    assert fake.calls()[-1]["argv"] == ["snapshot", "create", "web", "t2", "--json"]
    assert run_module(collections, fake, "snapshot", name="web", tag="t2",
                      state="absent")["changed"] is False


# ------------------------------------------------------------------------------ docs


def module_doc(name: str) -> str:
    import ast
    tree = ast.parse((COLLECTION / "plugins" / "modules" / f"{name}.py").read_text())
    return next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and node.targets[0].id == "DOCUMENTATION")


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_reads_each_module(collections, module):
    if not shutil.which("ansible-doc"):
        pytest.skip("ansible-doc is not installed (Makefile TEST_PACKAGES: ansible-core)")
    r = subprocess.run(["ansible-doc", "--json", f"nspawnctl.containers.{module}"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections)))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)[f"nspawnctl.containers.{module}"]
    assert doc["doc"]["options"] and doc["examples"] and doc["return"] is not None
    # what every module shares comes from the collection's doc fragment, merged in
    assert doc["doc"]["options"]["executable"]["default"] == "nspawnctl"
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert "diff_mode" in doc["doc"]["attributes"]
    assert doc["doc"]["requirements"] == ["nspawnctl on the managed host, run as root"]
    assert "WARNING" not in r.stderr, r.stderr
