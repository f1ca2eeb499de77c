"""pull against a registry in memory (registryfake.py): what is fetched and what is not, the
--pull policies, index platforms, and every answer that is not what it should be refused with
one line and nothing recorded.  The real skopeo and registry are the integration tests'."""

import json

import pytest

from nspawnctl.errors import Error
from nspawnctl.paths import Paths
from nspawnctl.sources.registry import shortnames
from nspawnctl.sources.registry.pull import pull
from nspawnctl.store.blobs import BlobStore
from tests.unit import imagebuild as ib
from tests.unit.registryfake import FakeRegistry, image

REPO = "reg.test/app"
BASE = ib.layer(ib.dir("bin"), ib.file("bin/tool", b"base" * 100, mode=0o755))
TOP1 = ib.layer(ib.file("srv/one", b"1" * 1000))
TOP2 = ib.layer(ib.file("srv/two", b"2" * 1000))


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path))
    return Paths.under(tmp_path)


@pytest.fixture
def registry(monkeypatch):
    return FakeRegistry().install(monkeypatch)


def run(paths, ref, lines=None, **kw):
    return pull(paths, ref, report=(lines.append if lines is not None else lambda _m: None),
                **kw)


def left_behind(paths) -> list[str]:
    """What a failed pull must not leave: staging, its lock file, records, blobs it was not
    sure of."""
    found = [str(p) for p in (paths.pulled / ".nspawnctl-staging").glob("*")]
    found += [str(p) for p in paths.pulled.glob(".pull-*.lock")]
    store = BlobStore(paths)
    found += [f"record {r.name}" for r in store.records()]
    return found


def blobs_in(paths) -> set[str]:
    return {"sha256:" + p.name for p in BlobStore(paths).blobs.glob("*")}


def test_a_pull_records_the_image_with_every_blob_checked(paths, registry):
    img = image(BASE, TOP1)
    registry.push(REPO, "v1", img)
    pulled = run(paths, f"{REPO}:v1")
    assert pulled.record.name == f"{REPO}:v1" and pulled.record.digest == img["digest"]
    assert pulled.fetched_blobs == 3 and not pulled.cached
    assert blobs_in(paths) == set(img["blobs"]) | {img["digest"]}
    assert list((paths.pulled / ".nspawnctl-staging").glob("*")) == []


def test_a_second_tag_fetches_only_its_own_layers(paths, registry):
    one, two = image(BASE, TOP1), image(BASE, TOP2)
    registry.push(REPO, "v1", one)
    registry.push(REPO, "v2", two)
    run(paths, f"{REPO}:v1")
    registry.requests.clear()
    pulled = run(paths, f"{REPO}:v2")
    fetched = {r.split()[1] for r in registry.requests if r.startswith("blob")}
    assert fetched == set(two["blobs"]) - set(one["blobs"])  # its layer and its config
    assert pulled.fetched_blobs == 2 and pulled.blobs == 3


def test_policies(paths, registry):
    registry.push(REPO, "v1", image(BASE, TOP1))
    with pytest.raises(Error, match="is not pulled"):
        run(paths, f"{REPO}:v1", policy="never")
    run(paths, f"{REPO}:v1")
    registry.down = True
    # missing (the default) and never: from the store, the registry not asked
    assert run(paths, f"{REPO}:v1").cached
    assert run(paths, f"{REPO}:v1", policy="never").cached
    # newer: the registry cannot say, the image pulled before serves, with a warning
    lines = []
    assert run(paths, f"{REPO}:v1", lines, policy="newer").cached
    assert any("using the image pulled before" in line for line in lines)
    # always: the registry must answer
    with pytest.raises(Error, match="connection refused"):
        run(paths, f"{REPO}:v1", policy="always")
    registry.down = False
    registry.requests.clear()
    assert run(paths, f"{REPO}:v1", policy="newer").cached  # same digest: nothing fetched
    assert not any(r.startswith("blob") for r in registry.requests)
    newer = image(BASE, TOP2)
    registry.push(REPO, "v1", newer)  # the tag moved
    assert run(paths, f"{REPO}:v1", policy="newer").record.digest == newer["digest"]
    assert run(paths, f"{REPO}:v1").record.digest == newer["digest"]


def test_by_digest_and_from_a_record_of_the_same_image(paths, registry):
    img = image(BASE, TOP1)
    registry.push(REPO, "v1", img)
    run(paths, f"{REPO}:v1")
    registry.down = True
    pulled = run(paths, f"{REPO}@{img['digest']}")  # the same image, pulled under its tag
    assert pulled.cached and pulled.record.name == f"{REPO}@{img['digest']}"


def test_a_reference_by_digest_answered_with_another_manifest_is_refused(paths, registry):
    real, other = image(BASE, TOP1), image(BASE, TOP2)
    registry.push(REPO, None, real)
    registry.manifests[f"{REPO}@{real['digest']}"] = other["manifest"]
    registry.blobs.update(other["blobs"])
    with pytest.raises(Error, match="with another manifest") as e:
        run(paths, f"{REPO}@{real['digest']}")
    assert "\n" not in e.value.message
    assert left_behind(paths) == [] and blobs_in(paths) == set()


def test_an_index_gives_the_hosts_platform_or_the_one_asked_for(paths, registry):
    amd, arm = image(BASE, TOP1), image(BASE, TOP2, arch="arm64")
    index = registry.push_index(REPO, "multi", (arm, "linux/arm64"), (amd, "linux/amd64"))
    pulled = run(paths, f"{REPO}:multi", platform="linux/amd64")
    assert pulled.record.digest == amd["digest"] and pulled.record.index == index
    pulled = run(paths, f"{REPO}:multi", platform="linux/arm64")
    assert pulled.record.digest == arm["digest"] and pulled.record.platform == "linux/arm64"
    with pytest.raises(Error, match="has no manifest for linux/s390x") as e:
        run(paths, f"{REPO}:multi", platform="linux/s390x")
    assert "linux/amd64" in e.value.hint and "linux/arm64" in e.value.hint


