"""Credentials and first boot for real (issue 32), in the testbed's systemd 252: one Debian
container from the cached base with openssh-server and tzdata added, made with --credential
(from a file and inline), --ssh-key, --root-password-file, --timezone, --locale, --hostname and
a published port.  Its service reads the credential through $CREDENTIALS_DIRECTORY; the value
is in no output, file nspawnctl shows, journal or process list; ssh to the published port
takes the key on the first boot and refuses another; the identity is the container's; bad
input is one line and makes nothing."""

import json
import time

import pytest

from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

DIR = "/root/creds32"
NAME = "cred1"
HOSTNAME = "cred-host"
PASSWORD = "correct horse battery staple"
SECRET = "file-secret-7Qz9\nsecond line"  # from a file: two lines, kept as they are
INLINE = "inline-secret-K4v8"
STORE = f"/var/lib/nspawnctl/credentials/{NAME}"
SSH = ["ssh", "-p", "2222", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
       "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes"]
T0 = time.monotonic()


@pytest.fixture(scope="module")
def box(host, nspawnctl):
    host.run(["rm", "-rf", DIR])
    host.run(["mkdir", "-m", "700", DIR])
    host.path(f"{DIR}/secret").write_text(SECRET)
    host.path(f"{DIR}/pw").write_text(PASSWORD + "\n")
    for key in ("good", "bad"):
        r = host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{DIR}/{key}"])
        assert r.returncode == 0, str(r)
    nspawnctl("create", NAME, "--include", "openssh-server,tzdata", "--ssh-key",
              f"{DIR}/good.pub", "--credential", f"db.password=@{DIR}/secret",
              "--credential", f"api.token={INLINE}", "--root-password-file", f"{DIR}/pw",
              "--timezone", "Europe/Berlin", "--locale", "C.UTF-8", "--hostname", HOSTNAME,
              "--port", "2222:22", "--start")
    yield NAME
    nspawnctl("remove", "--force", NAME, check=False)
    host.run(["rm", "-rf", DIR])


def test_a_service_inside_reads_the_credential(host, nspawnctl, box):
    # the container's systemd got it from systemd-nspawn (/run/credentials/@system) and hands
    # it to a unit that asks for it by name, as systemd.exec(5) LoadCredential=NAME says
    def read(name):
        return nspawnctl("exec", box, "--", "systemd-run", "--wait", "--pipe", "--quiet",
                         "-p", f"LoadCredential={name}", "/bin/sh", "-c",
                         f'cat "$CREDENTIALS_DIRECTORY/{name}"', check=False)
    r = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(read("db.password")),
                 timeout=60, what="a service inside reading the credential")
    assert r.stdout == SECRET, str(r)
    assert read("api.token").stdout == INLINE
    # the user's file moves: the container keeps its copy
    host.run(["mv", f"{DIR}/secret", f"{DIR}/moved"])
    nspawnctl("restart", box)
    assert wait_for(lambda: read("db.password").stdout == SECRET, timeout=60,
                    what="the credential after a restart")


