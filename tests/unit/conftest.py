"""What many unit tests share: a private nspawnctl root (NSPAWNCTL_ROOT) in the test's
temporary directory, so nothing touches the host's /var/lib/machines or /etc."""

import pytest

from nspawnctl.paths import Paths


@pytest.fixture
def private_root(tmp_path, monkeypatch) -> Paths:
    """Every path nspawnctl uses, below tmp_path/root; a module that needs a container in it
    makes one in its own `paths` fixture from this."""
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(tmp_path / "root"))
    return Paths.from_env()


@pytest.fixture
def paths(private_root) -> Paths:
    return private_root
