"""cp in and out of running and stopped containers, as a user types it: owners mapped through
the container's user namespace, and a hostile symlink in the container never leads a copy
onto the host."""

import pytest

from tests.integration.helpers import MACHINES, wait_for

pytestmark = pytest.mark.integration

HOSTONLY = "/srv/hostonly"


def inside(nspawnctl, name, *cmd) -> str:
    return nspawnctl("exec", name, "--", *cmd).stdout


def test_cp_both_ways_running_and_stopped(host, nspawnctl, made):
    name = made("cp1")
    host.run(["sh", "-c", "mkdir -p /root/cpsrc/sub && echo one > /root/cpsrc/sub/a && "
              "chown 33:33 /root/cpsrc/sub/a && echo file > /root/cpfile && "
              "chmod 640 /root/cpfile"])
    nspawnctl("start", name)
    r = nspawnctl("cp", "/root/cpfile", f"{name}:/root/")
    assert r.stdout.strip() == f"copied /root/cpfile to {name}:/root/cpfile"
    # the container's root owns it, seen from inside; the mode is kept
    assert inside(nspawnctl, name, "stat", "-c", "%u:%g %a", "/root/cpfile").strip() == \
        "0:0 640"
    nspawnctl("cp", "/root/cpsrc", f"{name}:/opt/cpsrc")
    assert inside(nspawnctl, name, "stat", "-c", "%u:%g", "/opt/cpsrc/sub/a").strip() == "33:33"
    assert inside(nspawnctl, name, "cat", "/opt/cpsrc/sub/a") == "one\n"
    # out of the running container: the invoking user's (root's here), or with
    # --preserve-owner the ids on disk, the container's range
    nspawnctl("exec", name, "--", "sh", "-c",
              "mkdir -p /srv/out && echo made > /srv/out/f && chown 1000:1000 /srv/out/f")
    nspawnctl("cp", f"{name}:/srv/out", "/root/got")
    assert host.run(["stat", "-c", "%u:%g", "/root/got/f"]).stdout.strip() == "0:0"
    assert host.run(["stat", "-c", "%u:%g", "/root/got"]).stdout.strip() == "0:0"
    assert host.run(["cat", "/root/got/f"]).stdout == "made\n"
    on_disk = host.run(["stat", "-c", "%u:%g", f"{MACHINES}/{name}/srv/out/f"]).stdout.strip()
    uid = int(on_disk.split(":")[0])
    assert uid >= 0x10000 and uid % 0x10000 == 1000, on_disk
    nspawnctl("cp", "--preserve-owner", f"{name}:/srv/out", "/root/got-kept")
    assert host.run(["stat", "-c", "%u:%g", "/root/got-kept/f"]).stdout.strip() == on_disk
    # stopped: the same
    nspawnctl("stop", name)
    nspawnctl("cp", "/root/cpfile", f"{name}:/root/again")
    nspawnctl("cp", f"{name}:/root/again", "/root/again-out")
    assert host.run(["cat", "/root/again-out"]).stdout == "file\n"
    assert host.run(["stat", "-c", "%u", "/root/again-out"]).stdout.strip() == "0"
    nspawnctl("start", name)
    assert inside(nspawnctl, name, "stat", "-c", "%u %a", "/root/again").strip() == "0 640"


def test_hostile_symlink_stays_in_the_tree(host, nspawnctl, made):
    name = made("cp2")
    host.run(["sh", "-c", f"mkdir -p {HOSTONLY} && echo host-secret > {HOSTONLY}/secret && "
              "echo payload > /root/payload"])
    nspawnctl("start", name)
    # made by the container's root, pointing at a path that exists only on the host
    nspawnctl("exec", name, "--", "sh", "-c",
              f"ln -s {HOSTONLY} /evil && ln -s ../../../../..{HOSTONLY} /tmp/evil2 && "
              f"ln -s {HOSTONLY}/secret /evil-file")
    for dst in (f"{name}:/evil/x", f"{name}:/tmp/evil2/x"):
        r = nspawnctl.fails("cp", "/root/payload", dst)
        assert "does not exist in the container" in r.error, r.error
    r = nspawnctl.fails("cp", "/root/payload", f"{name}:/evil/")
    assert "no such directory in the container" in r.error, r.error
    assert host.run(["ls", HOSTONLY]).stdout.split() == ["secret"]
    for src in (f"{name}:/evil/secret", f"{name}:/tmp/evil2/secret"):
        r = nspawnctl.fails("cp", src, "/root/stolen")
        assert "No such file" in r.error, r.error
    assert host.run(["test", "-e", "/root/stolen"]).returncode != 0
    # the link itself is copied out as a link, and replaced (not followed) by a copy in
    nspawnctl("cp", f"{name}:/evil-file", "/root/link-out")
    assert host.run(["readlink", "/root/link-out"]).stdout.strip() == f"{HOSTONLY}/secret"
    nspawnctl("cp", "/root/payload", f"{name}:/evil-file")
    assert host.run(["cat", f"{HOSTONLY}/secret"]).stdout == "host-secret\n"
    assert inside(nspawnctl, name, "cat", "/evil-file") == "payload\n"


