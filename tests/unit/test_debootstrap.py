"""sources/debootstrap: spec keys, argv, checks, progress lines, failure reasons, slimming."""

import dataclasses
import os
import re
from pathlib import Path

import pytest

from nspawnctl.errors import Error
from nspawnctl.sources import debootstrap
from nspawnctl.sources.debootstrap import (
    DEFAULT_MIRROR,
    SLIM_DPKG_EXCLUDES,
    BootstrapSpec,
    Progress,
    bootstrap_argv,
    bootstrap_error,
    check_spec,
    mirror_reachable,
    parse_packages,
    slim_tree,
)

# BootstrapSpec.key

def test_key_is_stable_and_short():
    a, b = BootstrapSpec(), BootstrapSpec()
    assert a.key() == b.key()
    assert re.fullmatch(r"[0-9a-f]{16}", a.key()), a.key()  # it names directories
    assert BootstrapSpec(include=("vim", "curl")).key() == BootstrapSpec(
        include=("vim", "curl")).key()


def test_key_ignores_include_order_and_duplicates():
    assert BootstrapSpec(include=("vim", "curl")).key() == \
        BootstrapSpec(include=("curl", "vim")).key() == \
        BootstrapSpec(include=("curl", "vim", "curl")).key()


CHANGES = {
    "suite": "trixie", "mirror": "http://ftp.de.debian.org/debian", "variant": "buildd",
    "include": ("vim",), "arch": "arm64", "slim": False, "bootstrapper": "debootstrap",
}


def test_every_field_is_covered():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(BootstrapSpec)}


@pytest.mark.parametrize("field, value", CHANGES.items())
def test_key_changes_with_every_field(field, value):
    base = BootstrapSpec(bootstrapper="mmdebstrap")
    assert getattr(base, field) != value
    assert dataclasses.replace(base, **{field: value}).key() != base.key()


def test_packages_add_what_booting_needs_once():
    spec = BootstrapSpec(include=("dbus", "vim"))
    assert spec.packages() == ("systemd", "systemd-sysv", "dbus", "vim")


def test_describe():
    assert BootstrapSpec(bootstrapper="mmdebstrap").describe() == \
        "debootstrap:bookworm minbase slim with mmdebstrap"
    assert BootstrapSpec(include=("vim",), arch="arm64", slim=False,
                         bootstrapper="debootstrap").describe() == \
        "debootstrap:bookworm minbase +vim arm64 with debootstrap"


# auto: the fastest bootstrapper there is

@pytest.mark.parametrize("installed, chosen", [
    ({"mmdebstrap", "debootstrap"}, "mmdebstrap"), ({"debootstrap"}, "debootstrap"),
    ({"mmdebstrap"}, "mmdebstrap"), (set(), "debootstrap"),  # (need_tool names it later)
])
def test_auto_takes_mmdebstrap_where_installed(monkeypatch, installed, chosen):
    monkeypatch.setattr(debootstrap.shutil, "which",
                        lambda name: f"/usr/bin/{name}" if name in installed else None)
    spec = BootstrapSpec()
    assert spec.bootstrapper == "auto" and spec.resolved().bootstrapper == chosen
    # the key is the chosen one's: an auto create and an explicit one share a cached base
    assert spec.key() == BootstrapSpec(bootstrapper=chosen).key()
    assert BootstrapSpec(bootstrapper="debootstrap").resolved().bootstrapper == "debootstrap"


def test_incremental_key_is_the_base_and_the_sorted_packages():
    from nspawnctl.sources.debootstrap import incremental_key
    assert incremental_key("a", ["vim", "curl"]) == incremental_key("a", ["curl", "vim", "vim"])
    assert incremental_key("a", ["vim"]) != incremental_key("b", ["vim"])
    assert incremental_key("a", ["vim"]) != incremental_key("a", ["vim", "curl"])
    base = BootstrapSpec(bootstrapper="mmdebstrap")
    assert incremental_key(base.key(), ["vim"]) != \
        dataclasses.replace(base, include=("vim",)).key()


# parse_packages

@pytest.mark.parametrize("text, expected", [
    (None, ()), ("", ()), ("vim", ("vim",)), ("vim, curl,,", ("vim", "curl")),
    ("libc6,g++,python3.11", ("libc6", "g++", "python3.11")),
])
def test_parse_packages(text, expected):
    assert parse_packages(text) == expected


