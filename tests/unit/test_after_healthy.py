"""--after NAME:healthy and --requires NAME:healthy (settings/model.py, store/order.py,
units/container-wait-healthy.conf, runtime/lifecycle.py's start failure, stacks and compose):
the condition is split off so order, cycles and stacks see names; the names waited for are a
record read at each start by a fixed ExecStartPre; refusals are one line; a failed start
names the container that was not healthy in time.  The real start against systemd:
tests/integration/test_health.py."""

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from nspawnctl import cli
from nspawnctl.errors import Error
from nspawnctl.ops import lifecycle as ops_lifecycle
from nspawnctl.ops import reconfigure
from nspawnctl.runtime import lifecycle as runtime_lifecycle
from nspawnctl.settings import dropin
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig, edit, parse_cli
from nspawnctl.stacks import compose, model, plan, record, spec, yamlfile
from nspawnctl.store import order
from tests.unit.fakes import FakeBus, context

WAIT_LINE = (f"ExecStartPre={sys.executable} -m nspawnctl wait %i --dependencies --for healthy "
             "--timeout infinity")


def make(paths, name, **settings):
    paths.tree(name).mkdir(parents=True)
    save_config(paths, name, ContainerConfig(network="none", **settings))


# ---------------------------------------------------------------- the setting

def test_the_condition_is_split_off_so_order_sees_names():
    cfg = ContainerConfig(**parse_cli({"after": ("db:healthy", "cache"),
                                       "requires": ("queue:healthy",)}))
    assert cfg.after == ("db", "cache", "queue")
    assert cfg.requires == ("queue",)
    assert cfg.wait_healthy == ("db", "queue")
    # healthy implies after, as requires does
    assert ContainerConfig(wait_healthy=("db",)).after == ("db",)


@pytest.mark.parametrize("text, says", [
    ("db:started", "invalid dependency 'db:started': expected NAME or NAME:healthy"),
    ("db:", "invalid dependency 'db:': expected NAME or NAME:healthy"),
    (":healthy", "container name is empty"),
    ("db:healthy:healthy", "invalid dependency"),
])
def test_a_bad_condition_is_one_line(text, says):
    with pytest.raises(Error) as e:
        parse_cli({"after": (text,)})
    assert says in e.value.message and "\n" not in e.value.message


def test_set_gives_a_dependency_again_with_its_condition():
    cfg = ContainerConfig(after=("db:healthy", "x"))
    assert edit(cfg, {"after": ("db",)}).wait_healthy == ()       # named again, plain
    assert edit(cfg, {"no_after": ("db",)}).after == ("x",)
    assert edit(cfg, {"no_after": ("db",)}).wait_healthy == ()
    assert edit(cfg, {"after": ("y",)}).wait_healthy == ("db",)   # another one: kept
    plain = ContainerConfig(requires=("db",))
    got = edit(plain, {"requires": ("db:healthy",)})
    assert (got.requires, got.wait_healthy) == (("db",), ("db",))


def test_the_files_hold_a_record_and_a_fixed_drop_in(paths):
    make(paths, "db", health_cmd=("/bin/sh", "-c", "true"))
    make(paths, "web", after=("db:healthy",), start_timeout=10)
    nspawn = paths.nspawn_file("web").read_text()
    assert "# nspawnctl-wait-healthy: db\n" in nspawn
    settings = (paths.dropin_dir("web") / dropin.DROPIN_NAME).read_text()
    assert "After=systemd-nspawn@db.service" in settings and "ExecStartPre" not in settings
    wait = (paths.dropin_dir("web") / dropin.WAIT_HEALTHY_DROPIN_NAME).read_text()
    # the only values in it: the interpreter (as nspawnctl-health@.service has it) and %i
    assert WAIT_LINE in wait.splitlines()
    assert "db" not in wait.replace("--dependencies", "")
    back = load_config(paths, "web")
    assert (back.after, back.wait_healthy) == (("db",), ("db",))
    # plain again: the drop-in goes, the order stays
    save_config(paths, "web", edit(back, {"after": ("db",)}))
    assert not (paths.dropin_dir("web") / dropin.WAIT_HEALTHY_DROPIN_NAME).exists()
    assert load_config(paths, "web").after == ("db",)
    assert "wait-healthy" not in paths.nspawn_file("web").read_text()


