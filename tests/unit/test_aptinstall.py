"""sources/aptinstall: the apt configuration of the download, the offline install's command,
and apt's errors as one line."""

from pathlib import Path

from nspawnctl.sources.aptinstall import apt_config, install_argv, install_error, tree_arch


def test_apt_config_makes_the_tree_the_system_apt_looks_at():
    conf = apt_config(Path("/s/tree"), Path("/s/apt/lists"), Path("/c/debs"), "amd64")
    lines = conf.splitlines()
    assert 'Dir "/s/tree/";' in lines
    assert 'Dir::State::Lists "/s/apt/lists/";' in lines  # outside the tree: nothing to slim
    assert 'Dir::Cache::Archives "/c/debs/";' in lines    # the bootstrappers' .deb cache
    assert 'APT::Architectures "amd64";' in lines
    assert 'APT::Sandbox::User "root";' in lines


def test_install_is_offline_and_sees_the_same_lists_and_debs():
    argv = install_argv(Path("/s/tree"), Path("/s/apt/lists"), Path("/c/debs"), ["nginx", "less"])
    assert argv[0] == "unshare" and "--net" in argv and "--pid" in argv  # no network, and
    assert "--kill-child=SIGKILL" in argv and "--mount-proc=/s/tree/proc" in argv  # dies whole
    script = argv[argv.index("-ec") + 1]
    assert 'mount -o bind,ro "$lists" "$tree/var/lib/apt/lists"' in script
    assert 'mount -o bind,ro "$debs" "$tree/var/cache/apt/archives"' in script
    assert "--no-download" in script and "DPkg::Options::=--force-unsafe-io" in script
    assert '-- "$@"' in script  # packages are arguments, never read as options or shell text
    assert argv[argv.index("-ec") + 2:] == ["sh", "/s/tree", "/s/apt/lists", "/c/debs",
                                            "nginx", "less"]


def test_tree_arch_reads_dpkgs_record(tmp_path):
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/arch").write_text("arm64\namd64\n")
    assert tree_arch(tmp_path) == "arm64"


def test_unknown_package_is_one_line():
    out = ("Reading package lists...\nBuilding dependency tree...\n"
           "E: Unable to locate package nosuchpkg\nE: something after\n")
    err = install_error("downloading", out, "/var/cache/nspawnctl/logs/install-x.log")
    assert err.message == ("cannot add packages to the base tree: no package named nosuchpkg "
                           "in the suite of the base tree")
    assert "\n" not in err.message and err.hint == "see /var/cache/nspawnctl/logs/install-x.log"


def test_other_failures_say_apts_first_error_or_the_step():
    assert install_error("installing", "E: Sub-process /usr/bin/dpkg returned an error code "
                         "(1)\n", "l").message.endswith("returned an error code (1)")
    assert install_error("installing", "no E: line here", "l").message == \
        "cannot add packages to the base tree: installing failed"
