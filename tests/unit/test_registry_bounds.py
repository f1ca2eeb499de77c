"""skopeo within nspawnctl's bounds (skopeo.py), against a stand-in skopeo that misbehaves as a
hostile registry makes the real one misbehave: endless output, silence, files growing past
what the manifest declares.  Each is stopped with one line, within its bound, the process
gone.  (The integration tests do it with the real skopeo and a hostile server.)"""

import os
import sys
import time

import pytest

from nspawnctl.errors import Error
from nspawnctl.sources.registry import skopeo

FAKE = f"""#!{sys.executable}
import os, sys, time
mode = os.environ["FAKE_SKOPEO"]
args = sys.argv[1:]
open(os.environ["FAKE_PIDFILE"], "w").write(str(os.getpid()))
if "inspect" in args:
    if mode == "huge":
        while True:
            sys.stdout.buffer.write(b"x" * 65536)
    if mode == "silent":
        time.sleep(3600)
    if mode == "fail":
        sys.stderr.write('time="t" level=fatal msg="Error reading manifest v1 in reg.test/app: '
                         'manifest unknown: \\\\"x\\\\"\\nsecond\\x1b[31m line"\\n')
        sys.exit(1)
    sys.stdout.write('{{"ok": true}}')
    sys.exit(0)
layout = args[-1][len("oci:"):]
blobs = os.path.join(layout, "blobs", "sha256")
if mode == "endless":  # file after file, each within RLIMIT_FSIZE: only the total is too much
    # at most ~200 MB/s, a fast link: the watch looks every POLL, so what gets past it is the
    # rate times that (unthrottled, a page cache takes 1 GB/s and the figure is luck's)
    for n in range(1000000):
        with open(os.path.join(blobs, f"oci-put-blob{{n}}"), "wb") as f:
            f.write(b"y" * (1 << 20))
        time.sleep(0.005)
if mode == "oversize":  # one byte more than the largest declared blob
    size = int(os.environ["FAKE_SIZE"])
    try:
        with open(os.path.join(blobs, "oci-put-blob1"), "wb") as f:
            f.write(b"z" * (size + 1))
    except OSError as e:
        sys.stderr.write(f'time="t" level=fatal msg="writing blob: {{e.strerror}}"\\n')
        sys.exit(1)
    sys.exit(0)
if mode == "honest":  # as skopeo 1.9 does: a temporary file in the layout, renamed into place
    size = int(os.environ["FAKE_SIZE"])
    with open(os.path.join(layout, "oci-put-blob7"), "wb") as f:
        f.write(b"h" * size)
    while not os.listdir(blobs):  # the test renames it (see below)
        time.sleep(0.01)
    sys.exit(0)
if mode == "silent":
    time.sleep(3600)
if mode == "trickle":
    with open(os.path.join(blobs, "oci-put-blob1"), "wb") as f:
        while True:
            f.write(b"t")
            f.flush()
            time.sleep(0.2)
sys.exit(0)
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "skopeo").write_text(FAKE)
    (bin_dir / "skopeo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PIDFILE", str(tmp_path / "pid"))
    (tmp_path / "tmp").mkdir()

    def use(mode, **env):
        monkeypatch.setenv("FAKE_SKOPEO", mode)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    use.pid = lambda: int((tmp_path / "pid").read_text())
    return use


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_an_endless_manifest_is_cut_at_4_mib(fake, tmp_path):
    fake("huge")
    t0 = time.monotonic()
    with pytest.raises(Error, match="larger than 4 MiB") as e:
        skopeo.inspect_raw("reg.test/app:v1", None, tmp_path / "tmp")
    assert time.monotonic() - t0 < 10 and "\n" not in e.value.message and gone(fake.pid())


def test_a_silent_registry_is_given_up_on_after_the_timeout(fake, tmp_path, monkeypatch):
    fake("silent")
    monkeypatch.setenv(skopeo.TIMEOUT_ENV, "1")
    t0 = time.monotonic()
    with pytest.raises(Error, match="did not answer within 1 s"):
        skopeo.inspect_raw("reg.test/app:v1", None, tmp_path / "tmp")
    assert time.monotonic() - t0 < 5 and gone(fake.pid())


def test_skopeos_complaint_is_one_bounded_line_with_a_hint(fake, tmp_path):
    fake("fail")
    with pytest.raises(Error) as e:
        skopeo.inspect_raw("reg.test/app:v1", None, tmp_path / "tmp")
    message = e.value.message
    assert message.startswith("cannot pull reg.test/app:v1: Error reading manifest v1")
    assert "\n" not in message and "manifest unknown" in message
    assert "check the repository and tag" in e.value.hint


def watch(expected, largest=None):
    return skopeo.CopyWatch(expected=expected, largest=largest or expected)


def test_a_blob_longer_than_declared_is_stopped(fake, tmp_path):
    fake("endless")
    layout = tmp_path / "layout"
    t0 = time.monotonic()
    with pytest.raises(Error, match="more than the image's blobs declare") as e:
        skopeo.copy("reg.test/app@sha256:" + "a" * 64, layout, None, watch(1 << 20),
                    tmp_path / "tmp")
    assert "nothing was kept" in e.value.hint
    assert time.monotonic() - t0 < 20 and gone(fake.pid())
    written = sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())
    # killed past the allowance (what was declared, two documents, 64 KiB), within a poll
    assert (1 << 20) + 2 * skopeo.MAX_DOCUMENT < written < 64 << 20


def test_no_file_grows_past_the_largest_declared_blob(fake, tmp_path):
    size = skopeo.MAX_DOCUMENT + 4096
    fake("oversize", FAKE_SIZE=str(size))
    layout = tmp_path / "layout"
    with pytest.raises(Error, match="File too large") as e:
        skopeo.copy("reg.test/app@sha256:" + "a" * 64, layout, None, watch(size),
                    tmp_path / "tmp")
    assert "larger than its descriptor" in e.value.hint
    assert (layout / "blobs/sha256/oci-put-blob1").stat().st_size == size


def test_a_copy_that_stalls_is_stopped(fake, tmp_path, monkeypatch):
    fake("silent")
    monkeypatch.setenv(skopeo.TIMEOUT_ENV, "1")
    t0 = time.monotonic()
    with pytest.raises(Error, match="sent nothing for 1 s"):
        skopeo.copy("reg.test/app@sha256:" + "a" * 64, tmp_path / "layout", None,
                    watch(1000), tmp_path / "tmp")
    assert time.monotonic() - t0 < 5 and gone(fake.pid())


def test_a_trickle_is_stopped_at_the_deadline(fake, tmp_path, monkeypatch):
    """A byte every 0.2 s is never silent for a second: the deadline (the timeout plus the
    declared bytes at MIN_RATE) ends it."""
    fake("trickle")
    monkeypatch.setenv(skopeo.TIMEOUT_ENV, "1")
    t0 = time.monotonic()
    with pytest.raises(Error, match="took longer than"):
        skopeo.copy("reg.test/app@sha256:" + "a" * 64, tmp_path / "layout", None,
                    watch(skopeo.MIN_RATE), tmp_path / "tmp")
    assert 1.5 < time.monotonic() - t0 < 6 and gone(fake.pid())


@pytest.mark.parametrize("stderr, hint", [
    (b'level=fatal msg="pinging container registry r: Get \\"https://r/v2/\\": x509: '
     b'certificate signed by unknown authority"', "certs.d"),
    (b'level=fatal msg="http: server gave HTTP response to HTTPS client"', "plain HTTP"),
    (b'level=fatal msg="reading manifest v1 in r/a: unauthorized: authentication required"',
     "log in first"),
    (b'level=fatal msg="Get \\"https://r/v2/\\": stopped after 10 redirects"', "redirects"),
    (b'level=fatal msg="dial tcp 203.0.113.9:443: connect: connection refused"', "reachable"),
    (b"panic: something\n\tgoroutine 1\n", None),
])
def test_failures_get_a_hint(stderr, hint):
    error = skopeo.failure(stderr, "r/a:v1")
    assert "\n" not in error.message and len(error.message) < 500
    assert (hint in error.hint) if hint else error.hint is None


def test_a_long_message_is_cut(fake):
    error = skopeo.failure(b'level=fatal msg="' + b"A" * 10000 + b'"', "r/a:v1")
    assert len(error.message) < 500 and error.message.endswith("...")


def test_skopeos_wrapping_of_an_inspect_error_is_left_out():
    """skopeo inspect says "Error parsing image name" before whatever went wrong, the image
    name included (seen: a 64 MiB manifest, a redirect loop): the line keeps the cause."""
    error = skopeo.failure(b'time="t" level=fatal msg="Error parsing image name \\"docker://r/a:'
                           b'v1\\": exceeded maximum allowed size of 4194304 bytes"', "r/a:v1")
    assert error.message == "cannot pull r/a:v1: exceeded maximum allowed size of 4194304 bytes"
    assert "larger than 4 MiB" in error.hint


class _Seen:
    """A directory entry as os.scandir gave it, its stat taken then."""

    def __init__(self, entry):
        self.name, self.path = entry.name, entry.path
        self._file = entry.is_file(follow_symlinks=False)
        self._stat = entry.stat(follow_symlinks=False)

    def is_file(self, follow_symlinks=True):  # noqa: ARG002
        return self._file

    def stat(self, follow_symlinks=True):  # noqa: ARG002
        return self._stat


def test_a_blob_renamed_between_two_looks_is_counted_once(fake, tmp_path, monkeypatch):
    """skopeo writes a blob under a temporary name in the layout's top directory and renames
    it into blobs/sha256 once whole: a rename that lands between the watch's look at one
    directory and at the other must not count the blob twice (a 20 MB layer of an honest
    registry's image was \"more than the image's blobs declare\" that way)."""
    size = 3 * skopeo.MAX_DOCUMENT  # twice that is past the allowance
    fake("honest", FAKE_SIZE=str(size))
    layout = tmp_path / "layout"
    real_scandir = os.scandir
    hexname = "b" * 64

    def scandir(path):
        with real_scandir(path) as it:
            seen = [_Seen(e) for e in it]
        temp = layout / "oci-put-blob7"
        if temp.exists() and temp.stat().st_size == size:
            temp.rename(layout / "blobs/sha256" / hexname)  # right after this look
        return iter(seen)
    monkeypatch.setattr(skopeo.os, "scandir", scandir)
    landed = []
    skopeo.copy("reg.test/app@sha256:" + "a" * 64, layout, None,
                skopeo.CopyWatch(expected=size, largest=size, on_file=landed.append),
                tmp_path / "tmp")
    assert landed == [hexname]


def test_a_blob_renamed_between_listing_and_stat_is_no_crash(fake, tmp_path, monkeypatch):
    """The rename can land after a directory is listed and before an entry's stat: that entry
    is gone, not an error."""
    size = 1 << 20
    fake("honest", FAKE_SIZE=str(size))
    layout = tmp_path / "layout"
    real_scandir = os.scandir
    hexname = "c" * 64

    def scandir(path):
        with real_scandir(path) as it:
            entries = list(it)  # listed, not yet stat'ed
        temp = layout / "oci-put-blob7"
        if temp.exists() and temp.stat().st_size == size:
            temp.rename(layout / "blobs/sha256" / hexname)
        return iter(entries)
    monkeypatch.setattr(skopeo.os, "scandir", scandir)
    landed = []
    skopeo.copy("reg.test/app@sha256:" + "a" * 64, layout, None,
                skopeo.CopyWatch(expected=size, largest=size, on_file=landed.append),
                tmp_path / "tmp")
    assert landed == [hexname]
