"""Pulling from real registries in the testbed's outside world (registries.py): Debian's
docker-registry over TLS with a test CA from certs.d, one with htpasswd auth, one in plain
HTTP; images pushed with skopeo from OCI layouts built here.  What a user sees: a two-layer
image pulled and serving, a second tag fetching only its own layer, by digest, an index's
platform, auth, TLS and insecure registries, the registry down, prune, images of every common
shape starting, kills and concurrent pulls.  Hostile registries: test_registry_hostile.py."""

import json
import random
import subprocess
import threading

import pytest

from tests import outside
from tests.integration import registries as R
from tests.integration.helpers import listing, store_problems, wait_for
from tests.integration.test_ansible_playbooks import ansible  # noqa: F401 (a fixture)
from tests.integration.test_kill import SEED, Run, Tally, leftovers, timed
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

TLS, AUTH, PLAIN = R.registry("tls"), R.registry("auth"), R.registry("plain")
STORE = "/var/lib/nspawnctl/oci"
AUTH_FILE = "/run/containers/0/auth.json"


@pytest.fixture(scope="module")
def world(host):
    if not outside.isolated(host):
        pytest.skip("the outside world is made only in the testbed or the VM tier's VM")
    with outside.outside_world(host) as w:
        yield w


@pytest.fixture(scope="module")
def regs(host, world, tmp_path_factory):  # noqa: ARG001 (world: its namespaces)
    work = tmp_path_factory.mktemp("registries")
    r = R.Registries(host, work).up()
    r.work = work
    r.digests = {}
    r.digests["web:1"] = r.push(R.layout(work, "web1", [R.SCRATCH_BASE, R.www(R.PAGE)]),
                                "1", "tls", "test/web", "1")
    r.digests["web:2"] = r.push(R.layout(work, "web2", [R.SCRATCH_BASE, R.www(b"two\n")]),
                                "1", "tls", "test/web", "2")
    yield r
    r.down()
    host.run(["rm", "-f", AUTH_FILE])


def address(nspawnctl, name) -> str:
    return wait_for(lambda: (listing(nspawnctl)[name]["address"] or [None])[0],
                    what=f"an address for {name}")


def serves(host, nspawnctl, name) -> str:
    addr = address(nspawnctl, name)
    return wait_for(lambda: (lambda r: r[1] if r[0] else None)(
        outside.fetch(host, f"http://{addr}/", timeout=2)), timeout=30, what=f"{name} serving")


def store_blobs(host) -> dict[str, str]:
    """digest -> sha256 of the file, for every blob in the store."""
    out = host.run(["sh", "-c", f"cd {STORE}/blobs/sha256 2>/dev/null && sha256sum *"]).stdout
    return {f"sha256:{name}": f"sha256:{hexd}" for hexd, name in
            (line.split() for line in out.splitlines())}


def all_blobs_whole(host) -> list[str]:
    return [f"blob {d} holds {h}" for d, h in store_blobs(host).items() if d != h]


def records(nspawnctl) -> dict[str, dict]:
    return {f"{r['repository']}{':' + r['tag'] if r['tag'] else '@' + r['digest']}": r
            for r in json.loads(nspawnctl("images", "--json").stdout) if r.get("repository")}


# --- pulled, run, served ------------------------------------------------------------------

def test_a_two_layer_image_is_pulled_and_serves(host, nspawnctl, regs, made):
    mark = regs.log_mark("tls")
    name = made("pull-web", "--from", f"docker://{TLS}/test/web:1")
    nspawnctl("start", name)
    assert serves(host, nspawnctl, name) == R.PAGE.decode()
    web = records(nspawnctl)[f"{TLS}/test/web:1"]
    assert web["digest"] == regs.digests["web:1"] and web["containers"] == [name]
    assert len(regs.blob_gets("tls", mark)) == 3  # two layers and the config
    status = json.loads(nspawnctl("status", name, "--json").stdout)
    assert status["image"] == "oci-" + regs.digests["web:1"].replace(":", "-")
    # a scratch image: no /usr of its own, an empty one given; nothing else added
    tree = host.path(f"/var/lib/nspawnctl/images/{status['image']}/tree")
    assert sorted(p.name for p in tree.iterdir()) == ["bin", "usr", "www"]