def test_systemd_reads_the_drop_in_as_written(tmp_path):
    """systemd's own parser (systemd-analyze verify) on the template service with the drop-in:
    no warning about the ExecStartPre= line (a relative path, an unknown specifier, ...)."""
    units = tmp_path / "units"
    (units / "w@.service.d").mkdir(parents=True)
    (units / "w@.service").write_text("[Service]\nExecStart=/bin/true\n")
    from nspawnctl.systemd.unitfiles import render
    (units / "w@.service.d" / "75.conf").write_text(render("container-wait-healthy.conf"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "w@x.service")],
                          capture_output=True, text=True, env={"SYSTEMD_UNIT_PATH": f"{units}:",
                                                               "PATH": "/usr/bin:/bin"})
    said = [line for line in proc.stderr.splitlines() if "75.conf" in line or "w@" in line]
    assert said == [], proc.stderr


# ---------------------------------------------------------------- refusals

def test_a_single_command_without_a_check_is_refused_in_one_line(paths):
    make(paths, "job", boot=False)
    make(paths, "booted")
    make(paths, "checked", boot=False, health_cmd=("/bin/sh", "-c", "true"))
    with pytest.raises(Error) as e:
        order.check(paths, "web", ContainerConfig(after=("job:healthy",)))
    assert e.value.message == ("job has no health check (--health-cmd) to wait for: it runs "
                               "a single command")
    assert "nspawnctl set job --health-cmd CMD" in e.value.hint
    with pytest.raises(Error):
        order.check(paths, "web", ContainerConfig(requires=("job:healthy",)))
    order.check(paths, "web", ContainerConfig(after=("job",)))   # plain order: fine
    order.check(paths, "web", ContainerConfig(after=("booted:healthy", "checked:healthy")))


def test_a_cycle_through_a_health_dependency_is_refused(paths):
    make(paths, "db", after=("web",))
    make(paths, "web")
    with pytest.raises(Error) as e:
        order.check(paths, "web", ContainerConfig(after=("db:healthy",)))
    assert e.value.message.endswith("makes a cycle: web -> db -> web")


def test_set_refuses_a_health_wait_and_changes_nothing(paths, monkeypatch):
    monkeypatch.setattr(reconfigure, "require_root", lambda: None)
    make(paths, "job", boot=False)
    make(paths, "web")
    before = paths.nspawn_file("web").read_text()
    with pytest.raises(Error) as e:
        reconfigure.set_config(context(paths, FakeBus()), "web", {"after": ("job:healthy",)})
    assert e.value.message.startswith("job has no health check")
    assert paths.nspawn_file("web").read_text() == before
    assert not (paths.dropin_dir("web") / dropin.WAIT_HEALTHY_DROPIN_NAME).exists()


def test_the_check_others_wait_for_is_not_removed(paths, monkeypatch):
    monkeypatch.setattr(reconfigure, "require_root", lambda: None)
    make(paths, "db", boot=False, health_cmd=("/bin/sh", "-c", "true"))
    make(paths, "web", after=("db:healthy",))
    before = paths.nspawn_file("db").read_text()
    with pytest.raises(Error) as e:
        reconfigure.set_config(context(paths, FakeBus()), "db", {"health_cmd": "none"})
    assert e.value.message == "web waits for db's health at start (:healthy): it keeps its check"
    assert paths.nspawn_file("db").read_text() == before


# ---------------------------------------------------------------- the wait and a failed start

def test_the_wait_waits_for_each_one_and_takes_infinity(paths, monkeypatch):
    make(paths, "db", health_cmd=("/bin/sh", "-c", "true"))
    make(paths, "cache")
    make(paths, "web", after=("db:healthy", "cache:healthy", "other"))
    make(paths, "other")
    asked = []
    monkeypatch.setattr(ops_lifecycle, "wait_for",
                        lambda ctx, name, state, timeout: asked.append((name, state, timeout))
                        or 0.5)
    monkeypatch.setattr(cli.App, "ctx", property(lambda app: context(paths, FakeBus())),
                        raising=False)
    r = CliRunner().invoke(cli.cli, ["wait", "web", "--dependencies", "--for", "healthy",
                                      "--timeout", "infinity"])
    assert r.exit_code == 0, r.output
    assert [(n, s) for n, s, _ in asked] == [("db", "healthy"), ("cache", "healthy")]
    assert all(t == float("inf") for _, _, t in asked)
    assert "web: db is healthy after 0.5s" in r.output


