"""Stacks on the real systemd (issue 29): `apply -f FILE` makes the host match a file of
containers and networks, a second apply changes nothing, --dry-run tells the truth with its
exit status, a change restarts only what must restart, --prune removes exactly what the
stack made, and bad files, taken names and failing steps are one line each, with nothing
half-made.  Containers are scratch busybox trees: they start in well under a second."""

import json
import threading

import pytest

from nspawnctl.errors import CHANGES, INVALID_INPUT
from tests import outside
from tests.integration.helpers import listing, store_problems, wait_for

pytestmark = pytest.mark.integration

DIR = "/root/stacks-test"
HTTPD = "/bin/busybox httpd -f -p 80 -h /www"


def stack_file(host, name: str, text: str) -> str:
    path = f"{DIR}/{name}.yaml"
    host.run(["mkdir", "-p", f"{DIR}/www"])
    host.path(f"{DIR}/www/index.html").write_text("hello from a stack\n")
    host.path(path).write_text(text)
    return path


def box(name: str, *lines: str) -> str:
    """A container of the file: a busybox httpd from scratch, with lines more."""
    more = "".join(f"\n    {line}" for line in lines)
    return (f"  {name}:\n    from: scratch\n    add: [/bin/busybox, '{DIR}/www:/www']\n"
            f"    cmd: {HTTPD}{more}\n")


def invocation(host, name: str) -> str:
    """The unit's InvocationID: a new one at every start, so a restart shows."""
    return host.run(["systemctl", "show", "-p", "InvocationID", "--value",
                     f"systemd-nspawn@{name}.service"]).stdout.strip()


def served(host, port: int, page: str = "hello from a stack\n"):
    """The page comes back through the published port on 127.0.0.1 (httpd is up soon after
    its start: waited for)."""
    wait_for(lambda: outside.fetch(host, f"http://127.0.0.1:{port}/", timeout=2)
             == (True, page), timeout=20, what=f"the page on port {port}")


def status(nspawnctl, name: str) -> dict:
    return json.loads(nspawnctl("status", name, "--json").stdout)


@pytest.fixture
def cleanup(nspawnctl):
    """Stacks the test applied: each emptied with --prune at the end, so their containers
    and networks go."""
    names = []
    yield names.append
    for name in names:
        nspawnctl("apply", "-f", "-", "--prune", input=f"name: {name}\n", check=False)


