"""Named volumes on a private root (the bus a fake): volume create, list, inspect and remove
through the CLI, their --json held to jsonview's kinds, the refusals one line each with
nothing changed, the staging a killed command leaves swept, and what `remove` of a
container and `images prune` do to volumes (nothing)."""

import json
import os

import pytest
from click.testing import CliRunner

from nspawnctl.cli import App, cli, jsonview
from nspawnctl.errors import CONFLICT, NOT_FOUND, USAGE
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.values import parse_bind, parse_volume
from nspawnctl.store import volumes
from nspawnctl.store.containers import Store
from nspawnctl.systemd import nspawn
from tests.unit.fakes import context


@pytest.fixture
def app(paths, monkeypatch):
    monkeypatch.setattr(App, "ctx", property(lambda self: context(paths)))
    monkeypatch.setattr(nspawn, "nspawn_version", lambda: 252)
    return paths


def run(*args):
    return CliRunner().invoke(cli, list(args))


def refused(result, code: int, words: str) -> None:
    """RESULT is a refusal: exit CODE, one line (the Error main prints) holding WORDS."""
    error = result.exception
    assert error is not None and getattr(error, "exit_code", None) == code, result.output
    assert words in error.message and "\n" not in error.message, error.message


def run_kind(args, kind, many=False):
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert jsonview.check([jsonview.schema(kind)] if many else jsonview.schema(kind),
                          answer) == [], answer
    return answer


def container(paths, name, *mounts):
    (paths.machines / name).mkdir(parents=True)
    save_config(paths, name, ContainerConfig(volumes=tuple(map(parse_volume, mounts))))


def state(paths) -> list[str]:
    """Every path under the state directory but locks: what a refused command must not
    change."""
    return sorted(str(p.relative_to(paths.state)) for p in paths.state.rglob("*")
                  if not p.name.endswith(".lock"))


def test_create_list_inspect_remove_json(app):
    made = run_kind(["volume", "create", "data"], "volume")
    assert made["name"] == "data" and made["containers"] == []
    assert made["path"] == str(app.volume_data("data"))
    assert os.path.isdir(made["path"]) and os.stat(made["path"]).st_mode & 0o777 == 0o755
    (app.volume_data("data") / "f").write_text("x" * 10000)
    container(app, "c1", "data:/srv")
    listed = run_kind(["volume", "list"], "volume", many=True)
    assert [(v["name"], v["containers"]) for v in listed] == [("data", ["c1"])]
    assert listed[0]["size"] >= 10000
    assert run_kind(["volume", "inspect", "data"], "volume")["containers"] == ["c1"]
    save_config(app, "c1", ContainerConfig())
    gone = run_kind(["volume", "remove", "data"], "volume_removed", many=True)
    assert gone == [{"name": "data", "size": listed[0]["size"]}]
    assert not os.path.lexists(app.volumes / "data")
    assert run_kind(["volume", "list"], "volume", many=True) == []


def test_table_and_lines(app):
    assert run("volume", "create", "data").output.startswith("created volume data (")
    out = run("volume", "list").output
    assert "data" in out and "containers" in out.splitlines()[0].lower()
    assert "path: " + str(app.volume_data("data")) in run("volume", "inspect", "data").output
    assert run("volume", "remove", "data").output.startswith("removed volume data (")


@pytest.mark.parametrize("name, words", [
    ("a/b", "invalid volume name 'a/b'"), ("..", "invalid volume name '..'"),
    ("x" * 65, "longer than 64 characters"), ("-x", "invalid volume name '-x'")])
def test_bad_names_one_line_nothing_made(app, name, words):
    for verb in ("create", "inspect", "remove"):
        result = run("volume", verb, "--", name) if name.startswith("-") else \
            run("volume", verb, name)
        refused(result, USAGE, words)
    assert volumes.names(app) == []


def test_create_twice_and_remove_missing_are_refused(app):
    run("volume", "create", "data")
    (app.volume_data("data") / "keep").write_text("mine")
    before = state(app)
    refused(run("volume", "create", "data"), CONFLICT, "a volume named 'data' already exists")
    refused(run("volume", "remove", "nope"), NOT_FOUND, "no volume named 'nope'")
    assert state(app) == before


def test_remove_is_refused_while_a_container_mounts_it(app):
    run("volume", "create", "data")
    container(app, "web", "data:/srv")
    container(app, "db", "data:/var/lib/db:ro")
    before = state(app)
    refused(run("volume", "remove", "data"), CONFLICT,
            "volume data is used by db, web: not removed")
    assert state(app) == before


def test_a_killed_create_or_remove_leaves_the_volume_whole_or_absent(app):
    """What a SIGKILL leaves: a staging directory of a dead process (its pid in its name);
    the volume is not there until the rename, and the next command sweeps the rest."""
    area = app.staging_in(app.volumes)
    area.mkdir(parents=True)
    dead = area / "volume-data.999999999-0.x"  # owner token of a process that is gone
    (dead / "volume/data").mkdir(parents=True)
    assert volumes.names(app) == []  # not a volume: not renamed into place
    from nspawnctl.fs import locks
    token = locks.owner_token().replace(str(os.getpid()), "999999999")
    dead.rename(area / f"volume-data.{token}.x")
    run_kind(["volume", "create", "other"], "volume")
    assert os.listdir(area) == []
    assert volumes.names(app) == ["other"]