def test_bad_input(host, nspawnctl, made):
    name = made("cp3")
    host.run(["sh", "-c", "echo x > /root/x"])
    cases = [
        (("/root/x", "/root/y"), "one side of cp must be in a container"),
        ((f"{name}:/etc/hostname", f"{name}:/tmp/h"), "one side of cp must be in a container"),
        (("/root/x", f"{name}:/no/such/dir/x"), "does not exist in the container"),
        (("/root/x", f"{name}:relative"), "must be absolute"),
        (("/root/x", "ghost:/x"), "no container named 'ghost'"),
        (("/root/missing", f"{name}:/root/"), "no such file"),
        ((f"{name}:/etc/hostname", "/no/such/dir/x"), "no such directory"),
    ]
    for args, message in cases:
        r = nspawnctl.fails("cp", *args)
        assert message in r.error, (args, r.error)


# -- a container's root racing cp (issue 26): no host path is resolved twice -------------------

RACE_WORK = "/root/cp-race"
VICTIM = "/srv/victim-cp"      # a host directory, mode 0700: nothing of a copy in may land here
SECRET = "/srv/secret-cp"      # host files a copy out must never read
SECRET_TEXT = "HOST-SECRET-6e1f"
RACE_FILES = 3000

# Run by the container's own process (its command), as its root, inside its namespaces.  Two
# loops in two threads, both as tight as Python makes them; renameat2(RENAME_EXCHANGE) swaps a
# name atomically, so the copy never sees a name missing (GNU cp would fail and give up).
# - in: each temporary directory a copy makes in /dst is swapped with a symlink to VICTIM the
#   moment it appears (and moved aside);
# - out: /exfil/sub flips between a real directory and a symlink to SECRET, whose files have
#   the same names, every 20 ms: GNU cp checks that the file it opened is the one it looked at
#   (and fails the copy if not), so a flip must come rarely enough for whole stretches of the
#   copy to be read through the link.
RACER = r"""
import ctypes, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)

def exchange(a, b):
    return libc.renameat2(-100, a.encode(), -100, b.encode(), 2) == 0

def count(path, n):
    with open(path + ".new", "w") as f:
        f.write(str(n))
    os.rename(path + ".new", path)

def copy_in():
    # Moved aside in the same directory: the host's root owns the temporary directory, a
    # user the container does not map, so it may not be moved to another parent (its ".."
    # would change); a rename or exchange in place is allowed.
    n = 0
    while True:
        for entry in os.scandir("/dst"):
            if entry.name.startswith(".nspawnctl-cp.") and entry.is_dir(follow_symlinks=False):
                link = "/dst/.race-link"
                try:
                    os.symlink("%(victim)s", link)
                except FileExistsError:
                    pass
                if exchange("/dst/" + entry.name, link):
                    n += 1
                    count("/swaps-in", n)
                    try:
                        os.rename(link, "/dst/.moved-%%d" %% n)
                    except OSError:
                        pass

def copy_out():
    n = 0
    os.symlink("%(secret)s", "/exfil/.race-link")
    while True:
        time.sleep(0.02)
        if exchange("/exfil/sub", "/exfil/.race-link"):
            n += 1
            count("/flips-out", n)

threading.Thread(target=copy_in, daemon=True).start()
copy_out()
""" % {"victim": VICTIM, "secret": SECRET}


