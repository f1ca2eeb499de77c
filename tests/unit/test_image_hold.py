"""A base tree chosen by a create is held until its commit: prune waits, then counts again;
an overlay container's lower tree counts as used even when its settings do not name it."""

import json
import threading
import time

from nspawnctl.paths import Paths
from nspawnctl.store import images


def paths_in(root):
    return Paths(machines=root / "machines", nspawn=root / "nspawn", units=root / "units",
                 state=root / "state", cache=root / "cache")


def make_image(paths, key):
    tree = paths.images / key / "tree"
    tree.mkdir(parents=True)
    (paths.images / key / "meta.json").write_text(json.dumps({"key": key}))


def test_prune_waits_for_a_held_base_and_counts_its_users_again(tmp_path):
    paths = paths_in(tmp_path)
    make_image(paths, "k1")
    users: dict = {}
    done = []

    def prune():
        done.append(images.prune(paths, lambda: dict(users)))

    with images.held_image(paths, "k1", {}, lambda t: None, lambda m: None) as (image, cached):
        assert cached and image == paths.images / "k1"
        worker = threading.Thread(target=prune)
        worker.start()
        time.sleep(0.3)
        assert not done and (paths.images / "k1").is_dir()  # prune waits for the holder
        users["k1"] = 1  # the create commits a container on it before letting go
    worker.join(10)
    assert done == [[]] and (paths.images / "k1").is_dir()


def test_prune_removes_an_unheld_unused_base(tmp_path):
    paths = paths_in(tmp_path)
    make_image(paths, "k2")
    lists = images.apt_lists(paths, "k2")  # an incremental build's package lists on it
    (lists / "partial").mkdir(parents=True)
    other = images.apt_lists(paths, "k-other")
    other.mkdir()
    assert images.prune(paths, dict) == ["k2"]
    assert not (paths.images / "k2").exists()
    assert not lists.exists() and other.is_dir()  # they go with their base, and only those


def test_overlay_lower_counts_as_a_user_without_the_image_comment(tmp_path, monkeypatch):
    from nspawnctl.store import overlay
    paths = paths_in(tmp_path)
    make_image(paths, "k3")
    (paths.machines / "ov").mkdir(parents=True)
    overlay.write_unit(paths, "ov", paths.images / "k3" / "tree")
    assert images.usage_by_image(paths) == {"k3": 1}
