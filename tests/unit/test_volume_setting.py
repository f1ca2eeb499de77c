"""--volume NAME:/PATH[:ro] and --bind SRC:DST[:ro][:idmap]: what users type, the Bind= lines
systemd-nspawn reads (a volume's always idmapped, pointing at its data directory), read back
as the same settings, and the stack key."""

import pytest

from nspawnctl.errors import Error
from nspawnctl.paths import Paths
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.nspawnfile import parse_nspawn, render_nspawn, update_nspawn
from nspawnctl.settings.values import Bind, VolumeMount, parse_bind, parse_volume
from nspawnctl.stacks import model, yamlfile


@pytest.mark.parametrize("text, mount", [
    ("data:/srv", VolumeMount("data", "/srv")),
    ("data:/srv:ro", VolumeMount("data", "/srv", True)),
    ("data:/srv:rw", VolumeMount("data", "/srv")),
    ("my.vol_1:/a b", VolumeMount("my.vol_1", "/a b")),
])
def test_parse_volume(text, mount):
    assert parse_volume(text) == mount
    assert parse_volume(str(mount)) == mount


@pytest.mark.parametrize("text, words", [
    ("data", "expected NAME:/PATH[:ro]"), ("data:/srv:idmap", "expected NAME:/PATH[:ro]"),
    ("a/b:/srv", "invalid volume name 'a/b'"), ("..:/srv", "invalid volume name '..'"),
    ("x" * 65 + ":/srv", "longer than 64"), ("data:srv", "an absolute path is required"),
    ("data:/s\\rv", "may not contain"), ("data:/srv\n", "line breaks"),
    (":/srv", "volume name is empty"),
])
def test_bad_volumes_are_one_line(text, words):
    with pytest.raises(Error) as e:
        parse_volume(text)
    assert words in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize("text, bind", [
    ("/srv:/data:idmap", Bind("/srv", "/data", False, True)),
    ("/srv:/data:ro:idmap", Bind("/srv", "/data", True, True)),
    ("/srv:/data:idmap:ro", Bind("/srv", "/data", True, True)),
    ("/srv:/srv:idmap", Bind("/srv", "/srv", False, True)),
])
def test_bind_takes_idmap(text, bind):
    assert parse_bind(text) == bind and parse_bind(str(bind)) == bind


@pytest.mark.parametrize("text", ["/a:/b:idmap:idmap", "/a:/b:ro:rw", "/a:/b:rootidmap",
                                  "/a:/b:ro:idmap:x"])
def test_bind_refuses_other_options(text):
    with pytest.raises(Error, match="expected SRC"):
        parse_bind(text)


def test_the_lines_nspawn_reads_and_back(private_root):
    data = Paths.from_env().volume_data("data")
    cfg = ContainerConfig(volumes=(parse_volume("data:/srv"), parse_volume("data:/ro:ro")),
                          binds=(parse_bind("/h:/h:idmap"), parse_bind("/c")))
    text = render_nspawn(cfg)
    assert f"Bind={data}:/srv:idmap\n" in text and f"BindReadOnly={data}:/ro:idmap\n" in text
    assert "Bind=/h:/h:idmap\n" in text and "Bind=/c\n" in text
    assert parse_nspawn(text) == cfg


def test_without_a_user_namespace_a_volume_is_a_plain_bind(private_root):
    """systemd-nspawn 252 refuses idmap without a user namespace ("Failed to map ids for
    bind mount /…/vol: Invalid argument", seen here), and needs none: uid N is uid N."""
    data = Paths.from_env().volume_data("data")
    cfg = ContainerConfig(private_users=False, volumes=(parse_volume("data:/srv"),))
    text = render_nspawn(cfg)
    assert f"Bind={data}:/srv\n" in text and "idmap" not in text
    assert parse_nspawn(text) == cfg
    # turned on again (set --private-users), the line becomes idmapped
    on = ContainerConfig(volumes=cfg.volumes)
    assert on.volumes[0].idmap and not cfg.volumes[0].idmap
    again = update_nspawn(text, on)
    assert f"Bind={data}:/srv:idmap\n" in again and parse_nspawn(again) == on


def test_a_hand_edit_beside_the_volumes_stays(private_root):
    data = Paths.from_env().volume_data("data")
    text = ("[Files]\n# mine\nBind=/x:/y:norbind\n"
            f"Bind={data}:/srv:idmap\nBindReadOnly=/a:/b\n")
    cfg = parse_nspawn(text)
    assert cfg.volumes == (parse_volume("data:/srv"),)
    assert cfg.binds == (Bind("/a", "/b", True),)  # :norbind is the author's
    new = update_nspawn(text, ContainerConfig(binds=cfg.binds))  # the volume unmounted
    assert new == "[Files]\n# mine\nBind=/x:/y:norbind\nBindReadOnly=/a:/b\n"
    again = update_nspawn(new, cfg)
    assert parse_nspawn(again) == cfg and "Bind=/x:/y:norbind" in again


def test_a_volume_path_of_another_name_or_shape_is_not_a_volume(private_root):
    volumes = Paths.from_env().volumes
    for line in (f"Bind={volumes}/a/b/data:/srv:idmap",   # no valid name
                 f"Bind={volumes}/data/other:/srv:idmap",  # not its data directory
                 f"Bind={volumes}/..:/srv:idmap"):
        assert parse_nspawn(f"[Files]\n{line}\n").volumes == (), line


def test_a_stack_takes_volume():
    doc, problems = yamlfile.parse("name: st\ncontainers:\n  web:\n"
                                   "    volume: ['data:/srv', 'conf:/etc/app:ro']\n")
    stack, more = model.load(doc, "st")
    assert problems == [] and more == []
    assert stack.containers["web"].config.volumes == (VolumeMount("data", "/srv"),
                                                      VolumeMount("conf", "/etc/app", True))
    doc, problems = yamlfile.parse("name: st\ncontainers:\n  web:\n    volume: ['a/b:/srv']\n")
    stack, more = model.load(doc, "st")
    assert stack.containers == {} and [p.text("f") for p in more] == \
        ["f:4: containers.web.volume: invalid volume name 'a/b'"]