@pytest.fixture(scope="module")
def racer(host, nspawnctl, made):
    """A running container whose only process races every cp: Python from scratch."""
    host.run(["rm", "-rf", RACE_WORK, VICTIM, SECRET])
    host.run(["mkdir", "-p", f"{RACE_WORK}/src/sub", f"{RACE_WORK}/tree/dst",
              f"{RACE_WORK}/tree/exfil/sub", SECRET])
    host.run(["sh", "-c", f"mkdir -m 0700 {VICTIM} && chmod 0755 {RACE_WORK}/src"])
    base = host.path(RACE_WORK)
    (base / "racer.py").write_text(RACER)
    for i in range(RACE_FILES):
        (base / f"src/f{i:04d}").write_text(f"copy in {i}\n")
        (base / f"tree/exfil/sub/f{i:04d}").write_text("container's own\n")
        host.path(f"{SECRET}/f{i:04d}").write_text(SECRET_TEXT + "\n")
    (base / "src/sub/last").write_text("last\n")
    name = made("cprace", "--from", "scratch", "--add", "/usr/bin/python3",
                "--add", "/usr/lib/python3.11", "--add", f"{RACE_WORK}/racer.py:/racer.py",
                "--add", f"{RACE_WORK}/tree/dst:/dst", "--add", f"{RACE_WORK}/tree/exfil:/exfil",
                "--cmd", "python3 /racer.py")
    nspawnctl("start", name)
    tree = f"{MACHINES}/{name}"
    wait_for(lambda: host.run(["test", "-L", f"{tree}/exfil/.race-link"]).returncode == 0 or
             host.run(["test", "-L", f"{tree}/exfil/sub"]).returncode == 0,
             timeout=30, what="the racer to run")
    yield name
    nspawnctl("stop", name, check=False)
    host.run(["rm", "-rf", RACE_WORK, VICTIM, SECRET])


def counter(host, path) -> int:
    r = host.run(["cat", path])
    return int(r.stdout) if r.returncode == 0 and r.stdout.strip() else 0


def test_a_racing_container_cannot_steer_a_copy_in_onto_the_host(host, nspawnctl, racer,
                                                                   figures):
    tree = f"{MACHINES}/{racer}"
    attempts, landed, refused = 0, 0, 0
    while attempts < 12 and landed < 4:
        attempts += 1
        before = counter(host, f"{tree}/swaps-in")
        r = nspawnctl("cp", f"{RACE_WORK}/src", f"{racer}:/dst/got-{attempts}", check=False)
        if counter(host, f"{tree}/swaps-in") > before:
            landed += 1  # the temporary directory was swapped while the copy ran
        if r.returncode != 0:
            refused += 1
            assert "Traceback" not in r.stderr, str(r)
            assert "the copy was moved away while it was made" in r.stderr, str(r)
        # nothing of the copy on the host, and the directory's mode as it was
        assert host.run(["ls", "-A", VICTIM]).stdout.split() == [], (attempts, str(r))
        assert host.run(["stat", "-c", "%a", VICTIM]).stdout.strip() == "700", str(r)
    figures("cp in raced by the container: copies whose temporary was swapped",
            f"{landed} of {attempts} (refused: {refused})")
    assert landed >= 1, "the race never landed: the test proves nothing"


def test_a_racing_container_cannot_make_a_copy_out_read_the_host(host, nspawnctl, racer,
                                                                 figures):
    tree = f"{MACHINES}/{racer}"
    attempts, flipped = 0, 0
    for attempts in range(1, 13):
        out = f"{RACE_WORK}/out-{attempts}"
        before = counter(host, f"{tree}/flips-out")
        r = nspawnctl("cp", f"{racer}:/exfil", out, check=False)
        flipped += counter(host, f"{tree}/flips-out") > before
        assert "Traceback" not in r.stderr, str(r)
        # grep -r follows no symlink: a link to SECRET copied as a link is no leak
        leaked = host.run(["grep", "-rl", SECRET_TEXT, out]).stdout.split()
        assert leaked == [], (attempts, leaked[:5], len(leaked))
    figures("cp out raced by the container: copies during which sub flipped",
            f"{flipped} of {attempts}")
    assert flipped >= 1, "the race never ran during a copy: the test proves nothing"


