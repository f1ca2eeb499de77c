"""Hostile registries: tests/hostile_registry.py in the testbed's outside world (registries.py)
answers skopeo as a broken or malicious server can: a 64 MiB manifest, silence, a redirect
loop, a blob that goes on past its size or trickles, a blob that is not what its digest says,
a manifest by digest answered with another one, a manifest declaring more than nspawnctl
takes.  Each is refused with one line, in bounded time, and leaves nothing: no staging, no
record, no base tree, no blob but whole and checked ones, no process."""

import json
import os
import time
from pathlib import Path

import pytest

from tests import outside
from tests.integration import registries as R
from tests.integration.helpers import store_problems
from tests.integration.test_registry import STORE, all_blobs_whole, records, store_blobs
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

HOSTILE = R.registry("hostile")
DATA = f"{R.ROOT}/hostile/data"
MODES = ["huge-manifest", "silent", "redirect-loop", "long-blob", "tampered-blob", "swapped",
         "trickle", "big-config", "many-layers"]
TIMEOUT = 3  # NSPAWNCTL_REGISTRY_TIMEOUT for these tests: silence costs seconds, not minutes


@pytest.fixture(scope="module")
def hostile(host, tmp_path_factory):
    if not outside.isolated(host):
        pytest.skip("the outside world is made only in the testbed or the VM tier's VM")
    work = tmp_path_factory.mktemp("hostile")
    with outside.outside_world(host):
        regs = R.Registries(host, work).up()
        try:
            yield publish(host, work)
        finally:
            regs.down()


def publish(host, work: Path) -> dict[str, str]:
    """One image per mode (their blobs must not be in the store from another), written into
    the server's data; returns repo -> the manifest digest its tag names."""
    data = work / "data"
    tags, digests = {}, {}
    for mode in [*MODES, "normal"]:
        layer = ib.layer(ib.dir("bin"), ib.file("bin/busybox", R.BUSYBOX.read_bytes(), 0o755),
                         ib.file(f"{mode}.txt", os.urandom(64 << 10)))
        built = ib.write_manifest(data, [layer], config=R.config([layer]))
        manifest = json.loads(ib.blob_file(data, built.manifest).read_bytes())
        if mode == "big-config":
            manifest["config"]["size"] = 64 << 20
        if mode == "many-layers":
            manifest["layers"] = manifest["layers"] * 300
        if mode in ("big-config", "many-layers"):
            built.manifest = ib.write_blob(data, json.dumps(manifest).encode(),
                                           ib.OCI_MANIFEST)
        tags[f"{mode}:1"] = digests[mode] = built.manifest["digest"]
    other = ib.write_manifest(data, [ib.layer(ib.file("other"))])
    tags["swapped:other"] = other.manifest["digest"]
    (data / "tags.json").write_text(json.dumps(tags))
    (data / "modes.json").write_text(json.dumps({m: m for m in MODES}))
    for path in data.rglob("*"):
        target = Path(host.path(f"{DATA}/{path.relative_to(data)}"))
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return digests


def pull(nspawnctl, *args):
    return nspawnctl("pull", *args, "--json")


def refused(host, nspawnctl, ref: str, says: tuple[str, ...], within: float):
    """The pull of ref fails with one line saying one of says, within `within` seconds, and
    leaves nothing behind."""
    t0 = time.monotonic()
    r = host.run(["env", f"NSPAWNCTL_REGISTRY_TIMEOUT={TIMEOUT}", "nspawnctl", "pull", ref])
    took = time.monotonic() - t0
    assert r.returncode != 0, str(r)
    lines = [line for line in r.stderr.splitlines() if line.startswith("nspawnctl")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, str(r)
    assert any(s in lines[0].lower() for s in says), lines[0]
    assert took < within, f"{took:.1f} s"
    assert store_problems(host, nspawnctl) == []
    # what may stay is whole and checked (a config fetched before the bad layer), for prune
    assert all_blobs_whole(host) == []
    assert not any(k.startswith(ref.rsplit(":", 1)[0]) for k in records(nspawnctl))
    assert host.run(["pgrep", "-a", "skopeo"]).stdout == ""
    assert host.run(["ls", "-A", f"{STORE}/.nspawnctl-staging"]).stdout == ""
    return lines[0]


def test_the_server_serves_a_good_image(host, nspawnctl, hostile):
    info = json.loads(pull(nspawnctl, f"{HOSTILE}/normal:1").stdout)
    assert info["digest"] == hostile["normal"]
    nspawnctl("images", "rm", f"{HOSTILE}/normal:1")


@pytest.mark.parametrize("mode, says, within", [
    ("huge-manifest", ("larger than 4", "maximum allowed size"), 30),
    ("silent", ("did not answer within",), TIMEOUT + 10),
    ("redirect-loop", ("redirects",), 30),
    ("long-blob", ("file too large", "more than the image's blobs declare"), 30),
    ("trickle", ("sent nothing for", "took longer than"), TIMEOUT + 20),
    ("tampered-blob", ("digest did not match", "does not match"), 30),
    ("big-config", ("declares a config of 67108864 bytes",), 30),
    ("many-layers", ("300 layers, more than 256",), 30),
])
def test_a_hostile_answer_is_refused_with_one_line_and_nothing_left(host, nspawnctl, hostile,
                                                                     mode, says, within):
    line = refused(host, nspawnctl, f"{HOSTILE}/{mode}:1", says, within)
    print(f"{mode}: {line}")


def test_a_manifest_by_digest_answered_with_another_is_refused(host, nspawnctl, hostile):
    refused(host, nspawnctl, f"{HOSTILE}/swapped@{hostile['swapped']}", ("another manifest",),
            30)


def test_create_from_a_hostile_registry_leaves_no_container(host, nspawnctl, hostile):
    r = nspawnctl.fails("create", "hostile-c", "--from", f"docker://{HOSTILE}/tampered-blob:1")
    assert "digest" in r.error.lower()
    assert host.run(["test", "-e", "/var/lib/machines/hostile-c"]).returncode != 0
    assert store_problems(host, nspawnctl) == []


def test_prune_takes_what_failed_pulls_kept(host, nspawnctl, hostile):
    nspawnctl("images", "prune")
    assert not any(HOSTILE in name for name in records(nspawnctl))
    assert set(store_blobs(host)) == referenced(host)


def referenced(host) -> set[str]:
    """Every blob the store's records need (their manifests, indexes, configs, layers)."""
    root = host.path(STORE)
    try:
        index = json.loads((root / "index.json").read_text())
    except FileNotFoundError:
        return set()
    used = set()
    for desc in index["manifests"]:
        used.add(desc["digest"])
        if desc["annotations"].get("io.nspawnctl.index"):
            used.add(desc["annotations"]["io.nspawnctl.index"])
        manifest = json.loads((root / "blobs/sha256" / desc["digest"][7:]).read_text())
        used.update(d["digest"] for d in [manifest["config"], *manifest["layers"]])
    return used
