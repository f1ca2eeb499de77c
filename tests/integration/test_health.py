"""Health checks against the real thing: the check runs in the container, run by the scheduler
in units/ (nspawnctl-health.service), a container whose check starts failing is restarted (or stopped, or
killed) after `retries` failures, `none` only reports, `health NAME` and `wait --for
healthy` say so, and bad values are one line each with nothing changed.  --health-cmd none
leaves out the image's check (the scheduler never checks it); a booted container without a command is
healthy when its systemd runs (degraded as issue 31 says); bad health dependencies (no
check to wait for, a cycle) are one line each, from the CLI and in a stack file.

Cheap containers: the busybox OCI image of test_oci_containers (a single command, no boot),
its Healthcheck (`test -e /ok` every 2 s, 2 retries) read from the image config as podman
reads it.  The four containers fail at once, so the module waits for one interval x retries.
"""

import calendar
import json
import subprocess
import time

import pytest
import yaml

from tests.integration.helpers import MACHINES, listing, wait_for
from tests.integration.test_oci_containers import busybox_layer, oci_archive

pytestmark = pytest.mark.integration

INTERVAL, RETRIES = 2, 2
# Beyond interval x retries until the action shows: the scheduler's look each second, a
# check's own run and systemd's job.
SLACK = 6
HEALTHCHECK = {"Test": ["CMD-SHELL", "test -e /ok"], "Interval": INTERVAL * 10**9,
               "Retries": RETRIES, "Timeout": 3 * 10**9}
ARCHIVE = "/root/health-busybox.tar"
NAMES = {"restart": "hc-restart", "stop": "hc-stop", "kill": "hc-kill", "none": "hc-none"}
STATE = "/run/nspawnctl/health/{}.json"  # runtime/health.py state_file, paths' default


def unit_show(host, unit: str, *props: str) -> dict:
    r = host.run(["systemctl", "show", unit, "--timestamp=us+utc",
                  *(a for p in props for a in ("-p", p))])
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def containers(host, nspawnctl, tmp_path_factory):
    """One container per --on-unhealthy, running and healthy (/ok there)."""
    work = tmp_path_factory.mktemp("health")
    archive = oci_archive(work, "health", [busybox_layer()], Healthcheck=HEALTHCHECK)
    host.path(ARCHIVE).write_bytes(archive.read_bytes())
    made = []
    began = time.monotonic()
    try:
        for action, name in NAMES.items():
            nspawnctl("create", name, "--from", f"oci-archive:{ARCHIVE}",
                      "--on-unhealthy", action)
            made.append(name)
        for name in made:  # there before the first check (2 s after the start)
            host.run(["touch", f"{MACHINES}/{name}/ok"])
            nspawnctl("start", name)
        print(f"\nhealth: {len(made)} containers made and started in "
              f"{time.monotonic() - began:.1f}s")
        yield NAMES
    finally:
        for name in made:
            nspawnctl("remove", "--force", name, check=False)
        host.run(["rm", "-f", ARCHIVE])


def checked_by_scheduler(host) -> int:
    """How many containers the scheduler checks, as `systemctl status` says (its STATUS=:
    "checking N containers; M checks run")."""
    text = unit_show(host, "nspawnctl-health.service", "StatusText")["StatusText"]
    assert text.startswith("checking "), text
    return int(text.split()[1])


def status(nspawnctl, name) -> dict:
    return json.loads(nspawnctl("status", name, "--json").stdout)


def leader(nspawnctl, name):
    return status(nspawnctl, name)["leader"]


