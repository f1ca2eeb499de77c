"""What `list` and `status` read inside a container's tree (its os-release): resolved as the
container sees it, never through a link out of it, and never a FIFO, a device or a huge file
that a running container's root put there (issue 26: no host read through a container's
tree)."""

import os
import signal

import pytest

from nspawnctl.ops.inventory import OS_RELEASE_MAX, os_release


class Blocked(BaseException):
    """Not an OSError (TimeoutError is one, and a reader catching OSError would go on)."""


@pytest.fixture
def no_hang():
    """A read that blocks fails the test (SIGALRM) instead of hanging the run."""
    def alarm(_signum, _frame):
        raise Blocked("os_release blocked")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_read_as_the_container_sees_it(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text('ID=debian\nPRETTY_NAME="Debian 12"\n')
    os.symlink("../usr/lib/os-release", tree / "etc/os-release")
    assert os_release(tree) == {"ID": "debian", "PRETTY_NAME": "Debian 12"}
    os.unlink(tree / "etc/os-release")
    os.symlink("/usr/lib/os-release", tree / "etc/os-release")  # absolute: in the tree too
    assert os_release(tree)["ID"] == "debian"


def test_links_out_of_the_tree_lead_nowhere(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "os-release").write_text("ID=host-secret\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(str(host), tree / "etc")  # the host's directory, seen from the host
    os.symlink(str(host), tree / "usr")
    assert os_release(tree) == {}


def test_a_fifo_a_device_or_a_huge_file_is_not_read(tmp_path, no_hang):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr/lib").mkdir(parents=True)
    os.mkfifo(tree / "etc/os-release")
    os.symlink("/dev/zero", tree / "usr/lib/os-release")  # resolved in the tree: missing
    assert os_release(tree) == {}
    os.unlink(tree / "usr/lib/os-release")
    with open(tree / "usr/lib/os-release", "wb") as f:
        f.write(b"ID=big\n" + b"X" * (OS_RELEASE_MAX * 4))
    assert os_release(tree) == {"ID": "big"}  # read no further than the limit
