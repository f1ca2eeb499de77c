"""ContainerConfig validation and the parsers for CLI strings."""

import math

import pytest

from nspawnctl.errors import Error
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.values import (
    Bind,
    format_size,
    parse_bind,
    parse_cpus,
    parse_env,
    parse_seconds,
    parse_size,
    parse_span,
    parse_tasks,
)

G = 1 << 30
M = 1 << 20


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 * M), ("1G", G), ("1.5G", 3 * G // 2), ("1536M", 3 * G // 2),
    ("4096", 4096), ("100K", 102400), ("2T", 2 << 40), ("512m", 512 * M),
    (" 1G ", G), ("infinity", None), ("max", None),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


# What podman's --memory takes (b, k, m, g with an optional b or ib: 1024-based, as its
# units.RAMInBytes) and what systemd's MemoryMax= takes besides (a percentage of the host's
# memory, kept as one: systemd works it out where the container runs).
@pytest.mark.parametrize("text, expected", [
    ("512MB", 512 * M), ("512mb", 512 * M), ("512MiB", 512 * M), ("1g", G), ("1GB", G),
    ("100kb", 102400), ("100KiB", 102400), ("512b", 512), ("512B", 512), ("1 G", G),
    ("1.5GB", 3 * G // 2), ("2TB", 2 << 40),
    ("50%", "50%"), ("12.5%", "12.5%"), ("100%", "100%"), ("0.01%", "0.01%"),
    ("050%", "50%"), ("12.50%", "12.5%"),
])
def test_parse_size_takes_podman_and_systemd_forms(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "0%", "101%", "12.345%", "50 %", "%", "50%%", "-5%", "512MBB", "512BM", "512KM",
    "1iB", "5e3", "1,5G", "512 MB extra", "MB", "0MB", "1.G", ".5G", "\u0665G",
])
def test_parse_size_refuses_near_misses(text):
    with pytest.raises(Error, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("value, text", [("50%", "50%"), (512 * M, "512M")])
def test_memory_is_written_as_systemd_reads_it(value, text):
    from nspawnctl.settings.dropin import parse_dropin, render_dropin
    rendered = render_dropin(ContainerConfig(memory_max=value))
    assert f"MemoryMax={text}\n" in rendered
    assert parse_dropin(rendered)["memory_max"] == value


@pytest.mark.parametrize("size, text", [
    (512 * M, "512M"), (G, "1G"), (3 * G // 2, "1536M"), (4096, "4K"), (1000, "1000"),
    (1 << 60, "1E"),
])
def test_format_size_is_exact_and_parses_back(size, text):
    assert format_size(size) == text
    assert parse_size(text) == size


@pytest.mark.parametrize("text, expected", [
    ("1", 1.0), ("1.5", 1.5), ("0.25", 0.25), ("2.33333", 2.3333), ("infinity", None),
])
def test_parse_cpus(text, expected):
    assert parse_cpus(text) == expected


def test_parse_tasks():
    assert parse_tasks("256") == 256
    assert parse_tasks("infinity") is None


@pytest.mark.parametrize("text, expected", [
    ("300", 300), ("90s", 90), ("5min", 300), ("10 min", 600), ("1h 30s", 3630), ("2m", 120),
    ("86400", 86400), ("1.5h", 5400), ("500ms", 1), ("infinity", math.inf),
])
def test_parse_seconds(text, expected):
    assert parse_seconds(text) == expected


# What systemd itself reads in TimeoutStartSec=, from a hand-edited drop-in: no day limit, and
# 0 is its old spelling of "no limit" (parse_sec_fix_0).
@pytest.mark.parametrize("text, expected", [
    ("0", math.inf), ("infinity", math.inf), ("2d", 172800), ("1w", 604800),
    ("1.5min", 90), ("1M", 2629800), ("1m", 60), ("5min30s", 330), ("2500ms", 3),
    ("1y", 31557600),
])
def test_parse_span_reads_what_systemd_reads(text, expected):
    assert parse_span(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("/srv/data:/data", Bind("/srv/data", "/data", False)),
    ("/srv/data:/data:ro", Bind("/srv/data", "/data", True)),
    ("/srv/data:/data:rw", Bind("/srv/data", "/data", False)),
    ("/srv/data", Bind("/srv/data", "/srv/data", False)),
    ("/srv/my data:/my data", Bind("/srv/my data", "/my data", False)),
])
def test_parse_bind(text, expected):
    assert parse_bind(text) == expected


def test_bind_str_parses_back():
    for bind in (Bind("/a", "/b", True), Bind("/a", "/a", False)):
        assert parse_bind(str(bind)) == bind


@pytest.mark.parametrize("text", ["FOO=bar", "FOO=", "_x1=a b \"c\" $d %e", "A=b=c"])
def test_parse_env(text):
    assert parse_env(text) == text


# Every bad value gives one Error whose message names the value.
@pytest.mark.parametrize("parse, text", [
    (parse_size, "lots"), (parse_size, "12X"), (parse_size, "-1G"), (parse_size, "0"),
    (parse_size, ""), (parse_size, "1.5.1G"),
    (parse_cpus, "many"), (parse_cpus, "0"), (parse_cpus, "-1"), (parse_cpus, "nan"),
    (parse_cpus, "inf"), (parse_cpus, "1e3"), (parse_cpus, "0.00001"),
    (parse_tasks, "0"), (parse_tasks, "ten"), (parse_tasks, "-5"),
    # out of systemd's range (it would drop the line and run without a limit), odd digits
    (parse_size, "16E"), (parse_size, "99999999E"), (parse_cpus, "1000000"),
    (parse_tasks, str(1 << 64)), (parse_tasks, "\u00b2"),
    (parse_seconds, "0"), (parse_seconds, ""), (parse_seconds, "soon"), (parse_seconds, "2d"),
    (parse_seconds, "-5"), (parse_seconds, "86401"), (parse_seconds, "9" * 5000),
    (parse_seconds, "\u00b2"), (parse_seconds, "5 minutes later"), (parse_seconds, "1e3"),
    (parse_span, "9" * 5000), (parse_span, "600000y"), (parse_span, ".5s"), (parse_span, "1.2.3"),
    (parse_span, "5 later"), (parse_span, "inf"), (parse_span, ""), (parse_span, "-1"),
    (parse_bind, "relative:/x"), (parse_bind, "/x:relative"), (parse_bind, "/a:/b:/c"),
    (parse_bind, "/a:/b:rx"), (parse_bind, ""), (parse_bind, "/a:/b:ro:x"),
    (parse_bind, "/a\\b:/c"), (parse_bind, "/a\n:/b"), (parse_bind, "/a :/b"),
    (parse_env, "FOO"), (parse_env, "1FOO=x"), (parse_env, "FO-O=x"), (parse_env, "=x"),
    (parse_env, "FOO=a\nb"),
])
def test_bad_values_name_the_value(parse, text):
    with pytest.raises(Error) as error:
        parse(text)
    assert repr(text) in error.value.message
    assert "\n" not in error.value.message.replace(repr(text), "")


def test_new_containers_get_a_start_timeout_longer_than_systemds():
    from nspawnctl.settings.dropin import render_dropin
    from nspawnctl.settings.model import CREATE_START_TIMEOUT, parse_cli

    assert ContainerConfig().start_timeout is None  # a plain unit keeps systemd's 90 s
    changes = parse_cli({}, creating=True)
    assert changes["start_timeout"] == CREATE_START_TIMEOUT > 90
    assert "TimeoutStartSec=300" in render_dropin(ContainerConfig(**changes)).splitlines()
    assert parse_cli({"start_timeout": "10min"}, creating=True)["start_timeout"] == 600


def test_defaults_are_systemd_templates():
    cfg = ContainerConfig()
    assert (cfg.boot, cfg.private_users, cfg.network, cfg.restart) == (True, True, "veth", "no")


def test_lists_become_tuples():
    cfg = ContainerConfig(command=["sh"], env=["A=1"], binds=[parse_bind("/a")])
    assert cfg.command == ("sh",) and cfg.env == ("A=1",) and isinstance(cfg.binds, tuple)
    hash(cfg)


@pytest.mark.parametrize("kwargs, named", [
    ({"network": "no/such"}, "'no/such'"),
    ({"restart": "sometimes"}, "'sometimes'"),
    ({"env": ("NOPE",)}, "'NOPE'"),
    ({"command": ("a\nb",)}, "'a\\nb'"),
    ({"working_dir": "srv"}, "'srv'"),
    ({"user": "a b"}, "'a b'"),
    ({"hostname": "-bad-"}, "'-bad-'"),
    ({"memory_max": 0}, "0"),
    ({"tasks_max": -1}, "-1"),
    ({"cpu_quota": 0.0}, "0.0"),
    ({"image": "x\ny"}, "'x\\ny'"),
])
def test_invalid_settings(kwargs, named):
    with pytest.raises(Error, match=".*") as error:
        ContainerConfig(**kwargs)
    assert named in error.value.message


def test_a_memory_percentage_is_applied_live_as_systemd_scales_it():
    from nspawnctl.settings.model import live_properties
    pairs = dict(live_properties(ContainerConfig(memory_max="50%")))
    assert pairs["MemoryMaxScale"] == 2**31 and "MemoryMax" not in pairs
    assert dict(live_properties(ContainerConfig(memory_max=512 * M)))["MemoryMax"] == 512 * M