@pytest.mark.parametrize("text", ["Vim", "-vim", "vim;rm", "vim curl", "../x", "a=1.0"])
def test_parse_packages_refuses_bad_names(text):
    with pytest.raises(Error, match="invalid package name"):
        parse_packages(text)


# bootstrap_argv

def test_debootstrap_argv(tmp_path):
    argv = bootstrap_argv(BootstrapSpec(suite="bookworm", include=("vim",),
                                        bootstrapper="debootstrap"), tmp_path / "t",
                          tmp_path / "debs")
    assert argv == ["debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,vim",
                    f"--cache-dir={tmp_path / 'debs'}", "bookworm", str(tmp_path / "t"),
                    DEFAULT_MIRROR]


def test_debootstrap_argv_with_arch_and_variant(tmp_path):
    argv = bootstrap_argv(BootstrapSpec(arch="arm64", variant="buildd", mirror="file:///m",
                                        bootstrapper="debootstrap"),
                          tmp_path / "t", tmp_path / "debs")
    assert "--arch=arm64" in argv and "--variant=buildd" in argv
    assert argv[-3:] == ["bookworm", str(tmp_path / "t"), "file:///m"]
    assert not any(a.startswith("--dpkgopt") for a in argv)


def test_mmdebstrap_argv_slim(tmp_path):
    debs = tmp_path / "debs"
    argv = bootstrap_argv(BootstrapSpec(bootstrapper="mmdebstrap", arch="amd64"),
                          tmp_path / "t", debs)
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv
    assert "--include=systemd,systemd-sysv,dbus" in argv
    assert "--architectures=amd64" in argv
    # slimmed afterwards (slim_tree), not through dpkg's excludes: mmdebstrap's tar filter
    # for those is slow
    assert not [a for a in argv if a.startswith("--dpkgopt=")]
    assert any(a.startswith("--aptopt=") and "Install-Recommends" in a for a in argv)
    assert f"--setup-hook=sync-in {debs} /var/cache/apt/archives/" in argv
    assert f"--customize-hook=sync-out /var/cache/apt/archives {debs}" in argv
    assert argv[-3:] == ["bookworm", str(tmp_path / "t"), DEFAULT_MIRROR]


def test_mmdebstrap_argv_builds_fast_and_leaves_no_unsafe_io(tmp_path, monkeypatch):
    hooks = tmp_path / "hooks"
    for hook in ("maybe-merged-usr", "eatmydata", "busybox"):
        (hooks / hook).mkdir(parents=True)
    monkeypatch.setattr(debootstrap, "MMDEBSTRAP_HOOKS", hooks)
    monkeypatch.setattr(debootstrap.shutil, "which", lambda name: f"/usr/bin/{name}")
    argv = bootstrap_argv(BootstrapSpec(bootstrapper="mmdebstrap"), tmp_path / "t",
                          tmp_path / "debs")
    assert [a for a in argv if a.startswith("--hook-dir=")] == \
        [f"--hook-dir={hooks}/maybe-merged-usr", f"--hook-dir={hooks}/eatmydata"]
    # the eatmydata hook needs dpkg-architecture: without it, only unsafe-io
    monkeypatch.setattr(debootstrap.shutil, "which",
                        lambda name: None if name == "dpkg-architecture" else f"/usr/bin/{name}")
    assert [a for a in bootstrap_argv(BootstrapSpec(bootstrapper="mmdebstrap"), tmp_path / "t",
                                      tmp_path / "debs") if a.startswith("--hook-dir=")] == \
        [f"--hook-dir={hooks}/maybe-merged-usr"]
    conf = debootstrap.UNSAFE_IO_CONF
    setup = [a for a in argv if a.startswith("--setup-hook=") and conf in a]
    assert len(setup) == 1 and "force-unsafe-io" in setup[0]
    # written by a hook and removed by one, never --dpkgopt (which stays in the tree)
    assert f'--customize-hook=rm -f "$1"/{conf}' in argv
    assert not any("unsafe-io" in a for a in argv if a.startswith("--dpkgopt"))
    # an mmdebstrap without the hooks: none named
    monkeypatch.setattr(debootstrap, "MMDEBSTRAP_HOOKS", tmp_path / "none")
    assert not any(a.startswith("--hook-dir=") for a in bootstrap_argv(
        BootstrapSpec(bootstrapper="mmdebstrap"), tmp_path / "t", tmp_path / "debs"))


def test_mmdebstrap_argv_not_slim(tmp_path):
    argv = bootstrap_argv(BootstrapSpec(bootstrapper="mmdebstrap", slim=False),
                          tmp_path / "t", tmp_path / "debs")
    assert not any(a.startswith(("--dpkgopt", "--aptopt")) for a in argv)
    assert not any(a.startswith("--architectures") for a in argv)


