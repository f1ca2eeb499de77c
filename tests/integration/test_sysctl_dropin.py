"""The sysctl drop-in for many containers: provision.sh (the README's commands, which built the
testbed) installs units/60-nspawnctl.conf as /etc/sysctl.d/60-nspawnctl.conf, and doctor reads
the running values against it.  The testbed shares this machine's kernel and its /proc/sys is
read-only, so the values doctor sees are the machine's."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WANTED = {"max_user_instances": 4096, "max_user_watches": 524288}


def test_provision_installs_the_drop_in_and_doctor_checks_it(host, nspawnctl):
    shipped = (REPO / "units" / "60-nspawnctl.conf").read_text()
    for key, value in WANTED.items():
        assert f"fs.inotify.{key} = {value}\n" in shipped
    r = host.run(["cat", "/etc/sysctl.d/60-nspawnctl.conf"])
    assert r.returncode == 0 and r.stdout == shipped, str(r)

    report = json.loads(nspawnctl("doctor", "--json", check=False).stdout)
    checks = {c["name"]: c for c in report["checks"]}
    for key, name in (("max_user_instances", "inotify instances"),
                      ("max_user_watches", "inotify watches")):
        running = int(Path(f"/proc/sys/fs/inotify/{key}").read_text())
        check = checks[name]
        assert check["message"].startswith(f"fs.inotify.{key} = {running}"), check
        assert check["ok"] == (running >= WANTED[key]), check
        assert check["severity"] == "warning"
        if not check["ok"]:
            # the fix installs the very file the testbed has, from nspawnctl's installation
            assert check["fix"].startswith("install -m 0644 /"), check
            assert check["fix"].endswith(" /etc/sysctl.d/60-nspawnctl.conf && "
                                         "/lib/systemd/systemd-sysctl "
                                         "/etc/sysctl.d/60-nspawnctl.conf"), check
            source = check["fix"].split()[3]
            r = host.run(["cmp", source, "/etc/sysctl.d/60-nspawnctl.conf"])
            assert r.returncode == 0, str(r)