class FailedBus(FakeBus):
    """A start that failed with systemd's Result; the containers in `healthy` run and their
    last check passed."""

    def __init__(self, result, healthy=()):
        super().__init__(state="failed")
        self.result, self.healthy = result, set(healthy)

    def unit_property(self, unit, prop, signature, iface=None):
        return {"Result": self.result}.get(prop)

    def is_active(self, unit):
        return unit.split("@", 1)[1].rsplit(".", 1)[0] in self.healthy

    def machine_properties(self, name):
        return {"Leader": 1, "Timestamp": 1} if name in self.healthy else None


@pytest.fixture
def quiet_journal(monkeypatch):
    monkeypatch.setattr(runtime_lifecycle, "_journal_tail", lambda name, lines=10: "LOG")


def test_a_start_timeout_while_waiting_names_the_container(paths, quiet_journal):
    make(paths, "db", health_cmd=("/bin/sh", "-c", "true"))
    make(paths, "web", after=("db:healthy",), start_timeout=10)
    error = runtime_lifecycle._start_failed(context(paths, FailedBus("timeout")), "web")
    assert error.message == "web did not start: db was not healthy within its start timeout " \
                            "(10s)"
    assert "nspawnctl set web --start-timeout" in error.hint and "LOG" in error.hint


def test_a_failure_with_its_dependencies_healthy_is_not_taken_for_theirs(paths, quiet_journal,
                                                                        monkeypatch):
    make(paths, "db", boot=True)  # no check: healthy when its systemd runs
    make(paths, "web", after=("db:healthy",), start_timeout=10)
    monkeypatch.setattr("nspawnctl.runtime.health.guest_state", lambda name: "running")
    said = runtime_lifecycle._start_failed(context(paths, FailedBus("timeout", ["db"])),
                                           "web").message
    assert said == "web did not start within its start timeout, and systemd stopped it"
    said = runtime_lifecycle._start_failed(context(paths, FailedBus("exit-code")), "web").message
    assert said == "web failed to start"  # not a timeout: the log says why


# ---------------------------------------------------------------- stacks and compose

def load(text):
    doc, problems = yamlfile.parse(textwrap.dedent(text))
    stack, more = model.load(doc, "st")
    return stack, [p.text("f") for p in problems + more]


def test_a_stack_key_takes_the_condition_and_cycles_still_count():
    stack, problems = load("""\
        containers:
          db: {network: none, health-cmd: "true"}
          web: {network: none, after: ["db:healthy"]}
        """)
    assert problems == []
    assert stack.containers["web"].config.wait_healthy == ("db",)
    assert model.order(stack) == ["db", "web"]
    _, problems = load("""\
        containers:
          db: {network: none, after: [web]}
          web: {network: none, requires: ["db:healthy"]}
        """)
    assert problems == ["f:2: containers.db: the order makes a cycle: db -> web -> db"]
    _, problems = load("containers:\n  web: {network: none, after: ['db:up']}\n")
    assert problems == ["f:2: containers.web.after: invalid dependency 'db:up': expected "
                        "NAME or NAME:healthy"]


class Bus(FakeBus):
    def list_units(self, patterns=()):
        return []


def test_the_plan_refuses_a_host_container_without_health(paths):
    make(paths, "job", boot=False)
    stack, _ = load("containers:\n  web: {network: none, after: ['job:healthy']}\n")
    p = plan.make(context(paths, Bus()), stack, record.read(paths, "st"), False)
    assert [x.text("f") for x in p.problems] == [
        "f:2: containers.web.after: job:healthy: job has no health check (--health-cmd) to "
        "wait for: it runs a single command"]
    stack, _ = load("containers:\n  job: {network: none, health-cmd: 'true'}\n"
                    "  web: {network: none, after: ['job:healthy']}\n")
    assert [x for x in plan.make(context(paths, Bus()), stack, record.Record("st"),
                                 False).problems if "health" in x.message] == []


def test_the_plan_changes_the_condition_alone():
    stack, _ = load("containers:\n  web: {network: none, after: ['db:healthy']}\n")
    changes = plan.changed_settings(ContainerConfig(network="none", after=("db",)),
                                    stack.containers["web"], None)
    assert changes["wait_healthy"] == ("db",)
    assert plan._public("wait_healthy") == "wait_healthy"