def test_apply_converges_and_changes_only_what_differs(host, nspawnctl, cleanup):
    cleanup("stk-shop")
    first = ("name: stk-shop\nnetworks:\n  stk:\n    subnet: 198.51.100.0/24\ncontainers:\n"
             + box("stk-db", "network: stk")
             + box("stk-web", "network: stk", "port: ['18080:80']", "after: [stk-db]",
                   "memory: 64M", "env: [MODE=prod]", "enabled: true"))
    path = stack_file(host, "stk-shop", first)
    # the plan first: its exit status says there is something to do, and nothing is made
    r = nspawnctl("apply", "-f", path, "--dry-run", check=False)
    assert r.returncode == CHANGES, str(r)
    assert r.stdout.splitlines() == [
        "would create network stk: subnet 198.51.100.0/24", "would create stk-db: from scratch",
        "would create stk-web: from scratch", "would start stk-db", "would start stk-web",
        "would enable stk-web"], r.stdout
    assert not {"stk-db", "stk-web"} & set(listing(nspawnctl))
    # then for real: the same steps, said as they are done
    r = nspawnctl("apply", "-f", path)
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == [
        "created network stk", "created stk-db", "created stk-web", "started stk-db",
        "started stk-web", "enabled stk-web"], r.stdout
    rows = listing(nspawnctl)
    assert rows["stk-web"]["state"] == rows["stk-db"]["state"] == "running"
    assert rows["stk-web"]["stack"] == rows["stk-db"]["stack"] == "stk-shop"
    assert rows["stk-web"]["enabled"] and not rows["stk-db"]["enabled"]
    web = status(nspawnctl, "stk-web")
    assert web["memory"] == 64 << 20 and "MODE=prod" in web["env"]
    assert web["port"] == ["18080:80/tcp"] and web["after"] == ["stk-db"]
    served(host, 18080)
    # a second apply changes nothing, and says so; the plan agrees (exit 0)
    before = {n: invocation(host, n) for n in ("stk-db", "stk-web")}
    r = nspawnctl("apply", "-f", path)
    assert r.stdout.strip() == "stack stk-shop: nothing to do, the host matches the file"
    assert nspawnctl("apply", "-f", path, "--dry-run").returncode == 0
    # a live change (memory, port) is applied to web alone, with no restart of anything
    changed = first.replace("memory: 64M", "memory: 96M").replace("18080:80", "18081:80")
    host.path(path).write_text(changed)
    r = nspawnctl("apply", "-f", path)
    assert r.stdout.strip() == "changed stk-web: memory, port", r.stdout
    assert {n: invocation(host, n) for n in before} == before
    assert status(nspawnctl, "stk-web")["memory"] == 96 << 20
    served(host, 18081)
    # a change that needs a restart (env) restarts web, and only web
    changed = changed.replace("MODE=prod", "MODE=test")
    host.path(path).write_text(changed)
    r = nspawnctl("apply", "-f", path)
    assert r.stdout.splitlines() == ["changed stk-web: env", "restarted stk-web: for env"]
    assert invocation(host, "stk-db") == before["stk-db"]
    assert invocation(host, "stk-web") != before["stk-web"]
    # a container the file no longer lists is left (and named) until --prune
    only_db = changed.split("  stk-web:")[0]
    host.path(path).write_text(only_db)
    r = nspawnctl("apply", "-f", path)
    assert "left container stk-web: no longer in the file (apply --prune removes it)" \
        in r.stdout
    assert "stk-web" in listing(nspawnctl)
    r = nspawnctl("apply", "-f", path, "--prune")
    assert r.stdout.splitlines() == ["removed stk-web: no longer in the file"]
    assert "stk-web" not in listing(nspawnctl)
    # stopped: as the file says
    host.path(path).write_text(only_db.replace("network: stk", "network: stk\n    state: stopped"))
    assert nspawnctl("apply", "-f", path).stdout.splitlines() == ["stopped stk-db"]
    assert listing(nspawnctl)["stk-db"]["state"] == "stopped"
    # and an empty stack with --prune takes the rest, its network too
    host.path(path).write_text("name: stk-shop\n")
    r = nspawnctl("apply", "-f", path, "--prune")
    assert r.stdout.splitlines() == ["removed stk-db: no longer in the file",
                                     "removed network stk: no longer in the file"]
    nets = json.loads(nspawnctl("network", "list", "--json").stdout)
    assert "stk" not in {n["name"] for n in nets}
    assert store_problems(host, nspawnctl) == []


