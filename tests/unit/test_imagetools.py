"""The test tooling that drives podman (tests/imagetools.py): what podman itself refuses."""

from pathlib import Path

import pytest

from tests import imagetools


def test_podmans_runroot_fits_its_limit_whatever_the_work_directory():
    # CI's stop 40 failed on this: /tmp/pytest-of-root/pytest-1000/oci-containers0/run is 51
    # characters, and podman refuses a runroot over 50.
    work = Path("/tmp/pytest-of-root/pytest-123456/oci-containers0/" + "x" * 200)
    podman = imagetools.Podman(work)
    assert len(str(podman.runroot)) <= 50
    assert podman.argv("images")[podman.argv("images").index("--runroot") + 1] \
        == str(podman.runroot)
    assert imagetools.Podman(work, "runc").runroot == podman.runroot  # one store, one runroot
    assert imagetools.Podman(work / "y").runroot != podman.runroot


def test_a_failing_tool_says_what_it_said():
    with pytest.raises(imagetools.ToolFailed) as failed:
        imagetools.run("sh", "-c", "echo one >&2; echo 'the reason' >&2; exit 3")
    assert failed.value.returncode == 3
    assert str(failed.value).endswith("one\nthe reason")