def test_the_image_check_runs_on_schedule_and_sick_containers_are_handled(
        host, nspawnctl, containers):
    cfg = status(nspawnctl, containers["none"])
    assert (cfg["health_cmd"], cfg["health_interval"], cfg["health_retries"]) == \
        (["/bin/sh", "-c", "test -e /ok"], INTERVAL, RETRIES)
    for name in containers.values():  # the scheduler's first check makes each healthy
        r = nspawnctl("wait", name, "--for", "healthy", "--timeout", INTERVAL + SLACK)
        assert r.stdout == f"{name}: healthy\n", str(r)
    # one scheduler for them all, started by their units (their drop-ins want it)
    shown = unit_show(host, "nspawnctl-health.service", "ActiveState", "StatusText")
    assert shown["ActiveState"] == "active", shown
    checking = checked_by_scheduler(host)
    assert checking >= len(containers), shown  # (and any other module's left running)
    # systemctl reload: it reads the settings again at once (SIGHUP), and stays the process
    main = unit_show(host, "nspawnctl-health.service", "MainPID")["MainPID"]
    assert host.run(["systemctl", "reload", "nspawnctl-health.service"]).returncode == 0
    assert unit_show(host, "nspawnctl-health.service", "MainPID", "ActiveState") == \
        {"MainPID": main, "ActiveState": "active"}
    assert nspawnctl("health", containers["none"]).returncode == 0
    before = {name: leader(nspawnctl, name) for name in containers.values()}

    for name in containers.values():  # (busybox's image has no rm: from the host)
        host.run(["rm", f"{MACHINES}/{name}/ok"])
    sick = time.monotonic()
    limit = INTERVAL * RETRIES + SLACK

    # restart: a new run (another leader) within interval x retries + slack
    restarted = containers["restart"]
    wait_for(lambda: leader(nspawnctl, restarted) not in (None, before[restarted]),
             timeout=limit, interval=0.2, what=f"{restarted} restarted")
    # stop: the unit goes inactive
    stopped = containers["stop"]
    wait_for(lambda: listing(nspawnctl)[stopped]["state"] == "stopped",
             timeout=max(1, limit - (time.monotonic() - sick)), interval=0.2,
             what=f"{stopped} stopped")
    # kill: SIGKILL to the unit, which fails by the signal (a stop would end it cleanly)
    killed = containers["kill"]
    unit = f"systemd-nspawn@{killed}.service"
    wait_for(lambda: unit_show(host, unit, "ActiveState")["ActiveState"] == "failed",
             timeout=max(1, limit - (time.monotonic() - sick)), interval=0.2,
             what=f"{killed} killed")
    took = time.monotonic() - sick
    print(f"\nhealth: restart, stop and kill within {took:.1f}s (limit {limit}s)")
    assert unit_show(host, unit, "Result")["Result"] == "signal"
    assert json.loads(host.path(STATE.format(killed)).read_text())["action"] == "kill"
    # the ones stopped are checked no more; the scheduler checks the two still running
    wait_for(lambda: checked_by_scheduler(host) == checking - 2, timeout=5, interval=0.2,
             what="the scheduler to let the stopped ones go")
    # the same process all along: the restarted container's start told it to look (a
    # reload, SIGHUP), and a signal before its handlers were set would have ended it
    assert unit_show(host, "nspawnctl-health.service", "MainPID")["MainPID"] == main, \
        host.run(["journalctl", "-u", "nspawnctl-health.service", "--no-pager", "-o", "cat",
                  "-n", "40"]).stdout
    last = {name: host.path(STATE.format(name)).read_text() for name in (stopped, killed)}
    time.sleep(INTERVAL + 1)
    assert last == {name: host.path(STATE.format(name)).read_text() for name in last}

    # none: still running on the same leader, unhealthy, its streak and the check's status
    reported = containers["none"]
    wait_for(lambda: (status(nspawnctl, reported)["health"] or {}).get("state") == "unhealthy",
             timeout=limit, interval=0.2, what=f"{reported} unhealthy")
    seen = status(nspawnctl, reported)
    assert seen["state"] == "running" and seen["leader"] == before[reported]
    assert seen["health"]["failing_streak"] >= RETRIES
    assert seen["health"]["last_exit_status"] == 1 and seen["health"]["last_action"] is None
    r = nspawnctl("health", reported, check=False)
    assert r.returncode == 1 and r.stdout.startswith(f"{reported}: unhealthy"), str(r)
    row = [line for line in nspawnctl("list").stdout.splitlines()
           if line.startswith(reported + " ")]
    assert "unhealthy" in row[0], row
    # a stopped container's health is not there to ask for
    r = nspawnctl.fails("health", stopped)
    assert r.returncode == 4 and "not running" in r.error

    # healthy again once /ok is back: wait sees it
    host.run(["touch", f"{MACHINES}/{reported}/ok"])
    nspawnctl("wait", reported, "--for", "healthy", "--timeout", INTERVAL + SLACK)


