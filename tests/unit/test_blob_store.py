"""The blob store of pulled images: a blob enters only whole and under its own digest, records
say what is pulled, and collect() removes only what no record needs."""

import hashlib
import json

import pytest

from nspawnctl.errors import Error
from nspawnctl.paths import Paths
from nspawnctl.sources.oci.runnable import make_runnable
from nspawnctl.store.blobs import BlobStore, Record, now
from nspawnctl.store.containers import Store


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return BlobStore(Paths.under(tmp_path)).ensure()


def fetched(tmp_path, data: bytes):
    path = tmp_path / "fetched"
    path.write_bytes(data)
    return path


def test_a_blob_enters_under_its_digest(store, tmp_path):
    data = b"layer bytes"
    assert store.adopt(fetched(tmp_path, data), digest(data), len(data))
    assert store.path(digest(data)).read_bytes() == data and store.has(digest(data), len(data))
    assert not store.adopt(fetched(tmp_path, data), digest(data), len(data))  # had it


@pytest.mark.parametrize("declared_size, what", [(None, "content"), (5, "size")])
def test_a_blob_that_is_not_what_it_says_never_enters(store, tmp_path, declared_size, what):
    data, other = b"what was promised", b"what was sent!!!!"
    assert len(data) == len(other)
    size = declared_size if declared_size is not None else len(data)
    with pytest.raises(Error) as e:
        store.adopt(fetched(tmp_path, other), digest(data), size)
    assert ("does not match its digest" if what == "content" else "descriptor says") in \
        e.value.message
    assert list(store.blobs.iterdir()) == []


def test_a_blob_of_the_wrong_size_in_the_store_is_not_taken_for_the_blob(store, tmp_path):
    data = b"the real one"
    store.path(digest(data)).write_bytes(b"torn")  # what a broken disk could leave
    assert not store.has(digest(data), len(data))
    assert store.adopt(fetched(tmp_path, data), digest(data), len(data))
    assert store.path(digest(data)).read_bytes() == data


def test_documents_are_checked_when_read(store, tmp_path):
    doc = json.dumps({"layers": []}).encode()
    store.add_bytes(doc, digest(doc), tmp_path)
    assert store.read_document(digest(doc)) == {"layers": []}
    store.path(digest(doc)).write_bytes(doc.replace(b"layers", b"LAYERS"))
    with pytest.raises(Error, match="not what its name says"):
        store.read_document(digest(doc))


def record(name, manifest_digest, size, platform="linux/amd64"):
    return Record(name, platform, manifest_digest, size,
                  "application/vnd.oci.image.manifest.v1+json", None, None, now())


def image(store, tmp_path, *layers: bytes):
    config = b'{"os": "linux"}'
    for blob in (config, *layers):
        store.add_bytes(blob, digest(blob), tmp_path)
    manifest = json.dumps({"config": {"digest": digest(config), "size": len(config)},
                           "layers": [{"digest": digest(b), "size": len(b)}
                                      for b in layers]}).encode()
    store.add_bytes(manifest, digest(manifest), tmp_path)
    return digest(manifest), len(manifest)


def test_records_are_replaced_by_name_and_platform(store, tmp_path):
    d, n = image(store, tmp_path, b"one")
    store.record(record("r.test/a:1", d, n))
    store.record(record("r.test/a:1", d, n, "linux/arm64"))
    assert store.record(record("r.test/a:1", d, n)) is not None  # replaced
    assert sorted(r.platform for r in store.records()) == ["linux/amd64", "linux/arm64"]
    assert store.find("r.test/a:1", "linux/arm64").digest == d


def test_collect_removes_only_what_no_record_needs(store, tmp_path):
    kept = image(store, tmp_path, b"base", b"top one")
    gone = image(store, tmp_path, b"base", b"top two")
    stray = b"a blob a killed pull left"
    store.add_bytes(stray, digest(stray), tmp_path)
    store.record(record("r.test/a:1", *kept))
    count, freed = store.collect()
    assert count == 3  # the second manifest, its own layer and the stray blob
    left = {"sha256:" + p.name for p in store.blobs.iterdir()}
    assert left == {d for d, _ in store.image_blobs(*kept)}
    assert digest(b"base") in left and gone[0] not in left


def test_the_sweep_removes_a_dead_pulls_staging(tmp_path):
    paths = Paths.under(tmp_path)
    area = paths.staging_in(paths.pulled)
    area.mkdir(parents=True)
    dead = area / "pull.999999999-deadbeef0000.x"
    (dead / "layout/blobs/sha256").mkdir(parents=True)
    (dead / "layout/blobs/sha256/oci-put-blob1").write_bytes(b"partial")
    assert any("pull.999999999" in line for line in Store(paths).sweep())
    assert not dead.exists()


def test_an_image_without_usr_gets_an_empty_one_and_nothing_else(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/app").write_bytes(b"\x7fELF")
    assert make_runnable(tree) == ["/usr"]
    assert sorted(p.name for p in tree.iterdir()) == ["bin", "usr"]
    assert list((tree / "usr").iterdir()) == [] and (tree / "usr").stat().st_mode & 0o777 == 0o755
    assert make_runnable(tree) == []


def test_an_images_own_usr_is_left_alone_even_a_link(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "usr").symlink_to("/nowhere")
    assert make_runnable(tree) == []
    assert (tree / "usr").is_symlink() and not (tmp_path / "nowhere").exists()
