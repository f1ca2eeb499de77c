"""Free text from users and images never changes the structure of a file it lands in.

Every text setting and every image field that becomes one is fed arbitrary strings (hypothesis):
each is either refused with one line (an Error) or comes back byte for byte after write -> read,
also after a later edit of another setting (`set NAME --tasks 100` rewrites the file from what
it read), and the file nspawnctl wrote says the same to systemd's line reader as to a reader
that ends lines at \\n only.  A value that is one line for systemd but several for nspawnctl's
own reader (U+2028 in an image's Env, issue 26) is the host takeover this guards against.
"""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nspawnctl.errors import Error
from nspawnctl.settings import conffile
from nspawnctl.settings.dropin import parse_dropin, render_dropin
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.nspawnfile import parse_nspawn, render_nspawn, update_nspawn
from nspawnctl.settings.values import Bind, check_text
from nspawnctl.sources.oci.config import Image, image_config

# Every code point, lone surrogates included, with the awkward ones made likely.
AWKWARD = ["\n", "\r", "\0", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028",
           "\u2029", "\t", " ", "\\", "'", '"', "=", "[", "]", "#", ";", ":", "%", "$", "\ufeff",
           "\x7f", "\x9b", "\ud800"]
TEXT = st.text(st.one_of(st.sampled_from(AWKWARD), st.characters()), max_size=40)
LINES = ["PrivateUsers=no", "Capability=all", "[Files]", "Bind=/:/host"]
# The reproduction: lines hidden behind each separator some reader splits at.
INJECTIONS = ["X=1" + sep + sep.join(LINES) for sep in
              ["\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e", "\n", "\r",
               "\r\n", "\0"]]

# Each text setting, as a function from one string to the config holding it.
SETTERS = {
    "command": lambda s: ContainerConfig(boot=False, command=("/app", s)),
    "env value": lambda s: ContainerConfig(env=(f"X={s}",)),
    "env": lambda s: ContainerConfig(env=(s,)),
    "working_dir": lambda s: ContainerConfig(boot=False, command=("/app",), working_dir="/" + s),
    "user": lambda s: ContainerConfig(user=s),
    "hostname": lambda s: ContainerConfig(hostname=s),
    "image": lambda s: ContainerConfig(image=s),
    "bind source": lambda s: ContainerConfig(binds=(Bind("/" + s, "/x"),)),
    "bind dest": lambda s: ContainerConfig(binds=(Bind("/x", "/" + s, True),)),
    "network": lambda s: ContainerConfig(network=s),
}


def systemd_assignments(text: str) -> list[tuple]:
    return [(line.section, line.key, line.value) for line in conffile.read_lines(text)
            if line.key is not None]


def naive_assignments(text: str) -> list[tuple]:
    """What a reader that ends lines at \\n alone, and knows nothing of continuations, sees."""
    section, found = None, []
    for physical in text.split("\n"):
        line = physical.strip(" \t")
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and line[0] not in "#;" and "=" in line:
            key, _, value = line.partition("=")
            found.append((section, key.strip(" \t"), value.strip(" \t")))
    return found


def check_holds(make, value: str):
    """make(value) is refused with one line, or survives every way nspawnctl reads it."""
    try:
        cfg = make(value)
        text = render_nspawn(cfg)
    except Error as exc:
        assert "\n" not in exc.message and "\r" not in exc.message, exc.message
        return
    assert parse_nspawn(text) == cfg
    # every byte of what nspawnctl wrote: lines end at \n, and nowhere else for any reader
    assert "\n".join(conffile.physical_lines(text)) + "\n" == text
    assert systemd_assignments(text) == naive_assignments(text)
    # a later edit of another setting (set --tasks, clone) rewrites from what was read
    again = update_nspawn(text, replace(cfg, tasks_max=100, hostname="other"))
    assert parse_nspawn(again) == replace(cfg, hostname="other")
    assert systemd_assignments(again) == naive_assignments(again)
    assert not any(key in ("PrivateUsers", "Capability") or section == "Files"
                   and value == "/:/host" for section, key, value in naive_assignments(again)
                   if (section, key, value) not in naive_assignments(render_nspawn(cfg)))


@pytest.mark.parametrize("setting", SETTERS)
@given(value=TEXT)
@settings(max_examples=300, deadline=None)
def test_text_settings_refuse_or_round_trip(setting, value):
    check_holds(SETTERS[setting], value)