CONFINED = "hc-confined"
# Shell builtins (busybox's image has few applets): what the check's own process sees of
# itself, and of the container's PID 1 (its leader, in the PID namespace the check should be
# in); then the process becomes ls, which lists the descriptors it has.
SELF_REPORT = ("for p in $$ 1; do for f in status cgroup uid_map; do "
               "while read -r l; do case $f:$l in status:CapBnd*|status:Uid*|cgroup:*|"
               "uid_map:*) echo $p $f $l;; esac; done < /proc/$p/$f; done; done; "
               "echo fds; exec ls -l /proc/self/fd")


def test_a_check_runs_confined_as_the_containers_own_processes(host, nspawnctl, containers):
    """A single-command container's check is entered by the helper (nspawnctl-enter), in the
    container's user namespace: as its root, with its leader's bounding set and cgroup, in
    its PID namespace (its PID 1 is the leader), and with no descriptor of the host's."""
    nspawnctl("create", CONFINED, "--from", f"oci-archive:{ARCHIVE}", "--health-cmd",
              f"sh -c '{SELF_REPORT}'")
    try:
        nspawnctl("start", CONFINED)
        r = nspawnctl("health", CONFINED, check=False)
        assert r.returncode == 0, str(r)
        output = status(nspawnctl, CONFINED)["health"]["last_output"]
        said = output.splitlines()
        me = said[0].split()[0]  # the check's PID as the container sees it
        mine = [line.split(" ", 1)[1] for line in said if line.startswith(f"{me} ")]
        leaders = [line.split(" ", 1)[1] for line in said if line.startswith("1 ")]
        assert mine and leaders and me != "1", output
        # (busybox's ls reads the list, closes the directory, then reads each link: its own
        # descriptor of the list is there without a link)
        fds = dict(line.split()[-3::2] for line in said[said.index("fds") + 1:] if "->" in line)
        assert sorted(fds) == ["0", "1", "2"], output  # nothing of the host's open
        assert fds["0"] == "/dev/null" and fds["1"] == fds["2"], output
        assert fds["1"].startswith("pipe:"), output
        field = {line.split(":", 1)[0]: line for line in mine}
        assert field["status CapBnd"] == next(l for l in leaders
                                              if l.startswith("status CapBnd")), output
        assert field["status Uid"].split()[2:] == ["0", "0", "0", "0"], output
        uid_map = [l for l in mine if l.startswith("uid_map")]
        assert uid_map == [l for l in leaders if l.startswith("uid_map")], output
        assert uid_map[0].split()[2] != "0", output  # the container's, not the host's identity
        unified = [l for l in mine if l.startswith("cgroup 0::")]
        assert unified and unified == [l for l in leaders if l.startswith("cgroup 0::")], output
        host_leader = leader(nspawnctl, CONFINED)
        bound = next(line for line in host.path(f"/proc/{host_leader}/status").read_text()
                     .splitlines() if line.startswith("CapBnd:"))
        assert field["status CapBnd"].split()[-1] == bound.split()[-1], (output, bound)
    finally:
        nspawnctl("remove", "--force", CONFINED, check=False)