def test_spec_writes_the_condition_back():
    cfg = ContainerConfig(after=("db:healthy", "x"), requires=("q:healthy",), start_timeout=300)
    keys = spec.container_keys(cfg, {"create": {"from": "scratch"}, "settings": {}}, ())
    assert keys["after"] == ["db:healthy", "x"] and keys["requires"] == ["q:healthy"]
    back = ContainerConfig(**parse_cli({"after": tuple(keys["after"]),
                                        "requires": tuple(keys["requires"])}))
    assert back.wait_healthy == cfg.wait_healthy and back.after == cfg.after


def translate(text, base):
    doc, problems = yamlfile.parse(textwrap.dedent(text))
    assert problems == []
    return compose.translate(doc, base, False)


def test_compose_service_healthy_waits_for_health(tmp_path):
    out, problems, warnings = translate("""\
        services:
          web:
            image: busybox
            depends_on:
              db: {condition: service_healthy}
              cache: {condition: service_healthy, restart: true}
              queue: {condition: service_started}
          db: {image: busybox, healthcheck: {test: "true"}}
          cache: {image: busybox}
          queue: {image: busybox}
        """, tmp_path)
    assert problems == [] and warnings == []
    web = out["containers"]["web"]
    assert list(web["after"]) == ["db:healthy", "cache:healthy", "queue"]
    assert list(web["requires"]) == ["cache:healthy"]
    stack, more = model.load(out, "st")
    assert more == []
    cfg = stack.containers["web"].config
    assert (cfg.after, cfg.requires, cfg.wait_healthy) == (
        ("db", "cache", "queue"), ("cache",), ("db", "cache"))


class WaitingBus(FakeBus):
    """A start still in its ExecStartPre (systemd's SubState start-pre)."""

    def __init__(self):
        super().__init__(state="activating")

    def has_job(self, unit):
        return True

    def unit_property(self, unit, prop, signature, iface=None):
        return {"SubState": "start-pre"}.get(prop)

    def machine_properties(self, name):
        return None


def test_start_past_its_own_timeout_says_what_it_waits_for(paths):
    make(paths, "db", health_cmd=("/bin/sh", "-c", "true"))
    make(paths, "web", after=("db:healthy",), start_timeout=300)
    with pytest.raises(Error) as e:
        runtime_lifecycle.wait_started(context(paths, WaitingBus()), "web", timeout=0.05)
    assert e.value.message == "web did not start within 0.05 s: it still waits for db to be " \
                              "healthy"
    assert "start timeout (300s)" in e.value.hint


def test_the_next_apply_keeps_an_image_check_the_file_does_not_give():
    """A compose service's image Healthcheck (others wait for it: db:healthy) is the
    container's, as its image's env: not dropped at the next apply.  One the file gave at
    the last apply and no longer gives goes."""
    stack, _ = load("containers:\n  db: {network: none, from: 'docker://x/db:1'}\n")
    filed = stack.containers["db"]
    cfg = ContainerConfig(network="none", health_cmd=("/bin/sh", "-c", "true"),
                          health_interval=2, start_timeout=300, image="oci-sha256-ab")
    assert plan.changed_settings(cfg, filed, {"create": filed.create, "settings": {}}) == {}
    said = {"create": filed.create, "settings": {"health_cmd": "true"}}
    assert plan.changed_settings(cfg, filed, said)["health_cmd"] == ()
    # a tree that is not an image's has no image check: what the file says goes
    assert plan.changed_settings(ContainerConfig(network="none", start_timeout=300,
                                                 health_cmd=("true",)), filed, None) == {
        "health_cmd": ()}


def test_the_wait_ended_by_systemd_says_so_in_the_journal_without_nspawnctl_lines(
        paths, monkeypatch):
    """systemd's SIGTERM at the start timeout unwinds as Ctrl-C does: the wait says why on a
    line of its own (not 'nspawnctl: interrupted', which `start`'s hint would show as a
    second error line)."""
    make(paths, "db", health_cmd=("/bin/sh", "-c", "true"))
    make(paths, "web", after=("db:healthy",))

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ops_lifecycle, "wait_for", interrupted)
    monkeypatch.setattr(cli.App, "ctx", property(lambda app: context(paths, FakeBus())),
                        raising=False)
    r = CliRunner().invoke(cli.cli, ["wait", "web", "--dependencies", "--for", "healthy",
                                     "--timeout", "infinity"])
    assert r.exit_code == 1
    assert "web: its start timeout ended the wait" in r.output
    assert not any(line.startswith("nspawnctl") for line in r.output.splitlines())