# check_spec

@pytest.fixture
def with_debootstrap(monkeypatch):
    monkeypatch.setattr(debootstrap.shutil, "which", lambda name: f"/usr/sbin/{name}")


@pytest.mark.parametrize("changes, message", [
    ({"suite": "Bookworm"}, "invalid suite name"),
    ({"suite": "book worm"}, "invalid suite name"),
    ({"suite": "../../etc"}, "invalid suite name"),
    ({"suite": "bookworm/updates"}, "invalid suite name"),
    ({"suite": ""}, "invalid suite name"),
    ({"suite": "-bookworm"}, "invalid suite name"),
    ({"variant": "huge"}, "unknown variant"),
    ({"variant": "--foreign"}, "unknown variant"),
    ({"mirror": "deb.debian.org/debian"}, "invalid mirror"),
    ({"mirror": "ftp://deb.debian.org/debian"}, "invalid mirror"),
    ({"mirror": ""}, "invalid mirror"),
    ({"arch": "ARM64"}, "invalid architecture"),
    ({"arch": "arm64 --x"}, "invalid architecture"),
    ({"bootstrapper": "cdebootstrap"}, "unknown bootstrapper"),
    ({"suite": "nosuchsuite"}, "unknown suite 'nosuchsuite'"),
])
def test_check_spec_errors(with_debootstrap, changes, message):
    with pytest.raises(Error) as info:
        check_spec(dataclasses.replace(BootstrapSpec(), **changes))
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_unknown_suite_hint_names_the_scripts(with_debootstrap):
    with pytest.raises(Error) as info:
        check_spec(BootstrapSpec(suite="nosuchsuite"))
    assert "/usr/share/debootstrap/scripts" in info.value.hint


def test_invalid_mirror_hint_gives_an_example(with_debootstrap):
    with pytest.raises(Error) as info:
        check_spec(BootstrapSpec(mirror="deb.debian.org"))
    assert DEFAULT_MIRROR in info.value.hint


def test_unknown_suite_is_refused_by_debootstraps_list_for_both(with_debootstrap):
    with pytest.raises(Error, match="unknown suite"):
        check_spec(BootstrapSpec(suite="nosuchsuite", bootstrapper="mmdebstrap"))


def test_unknown_suite_is_left_to_the_bootstrapper_without_debootstrap(monkeypatch, tmp_path):
    """No debootstrap, no list of suites: the suite goes to the bootstrapper as given, and
    need_tool() says what is missing later."""
    monkeypatch.setattr(debootstrap.shutil, "which", lambda name: None)
    for bootstrapper in ("debootstrap", "mmdebstrap"):
        spec = BootstrapSpec(suite="nosuchsuite", bootstrapper=bootstrapper)
        check_spec(spec)
        assert bootstrap_argv(spec, tmp_path / "t", tmp_path / "d")[-3:] == \
            ["nosuchsuite", str(tmp_path / "t"), DEFAULT_MIRROR]


@pytest.mark.skipif(not Path("/usr/share/debootstrap/scripts/bookworm").exists(),
                    reason="debootstrap's scripts are not installed")
def test_known_suites_pass(with_debootstrap, tmp_path):
    """check_spec lets them through, and the bootstrapper gets the suite and mirror asked for."""
    for spec in (BootstrapSpec(),
                 BootstrapSpec(suite="bookworm", mirror="https://deb.debian.org/debian",
                               variant="buildd", arch="amd64", include=("vim",)),
                 BootstrapSpec(mirror="file:///srv/mirror")):
        check_spec(spec)
        assert bootstrap_argv(spec, tmp_path, tmp_path / "d")[-3:] == \
            [spec.suite, str(tmp_path), spec.mirror]


# Progress

def _packages(stage, names, fmt):
    return [fmt.format(stage=stage, name=n) for n in names]


PKGS30 = [f"pkg{i:02d}" for i in range(30)]
PKGS20 = PKGS30[:20]

