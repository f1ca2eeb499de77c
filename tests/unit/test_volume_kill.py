"""volume create, remove, import and export killed at every step: a SIGKILL at each call
that changes the disk leaves the volume (or the exported file) whole or absent, never half
there, and the next command sweeps what the killed one left.

strace injects the signal (`-e inject=SYSCALL:signal=KILL:when=N`): the process dies as it
enters the N-th such call, for every N up to the last, so every step is tried once, not the
few a timer happens to hit."""

import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

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


def tar_of(path, files: int = 3) -> None:
    """A small tar of FILES files, as volume export writes one."""
    import io
    import tarfile
    with tarfile.open(path, "w") as tar:
        for i in range(files):
            data = f"file {i}\n".encode()
            info = tarfile.TarInfo(f"./f{i}")
            info.size, info.uid = len(data), 1000
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("verb", ["create", "remove", "import"])
def test_killed_at_every_step_whole_or_absent(tmp_path, verb):
    archive = tmp_path / "in.tar"
    tar_of(archive)

    def every_step_of(call: str) -> int:
        """Kill at the 1st, 2nd, ... CALL until one run gets past the last; the kills."""
        for n in range(1, MAX_N):
            root = tmp_path / f"{call}-{n}"
            paths = Paths.under(root)
            if verb == "remove":
                volumes.create(paths, "v")
                (paths.volume_data("v") / "f").write_text("kept\n")
            extra = [str(archive)] if verb == "import" else []
            r = nspawnctl(root, "volume", verb, "v", *extra, kill_at=(call, n))
            killed = r.returncode == -signal.SIGKILL or "killed by SIGKILL" in r.stderr
            there = whole_or_absent(paths, "v", "kept\n" if verb == "remove" else None)
            if there and verb == "import":  # whole: every file of the tar in it
                assert sorted(os.listdir(paths.volume_data("v"))) == ["f0", "f1", "f2"]
            if not killed:  # past the last such call: the command finished
                assert r.returncode == 0, r.stderr
                assert there == (verb != "remove")
                shutil.rmtree(root, ignore_errors=True)
                return n - 1
            # the next command's sweep takes the dead one's staging, and the volume is as
            # it was
            Store(paths).sweep()
            assert staging(paths) == []
            assert whole_or_absent(paths, "v", "kept\n" if verb == "remove" else None) == there
            shutil.rmtree(root, ignore_errors=True)
        raise AssertionError(f"{verb} made more than {MAX_N} {call} calls")

    # each call's trials are independent (a root each): run side by side
    with ThreadPoolExecutor(max_workers=4) as pool:
        tried = sum(pool.map(every_step_of, CALLS))
    assert tried >= 10, tried


def test_export_killed_at_every_step_leaves_the_file_whole_or_absent(tmp_path):
    root = tmp_path / "root"
    paths = Paths.under(root)
    volumes.create(paths, "v")
    for i in range(3):
        (paths.volume_data("v") / f"f{i}").write_text(f"file {i}\n" * 1000)
    out = tmp_path / "out"
    out.mkdir()
    tried = 0
    for call in ("write", "fsync", "renameat2"):
        for n in range(1, MAX_N):
            file = out / f"{call}-{n}.tar"
            r = nspawnctl(root, "volume", "export", "v", str(file), kill_at=(call, n))
            killed = r.returncode == -signal.SIGKILL or "killed by SIGKILL" in r.stderr
            if file.exists():  # whole: the tar reads to its end with every file
                import tarfile
                with tarfile.open(file) as tar:
                    assert sorted(tar.getnames()) == [".", "./f0", "./f1", "./f2"]
            if not killed:
                assert r.returncode == 0 and file.exists(), r.stderr
                break
            tried += 1
            assert not file.exists() or call != "write" or n > 1
        else:
            raise AssertionError(f"export made more than {MAX_N} {call} calls")
    # the next export to a name sweeps what a killed one left for it
    leftovers = [e for e in os.listdir(out) if e.endswith(".tmp")]
    assert leftovers, "no kill left a temporary file: the test saw nothing"
    for entry in leftovers:
        name = entry[1:].split(".nspawnctl-volume.")[0]
        os.unlink(out / name) if (out / name).exists() else None
        assert nspawnctl(root, "volume", "export", "v", str(out / name)).returncode == 0
    assert [e for e in os.listdir(out) if e.endswith(".tmp")] == []
    assert tried >= 3, tried