def test_wait_times_out_with_one_line(nspawnctl, containers):
    name = containers["none"]
    nspawnctl("wait", name, "--for", "running", "--timeout", 5)
    began = time.monotonic()
    r = nspawnctl.fails("wait", name, "--for", "stopped", "--timeout", 1)
    assert r.returncode == 1 and r.error == f"nspawnctl: {name} is not stopped after 1s", str(r)
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("args, says", [
    (["--health-cmd", ""], "invalid health command '': it is empty"),
    (["--health-interval", "0"], "invalid health interval '0'"),
    (["--health-retries", "0"], "invalid health retries '0'"),
])
def test_bad_values_are_one_line_and_change_nothing(host, nspawnctl, containers, args, says):
    name = containers["none"]
    before = host.path(f"/etc/systemd/nspawn/{name}.nspawn").read_text()
    r = nspawnctl.fails("set", name, *args)
    assert says in r.error and r.returncode == 2, str(r)
    assert host.path(f"/etc/systemd/nspawn/{name}.nspawn").read_text() == before
    r = nspawnctl.fails("create", "hc-bad", "--from", "scratch", *args)
    assert says in r.error, str(r)
    assert "hc-bad" not in listing(nspawnctl)


# ---------------------------------------------------------------- --health-cmd none

UNCHECKED = "hc-off"


@pytest.fixture(scope="module")
def unchecked(nspawnctl, containers):  # noqa: ARG001 (containers: the archive)
    """A container of the same image made with --health-cmd none: no check, running."""
    nspawnctl("create", UNCHECKED, "--from", f"oci-archive:{ARCHIVE}", "--health-cmd", "none")
    try:
        nspawnctl("start", UNCHECKED)
        yield UNCHECKED
    finally:
        nspawnctl("remove", "--force", UNCHECKED, check=False)


def has_no_check(host, nspawnctl, name):
    """No check anywhere: settings, status, --json, list, files, no state kept."""
    seen = status(nspawnctl, name)
    assert seen["state"] == "running" and not seen["health_cmd"] and seen["health"] is None, \
        seen
    text = dict(line.split(":", 1) for line in nspawnctl("status", name).stdout.splitlines()
                if ":" in line and not line.startswith(" "))
    assert (text["health_cmd"].strip(), text["health"].strip()) == ("-", "-"), text
    assert listing(nspawnctl)[name]["health"] is None
    assert "nspawnctl-health-cmd" not in host.path(f"/etc/systemd/nspawn/{name}.nspawn").read_text()
    assert host.run(["test", "-e", f"/etc/systemd/system/systemd-nspawn@{name}.service.d/"
                                   "70-nspawnctl-health.conf"]).returncode != 0
    assert not host.path(STATE.format(name)).exists()


def test_health_cmd_none_switches_off_the_images_check(host, nspawnctl, unchecked):
    """create --health-cmd none: the image's Healthcheck is not taken, the scheduler never
    checks it, and spec says none; set gives it a check (the scheduler runs it) and set
    --health-cmd none takes it away again, also across a restart."""
    has_no_check(host, nspawnctl, unchecked)
    # and a file of it says so: apply makes a new one without the image's check too
    keys = yaml.safe_load(nspawnctl("spec", unchecked).stdout)["containers"][unchecked]
    assert keys["health-cmd"] == "none", keys
    # (its interval is the default 30 s: the image's is not taken either)
    nspawnctl("set", unchecked, "--health-cmd", "true", "--health-interval", INTERVAL)
    nspawnctl("wait", unchecked, "--for", "healthy", "--timeout", INTERVAL + SLACK)
    nspawnctl("set", unchecked, "--health-cmd", "none")
    has_no_check(host, nspawnctl, unchecked)
    nspawnctl("restart", unchecked)
    time.sleep(INTERVAL + 1)  # an interval and more: no check ran
    has_no_check(host, nspawnctl, unchecked)