# What `debootstrap --variant=minbase` prints, cut down to 30 and 20 packages.
DEBOOTSTRAP_LOG = "\n".join([
    "I: Target architecture can be executed",
    "I: Keyring file not available at /usr/share/keyrings/debian-archive-keyring.gpg; "
    "switching to https mirror https://deb.debian.org/debian",
    "I: Retrieving InRelease ",
    "I: Checking Release signature",
    "I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)",
    "I: Retrieving Packages ",
    "I: Validating Packages ",
    "I: Resolving dependencies of required packages...",
    "I: Resolving dependencies of base packages...",
    "I: Checking component main on http://deb.debian.org/debian...",
    *[line for n in PKGS30 for line in (f"I: Retrieving {n} 1.0-1", f"I: Validating {n} 1.0-1")],
    "I: Chosen extractor for .deb packages: dpkg-deb",
    *[f"I: Extracting {n}..." for n in PKGS30],
    "I: Installing core packages...",
    "I: Unpacking required packages...",
    *[f"I: Unpacking {n}..." for n in PKGS20],
    "I: Configuring required packages...",
    *[f"I: Configuring {n}..." for n in PKGS20],
    "W: Failure while configuring base packages.  This will be re-attempted up to five times.",
    "I: Base system installed successfully.",
]) + "\n"


def _progress(lines):
    out = []
    p = Progress(out.append)
    for line in lines:
        p.feed(line.rstrip("\n"))
    p.finish()
    return out


def test_progress_counts_packages_per_stage():
    lines = [
        *[line for n in PKGS30 for line in (f"I: Retrieving {n} 1.0-1", f"I: Validating {n} 1.0-1")],
        *[f"I: Extracting {n}..." for n in PKGS30],
        *[f"I: Unpacking {n}..." for n in PKGS20],
        *[f"I: Configuring {n}..." for n in PKGS20],
        "I: Base system installed successfully.",
    ]
    assert _progress(lines) == [
        "  downloading: 25 packages", "  downloading: 30 packages",
        "  extracting: 25 packages", "  extracting: 30 packages",
        "  unpacking: 20 packages",
        "  configuring: 20 packages",
        "  Base system installed successfully.",
    ]


def test_progress_of_a_whole_log():
    out = _progress(DEBOOTSTRAP_LOG.splitlines())
    assert all(line.startswith("  ") for line in out)
    assert not any("Validating" in line or "Keyring" in line for line in out)
    assert not any(line.startswith("  I: ") or "pkg0" in line for line in out)
    assert "  Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)" in out
    assert "  Chosen extractor for .deb packages: dpkg-deb" in out
    assert out[-2].startswith("  Failure while configuring")  # W: lines too
    assert out[-1] == "  Base system installed successfully."
    stages = [line.split(":")[0].strip() for line in out if line.endswith(" packages")
              and line.split(":")[0].strip() in ("downloading", "extracting", "unpacking",
                                                  "configuring")]
    assert stages.index("extracting") < stages.index("unpacking") < stages.index("configuring")
    assert "  downloading: 30 packages" in out and "  extracting: 30 packages" in out


def test_progress_ignores_blank_and_other_lines():
    assert _progress(["", "dpkg: warning: something", "E: boom"]) == []


def test_progress_counts_only_packages():
    # "I: Retrieving InRelease", "I: Retrieving Packages" (the index files) and the stage
    # headers "I: Unpacking required packages..." / "I: Configuring required packages..."
    # look like packages but are not counted: no "downloading: 1 packages" before any
    # package is fetched, 20 unpacked/configured and not 21.
    out = _progress(DEBOOTSTRAP_LOG.splitlines())
    counts = [line for line in out if line.endswith(" packages") and ": " in line
              and line.split(":")[0].strip() in ("downloading", "extracting", "unpacking",
                                                  "configuring")]
    assert counts == [
        "  downloading: 25 packages", "  downloading: 30 packages",
        "  extracting: 25 packages", "  extracting: 30 packages",
        "  unpacking: 20 packages", "  configuring: 20 packages",
    ]


# bootstrap_error

@pytest.fixture
def log(tmp_path):
    def write(text):
        path = tmp_path / "bootstrap.log"
        path.write_text("$ debootstrap --variant=minbase bookworm /x http://m/debian\n" + text)
        return path
    return write


@pytest.fixture
def reachable(monkeypatch):
    state = {"up": True, "asked": []}

    def fake(mirror):
        state["asked"].append(mirror)
        return state["up"]
    monkeypatch.setattr(debootstrap, "mirror_reachable", fake)
    return state