def test_bad_files_are_refused_whole_with_lines(host, nspawnctl, made):
    path = stack_file(host, "bad", (
        "name: bad\ncontainers:\n"
        "  bad-a:\n    memory: lots\n    colour: red\n"
        "  bad-b:\n    network: nowhere\n"
        "  bad-c:\n    after: [bad-d]\n  bad-d:\n    after: [bad-c]\n"))
    r = nspawnctl("apply", "-f", path, check=False)
    assert r.returncode == INVALID_INPUT, str(r)
    assert "Traceback" not in r.stderr
    # every problem of the file, each with its line and key
    assert f"{path}:4: containers.bad-a.memory: invalid size 'lots'" in r.stderr, r.stderr
    assert f"{path}:5: containers.bad-a.colour: unknown key" in r.stderr
    assert f"{path}:10: containers.bad-d: the order makes a cycle" in r.stderr \
        or f"{path}:8: containers.bad-c: the order makes a cycle" in r.stderr, r.stderr
    assert not {"bad-a", "bad-b", "bad-c", "bad-d"} & set(listing(nspawnctl))
    # what only the host can say (an unknown network) is also said before anything is made
    path = stack_file(host, "bad2", "name: bad2\ncontainers:\n" + box("bad-b", "network: nowhere")
                      + box("bad-e"))
    r = nspawnctl.fails("apply", "-f", path)
    assert "containers.bad-b.network: no network named 'nowhere'" in r.error, r.error
    assert not {"bad-b", "bad-e"} & set(listing(nspawnctl))
    # a name someone else's container has is refused: the stack never touches it
    made("mine", "--from", "scratch", "--add", "/bin/busybox", "--cmd", "/bin/busybox true")
    path = stack_file(host, "taker", "name: taker\ncontainers:\n" + box("mine"))
    r = nspawnctl("apply", "-f", path, check=False)
    assert r.returncode == INVALID_INPUT
    assert "containers.mine: a container of that name exists, not made by a stack" in r.stderr
    assert status(nspawnctl, "mine")["stack"] is None
    assert store_problems(host, nspawnctl) == []


def test_a_failing_step_stops_says_and_a_rerun_finishes(host, nspawnctl, cleanup):
    cleanup("halt")
    good = box("halt-a")
    broken = "  halt-b:\n    from: oci-archive:/nonexistent.tar\n"
    path = stack_file(host, "halt", "name: halt\ncontainers:\n" + good + broken + box("halt-c"))
    r = nspawnctl.fails("apply", "-f", path)
    assert r.error.startswith("nspawnctl: create halt-b failed:"), r.error
    assert "done before it: create halt-a; not done: create halt-c" in r.stderr, r.stderr
    assert "halt-a" in listing(nspawnctl) and "halt-b" not in listing(nspawnctl)
    host.path(path).write_text("name: halt\ncontainers:\n" + good + box("halt-b")
                               + box("halt-c"))
    r = nspawnctl("apply", "-f", path)
    assert r.stdout.splitlines()[:2] == ["created halt-b: from scratch",
                                         "created halt-c: from scratch"], r.stdout
    assert nspawnctl("apply", "-f", path, "--dry-run").returncode == 0
    assert store_problems(host, nspawnctl) == []


def test_two_applies_at_once_both_succeed(host, nspawnctl, cleanup):
    cleanup("twin")
    path = stack_file(host, "twin", "name: twin\ncontainers:\n" + box("twin-a") + box("twin-b"))
    results = []

    def run():
        results.append(nspawnctl("apply", "-f", path, check=False))
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [str(r) for r in results]
    said = sorted(r.stdout for r in results)  # "created" before "stack"
    # one made them; the other waited and found nothing left to do
    assert said[0].startswith("created twin-a"), said
    assert "nothing to do" in said[1], said
    assert nspawnctl("apply", "-f", path, "--dry-run").returncode == 0


def test_json_and_the_host_side_of_a_stack(host, nspawnctl, cleanup):
    cleanup("jstk")
    path = stack_file(host, "jstk", "containers:\n" + box("jstk-a"))  # named after its file
    r = json.loads(nspawnctl("apply", "-f", path, "--json").stdout)
    assert r["stack"] == "jstk" and r["changed"] and not r["dry_run"]
    assert [(s["action"], s["name"]) for s in r["steps"]] == [("create", "jstk-a"),
                                                               ("start", "jstk-a")]
    r = json.loads(nspawnctl("apply", "-f", path, "--json").stdout)
    assert not r["changed"] and r["steps"] == []
    # the record is root's alone
    assert host.run(["stat", "-c", "%a", "/var/lib/nspawnctl/stacks/jstk.json"]
                    ).stdout.strip() == "600"
    # someone else's stack cannot take it either
    other = stack_file(host, "other", "name: other\ncontainers:\n" + box("jstk-a"))
    r = nspawnctl("apply", "-f", other, check=False)
    assert r.returncode == INVALID_INPUT and "stack jstk's" in r.stderr, str(r)