def test_a_second_tag_on_the_same_base_fetches_only_its_own_layer(nspawnctl, regs):
    mark = regs.log_mark("tls")
    nspawnctl("pull", f"{TLS}/test/web:1")  # there already: no blob
    assert regs.blob_gets("tls", mark) == []
    r = nspawnctl("pull", f"{TLS}/test/web:2", "--json")
    got = regs.blob_gets("tls", mark)
    base = ib.sha256(ib.compress(R.SCRATCH_BASE, "gzip"))
    assert base not in got and len(got) == 2, got  # its own layer and its config
    assert json.loads(r.stdout)["fetched_blobs"] == 2
    # and unpacked only its own layer, on the tree of the base kept when web:1 was unpacked
    assert "reusing the tree of 1 of its 2 layers" in r.stderr


def test_pinned_by_digest(host, nspawnctl, regs, made):
    digest = regs.digests["web:2"]
    mark = regs.log_mark("tls")
    name = made("pull-pinned", "--from", f"docker://{TLS}/test/web@{digest}")
    assert regs.blob_gets("tls", mark) == []  # the same image as web:2: from the store
    nspawnctl("start", name)
    assert serves(host, nspawnctl, name) == "two\n"
    wrong = "sha256:" + "0" * 64
    r = nspawnctl.fails("pull", f"{TLS}/test/web@{wrong}")
    assert "manifest unknown" in r.error or "not found" in r.error.lower()


def test_an_index_gives_the_hosts_platform(nspawnctl, regs):
    images = {R.ARCH: [R.SCRATCH_BASE, R.www(b"mine\n")],
              "s390x": [R.SCRATCH_BASE, R.www(b"not mine\n")]}
    index = regs.push(R.index_layout(regs.work, "multi", images), "1", "tls", "test/multi",
                      "1", all_=True)
    info = json.loads(nspawnctl("pull", f"{TLS}/test/multi:1", "--json").stdout)
    assert info["index"] == index and info["platform"] == f"linux/{R.ARCH}"
    other = json.loads(nspawnctl("pull", f"{TLS}/test/multi:1", "--platform", "linux/s390x",
                                 "--json").stdout)
    assert other["digest"] != info["digest"] and other["index"] == index
    r = nspawnctl.fails("pull", f"{TLS}/test/multi:1", "--platform", "linux/riscv64")
    assert "no manifest for linux/riscv64" in r.error


@pytest.mark.parametrize("shape", ["scratch", "distroless", "alpine", "debian-slim"])
def test_images_of_every_common_shape_start(host, nspawnctl, regs, made, shape):
    layers, run = R.shapes()[shape]
    regs.push(R.layout(regs.work, f"shape-{shape}", layers, **run), "1", "tls",
              f"test/{shape}", "1")
    name = made(f"shape-{shape}", "--from", f"docker://{TLS}/test/{shape}:1")
    nspawnctl("start", name)
    assert serves(host, nspawnctl, name) == f"{shape}\n"


def test_a_scratch_archive_starts_as_its_pull_does(host, nspawnctl, regs, made):
    """The same rule for an archive: a tree without /usr gets an empty one, nothing else.
    (Its own page: the same image as a pulled one would be the same cached tree.)"""
    layers = [R.SCRATCH_BASE, R.www(b"from an archive\n")]
    archive = ib.tar_tree(R.layout(regs.work, "scratch-archive", layers),
                          regs.work / "scratch.tar")
    host.path("/root/scratch.tar").write_bytes(archive.read_bytes())
    try:
        name = made("scratch-archive", "--from", "oci-archive:/root/scratch.tar")
    finally:
        host.run(["rm", "-f", "/root/scratch.tar"])
    nspawnctl("start", name)
    assert serves(host, nspawnctl, name) == "from an archive\n"
    image = json.loads(nspawnctl("status", name, "--json").stdout)["image"]
    tree = host.path(f"/var/lib/nspawnctl/images/{image}/tree")
    assert sorted(p.name for p in tree.iterdir()) == ["bin", "usr", "www"]
    assert list((tree / "usr").iterdir()) == []