DISK_FULL = """\
I: Extracting libc6...
W: Failure trying to run: chroot "/var/lib/machines/.nspawnctl-staging/x" dpkg --force-depends --install /var/cache/apt/archives/libc6_2.36-9_amd64.deb
dpkg: error processing archive /var/cache/apt/archives/libc6_2.36-9_amd64.deb (--install):
 cannot copy extracted data for './usr/lib/x86_64-linux-gnu/libc.so.6' to '/usr/lib/x86_64-linux-gnu/libc.so.6.dpkg-new': failed to write (No space left on device)
"""
NO_RELEASE = """\
I: Retrieving InRelease 
I: Retrieving Release 
E: Failed getting release file http://deb.debian.org/debian/dists/nosuch/Release
"""
NO_PACKAGE = """\
I: Resolving dependencies of base packages...
E: Couldn't find these debs: nosuchpackage
"""
OTHER = "I: Retrieving libc6 2.36-9\nW: something odd\nE: it broke\n"


def test_disk_full(log, reachable):
    err = bootstrap_error(BootstrapSpec(), log(DISK_FULL), 1)
    assert err.message == "bootstrap failed: the disk is full"
    assert str(log(DISK_FULL)) in err.hint and "No space left on device" in err.hint


def test_release_file_failure_with_a_reachable_mirror_is_an_unknown_suite(log, reachable):
    spec = BootstrapSpec(suite="nosuch")
    err = bootstrap_error(spec, log(NO_RELEASE), 1)
    assert err.message == ("bootstrap failed: unknown suite 'nosuch': the mirror "
                           f"{DEFAULT_MIRROR} does not have it")
    assert reachable["asked"] == [DEFAULT_MIRROR]


# What mmdebstrap's apt says when the mirror does not answer (mmdebstrap 1.3.5)
MM_UNREACHABLE = """\
E: Failed to fetch http://127.0.0.1:9/debian/dists/bookworm/InRelease  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)
E: Some index files failed to download. They have been ignored, or old ones used instead.
E: mmdebstrap failed to run
"""


def test_mmdebstraps_failed_index_fetch_is_an_unreachable_mirror(log, reachable):
    reachable["up"] = False
    err = bootstrap_error(BootstrapSpec(mirror="http://127.0.0.1:9/debian"),
                          log(MM_UNREACHABLE), 1)
    assert err.message == "bootstrap failed: the mirror http://127.0.0.1:9/debian is unreachable"
    # a package's failed download is not about the suite
    err = bootstrap_error(BootstrapSpec(include=("x",)), log(
        "E: Failed to fetch http://m/debian/pool/main/x/x_1_all.deb  404\n"
        "E: Unable to locate package x\n"), 1)
    assert "does not exist" in err.message


def test_release_file_failure_with_an_unreachable_mirror(log, reachable):
    reachable["up"] = False
    err = bootstrap_error(BootstrapSpec(mirror="http://nowhere.invalid/debian"),
                          log(NO_RELEASE), 1)
    assert err.message == "bootstrap failed: the mirror http://nowhere.invalid/debian is " \
                          "unreachable"


@pytest.mark.parametrize("text", [NO_PACKAGE, "E: Unable to locate package nosuchpackage\n",
                                  "E: Couldn't download packages: nosuchpackage\n"])
def test_unknown_package(log, reachable, text):
    err = bootstrap_error(BootstrapSpec(include=("nosuchpackage",)), log(text), 1)
    assert err.message == "bootstrap failed: a package in --include does not exist in that suite"
    assert reachable["asked"] == []


def test_other_failures_name_the_status_and_the_log(log, reachable):
    path = log(OTHER)
    err = bootstrap_error(BootstrapSpec(bootstrapper="mmdebstrap"), path, 3)
    assert err.message == "bootstrap failed: mmdebstrap exited with status 3"
    assert err.hint.startswith(f"last lines of {path}:\n")
    assert err.hint.endswith("E: it broke")
    assert err.exit_code == 1


def test_hint_shows_only_the_tail(log, reachable):
    path = log("".join(f"I: line {i}\n" for i in range(100)) + "E: the end\n")
    err = bootstrap_error(BootstrapSpec(), path, 1)
    assert "line 99" in err.hint and "line 50" not in err.hint


def test_mirror_reachable_for_file_urls(tmp_path):
    assert mirror_reachable(f"file://{tmp_path}")
    assert not mirror_reachable(f"file://{tmp_path}/missing")


# slim_tree

def _tree(root: Path, files: dict[str, str]):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


