"""Short names resolved as podman resolves them from registries.conf (containers-registries
.conf(5) and .conf.d(5)), offline: aliases (podman's recorded ones first, drop-ins in order, ""
erasing), unqualified-search registries, and an ambiguous name refused with its candidates."""

import pytest

from nspawnctl.errors import Error
from nspawnctl.sources.registry import shortnames
from nspawnctl.sources.registry.reference import parse_user


def conf(tmp_path, main: str | None, *drop_ins: str, cache: str | None = None, v1=False):
    path = tmp_path / "registries.conf"
    if main is not None:
        path.write_text(main)
    files = []
    for i, text in enumerate(drop_ins):
        f = tmp_path / f"d{i:02}.conf"
        f.write_text(text)
        files.append(f)
    cache_path = tmp_path / "short-name-aliases.conf"
    if cache is not None:
        cache_path.write_text(cache)
    return shortnames.load(path, files, cache_path)


def names(resolved):
    return [c.name for c in resolved.candidates]


def test_a_qualified_name_is_itself(tmp_path):
    c = conf(tmp_path, 'unqualified-search-registries = ["a.io", "b.io"]')
    assert names(shortnames.resolve(parse_user("quay.io/x/y:1"), c)) == ["quay.io/x/y:1"]


def test_one_search_registry_resolves_and_completes_docker_hub(tmp_path):
    c = conf(tmp_path, 'unqualified-search-registries = ["docker.io"]')
    r = shortnames.resolve(parse_user("debian:12"), c)
    assert names(r) == ["docker.io/library/debian:12"] and "unqualified-search" in r.why
    assert names(shortnames.resolve(parse_user("someone/tool"), c)) == \
        ["docker.io/someone/tool:latest"]


def test_several_search_registries_are_refused_with_the_candidates(tmp_path):
    """podman without a terminal refuses in enforcing mode and tries them all in permissive
    (its default); nspawnctl never guesses, in either."""
    for mode in ("", 'short-name-mode = "enforcing"', 'short-name-mode = "permissive"'):
        c = conf(tmp_path, f'unqualified-search-registries = ["reg.test", "docker.io"]\n{mode}')
        with pytest.raises(Error) as e:
            shortnames.resolve(parse_user("app:1"), c)
        assert "ambiguous" in e.value.message
        assert "reg.test/app:1" in e.value.message and "docker.io/library/app:1" in \
            e.value.message


def test_disabled_mode_tries_them_in_order(tmp_path):
    c = conf(tmp_path, 'unqualified-search-registries = ["reg.test", "docker.io"]\n'
                       'short-name-mode = "disabled"')
    assert names(shortnames.resolve(parse_user("app"), c)) == \
        ["reg.test/app:latest", "docker.io/library/app:latest"]


def test_an_alias_wins_over_the_search_registries_and_keeps_tag_and_digest(tmp_path):
    c = conf(tmp_path, 'unqualified-search-registries = ["reg.test", "docker.io"]\n'
                       '[aliases]\n"app" = "quay.io/org/app"\n"alp" = "docker.io/alpine"\n')
    assert names(shortnames.resolve(parse_user("app:2"), c)) == ["quay.io/org/app:2"]
    digest = "sha256:" + "cd" * 32
    assert names(shortnames.resolve(parse_user(f"app@{digest}"), c)) == \
        [f"quay.io/org/app@{digest}"]
    r = shortnames.resolve(parse_user("alp"), c)
    assert names(r) == ["docker.io/library/alpine:latest"] and "alias" in r.why