def test_the_value_is_in_no_output_file_journal_or_process_list(host, nspawnctl, box):
    # a process that holds it open while ps looks (the container's processes are the host's)
    nspawnctl("exec", box, "--", "systemd-run", "--unit", "credhold", "-p",
              "LoadCredential=db.password", "/bin/sh", "-c",
              'v=$(cat "$CREDENTIALS_DIRECTORY/db.password"); exec sleep 60')
    seen = {
        "status": nspawnctl("status", box).stdout,
        "status --json": nspawnctl("status", box, "--json").stdout,
        "list": nspawnctl("list").stdout,
        "list --json": nspawnctl("list", "--json").stdout,
        "spec": nspawnctl("spec", box).stdout,
        "--debug status": (lambda r: r.stdout + r.stderr)(nspawnctl("--debug", "status", box)),
        "ps": host.run(["ps", "-eo", "args"]).stdout,
        "journal": host.run(["journalctl", "--no-pager", "-o", "verbose", "-u",
                             f"systemd-nspawn@{box}.service"]).stdout,
        "journal inside": nspawnctl("exec", box, "--", "journalctl", "--no-pager", "-o",
                                    "verbose").stdout,
        "settings": host.run(["sh", "-c", f"cat /etc/systemd/nspawn/{box}.nspawn "
                              f"/etc/systemd/system/systemd-nspawn@{box}.service.d/*"]).stdout,
        "unit": host.run(["systemctl", "show", f"systemd-nspawn@{box}.service"]).stdout,
    }
    assert "sleep 60" in seen["ps"] and "--load-credential=db.password:" in seen["ps"]
    for what, text in seen.items():
        for secret in (SECRET.splitlines()[0], INLINE):
            assert secret not in text, f"{secret!r} in {what}"
    status = json.loads(seen["status --json"])
    assert sorted(status["credential"]) == ["api.token", "db.password",
                                        "ssh.authorized_keys.root"], status
    assert f"db.password=@{STORE}/db.password" in seen["spec"]
    # --timezone: systemd-nspawn leaves the zone written into the tree alone (its default,
    # auto, would put the host's back at each start)
    assert "\nTimezone=off\n" in seen["settings"], seen["settings"]
    # the store: root's alone
    r = host.run(["stat", "-c", "%a %U %n", STORE, f"{STORE}/db.password", f"{STORE}/api.token"])
    assert r.stdout.split("\n")[:3] == [f"700 root {STORE}", f"600 root {STORE}/db.password",
                                        f"600 root {STORE}/api.token"], str(r)


def test_ssh_takes_the_key_on_the_first_boot_and_refuses_another(host, box):
    def login(key, command="true"):
        return host.run([*SSH, "-i", f"{DIR}/{key}", "root@127.0.0.1", command], timeout=30)
    wait_for(lambda: login("good").returncode == 0, timeout=60, interval=1,
             what="ssh with the good key")
    # --hostname, --timezone (CET in December, CEST in summer) and --locale, seen by root
    r = login("good", "hostname; date +%Z; cat /etc/default/locale")
    hostname, zone, locale = r.stdout.splitlines()
    assert (hostname, locale) == (HOSTNAME, "LANG=C.UTF-8") and zone in ("CET", "CEST"), str(r)
    r = login("bad")
    assert r.returncode == 255 and "Permission denied" in r.stderr, str(r)


def test_root_password_is_the_files_hashed(host, box):
    # the tree's /etc/shadow (the container's, resolved by nobody but this test) has root's
    # hash of the file's first line, and the password itself is nowhere nspawnctl wrote
    shadow = host.path(f"/var/lib/machines/{box}/etc/shadow").read_text()
    hashed = [ln.split(":")[1] for ln in shadow.splitlines() if ln.startswith("root:")][0]
    assert hashed.startswith("$y$"), hashed
    r = host.run(["python3", "-c", "import ctypes, sys; c = ctypes.CDLL('libcrypt.so.1').crypt; "
                  "c.restype = ctypes.c_char_p; c.argtypes = [ctypes.c_char_p] * 2; "
                  "print(c(sys.argv[1].encode(), sys.argv[2].encode()).decode() == sys.argv[2])",
                  PASSWORD, hashed])
    assert r.stdout.strip() == "True", str(r)
    r = host.run(["grep", "-rlF", PASSWORD, "/etc/systemd", "/var/lib/nspawnctl/credentials"])
    assert r.stdout == "", str(r)


