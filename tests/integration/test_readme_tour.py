"""The README's examples, every nspawnctl command of them, run in order in the testbed as a
reader types them (tests/readme_examples.py reads them): each must succeed.

What the reader brings is made first, as they would have it: the files the examples name
(/srv/api, /srv/www, busybox.tar: an image whose entrypoint serves HTTP on port 80, ./motd),
and for `upgrade` a package source web can reach (the testbed has no internet: web's apt gets
an empty local repository, as a reader's gets its mirror).  `shell` runs at a terminal
(tests/ptyadmin.py), where the reader types `exit`.
"""

import json
import re
import shlex
from pathlib import Path

import pytest

from nspawnctl.sources.oci import parse_platform
from tests import imagetools
from tests.integration.helpers import MACHINES, store_problems
from tests.readme_examples import commands
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

WORK = "/root/readme-tour"
PTYADMIN = "/usr/src/nspawnctl/tests/ptyadmin.py"  # the worktree, as the testbed binds it
MADE = ("web", "tiny", "api", "bb", "tiny-web", "hello-web", "job", "shop-web", "shop-db")
README = Path(__file__).resolve().parents[2] / "README.md"


def shop_yaml() -> str:
    """The stack file the README shows: its yaml block."""
    return re.search(r"^```yaml\n(.*?)^```", README.read_text(), re.M | re.S).group(1)


def web_image(work):
    """busybox.tar: busybox, serving /www on port 80 (its entrypoint)."""
    layer = ib.layer(
        ib.dir("bin"), ib.file("bin/busybox", imagetools.BUSYBOX.read_bytes(), 0o755),
        ib.symlink("bin/sh", "busybox"), ib.dir("usr"), ib.dir("tmp", 0o1777),
        ib.dir("etc"), ib.file("etc/os-release", b"ID=busybox\nNAME=README tour image\n"),
        ib.dir("www"), ib.file("www/index.html", b"hello from bb\n"))
    config = ib.image_config([ib.sha256(layer)], parse_platform(None).architecture,
                             Entrypoint=["/bin/busybox", "httpd", "-f", "-p", "80", "-h",
                                         "/www"], Cmd=None, Env=["PATH=/bin"],
                             WorkingDir="/", User=None, ExposedPorts={"80/tcp": {}},
                             Volumes=None)
    ib.oci_layout(work / "layout", [layer], config=config)
    return ib.tar_tree(work / "layout", work / "busybox.tar")


@pytest.fixture
def readers_world(host, nspawnctl, tmp_path):
    host.run(["rm", "-rf", WORK, "/srv/api", "/srv/www"])
    host.run(["mkdir", "-p", WORK, "/srv/api", "/srv/www"])
    host.path("/srv/www/index.html").write_text("hello from tiny-web\n")
    host.path(f"{WORK}/busybox.tar").write_bytes(web_image(tmp_path).read_bytes())
    host.path(f"{WORK}/motd").write_text("welcome to web\n")
    host.path(f"{WORK}/shop.yaml").write_text(shop_yaml())
    yield WORK
    # the tour's stack, as a reader would take it away: its containers and network, and the
    # stack's record of them
    nspawnctl("apply", "-f", "-", "--prune", input="name: shop\n", check=False)
    for name in MADE:
        nspawnctl("remove", "--force", name, check=False)
    nspawnctl("network", "remove", "backend", check=False)
    nspawnctl("network", "remove", "shop", check=False)
    host.run(["rm", "-rf", WORK, "/srv/api", "/srv/www"])


def local_repository(host):
    """web's apt sources: an empty flat repository in its own tree (Packages, Release)."""
    tree = f"{MACHINES}/web"
    host.run(["sh", "-c", f"rm -f {tree}/etc/apt/sources.list.d/* && mkdir -p {tree}/srv/repo"
              f" && : > {tree}/srv/repo/Packages && printf 'Origin: tour\\nSuite: tour\\n"
              f"Codename: tour\\n' > {tree}/srv/repo/Release && chmod -R a+rX {tree}/srv/repo"
              f" && echo 'deb [trusted=yes] file:/srv/repo ./' > {tree}/etc/apt/sources.list"])


def test_every_readme_example_runs_in_order(host, nspawnctl, readers_world):
    tour = commands()
    assert tour and tour[0] == ["create", "web"]
    for argv in tour:
        if argv[0] == "upgrade":
            local_repository(host)
        if argv[0] == "shell":
            r = host.run(["python3", PTYADMIN, "--when-screen", "#", "--keys", "exit\\r",
                          "--timeout", "60", "--", "nspawnctl", *argv], timeout=120)
            assert r.returncode == 0 and json.loads(r.stdout)["status"] == 0, str(r)
            continue
        line = "nspawnctl " + shlex.join(argv)
        r = host.run(["sh", "-c", f"cd {WORK} && exec {line}"], timeout=900)
        assert r.returncode == 0, f"README example failed: {line}\n{r}"
    assert host.path(f"{WORK}/web.tar.zst").stat().st_size > 0
    assert host.path(f"{MACHINES}/web/etc/motd").read_text() == "welcome to web\n"
    assert store_problems(host, nspawnctl) == []
