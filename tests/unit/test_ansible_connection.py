"""The collection's connection plugin (ansible/plugins/connection/nspawnctl.py, issue 30),
loaded by Ansible's own plugin loader against a fake nspawnctl: a task's command becomes
`nspawnctl exec [-i] [-u USER] NAME -- /bin/sh -c CMD` (an argv, the command one word),
files go through `nspawnctl cp`, and nspawnctl's own failure is a connection failure with
its line.  tests/integration/test_ansible_playbooks.py runs it against a real container."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ansible", reason="ansible-core is not installed (the README's make test "
                                      "installs it: Makefile TEST_PACKAGES)")

COLLECTION = Path(__file__).resolve().parents[2] / "ansible"

FAKE = r'''#!PYTHON
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
data = sys.stdin.read()
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "stdin": data}) + "\n")
if "gone" in sys.argv:
    sys.stderr.write("nspawnctl: no container gone\n")
    sys.exit(125)
sys.stdout.write("out")
sys.exit(3 if sys.argv[1] == "exec" else 0)
'''

DRIVER = r'''
import json, sys
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader
from ansible.errors import AnsibleError
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
finder = _AnsibleCollectionFinder(paths=[sys.argv[1]])
finder._install()
c = connection_loader.get("nspawnctl.containers.nspawnctl", PlayContext(), None)
c.set_options(var_options={"inventory_hostname": sys.argv[2],
                           "ansible_nspawnctl_executable": sys.argv[3],
                           "ansible_user": sys.argv[4] or None})
out = {}
try:
    rc, o, e = c.exec_command("echo 'a b'; exit 3", in_data=b"piped")
    out["exec"] = [rc, o.decode()]
    c.put_file(__file__, "/tmp/x y")
    c.fetch_file("/etc/hostname", "/tmp/here")
except AnsibleError as exc:
    out["error"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
'''


def drive(tmp_path, container, user=""):
    root = tmp_path / "collections"
    (root / "ansible_collections" / "nspawnctl").mkdir(parents=True, exist_ok=True)
    link = root / "ansible_collections" / "nspawnctl" / "containers"
    if not link.exists():
        link.symlink_to(COLLECTION)
    fake = tmp_path / "nspawnctl"
    fake.write_text(FAKE.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    r = subprocess.run([sys.executable, str(driver), str(root), container, str(fake), user],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root)))
    assert r.returncode == 0, r.stderr
    log = tmp_path / "calls.jsonl"
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return json.loads(r.stdout.strip().splitlines()[-1]), calls


def test_exec_and_cp_are_argv_lists(tmp_path):
    out, calls = drive(tmp_path, "web", user="www")
    assert out == {"exec": [3, "out"]}, out
    assert calls[0] == {"argv": ["exec", "--interactive", "--user", "www", "web", "--",
                                 "/bin/sh", "-c", "echo 'a b'; exit 3"], "stdin": "piped"}
    assert calls[1]["argv"] == ["cp", str(tmp_path / "driver.py"), "web:/tmp/x y"]
    assert calls[2]["argv"] == ["cp", "web:/etc/hostname", "/tmp/here"]


def test_nspawnctls_failure_is_a_connection_failure_with_its_line(tmp_path):
    out, _calls = drive(tmp_path, "gone")
    assert out["error"] == ["AnsibleConnectionFailure", "nspawnctl: no container gone"], out