# -- cp out hands the host no set-user-ID program and no file capability (issue 26) -----------

# a v2 file capability (cap_net_raw, effective): honoured for whoever runs the file
CAPABILITY_V2 = "b'\\x01\\x00\\x00\\x02\\x00\\x20\\x00\\x00' + bytes(12)"


def mode_owner(host, path) -> str:
    return host.run(["stat", "-c", "%a %u:%g", path]).stdout.strip()


def xattrs(host, path) -> list[str]:
    r = host.run(["python3", "-c", "import os, sys; "
                  "print(' '.join(os.listxattr(sys.argv[1], follow_symlinks=False)))", path])
    assert r.returncode == 0, str(r)
    return r.stdout.split()


def test_copy_out_hands_out_no_setuid_program(host, nspawnctl, racer):
    tree = f"{MACHINES}/{racer}"
    # made by the container's root, from inside: set-user-ID and set-group-ID programs of its
    # root, and a file capability (stored by the kernel as v3, for the container's root)
    code = ("import os\n"
            "os.makedirs('/tools', exist_ok=True)\n"
            "for name, mode in (('suid', 0o4755), ('sgid', 0o2755), ('capped', 0o755)):\n"
            "    open('/tools/' + name, 'w').write('#!/bin/sh\\n')\n"
            "    os.chmod('/tools/' + name, mode)\n"
            f"os.setxattr('/tools/capped', 'security.capability', {CAPABILITY_V2})\n")
    nspawnctl("exec", racer, "--", "python3", "-c", code)
    # and one as an image would bring it: v2, written on the tree as it is on disk
    host.run(["sh", "-c", f"echo x > {tree}/tools/imagecap && chmod 755 {tree}/tools/imagecap"
              f" && chown --reference={tree}/tools/suid {tree}/tools/imagecap"])
    r = host.run(["python3", "-c", "import os, sys; os.setxattr(sys.argv[1], "
                  f"'security.capability', {CAPABILITY_V2})", f"{tree}/tools/imagecap"])
    assert r.returncode == 0, str(r)
    on_disk = host.run(["stat", "-c", "%u:%g", f"{tree}/tools/suid"]).stdout.strip()
    assert on_disk != "0:0" and mode_owner(host, f"{tree}/tools/suid") == f"4755 {on_disk}"
    assert "security.capability" in xattrs(host, f"{tree}/tools/capped")

    # by default: the invoking user's (sudo's SUDO_UID/SUDO_GID), no set-ID bit, no capability
    host.run(["rm", "-rf", "/root/tools-out", "/root/suid-out"])
    r = host.run(["env", "SUDO_UID=1234", "SUDO_GID=2345", "nspawnctl", "cp",
                  f"{racer}:/tools", "/root/tools-out"])
    assert r.returncode == 0, str(r)
    for name in ("suid", "sgid", "capped", "imagecap"):
        path = f"/root/tools-out/{name}"
        assert mode_owner(host, path) == "755 1234:2345", name
        assert "security.capability" not in xattrs(host, path), name
    assert mode_owner(host, "/root/tools-out") == "755 1234:2345"
    # root without sudo: root's own files, still without the bits
    nspawnctl("cp", f"{racer}:/tools/suid", "/root/suid-out")
    assert mode_owner(host, "/root/suid-out") == "755 0:0"

    # --preserve-owner: the ids as they are on disk (the container's range, never host 0);
    # a set-ID bit of an id in that range stays, a capability never comes out
    host.run(["rm", "-rf", "/root/tools-kept"])
    nspawnctl("cp", "--preserve-owner", f"{racer}:/tools", "/root/tools-kept")
    assert mode_owner(host, "/root/tools-kept/suid") == f"4755 {on_disk}"
    assert mode_owner(host, "/root/tools-kept/sgid") == f"2755 {on_disk}"
    for name in ("capped", "imagecap"):
        assert mode_owner(host, f"/root/tools-kept/{name}") == f"755 {on_disk}", name
        assert "security.capability" not in xattrs(host, f"/root/tools-kept/{name}"), name
    host.run(["rm", "-rf", "/root/tools-out", "/root/suid-out", "/root/tools-kept"])