# --- credentials, TLS ------------------------------------------------------------------------

def test_credentials_come_from_the_auth_file_and_never_show(host, nspawnctl, regs):
    regs.push(R.layout(regs.work, "private", [R.SCRATCH_BASE, R.www(b"private\n")]), "1",
              "auth", "test/private", "1")
    host.run(["rm", "-f", AUTH_FILE])
    r = nspawnctl.fails("pull", f"{AUTH}/test/private:1")
    assert "unauthorized" in r.error.lower() or "authentication required" in r.error.lower()
    assert "log in first" in r.stderr
    nspawnctl("login", AUTH, "-u", R.USER, "--password-stdin", input=R.PASSWORD + "\n")
    assert AUTH in json.loads(host.path(AUTH_FILE).read_text())["auths"]  # podman's file
    # while it pulls, no process holds the password in its command line
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(host.run(["sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | "
                                              "tr '\\0' ' '"]).stdout)
    t = threading.Thread(target=watch)
    t.start()
    try:
        r = nspawnctl("--debug", "pull", f"{AUTH}/test/private:1")
    finally:
        stop.set()
        t.join()
    # --debug shows every command run, whole: skopeo's are there, and no password in them
    assert "inspect --raw" in r.stderr and f"docker://{AUTH}/test/private:1" in r.stderr
    assert R.PASSWORD not in r.stdout + r.stderr
    assert seen and not any(R.PASSWORD in s for s in seen)
    assert R.PASSWORD not in host.run(["journalctl", "-q", "--no-pager", "-n", "500"]).stdout
    nspawnctl("logout", AUTH)
    r = nspawnctl.fails("pull", f"{AUTH}/test/private:1")
    assert "unauthorized" in r.error.lower() or "authentication required" in r.error.lower()


def test_tls_is_required_unless_the_registry_is_marked_insecure(host, nspawnctl, regs):
    regs.push(R.layout(regs.work, "plain", [R.SCRATCH_BASE, R.www(b"plain\n")]), "1",
              "plain", "test/plain", "1")
    r = nspawnctl.fails("pull", f"{PLAIN}/test/plain:1")  # no fallback to plain HTTP
    assert "HTTP response to HTTPS client" in r.error and "insecure" in r.stderr
    nspawnctl("pull", f"{PLAIN}/test/plain:1", "--tls-verify=false")
    conf = "/etc/containers/registries.conf.d/60-plain.conf"
    host.path(conf).write_text(f'[[registry]]\nlocation = "{PLAIN}"\ninsecure = true\n')
    try:
        nspawnctl("pull", f"{PLAIN}/test/plain:1")
    finally:
        host.run(["rm", "-f", conf])


def test_certs_d_is_what_makes_the_tls_registry_trusted(host, nspawnctl, regs):
    ca = f"{R.CERTS_D}/{TLS}/ca.crt"
    host.run(["mv", ca, ca + ".away"])
    try:
        r = nspawnctl.fails("pull", f"{TLS}/test/web:1")
        assert "x509" in r.error or "certificate" in r.error
        assert "certs.d" in r.stderr
        nspawnctl("pull", f"{TLS}/test/web:1", "--tls-verify=false")
    finally:
        host.run(["mv", ca + ".away", ca])


# --- the registry down, prune ---------------------------------------------------------------

def test_the_registry_down_the_cache_serves(host, nspawnctl, regs):
    nspawnctl("pull", f"{TLS}/test/web:1")
    regs.stop("tls")
    try:
        r = nspawnctl("create", "pull-offline", "--from", f"docker://{TLS}/test/web:1")
        assert "using cached base tree" in r.stderr
        r = nspawnctl.fails("create", "pull-offline2", "--from", f"docker://{TLS}/test/web:1",
                            "--pull", "always")
        assert "connection refused" in r.error or "reachable" in r.stderr
        assert "pull-offline2" not in listing(nspawnctl)
        r = nspawnctl("pull", f"{TLS}/test/web:1", "--pull", "newer")
        assert "using the image pulled before" in r.stderr
        r = nspawnctl.fails("pull", f"{TLS}/test/web:3", "--pull", "never")
        assert "not pulled" in r.error
    finally:
        regs.start("tls")
        nspawnctl("remove", "--force", "pull-offline", check=False)
    assert store_problems(host, nspawnctl) == []