@pytest.mark.parametrize("setting", SETTERS)
@pytest.mark.parametrize("value", INJECTIONS)
def test_injected_lines_never_become_settings(setting, value):
    check_holds(SETTERS[setting], value)


def _image(config: dict):
    return image_config(Image(digest="sha256:" + "0" * 64, config={"config": config},
                              layers=()))


def _container_from(image) -> ContainerConfig:
    """An image's fields as create applies them (sources/oci/source.py: apply_image_config)."""
    from nspawnctl.sources.oci.source import apply_image_config
    return apply_image_config(ContainerConfig(), image, False,
                               tuple(image.entrypoint) + tuple(image.cmd))


@given(entrypoint=st.lists(TEXT, max_size=3), cmd=st.lists(TEXT, max_size=3),
       env=st.lists(TEXT, max_size=3), workdir=TEXT)
@settings(max_examples=300, deadline=None)
def test_image_fields_refuse_or_round_trip(entrypoint, cmd, env, workdir):
    config = {"Entrypoint": entrypoint, "Cmd": cmd or ["/app"], "Env": env,
              "WorkingDir": "/" + workdir}
    check_holds(lambda _: _container_from(_image(config)), "")


@pytest.mark.parametrize("value", INJECTIONS)
def test_an_image_env_with_hidden_lines_is_refused(value):
    image = _image({"Cmd": ["/app"], "Env": [value]})
    with pytest.raises(Error, match="not allowed"):
        render_nspawn(_container_from(image))


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1e"])
def test_a_hand_edit_is_read_as_systemd_reads_it(sep):
    # A value holding a separator that is not a line end for systemd stays one value:
    # nspawnctl neither reads the pieces as settings nor writes them back as lines.
    text = f"[Exec]\nHostname=a\nKillSignal=X{sep}PrivateUsers=no\n"
    assert parse_nspawn(text).private_users is True
    again = update_nspawn(text, replace(parse_nspawn(text), hostname="b"))
    assert f"KillSignal=X{sep}PrivateUsers=no\n" in again
    assert ("Exec", "PrivateUsers", "no") not in systemd_assignments(again)


@pytest.mark.parametrize("text, lines", [
    ("a\nb\n", ["a", "b"]), ("a\r\nb", ["a", "b"]), ("a\rb\r", ["a", "b"]),
    ("a\n\rb", ["a", "b"]), ("a\n\nb", ["a", "", "b"]), ("a\r\rb", ["a", "", "b"]),
    ("a\0b", ["a", "b"]), ("a\r\n\0b", ["a", "b"]), ("a\0\nb", ["a", "", "b"]),
    ("a\u2028b\x85c\vd", ["a\u2028b\x85c\vd"]), ("", []), ("\n", [""]),
])
def test_physical_lines_end_where_systemd_ends_them(text, lines):
    # read_line_full(): \n, \r, NUL and runs of distinct ones are one line end
    assert conffile.physical_lines(text) == lines


def test_comments_inside_a_continued_line_are_skipped_like_systemd():
    text = "[Exec]\nParameters=a \\\n# Capability=all\n  b\n"
    assert systemd_assignments(text) == [("Exec", "Parameters", "a    b")]
    assert parse_nspawn(text).command == ("a", "b")


def test_a_value_ending_in_a_backslash_does_not_swallow_the_next_line():
    try:
        text = render_nspawn(ContainerConfig(boot=False, command=("/app",),
                                             working_dir="/srv/x\\", hostname="h"))
    except Error:
        return
    assert parse_nspawn(text).hostname == "h"


@given(value=TEXT)
@settings(max_examples=300, deadline=None)
def test_dropin_never_carries_text(value):
    # the unit drop-in holds no free text: names and numbers only
    try:
        cfg = ContainerConfig(after=(value,))
    except Error:
        return
    assert parse_dropin(render_dropin(cfg))["after"] == cfg.after


@pytest.mark.parametrize("value", ["a\u2028b", "\x1b[31m", "x\x85", "\ud800", "a\nb"])
def test_check_text_names_the_character_in_one_line(value):
    with pytest.raises(Error) as info:
        check_text(value, "thing")
    assert "\n" not in info.value.message and "U+" in info.value.message