def test_drop_ins_replace_search_and_mode_and_merge_aliases_in_order(tmp_path):
    c = conf(tmp_path,
             'unqualified-search-registries = ["a.test", "b.test"]\n'
             '[aliases]\n"one" = "a.test/one"\n"two" = "a.test/two"\n',
             'unqualified-search-registries = ["c.test"]\n[aliases]\n"two" = "c.test/two"\n',
             '[aliases]\n"one" = ""\n')
    assert names(shortnames.resolve(parse_user("x"), c)) == ["c.test/x:latest"]
    assert names(shortnames.resolve(parse_user("two"), c)) == ["c.test/two:latest"]
    # "one" was erased by the last drop-in: it goes to the search registries again
    assert names(shortnames.resolve(parse_user("one"), c)) == ["c.test/one:latest"]


def test_podmans_recorded_aliases_come_first(tmp_path):
    c = conf(tmp_path, '[aliases]\n"app" = "a.test/app"\n',
             cache='[aliases]\n"app" = "b.test/app"\n')
    assert names(shortnames.resolve(parse_user("app"), c)) == ["b.test/app:latest"]


def test_no_alias_and_no_search_registry_says_where_it_looked(tmp_path):
    c = conf(tmp_path, "# nothing\n")
    with pytest.raises(Error) as e:
        shortnames.resolve(parse_user("busybox"), c)
    assert "no unqualified-search registries are defined in" in e.value.message
    assert str(tmp_path / "registries.conf") in e.value.message
    assert "docker.io/library/busybox" in e.value.hint


def test_the_version_1_format_gives_search_registries(tmp_path):
    c = conf(tmp_path, '[registries.search]\nregistries = ["old.test"]\n')
    assert names(shortnames.resolve(parse_user("x"), c)) == ["old.test/x:latest"]


@pytest.mark.parametrize("main, drop_in, says", [
    ('unqualified-search-registries = []\n[registries.search]\nregistries = ["a.test"]\n',
     None, "mixes the version 1 and version 2"),
    ("", '[registries.search]\nregistries = ["a.test"]\n', "must use the version 2"),
    ('short-name-mode = "sometimes"\n', None, "invalid short-name-mode"),
    ('[aliases]\n"quay.io/app" = "quay.io/app"\n', None, "invalid short name"),
    ('[aliases]\n"app:1" = "quay.io/app"\n', None, "invalid short name"),
    ('[aliases]\n"app" = "app2"\n', None, "invalid alias"),
    ('[aliases]\n"app" = "quay.io/app:1"\n', None, "invalid alias"),
    ('unqualified-search-registries = ["-x"]\n', None, "invalid unqualified-search"),
    ('unqualified-search-registries = "a.test"\n', None, "not a list"),
    ("this is [not toml\n", None, "is not valid TOML"),
])
def test_broken_files_give_one_line(tmp_path, main, drop_in, says):
    with pytest.raises(Error) as e:
        conf(tmp_path, main, *([drop_in] if drop_in else []))
    assert says in e.value.message and "\n" not in e.value.message


def test_the_users_own_file_replaces_the_system_ones(tmp_path):
    etc = tmp_path / "etc.conf"
    etc.write_text('unqualified-search-registries = ["sys.test"]\n')
    etc_dir = tmp_path / "etc.d"
    etc_dir.mkdir()
    (etc_dir / "a.conf").write_text("")
    home = tmp_path / "home"
    main, drop_ins = shortnames.conf_files(home, etc, etc_dir)
    assert main == etc and drop_ins == [etc_dir / "a.conf"]
    (home / ".config/containers").mkdir(parents=True)
    (home / ".config/containers/registries.conf").write_text("")
    main, drop_ins = shortnames.conf_files(home, etc, etc_dir)
    assert main == home / ".config/containers/registries.conf" and drop_ins == []


def test_local_candidates_follow_podmans_order_without_ambiguity(tmp_path):
    c = conf(tmp_path, 'unqualified-search-registries = ["a.test", "docker.io"]\n'
                       '[aliases]\n"app" = "q.test/app"\n')
    assert [r.name for r in shortnames.local_candidates(parse_user("app:1"), c)] == \
        ["q.test/app:1", "localhost/app:1", "a.test/app:1", "docker.io/library/app:1"]