def test_rm_and_prune_free_the_blobs_nothing_needs(host, nspawnctl, regs):
    own = R.www(b"short lived\n")
    regs.push(R.layout(regs.work, "temp", [R.SCRATCH_BASE, own]), "1", "tls", "test/temp", "1")
    nspawnctl("pull", f"{TLS}/test/temp:1")
    layer = ib.sha256(ib.compress(own, "gzip"))
    base = ib.sha256(ib.compress(R.SCRATCH_BASE, "gzip"))
    assert {layer, base} <= set(store_blobs(host))
    r = nspawnctl("images", "rm", f"{TLS}/test/temp:1")
    assert "removed" in r.stdout
    assert layer not in store_blobs(host) and base in store_blobs(host)  # web still needs it
    assert f"{TLS}/test/temp:1" not in records(nspawnctl)
    # a tag that moves leaves the old image's own blobs to prune
    regs.push(R.layout(regs.work, "temp2", [R.SCRATCH_BASE, own]), "1", "tls", "test/temp",
              "1")
    nspawnctl("pull", f"{TLS}/test/temp:1")
    moved = R.www(b"moved\n")
    regs.push(R.layout(regs.work, "temp3", [R.SCRATCH_BASE, moved]), "1", "tls", "test/temp",
              "1")
    nspawnctl("pull", f"{TLS}/test/temp:1")
    assert layer in store_blobs(host)
    r = nspawnctl("images", "prune")
    assert "removed " in r.stdout and " blobs (" in r.stdout, r.stdout
    assert layer not in store_blobs(host)
    assert ib.sha256(ib.compress(moved, "gzip")) in store_blobs(host)
    nspawnctl("images", "rm", f"{TLS}/test/temp:1")
    assert all_blobs_whole(host) == []


def test_images_rm_refuses_while_a_container_uses_it(nspawnctl, regs, made):
    made("pull-user", "--from", f"docker://{TLS}/test/web:2")
    r = nspawnctl.fails("images", "rm", f"{TLS}/test/web:2")
    assert "pull-user" in r.error


# --- faults ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big(regs):
    """An image with a 24 MB layer of random bytes (it does not compress): a pull long enough
    to be killed in the middle of its download."""
    rng = random.Random(7)
    payload = rng.randbytes(24 << 20)
    layers = [R.SCRATCH_BASE, ib.layer(ib.dir("data"), ib.file("data/blob", payload)),
              R.www(b"big\n")]
    regs.push(R.layout(regs.work, "big", layers), "1", "tls", "test/big", "1")
    return f"{TLS}/test/big:1", [ib.sha256(ib.compress(t, "gzip")) for t in layers]


def config_digest(host, ref: str) -> str:
    r = host.run(["skopeo", "inspect", "--raw", f"docker://{ref}"])
    assert r.returncode == 0, str(r)
    return json.loads(r.stdout)["config"]["digest"]


