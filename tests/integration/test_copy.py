"""cp in and out of running and stopped containers, as a user types it: owners mapped through
the container's user namespace, and a hostile symlink in the container never leads a copy
onto the host."""

import pytest

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
    # out of the running container: owners as the container sees them
    nspawnctl("exec", name, "--", "sh", "-c",
              "mkdir -p /srv/out && echo made > /srv/out/f && chown 1000:1000 /srv/out/f")
    nspawnctl("cp", f"{name}:/srv/out", "/root/got")
    assert host.run(["stat", "-c", "%u:%g", "/root/got/f"]).stdout.strip() == "1000:1000"
    assert host.run(["stat", "-c", "%u:%g", "/root/got"]).stdout.strip() == "0:0"
    assert host.run(["cat", "/root/got/f"]).stdout == "made\n"
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