KEEP = {
    "etc/passwd": "root:x:0:0::/root:/bin/bash\n",
    "usr/bin/ls": "ELF",
    "usr/share/doc/libc6/copyright": "GPL",
    "usr/share/doc/dpkg/copyright": "GPL",
    "var/cache/debconf/config.dat": "Name: debconf/frontend\n",
    "var/cache/debconf/templates.dat": "Name: x\n",
    "var/lib/dpkg/status": "Package: dpkg\n",
    "usr/share/zoneinfo/UTC": "TZif",
}
DROP = {
    "usr/share/doc/libc6/changelog.Debian.gz": "x",
    "usr/share/doc/libc6/README": "x",
    "usr/share/doc/dpkg/examples/x.conf": "x",
    "usr/share/man/man1/ls.1.gz": "x",
    "usr/share/man/de/man1/ls.1.gz": "x",
    "usr/share/info/coreutils.info.gz": "x",
    "usr/share/locale/de/LC_MESSAGES/dpkg.mo": "x",
    "usr/share/lintian/overrides/libc6": "x",
    "usr/share/groff/x": "x",
    "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages": "x",
    "var/lib/apt/lists/lock": "",
    "var/cache/apt/archives/libc6_2.36-9_amd64.deb": "x",
    "var/cache/apt/pkgcache.bin": "x",
    "var/cache/apt/srcpkgcache.bin": "x",
    "var/cache/debconf/config.dat-old": "x",
    "var/cache/debconf/templates.dat-old": "x",
    "var/log/dpkg.log": "x",
    "var/log/apt/history.log": "x",
}


def test_slim_tree(tmp_path):
    root = tmp_path / "tree"
    _tree(root, {**KEEP, **DROP})
    (root / "var/lib/apt/lists/partial").mkdir()
    (root / "var/cache/apt/archives/partial").mkdir()
    (root / "usr/share/doc/libc-bin").symlink_to("libc6")  # dpkg's doc links
    slim_tree(root)
    for rel, text in KEEP.items():
        assert (root / rel).read_text() == text, rel
    for rel in DROP:
        assert not os.path.lexists(root / rel), rel
    assert (root / "usr/share/doc/libc-bin").is_symlink()
    # directories apt and dpkg expect stay
    for rel in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt",
                "usr/share/man", "usr/share/locale"):
        assert (root / rel).is_dir(), rel
    assert os.listdir(root / "usr/share/man") == []
    assert os.listdir(root / "usr/share/locale") == []
    dpkg_cfg = (root / "etc/dpkg/dpkg.cfg.d/01-nspawnctl-slim").read_text()
    for line in SLIM_DPKG_EXCLUDES:
        assert line + "\n" in dpkg_cfg
    assert 'APT::Install-Recommends "false";' in \
        (root / "etc/apt/apt.conf.d/01-nspawnctl-slim").read_text()


def test_slim_tree_does_not_follow_links_out_of_the_tree(tmp_path):
    outside = tmp_path / "outside"
    _tree(outside, {"doc/x/README": "keep", "man/man1/x.1": "keep", "f": "keep"})
    root = tmp_path / "tree"
    _tree(root, {"usr/share/doc/libc6/copyright": "GPL", "var/log/x": "x"})
    (root / "usr/share/man").symlink_to(outside / "man")
    (root / "usr/share/doc/evil").symlink_to(outside / "doc/x")
    (root / "usr/share/doc/libc6/README").symlink_to(outside / "f")
    (root / "var/log/out").symlink_to(outside)
    (root / "var/lib/apt").mkdir(parents=True)
    (root / "var/lib/apt/lists").symlink_to(outside)
    slim_tree(root)
    assert (outside / "doc/x/README").read_text() == "keep"
    assert (outside / "man/man1/x.1").read_text() == "keep"
    assert (outside / "f").read_text() == "keep"
    assert not os.path.lexists(root / "usr/share/doc/libc6/README")


def test_slim_tree_of_an_empty_tree(tmp_path):
    slim_tree(tmp_path)
    assert (tmp_path / "etc/dpkg/dpkg.cfg.d/01-nspawnctl-slim").exists()


def test_the_build_hosts_resolvers_stay_out_of_the_tree(tmp_path):
    from nspawnctl.sources.debootstrap import forget_build_host
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.53\nsearch corp.example\n")
    forget_build_host(tmp_path)
    assert (tmp_path / "etc/resolv.conf").read_text() == ""
    # a symlink (the tree's own choice) is left alone, and so is what it points at
    (tmp_path / "etc/resolv.conf").unlink()
    (tmp_path / "target").write_text("keep\n")
    (tmp_path / "etc/resolv.conf").symlink_to(tmp_path / "target")
    forget_build_host(tmp_path)
    assert (tmp_path / "target").read_text() == "keep\n"