def test_a_stack_gives_the_first_boot_keys_as_create_does(host, nspawnctl, box):
    """The same first-boot keys in a stack file (issue 32) give a container what create's
    options gave cred1: the key in root's authorized_keys (written by the guest's systemd
    at its first boot, 0600), the zone, the locale and the password; a second apply does
    nothing; a changed zone is said and not done; the password is in no output, the
    stack's record or spec."""
    path = f"{DIR}/fb32.yaml"
    text = (f"name: fb32\ncontainers:\n  fbox:\n    include: [openssh-server, tzdata]\n"
            f"    network: none\n    ssh_key: {DIR}/good.pub\n    timezone: Europe/Berlin\n"
            f"    locale: C.UTF-8\n    root-password-file: {DIR}/pw\n")
    host.path(path).write_text(text)

    def identity(name):
        r = nspawnctl("exec", name, "--", "sh", "-c", "stat -c '%a %U' /root/.ssh/"
                      "authorized_keys && cat /root/.ssh/authorized_keys && readlink "
                      "/etc/localtime && cat /etc/default/locale", check=False)
        return r.stdout if r.returncode == 0 else None
    try:
        r = nspawnctl("apply", "-f", path)
        assert r.stdout.splitlines() == ["created fbox: from debootstrap:bookworm",
                                         "started fbox"], str(r)
        made = wait_for(lambda: identity("fbox"), timeout=60, what="fbox's first boot")
        key = host.path(f"{DIR}/good.pub").read_text().split()[1]
        assert made.startswith("600 root\n") and key in made, made
        assert made == identity(box)  # what create --ssh-key --timezone --locale gave cred1
        shadow = host.path("/var/lib/machines/fbox/etc/shadow").read_text()
        hashed = [ln.split(":")[1] for ln in shadow.splitlines() if ln.startswith("root:")][0]
        assert hashed.startswith("$y$"), hashed
        r = nspawnctl("apply", "-f", path)
        assert r.stdout == "stack fb32: nothing to do, the host matches the file\n", str(r)
        host.path(path).write_text(text.replace("Europe/Berlin", "UTC"))
        r = nspawnctl("apply", "-f", path, "--json")
        said = json.loads(r.stdout)
        assert not said["changed"] and said["warnings"] == [
            "fbox: the file changed first-boot keys (timezone), which are used only when its "
            "tree is made: fbox keeps what it was made with; to make it again with the "
            "file's (its data lost): nspawnctl remove fbox, then apply"], said
        assert identity("fbox") == made
        seen = r.stdout + r.stderr + nspawnctl("spec", "fbox").stdout + host.path(
            "/var/lib/nspawnctl/stacks/fb32.json").read_text()
        assert "timezone: Europe/Berlin" in seen and ("ssh-key: /var/lib/nspawnctl/"
                                                      "credentials/fbox/ssh.authorized_keys."
                                                      "root") in seen
        assert PASSWORD not in seen and hashed not in seen
    finally:
        nspawnctl("apply", "-f", "-", "--prune", input="name: fb32\n", check=False)


def test_bad_input_is_one_line_and_makes_nothing(host, nspawnctl, box):
    before = host.run(["sh", "-c", f"cat /etc/systemd/nspawn/{box}.nspawn; ls -l {STORE}"]).stdout
    cases = [
        (["create", "cred2", "--from", "scratch", "--ssh-key", f"{DIR}/missing.pub"],
         "cannot read the file of credential ssh.authorized_keys.root"),
        (["create", "cred2", "--from", "scratch", "--ssh-key", f"{DIR}/good"],
         "is a private key"),
        (["create", "cred2", "--from", "scratch", "--credential", "a/b=x"],
         "invalid credential name 'a/b'"),
        (["set", box, "--credential", "..=x"], "invalid credential name '..'"),
        (["set", box, "--credential", f"ok=@{DIR}/missing"],
         "cannot read the file of credential ok"),
        (["create", "cred2", "--from", "scratch", "--timezone", "../../etc/passwd"],
         "invalid time zone"),
        (["create", "cred2", "--from", "scratch", "--root-password-hashed", PASSWORD],
         "invalid --root-password-hashed"),
    ]
    for args, said in cases:
        r = nspawnctl.fails(*args)
        assert said in r.error and PASSWORD not in r.stderr, str(r)
    assert "cred2" not in nspawnctl("list").stdout
    assert host.run(["test", "-e", "/var/lib/nspawnctl/credentials/cred2"]).returncode != 0
    assert host.run(["sh", "-c", f"cat /etc/systemd/nspawn/{box}.nspawn; ls -l {STORE}"]
                    ).stdout == before


def test_export_carries_no_credential(host, nspawnctl, box):
    nspawnctl("stop", box)
    nspawnctl("export", box, f"{DIR}/out.tar")
    r = host.run(["grep", "-c", "-a", "-F", INLINE, f"{DIR}/out.tar"])
    assert r.stdout.strip() == "0", str(r)
    r = host.run(["grep", "-c", "-a", "-F", SECRET.splitlines()[0], f"{DIR}/out.tar"])
    assert r.stdout.strip() == "0", str(r)
    print(f"\ntest_credentials: {time.monotonic() - T0:.0f} s from the module's import")