def test_bad_health_dependencies_are_one_line_and_change_nothing(host, nspawnctl,
                                                                  containers, unchecked):
    """Waiting for the health of a container without a check (it runs a single command),
    and a cycle through a health dependency: refused with one line, nothing made or
    changed."""
    checked = containers["none"]
    settings = f"/etc/systemd/nspawn/{checked}.nspawn"
    before = host.path(settings).read_text()
    no_check = f"{unchecked} has no health check (--health-cmd) to wait for"
    for flag in ("--after", "--requires"):
        r = nspawnctl.fails("create", "hc-dep", "--from", f"oci-archive:{ARCHIVE}", flag,
                            f"{unchecked}:healthy")
        assert r.error == f"nspawnctl: {no_check}: it runs a single command", str(r)
        r = nspawnctl.fails("set", checked, flag, f"{unchecked}:healthy")
        assert r.error == f"nspawnctl: {no_check}: it runs a single command", str(r)
    assert "hc-dep" not in listing(nspawnctl)
    assert host.path(settings).read_text() == before
    cycle = "hc-cycle"
    try:
        nspawnctl("create", cycle, "--from", f"oci-archive:{ARCHIVE}", "--after",
                  f"{checked}:healthy")
        r = nspawnctl.fails("set", checked, "--requires", f"{cycle}:healthy")
        assert r.error == f"nspawnctl: ordering {checked} after {cycle} makes a cycle: " \
                          f"{checked} -> {cycle} -> {checked}", str(r)
        assert host.path(settings).read_text() == before
    finally:
        nspawnctl("remove", "--force", cycle, check=False)


def test_bad_health_dependencies_in_a_stack_file_are_one_line_and_make_nothing(nspawnctl,
                                                                                unchecked):
    """The same in a stack file, and a bad check value there: the plan refuses the file
    with one line before anything is made."""
    no_check = f"{unchecked} has no health check (--health-cmd) to wait for"
    box = f"    from: oci-archive:{ARCHIVE}\n"
    for text, says in (
            (f"  hs-web:\n{box}    after: [{unchecked}:healthy]\n",
             f"containers.hs-web.after: {unchecked}:healthy: {no_check}"),
            (f"  hs-a:\n{box}    after: [hs-b:healthy]\n"
             f"  hs-b:\n{box}    requires: [hs-a:healthy]\n", "the order makes a cycle"),
            (f"  hs-web:\n{box}    health-cmd: ''\n", "invalid health command ''"),
            (f"  hs-web:\n{box}    health-interval: 0\n", "invalid health interval '0'")):
        r = nspawnctl.fails("apply", "-f", "-", input=f"name: hc-stk\ncontainers:\n{text}")
        assert says in r.error, str(r)
        assert not {"hs-web", "hs-a", "hs-b"} & set(listing(nspawnctl))


# ---------------------------------------------------------------- a booted container

FAILING_UNIT = ("[Unit]\nDescription=fails for test_health\n[Service]\nType=oneshot\n"
                "ExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n")


def system_state(host, name) -> str:
    return host.run(["systemctl", "-M", name, "is-system-running"]).stdout.strip()


def health_said(nspawnctl, name) -> tuple[int, str]:
    r = nspawnctl("health", name, check=False)
    assert "Traceback" not in r.stderr, str(r)
    return r.returncode, r.stdout.strip()