def test_set_and_create_refuse_an_unknown_volume_and_a_bad_spec(app):
    (app.machines / "c1").mkdir(parents=True)
    save_config(app, "c1", ContainerConfig())
    text = app.nspawn_file("c1").read_text()
    refused(run("set", "c1", "--volume", "nope:/srv"), NOT_FOUND, "no volume named 'nope'")
    refused(run("set", "c1", "--volume", "a/b:/srv"), USAGE, "invalid volume name 'a/b'")
    refused(run("set", "c1", "--volume", "data:srv"), USAGE, "an absolute path is required")
    refused(run("set", "c1", "--volume", "data"), USAGE, "expected NAME:/PATH[:ro]")
    assert app.nspawn_file("c1").read_text() == text
    refused(run("create", "c2", "--from", "scratch", "--volume", "nope:/srv"), NOT_FOUND,
            "no volume named 'nope'")
    assert not Store(app).exists("c2")


def test_set_mounts_and_unmounts_a_volume(app):
    run("volume", "create", "data")
    (app.machines / "c1").mkdir(parents=True)
    save_config(app, "c1", ContainerConfig())
    assert run("set", "c1", "--volume", "data:/srv").exit_code == 0
    assert f"Bind={app.volume_data('data')}:/srv:idmap" in app.nspawn_file("c1").read_text()
    assert load_config(app, "c1").volumes == (parse_volume("data:/srv"),)
    assert run("set", "c1", "--no-volume", "data").exit_code == 0
    assert load_config(app, "c1").volumes == ()


def test_old_systemd_nspawn_is_refused_in_one_line(app, monkeypatch):
    run("volume", "create", "data")
    (app.machines / "c1").mkdir(parents=True)
    save_config(app, "c1", ContainerConfig())
    monkeypatch.setattr(nspawn, "nspawn_version", lambda: 249)
    for option in (["--volume", "data:/srv"], ["--bind", f"{app.state}:/x:idmap"]):
        refused(run("set", "c1", *option), USAGE, "which systemd-nspawn has from systemd 250 "
                "on; this host has systemd-nspawn 249")
    assert load_config(app, "c1") == ContainerConfig()


def test_idmap_without_a_user_namespace_is_refused_a_volume_is_a_plain_bind(app, tmp_path):
    run("volume", "create", "data")
    (app.machines / "c1").mkdir(parents=True)
    save_config(app, "c1", ContainerConfig(private_users=False))
    refused(run("set", "c1", "--bind", f"{tmp_path}:/x:idmap"), USAGE,
            "idmap needs a user namespace, and this container runs without one")
    assert run("set", "c1", "--volume", "data:/srv").exit_code == 0
    assert f"Bind={app.volume_data('data')}:/srv\n" in app.nspawn_file("c1").read_text()
    # and a container's idmapped bind is refused when it loses its user namespace
    (app.machines / "c2").mkdir(parents=True)
    save_config(app, "c2", ContainerConfig(binds=(parse_bind(f"{tmp_path}:/x:idmap"),)))
    refused(run("set", "c2", "--no-private-users"), USAGE, "idmap needs a user namespace")
    assert load_config(app, "c2").private_users


def test_container_remove_says_which_volumes_it_leaves(app):
    run("volume", "create", "data")
    container(app, "c1", "data:/srv", "data:/backup:ro")
    gone = run_kind(["remove", "--dry-run", "c1"], "removed", many=True)
    assert gone[0]["volumes"] == ["data"]
    result = run("remove", "c1")
    assert result.exit_code == 0, result.output
    assert "kept volume data (nspawnctl volume remove data removes it)" in result.output
    assert volumes.names(app) == ["data"] and (app.volume_data("data")).is_dir()


def test_images_prune_never_touches_volumes(app):
    run("volume", "create", "data")
    (app.volume_data("data") / "f").write_text("x")
    assert run("images", "prune").exit_code == 0
    assert (app.volume_data("data") / "f").read_text() == "x"


def test_export_and_import_round_trip_with_owners(app, tmp_path):
    import tarfile
    run("volume", "create", "data")
    data = app.volume_data("data")
    (data / "sub").mkdir()
    (data / "sub/f").write_text("hello\n")
    os.chown(data / "sub/f", 1000, 1001)  # as a container's uid 1000 leaves it (idmapped)
    file = tmp_path / "data.tar"
    done = run_kind(["volume", "export", "data", str(file)], "volume_exported")
    assert done["entries"] >= 3 and done["size"] == file.stat().st_size
    assert file.stat().st_mode & 0o777 == 0o600
    with tarfile.open(file) as tar:
        member = tar.getmember("./sub/f")
        assert (member.uid, member.gid) == (1000, 1001)
    refused(run("volume", "export", "data", str(file)), CONFLICT, "already exists")
    made = run_kind(["volume", "import", "copy", str(file)], "volume")
    assert made["name"] == "copy" and made["containers"] == []
    copy = app.volume_data("copy") / "sub/f"
    assert copy.read_text() == "hello\n"
    assert (copy.stat().st_uid, copy.stat().st_gid) == (1000, 1001)
    refused(run("volume", "import", "copy", str(file)), CONFLICT, "already exists")


def test_a_hostile_or_missing_tar_makes_no_volume(app, tmp_path):
    import io
    import tarfile
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        payload = b"owned\n"
        info = tarfile.TarInfo("../../escaped")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    result = run("volume", "import", "evil", str(evil))
    assert result.exception is not None and getattr(result.exception, "exit_code", 0) != 0
    assert "\n" not in result.exception.message, result.exception.message
    assert volumes.names(app) == [] and not list(tmp_path.rglob("escaped"))
    assert os.listdir(app.staging_in(app.volumes)) == []
    refused(run("volume", "import", "gone", str(tmp_path / "nope.tar")), NOT_FOUND,
            "no such tarball")
    assert volumes.names(app) == []
