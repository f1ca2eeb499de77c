"""images, images rm and images prune with pulled images (ops/images.py), against a registry
in memory (registryfake.py): what is listed, what rm and prune take and what they must leave.
The integration tests do it with a real registry and containers."""

import json

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import images as ops
from nspawnctl.ops import pull as pull_ops
from nspawnctl.paths import Paths
from nspawnctl.store import images as image_store
from nspawnctl.store.blobs import BlobStore
from tests.unit import imagebuild as ib
from tests.unit.fakes import context
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


def blobs_in(paths) -> set[str]:
    return {"sha256:" + p.name for p in BlobStore(paths).blobs.glob("*")}


def pulled(paths, registry, tag, *layers):
    img = image(*layers, Cmd=["/bin/tool"])
    registry.push(REPO, tag, img)
    pull_ops.pull(context(paths), f"{REPO}:{tag}", policy="always")  # nspawnctl pull's
    return img


def test_images_lists_each_pulled_name_with_its_tree(paths, registry):
    one = pulled(paths, registry, "v1", BASE, TOP1)
    pulled(paths, registry, "v2", BASE, TOP2)
    rows = {(r["repository"], r["tag"]): r for r in ops.list_images(context(paths))}
    assert set(rows) == {(REPO, "v1"), (REPO, "v2")}  # no second row for their trees
    row = rows[(REPO, "v1")]
    assert row["digest"] == one["digest"] and row["unpacked"] and row["containers"] == []
    assert row["key"] == "oci-" + one["digest"].replace(":", "-")
    assert row["download"] == sum(len(b) for b in one["blobs"].values()) + len(one["manifest"])
    json.dumps(rows[(REPO, "v2")])  # --json takes every row


def test_rm_takes_the_names_tree_and_only_the_blobs_nothing_else_needs(paths, registry):
    one = pulled(paths, registry, "v1", BASE, TOP1)
    two = pulled(paths, registry, "v2", BASE, TOP2)
    done = ops.remove(context(paths), f"{REPO}:v1")
    assert done["names"] == [f"{REPO}:v1"] and done["trees"] == [
        "oci-" + one["digest"].replace(":", "-")]
    left = blobs_in(paths)
    assert set(two["blobs"]) | {two["digest"]} == left  # the shared base stays for v2
    assert not (set(one["blobs"]) - set(two["blobs"])) & left
    with pytest.raises(Error, match="no image"):
        ops.remove(context(paths), f"{REPO}:v1")


def test_prune_takes_the_blobs_of_a_tag_that_moved(paths, registry):
    one = pulled(paths, registry, "v1", BASE, TOP1)
    two = pulled(paths, registry, "v1", BASE, TOP2)  # the same tag, another image
    own = set(one["blobs"]) - set(two["blobs"]) | {one["digest"]}
    assert own <= blobs_in(paths)  # until a prune
    done = ops.prune(context(paths))
    assert done["blobs"] == len(own) and not own & blobs_in(paths)
    assert set(two["blobs"]) | {two["digest"]} <= blobs_in(paths)
    assert "oci-" + one["digest"].replace(":", "-") in done["trees"]


def test_rm_is_refused_while_a_container_uses_the_tree(paths, registry, monkeypatch):
    one = pulled(paths, registry, "v1", BASE, TOP1)
    key = "oci-" + one["digest"].replace(":", "-")
    monkeypatch.setattr(ops, "users_by_image", lambda _p: {key: ["web"]})
    with pytest.raises(Error, match="used by container.*web"):
        ops.remove(context(paths), f"{REPO}:v1")
    assert one["digest"] in blobs_in(paths) and (paths.images / key).is_dir()
    assert [r.name for r in BlobStore(paths).records()] == [f"{REPO}:v1"]
    assert image_store.list_images(paths, {})  # its tree is still there


def test_prune_dry_run_says_what_prune_takes_and_changes_nothing(paths, registry):
    one = pulled(paths, registry, "v1", BASE, TOP1)
    pulled(paths, registry, "v1", BASE, TOP2)  # the same tag, another image
    key = "oci-" + one["digest"].replace(":", "-")
    blobs = blobs_in(paths)
    would = ops.prune(context(paths), dry_run=True)
    assert blobs_in(paths) == blobs and (paths.images / key).is_dir()
    assert key in would["trees"] and would["tree_sizes"][key] > 0  # no container uses it
    assert would["blobs"] == 3 and would["bytes"] > 0  # TOP1, v1's first config, manifest
    done = ops.prune(context(paths))
    assert done == would
    assert not (paths.images / key).exists()


def test_rm_dry_run_says_what_rm_takes_and_changes_nothing(paths, registry):
    pulled(paths, registry, "v1", BASE, TOP1)
    pulled(paths, registry, "v2", BASE, TOP2)
    blobs, records = blobs_in(paths), BlobStore(paths).records()
    would = ops.remove(context(paths), f"{REPO}:v1", dry_run=True)
    assert blobs_in(paths) == blobs and BlobStore(paths).records() == records
    assert would["blobs"] == 3 and would["bytes"] > 0  # TOP1, v1's config and manifest
    done = ops.remove(context(paths), f"{REPO}:v1")
    assert done == would


def test_prune_and_rm_say_what_goes(paths, registry):
    """What the user reads: each tree with its size, the blobs with theirs."""
    from click.testing import CliRunner

    from nspawnctl.cli import App, cli
    app = App()
    app._ctx = context(paths)

    def run(*args):
        result = CliRunner().invoke(cli, list(args), obj=app)
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    one = pulled(paths, registry, "v1", BASE, TOP1)
    key = "oci-" + one["digest"].replace(":", "-")
    mb = f"{image_store.read_meta(paths.images / key)['size'] / 1e6:.1f} MB"
    lines = run("images", "rm", "--dry-run", f"{REPO}:v1")
    assert lines[0].startswith(f"would remove {REPO}:v1: base tree {key} ({mb}), 4 blobs ("), \
        lines
    assert run("images", "rm", f"{REPO}:v1")[0] == lines[0].replace("would remove", "removed")
    pulled(paths, registry, "v1", BASE, TOP1)
    pulled(paths, registry, "v1", BASE, TOP2)  # the tag moved: v1's first tree is unnamed
    lines = run("images", "prune", "--dry-run")
    assert lines[0].startswith("would remove 2 base trees (") and f"  {key}  {mb}" in lines
    assert lines[3].startswith("would remove 3 blobs ("), lines
    assert (paths.images / key).is_dir()
    assert run("images", "prune") == [line.replace("would remove", "removed") for line in lines]


def test_pull_and_images_json_are_of_their_kinds(paths, registry):
    """What pull --json and images --json print, from a real pull (cli/jsonview.py)."""
    from nspawnctl.cli import jsonview
    registry.push(REPO, "v1", image(BASE, TOP1, Cmd=["/bin/tool"]))
    info = pull_ops.pull(context(paths), f"{REPO}:v1", policy="always")
    assert jsonview.check(jsonview.schema("pulled"), jsonview.view("pulled", info)) == []
    for row in jsonview.views("image", ops.list_images(context(paths))):
        assert jsonview.check(jsonview.schema("image"), row) == [], row
        assert row["created"].endswith("Z") and row["containers"] == []
