"""Rendering, parsing and in-place updating of .nspawn files."""

from dataclasses import replace

import pytest

from nspawnctl.errors import Error
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.networking import bridge_of
from nspawnctl.settings.nspawnfile import (
    parse_nspawn,
    quote_word,
    render_nspawn,
    split_words,
    update_nspawn,
)
from nspawnctl.settings.values import Bind, parse_bind

AWKWARD_ARGS = ("sh", "-c", 'echo "$FOO"; for a in "$@"; do echo "[$a]"; done', "x",
                "a b", 'c"d', "e'f", "g\"h'i", "back\\slash\\", "%i %n $HOME", "", "\ttab",
                "#not-a-comment", ";semi", "trailing ")

CONFIGS = [
    ContainerConfig(),
    ContainerConfig(image="debootstrap:bookworm", hostname="web-1.example"),
    ContainerConfig(boot=False, command=AWKWARD_ARGS, image="oci-archive:/tmp/x.tar"),
    ContainerConfig(boot=True, command=("--log-level=debug", "systemd.unit=rescue.target")),
    ContainerConfig(private_users=False, network="host"),
    ContainerConfig(network="web"),
    ContainerConfig(network="react-express"),  # a hashed bridge: the name on its own line
    ContainerConfig(binds=(parse_bind("/srv/a:/a:ro"), parse_bind("/srv/b"),
                           parse_bind("/srv/with space:/in side"))),
    ContainerConfig(env=("FOO=a b", "EMPTY=", 'Q=it\'s "quoted"', "BS=a\\b\\", "PCT=%n$X")),
    ContainerConfig(boot=False, command=("/app",), working_dir="/srv/my app", user="1000",
                    env=("PATH=/usr/bin:/bin",)),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_round_trip(cfg):
    assert parse_nspawn(render_nspawn(cfg)) == cfg


@pytest.mark.parametrize("word", AWKWARD_ARGS + ("'", '"', "'\"'", "a'b'c\"d\"e"))
def test_quote_word_splits_back(word):
    assert split_words(quote_word(word)) == [word]


def test_quoted_words_never_end_a_line_in_a_backslash():
    # systemd would take that as a line continuation.
    assert not quote_word("a\\").endswith("\\")


def test_quote_word_refuses_line_breaks():
    with pytest.raises(Error, match="line breaks"):
        quote_word("a\nb")


def test_split_words_like_systemd():
    # Adjacent quoted pieces join; backslashes are literal (EXTRACT_RETAIN_ESCAPE).
    value = r"""a  'b c'"d e"f \n "x\" """
    assert split_words(value) == ["a", "b cd ef", "\\n", "x\\"]


def test_render_spells_out_defaults():
    text = render_nspawn(ContainerConfig())
    for line in ("[Exec]", "Boot=yes", "PrivateUsers=pick", "[Network]", "VirtualEthernet=yes"):
        assert line in text.splitlines()
    assert "[Files]" not in text


def test_render_host_network_and_no_user_namespace():
    lines = render_nspawn(ContainerConfig(network="host", private_users=False)).splitlines()
    assert {"VirtualEthernet=no", "Private=no", "PrivateUsers=no"} <= set(lines)


def test_parse_applies_systemd_syntax():
    text = """\
; a comment
[Exec]
Boot = off
Parameters=/bin/sh -c \\
   'echo hi'
Parameters="two words"
Environment=A=1 "B=2 3"
Environment=
Environment=C=4
PrivateUsers=1000000:65536
[Files]
Bind=/x
BindReadOnly=/y:/z
[Network]
VirtualEthernet=false
"""
    cfg = parse_nspawn(text)
    assert cfg.boot is False
    assert cfg.command == ("/bin/sh", "-c", "echo hi", "two words")
    assert cfg.env == ("C=4",)
    assert cfg.private_users is True
    assert cfg.binds == (Bind("/x", "/x", False), Bind("/y", "/z", True))
    assert cfg.network == "host"


@pytest.mark.parametrize("value, expected", [
    ("yes", True), ("no", False), ("pick", True), ("1", True), ("off", False),
    ("identity", True), ("65536", True),
])
def test_private_users_values(value, expected):
    assert parse_nspawn(f"[Exec]\nPrivateUsers={value}\n").private_users is expected


def test_parse_keeps_base_for_absent_keys():
    base = ContainerConfig(boot=False, command=("x",), memory_max=1 << 30)
    assert parse_nspawn("[Exec]\nHostname=h\n", base) == replace(base, hostname="h")


def test_keys_are_case_sensitive_and_sections_matter():
    cfg = parse_nspawn("[Exec]\nboot=no\n[Files]\nBoot=no\n")
    assert cfg.boot is True


def test_unreadable_values_are_ignored_like_systemd_does():
    cfg = parse_nspawn("[Exec]\nBoot=maybe\nParameters='unbalanced\nHostname=-x-\n"
                       "[Files]\nBind=/a:/b:norbind\nBind=relative\n")
    assert cfg == ContainerConfig()


HAND_EDITED = """\
# My web container.  Do not touch the ports!
[Network]
Port=tcp:80:8080
VirtualEthernet=yes

[Exec]
Boot=true
; a note about the environment
Environment=LANG=C.UTF-8
Environment="GREETING=hello world"
Capability=CAP_NET_ADMIN
PrivateUsers=pick

[Files]
Bind=/srv/www:/var/www:norbind
BindReadOnly=/etc/ssl

[Custom]
Anything=goes
"""


def test_update_with_same_settings_changes_nothing():
    cfg = parse_nspawn(HAND_EDITED)
    assert update_nspawn(HAND_EDITED, cfg) == HAND_EDITED


def test_update_changes_only_what_changed():
    cfg = parse_nspawn(HAND_EDITED)
    assert cfg.env == ("LANG=C.UTF-8", "GREETING=hello world")
    new = replace(cfg, env=cfg.env + ("X=1",), hostname="web", network="host",
                  binds=cfg.binds + (Bind("/data", "/data", False),), image="dir:/src")
    text = update_nspawn(HAND_EDITED, new)
    assert parse_nspawn(text) == new
    lines = text.splitlines()
    # Everything nspawnctl does not own is still there, in the same order.
    kept = ["# My web container.  Do not touch the ports!", "Port=tcp:80:8080", "Boot=true",
            "; a note about the environment", "Capability=CAP_NET_ADMIN", "PrivateUsers=pick",
            "Bind=/srv/www:/var/www:norbind", "[Custom]", "Anything=goes"]
    assert [line for line in lines if line in kept] == kept
    # The environment is rewritten where it stood, inside [Exec].
    exec_part = text.split("[Exec]")[1].split("[Files]")[0]
    assert "Environment=X=1" in exec_part and "Hostname=web" in exec_part
    assert lines.index("Environment=LANG=C.UTF-8") < lines.index("Capability=CAP_NET_ADMIN")
    assert "VirtualEthernet=no" in text.split("[Network]")[1].split("[Exec]")[0]
    assert lines[0] == "# nspawnctl-image: dir:/src"


def test_update_removes_unset_settings():
    text = "[Exec]\nBoot=no\nParameters=/app\nWorkingDirectory=/srv\nUser=app\n"
    cfg = replace(parse_nspawn(text), working_dir=None, user=None)
    assert update_nspawn(text, cfg) == "[Exec]\nBoot=no\nParameters=/app\n"


def test_update_adds_missing_sections():
    text = "# just a comment\n"
    cfg = ContainerConfig(binds=(Bind("/a", "/b", True),))
    updated = update_nspawn(text, cfg)
    assert updated.startswith(text)
    assert "[Files]\nBindReadOnly=/a:/b\n" in updated
    assert parse_nspawn(updated) == cfg


def test_update_appends_to_the_last_occurrence_of_a_section():
    text = "[Exec]\nBoot=yes\n\n[Files]\n\n[Exec]\nKillSignal=SIGTERM\n\n[Other]\nX=1\n"
    updated = update_nspawn(text, ContainerConfig(hostname="h"))
    assert "KillSignal=SIGTERM\nHostname=h\n\n[Other]" in updated


def test_update_of_an_empty_file_renders_it():
    cfg = ContainerConfig(hostname="h")
    assert update_nspawn("", cfg) == render_nspawn(cfg)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("start", CONFIGS)
def test_update_from_any_config_to_any_other(start, cfg):
    assert parse_nspawn(update_nspawn(render_nspawn(start), cfg)) == cfg
    assert parse_nspawn(update_nspawn(HAND_EDITED, cfg)) == cfg


def test_continued_lines_survive_verbatim():
    text = "[Exec]\nParameters=/bin/sh -c \\\n  'echo hi'\nHostname=a\n"
    cfg = replace(parse_nspawn(text), hostname="b")
    assert update_nspawn(text, cfg) == text.replace("Hostname=a", "Hostname=b")


@pytest.mark.parametrize("network, expected", [
    ("VirtualEthernet=yes", "veth"), ("VirtualEthernet=no", "host"), ("Private=no", "host"),
    ("Private=no\nVirtualEthernet=on", "veth"), ("Port=80", "veth"),
])
def test_network_modes_read_back(network, expected):
    assert parse_nspawn(f"[Network]\n{network}\n").network == expected


def test_a_long_network_name_is_said_beside_its_hashed_bridge():
    lines = render_nspawn(ContainerConfig(network="react-express")).splitlines()
    bridge = [line for line in lines if line.startswith("Bridge=")]
    assert bridge == [f"Bridge={bridge_of('react-express')}"]
    assert "X-NspawnctlNetwork=react-express" in lines
    short = render_nspawn(ContainerConfig(network="web")).splitlines()
    assert "Bridge=nsc-web" in short and not any("X-Nspawnctl" in x for x in short)


@pytest.mark.parametrize("lines, expected", [
    # a hand-edited Bridge= wins over a name that is no longer its bridge's
    ("Bridge=nsc-web\nX-NspawnctlNetwork=react-express", "web"),
    (f"Bridge={bridge_of('react-express')}\nX-NspawnctlNetwork=react-express", "react-express"),
    ("Bridge=nsc-web\nX-NspawnctlNetwork=Not_A_Name", "web"),
])
def test_the_bridge_decides_which_network(lines, expected):
    assert parse_nspawn(f"[Network]\n{lines}\n").network == expected