def test_a_booted_container_without_a_command_is_healthy_when_its_systemd_runs(
        host, nspawnctl, made):
    """Without --health-cmd a booted container is healthy when its systemd says running;
    degraded counts as unhealthy, check after check, once a check found it running, and is
    its normal when it boots degraded (a unit of its own fails at boot).  `wait --for
    healthy` agrees with `health`.  The suite's cached default base; --health-retries 1, so
    each check decides."""
    t0 = time.monotonic()
    name = made("hc-boot", "--network", "none", "--health-retries", "1")
    made_in = time.monotonic() - t0
    nspawnctl("start", name)
    wait_for(lambda: system_state(host, name) == "running", timeout=30, what="running")
    assert health_said(nspawnctl, name) == (0, f"{name}: healthy: systemd: running")

    # a unit fails after a check found it running: unhealthy, and it stays so
    nspawnctl("exec", name, "--", "systemd-run", "--unit=hc-fail", "--quiet", "/bin/false")
    wait_for(lambda: system_state(host, name) == "degraded", timeout=10, what="degraded")
    for streak in (1, 2):
        assert health_said(nspawnctl, name) == (
            1, f"{name}: unhealthy (failing streak {streak}): systemd: degraded")
    r = nspawnctl.fails("wait", name, "--for", "healthy", "--timeout", 1)
    assert r.error == f"nspawnctl: {name} is not healthy after 1s", str(r)
    host.run(["systemctl", "-M", name, "reset-failed"])
    assert health_said(nspawnctl, name)[0] == 0

    # it boots degraded: that is its normal, check after check, until a check finds it
    # running; degraded after that is unhealthy again
    nspawnctl("exec", name, "--", "sh", "-c",
              f"printf '{FAILING_UNIT}' >/etc/systemd/system/hc-boot-fail.service && "
              "systemctl enable --quiet hc-boot-fail.service")
    nspawnctl("restart", name)
    wait_for(lambda: system_state(host, name) == "degraded", timeout=30, what="degraded")
    for _ in range(2):
        assert health_said(nspawnctl, name) == (0, f"{name}: healthy: systemd: degraded")
    nspawnctl("wait", name, "--for", "healthy", "--timeout", 5)
    host.run(["systemctl", "-M", name, "reset-failed"])
    assert health_said(nspawnctl, name) == (0, f"{name}: healthy: systemd: running")
    host.run(["systemctl", "-M", name, "start", "hc-boot-fail.service"])
    wait_for(lambda: system_state(host, name) == "degraded", timeout=10, what="degraded")
    code, said = health_said(nspawnctl, name)
    assert code == 1 and said.startswith(f"{name}: unhealthy"), said

    # --on-unhealthy restart: the scheduler checks it (its systemd's state, each interval)
    # and restarts it once a unit failed after it ran
    host.run(["systemctl", "-M", name, "reset-failed"])
    nspawnctl("set", name, "--on-unhealthy", "restart", "--health-interval", "2s")
    before = leader(nspawnctl, name)
    healthy = time.monotonic()
    def journal():
        return host.run(["journalctl", "-u", "nspawnctl-health.service", "--no-pager", "-o",
                         "cat", "-n", "40"]).stdout

    try:
        wait_for(lambda: (status(nspawnctl, name)["health"] or {}).get("state") == "healthy",
                 timeout=2 * 2 + SLACK, interval=0.2, what="a check of the scheduler's")
        host.run(["systemctl", "-M", name, "start", "hc-boot-fail.service"])
        sick = time.monotonic()
        wait_for(lambda: leader(nspawnctl, name) not in (None, before),
                 timeout=2 + SLACK + 10, interval=0.2, what=f"{name} restarted")
    except AssertionError as e:
        raise AssertionError(f"{e}: {status(nspawnctl, name)['health']}\n{journal()}") from None
    print(f"\nbooted health: scheduler healthy after {sick - healthy:.1f}s, restart after "
          f"{time.monotonic() - sick:.1f}s")
    assert f"{name}: unhealthy after 1 failed checks: restart" in journal(), journal()
    print(f"\nbooted health: created in {made_in:.1f}s, the rest took "
          f"{time.monotonic() - t0 - made_in:.1f}s")


# ---------------------------------------------------------------- --after NAME:healthy

def utc_seconds(text: str) -> float:
    """systemctl's --timestamp=us+utc ('Sun 2026-12-06 20:00:00.123456 UTC') as epoch."""
    day, clock = text.split(" ")[1:3]
    whole, _, micro = clock.partition(".")
    return calendar.timegm(time.strptime(f"{day} {whole}", "%Y-%m-%d %H:%M:%S")) \
        + int(micro or 0) / 1e6