def test_two_pulls_of_the_same_image_at_once_fetch_it_once(host, nspawnctl, regs, big):
    ref, layers = big
    nspawnctl("images", "rm", ref, check=False)
    mark = regs.log_mark("tls")
    procs = [host.popen(["nspawnctl", "pull", ref], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    got = regs.blob_gets("tls", mark)
    big_layer = layers[1]
    assert got.count(big_layer) == 1, got
    assert len(got) == len(set(got)), got
    assert all_blobs_whole(host) == [] and store_problems(host, nspawnctl) == []


@pytest.fixture(scope="module")
def pull_trials(full, kill_trials) -> int:
    return kill_trials or (12 if full else 4)


def test_a_killed_pull_leaves_nothing_taken_for_whole(host, nspawnctl, regs, big, figures,
                                                      pull_trials):
    """SIGKILL at a random moment of a pull: no staging, no blob that is not what its name
    says, no record without its blobs; the rerun succeeds and fetches only what is missing."""
    ref, layers = big
    # skopeo (1.9) fetches an image's config again whenever it copies a layer, even with the
    # config in the layout it writes to: a few hundred bytes the rerun may fetch twice
    config = config_digest(host, ref)
    rng = random.Random(f"{SEED}:pull")
    argv = ["pull", ref]

    def cold():
        nspawnctl("images", "rm", ref, check=False)
    duration = timed(host, argv, before=cold)
    tally = Tally(figures, "pull (24 MB layer)", duration, "the image was recorded")
    try:
        for trial in tally.attempts(pull_trials):
            cold()
            delay = rng.uniform(0, duration)
            run = Run(host, argv)
            where = run.kill_after(delay)
            problems = leftovers(host, nspawnctl, run) + all_blobs_whole(host)
            problems += [f"process {p}" for p in host.run(
                ["pgrep", "-a", "skopeo"]).stdout.splitlines()]
            recorded = ref in records(nspawnctl)
            before = set(store_blobs(host))
            mark = regs.log_mark("tls")
            rerun = nspawnctl("pull", ref, "--json", check=False)
            if rerun.returncode != 0:
                problems.append(f"the rerun failed: {rerun.stderr.strip()}")
            again = (set(regs.blob_gets("tls", mark)) & before) - {config}
            if again:
                problems.append(f"the rerun fetched blobs the store had: {again}")
            tally.record(trial, delay, where, recorded, problems)
    finally:
        tally.report()
    assert tally.problems == []


def test_a_full_disk_is_one_line_and_leaves_nothing(host, nspawnctl, regs, big):
    ref, _ = big
    nspawnctl("images", "rm", ref, check=False)
    r = host.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", STORE])
    assert r.returncode == 0, str(r)
    try:
        r = nspawnctl.fails("pull", ref)
        assert "no space left" in r.error.lower(), r.error
        used = int(host.run(["df", "--output=used", "-B1", STORE]).stdout.split()[-1])
        # the partial download went with its staging directory (the 16 MB filled); the
        # blobs checked before it stay for prune (busybox's layer alone is 1 MB)
        assert used < 4 << 20, used
        assert store_problems(host, nspawnctl) == []
    finally:
        assert host.run(["umount", STORE]).returncode == 0
    assert ref not in records(nspawnctl)


def test_the_ansible_image_module_pulls_removes_and_prunes(nspawnctl, regs, ansible):  # noqa: F811, E501
    """nspawnctl.containers.image against the TLS registry: --check pulls nothing, present
    pulls once (then ok), absent removes once (then ok), a second prune changes nothing."""
    ref = f"{TLS}/test/ans:1"
    regs.push(R.layout(regs.work, "ans1", [R.SCRATCH_BASE, R.www(b"ans\n")]), "1", "tls",
              "test/ans", "1")

    def play(**options):
        lines = "".join(f"        {k}: {v}\n" for k, v in options.items())
        return ("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                f"    - name: the image\n      nspawnctl.containers.image:\n{lines}")

    r = ansible(play(name=ref), "--check")
    assert r.rc == 0 and r.stats["changed"] == 1 and ref not in records(nspawnctl), r
    r = ansible(play(name=ref))
    assert r.rc == 0 and r.stats["changed"] == 1 and ref in records(nspawnctl), r
    r = ansible(play(name=ref))
    assert r.rc == 0 and r.stats["changed"] == 0, r
    r = ansible(play(name=ref, state="absent"))
    assert r.rc == 0 and r.stats["changed"] == 1 and ref not in records(nspawnctl), r
    r = ansible(play(name=ref, state="absent"))
    assert r.rc == 0 and r.stats["changed"] == 0, r
    ansible(play(prune="true"))
    r = ansible(play(prune="true"))
    assert r.rc == 0 and r.stats["changed"] == 0, r
