"""volume create and volume remove killed at every step: a SIGKILL at each call that changes
the disk leaves the volume whole or absent, never half there, and the next command sweeps
what the killed one left.

strace injects the signal (`-e inject=SYSCALL:signal=KILL:when=N`): the process dies as it
enters the N-th such call, for every N up to the last, so every step is tried once, not the
few a timer happens to hit."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from nspawnctl.paths import Paths
from nspawnctl.store import volumes
from nspawnctl.store.containers import Store

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="needs strace (apt-get install strace)")
# The calls that change the disk on the way: directories made and removed, the commit
# rename, the syncs, the metadata written.
CALLS = ("mkdir", "renameat2", "syncfs", "fsync", "write", "unlinkat")
MAX_N = 40


def nspawnctl(root, *args, kill_at=None):
    env = {**os.environ, "NSPAWNCTL_ROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "nspawnctl", *args]
    if kill_at is not None:
        call, n = kill_at
        argv = [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={call}",
                "-e", f"inject={call}:signal=KILL:when={n}", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__)))))


def whole_or_absent(paths: Paths, name: str, content: str | None) -> bool:
    """True when NAME is whole (its metadata and data, with CONTENT in data/f when given);
    False when it is absent (nothing at its place); anything between fails the test."""
    place = paths.volumes / name
    if not os.path.lexists(place):
        return False
    assert json.loads((place / "volume.json").read_text())["name"] == name
    assert (place / "data").is_dir()
    if content is not None:
        assert (place / "data/f").read_text() == content
    assert volumes.names(paths).count(name) == 1
    return True


def staging(paths: Paths) -> list[str]:
    try:
        return os.listdir(paths.staging_in(paths.volumes))
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("verb", ["create", "remove"])
def test_killed_at_every_step_whole_or_absent(tmp_path, verb):
    tried = 0
    for call in CALLS:
        for n in range(1, MAX_N):
            root = tmp_path / f"{call}-{n}"
            paths = Paths.under(root)
            if verb == "remove":
                volumes.create(paths, "v")
                (paths.volume_data("v") / "f").write_text("kept\n")
            r = nspawnctl(root, "volume", verb, "v", kill_at=(call, n))
            killed = r.returncode == -signal.SIGKILL or "killed by SIGKILL" in r.stderr
            there = whole_or_absent(paths, "v", "kept\n" if verb == "remove" else None)
            if not killed:  # past the last such call: the command finished
                assert r.returncode == 0, r.stderr
                assert there == (verb == "create")
                shutil.rmtree(root, ignore_errors=True)
                break
            tried += 1
            # the next command's sweep takes the dead one's staging, and the volume is as
            # it was
            Store(paths).sweep()
            assert staging(paths) == []
            assert whole_or_absent(paths, "v", "kept\n" if verb == "remove" else None) == there
            shutil.rmtree(root, ignore_errors=True)
        else:
            raise AssertionError(f"{verb} made more than {MAX_N} {call} calls")
    assert tried >= 10, tried