def test_an_index_entry_answered_with_another_manifest_is_refused(paths, registry):
    amd, other = image(BASE, TOP1), image(BASE, TOP2)
    registry.push_index(REPO, "multi", (amd, "linux/amd64"))
    registry.manifests[f"{REPO}@{amd['digest']}"] = other["manifest"]
    with pytest.raises(Error, match="with another manifest"):
        run(paths, f"{REPO}:multi", platform="linux/amd64")
    assert left_behind(paths) == []


def test_an_image_for_another_platform_is_refused(paths, registry):
    registry.push(REPO, "arm", image(BASE, arch="arm64"))
    with pytest.raises(Error, match="is for linux/arm64, not linux/amd64"):
        run(paths, f"{REPO}:arm", platform="linux/amd64")
    assert left_behind(paths) == []


def hostile(img: dict, **change) -> dict:
    doc = json.loads(img["manifest"])
    for key, value in change.items():
        if key == "layer":
            doc["layers"][0].update(value)
        elif key == "config":
            doc["config"].update(value)
        else:
            doc[key] = value
    data = json.dumps(doc).encode()
    return dict(img, manifest=data, digest=ib.sha256(data))


@pytest.mark.parametrize("change, says", [
    ({"layers": [{"mediaType": ib.LAYER_MEDIA["gzip"], "digest": "sha256:" + "0" * 64,
                  "size": 1}] * 300}, "300 layers, more than 256"),
    ({"config": {"size": 64 << 20}}, "declares a config of 67108864 bytes"),
    ({"layer": {"size": 70 << 30}}, "more than 64 GiB"),
    ({"layer": {"size": -1}}, "invalid size"),
    ({"layer": {"mediaType": "application/x-evil"}}, "unknown type"),
    ({"layer": {"digest": "sha256:../../etc/passwd"}}, "invalid digest"),
    ({"config": {"mediaType": "application/vnd.oci.image.index.v1+json"}}, "unknown type"),
    ({"schemaVersion": 1}, "schema 1"),
    ({"layers": None}, "without config and layers"),
])
def test_manifests_beyond_the_bounds_are_refused_before_any_blob(paths, registry, change, says):
    img = hostile(image(BASE, TOP1), **change)
    registry.push(REPO, "bad", img)
    with pytest.raises(Error, match=says) as e:
        run(paths, f"{REPO}:bad")
    assert "\n" not in e.value.message
    assert not any(r.startswith("blob") for r in registry.requests)
    assert left_behind(paths) == [] and blobs_in(paths) == set()


def test_a_manifest_that_is_not_json_is_refused(paths, registry):
    registry.manifests[f"{REPO}:junk"] = b"\x00<html>not json"
    with pytest.raises(Error, match="not a JSON object"):
        run(paths, f"{REPO}:junk")


@pytest.mark.parametrize("which", ["layer", "config"])
def test_a_blob_that_does_not_match_its_digest_never_enters_the_store(paths, registry, which):
    img = image(BASE, TOP1)
    registry.push(REPO, "v1", img)
    manifest = json.loads(img["manifest"])
    digest = manifest["layers"][1]["digest"] if which == "layer" else manifest["config"]["digest"]
    good = registry.blobs[digest]
    registry.blobs[digest] = bytes([good[0] ^ 1]) + good[1:]  # same size, other content
    with pytest.raises(Error, match="does not match its digest"):
        run(paths, f"{REPO}:v1")
    assert digest not in blobs_in(paths)
    assert left_behind(paths) == []
    registry.blobs[digest] = good  # the rerun fetches only what is missing
    registry.requests.clear()
    run(paths, f"{REPO}:v1")
    assert f"blob {digest}" in registry.requests


def test_short_names_resolve_through_the_configuration(paths, registry, tmp_path):
    conf_file = tmp_path / "r.conf"
    conf_file.write_text('unqualified-search-registries = ["reg.test"]\n')
    conf = shortnames.load(conf_file, [], tmp_path / "none")
    registry.push(REPO, "v1", image(BASE))
    lines = []
    assert run(paths, "app:v1", lines, conf=conf).record.name == f"{REPO}:v1"
    assert any("unqualified-search" in line for line in lines)
    registry.down = True
    assert run(paths, "app:v1", conf=conf).cached  # found where podman would look
    two = shortnames.load(_write(tmp_path, 'unqualified-search-registries = ["a.test", '
                                           '"reg.test"]\n'), [], tmp_path / "none")
    assert run(paths, "app:v1", conf=two).record.name == f"{REPO}:v1"  # local: no ambiguity
    with pytest.raises(Error, match="ambiguous"):
        run(paths, "app:v2", conf=two)


def _write(tmp_path, text):
    path = tmp_path / "two.conf"
    path.write_text(text)
    return path


def test_progress_names_each_blob_as_it_lands(paths, registry):
    """On a terminal: bytes of the total as they come, and a line per blob fetched."""
    one, two = image(BASE, TOP1), image(BASE, TOP2)
    registry.push(REPO, "v1", one)
    registry.push(REPO, "v2", two)
    run(paths, f"{REPO}:v1")
    calls = []
    run(paths, f"{REPO}:v2", progress=lambda done, total, landed=None: calls.append(landed))
    landed = sorted(c.split()[1].rstrip(":") for c in calls if c)
    assert landed == sorted(d[:19] for d in set(two["blobs"]) - set(one["blobs"]))