def test_a_dependent_starts_only_once_its_dependency_is_healthy(host, nspawnctl, containers):
    """web --after db:healthy waits in its ExecStartPre while db's check fails, and starts
    once /ok appears in db, after db's first healthy check (systemd's timestamps against the
    check's), not before; with db sick again, `start web` fails after web's start timeout
    with one line naming db."""
    db, web = "ah-db", "ah-web"
    unit = f"systemd-nspawn@{web}.service"
    try:
        nspawnctl("create", db, "--from", f"oci-archive:{ARCHIVE}")
        nspawnctl("create", web, "--from", f"oci-archive:{ARCHIVE}", "--after", f"{db}:healthy")
        info = status(nspawnctl, web)
        assert (info["after"], info["wait_healthy"]) == ([db], [db]), info
        nspawnctl("start", db)  # no /ok yet: its checks fail

        # web waits in its ExecStartPre until db's first healthy check
        start = host.popen(["nspawnctl", "start", web], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        wait_for(lambda: unit_show(host, unit, "SubState")["SubState"] == "start-pre",
                 timeout=10, interval=0.1, what=f"{web} waiting")
        time.sleep(INTERVAL + 1)  # a check of db fails meanwhile: web still waits
        assert unit_show(host, unit, "SubState")["SubState"] == "start-pre"
        touched = time.monotonic()
        host.run(["touch", f"{MACHINES}/{db}/ok"])
        state = host.path(STATE.format(db))
        # The first check that finds it healthy: the last look at db's state that found it
        # not healthy yet is a time before it (CLOCK_MONOTONIC, this kernel's and the
        # testbed's, as systemd's *Monotonic timestamps are).
        first = None
        unhealthy_seen = time.monotonic()
        deadline = unhealthy_seen + INTERVAL + SLACK
        while time.monotonic() < deadline:
            looked = time.monotonic()
            seen = json.loads(state.read_text())
            if seen["state"] == "healthy":
                first = seen
                break
            unhealthy_seen = looked
            time.sleep(0.05)
        assert first is not None, f"{db} not healthy within {INTERVAL + SLACK}s"
        out, err = start.communicate(timeout=30)
        assert start.returncode == 0, (out, err)
        times = unit_show(host, unit, "ExecMainStartTimestampMonotonic",
                          "ExecMainStartTimestamp")
        main_mono = int(times["ExecMainStartTimestampMonotonic"]) / 1e6
        print(f"\nafter-healthy: {web} started {main_mono - unhealthy_seen:.2f}s after {db} "
              f"was last seen not healthy, {main_mono - touched:.2f}s after /ok appeared")
        assert unhealthy_seen < main_mono and touched < main_mono, \
            (touched, unhealthy_seen, main_mono)
        # the state file's last_check (to the second) is not after web's start either
        checked = first["checked"]
        assert utc_seconds(times["ExecMainStartTimestamp"]) >= calendar.timegm(
            time.strptime(checked, "%Y-%m-%dT%H:%M:%SZ")), (checked, times)

        # a db taken out of its check while web waits for it: refused, nothing changed
        before = host.path(f"/etc/systemd/nspawn/{db}.nspawn").read_text()
        r = nspawnctl.fails("set", db, "--health-cmd", "none")
        assert r.error == f"nspawnctl: {web} waits for {db}'s health at start (:healthy): it " \
                          "keeps its check", str(r)
        assert host.path(f"/etc/systemd/nspawn/{db}.nspawn").read_text() == before

        # db sick again: the start fails at web's start timeout, one line naming db
        nspawnctl("stop", web)
        nspawnctl("set", web, "--start-timeout", "4")
        host.run(["rm", f"{MACHINES}/{db}/ok"])
        wait_for(lambda: json.loads(state.read_text())["state"] == "unhealthy",
                 timeout=INTERVAL * RETRIES + SLACK, interval=0.2, what=f"{db} unhealthy")
        began = time.monotonic()
        r = nspawnctl.fails("start", web)
        took = time.monotonic() - began
        print(f"after-healthy: the start failed after {took:.1f}s (start timeout 4s)")
        assert r.error == f"nspawnctl: {web} did not start: {db} was not healthy within its " \
                          "start timeout (4s)", str(r)
        assert 4 <= took < 4 + SLACK, took
        assert listing(nspawnctl)[web]["state"] != "running"
    finally:
        for name in (web, db):
            nspawnctl("remove", "--force", name, check=False)
