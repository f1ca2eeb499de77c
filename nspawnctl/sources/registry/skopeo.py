"""skopeo, run so that nothing a registry sends can take more than nspawnctl allows.

skopeo (containers/image) talks to registries as podman does: auth files, registries.conf
(mirrors, insecure, blocked), certs.d, policy.json and proxies all apply.  But it is not the
bound: skopeo 1.9 keeps reading a blob past the size its descriptor declares (5 GB in 40 s
were seen), and waits as long as a server that accepted a connection keeps quiet.  So every
run here has nspawnctl's own limits, each enforced by killing skopeo:

- inspect (a manifest or an index): at most MAX_DOCUMENT bytes of output, within the
  answer timeout;
- copy (blobs into a layout): each file at most the largest size the manifest declares
  (RLIMIT_FSIZE: the kernel refuses the write, skopeo fails), all files together at most
  what the missing blobs declare (looked at every POLL: what gets past is what arrives in
  one, beyond the per-file bound), no more than the answer timeout
  without a byte written, and all of it within a deadline that grows with the bytes
  (MIN_RATE).

Credentials never go on a command line: skopeo reads them from the auth files itself, and
`login` gives it the password on its stdin.  skopeo's error goes to the user as one line,
its `msg` field, bounded and with a hint for the usual causes.
"""

import os
import re
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import Error, InvalidInput, Usage
from ...run import interactive, kill, need_tool, start, wait_up_to

MAX_DOCUMENT = 4 << 20            # a manifest or an index (skopeo's own limit, said here)
MAX_ERROR = 64 << 10              # stderr kept from a failing skopeo (its last bytes)
DEFAULT_TIMEOUT = 60.0            # seconds a registry may keep quiet
MIN_RATE = 100_000                # bytes/s: below this on average, a download is stalled
POLL = 0.05                       # seconds between two looks at a copy's files
TIMEOUT_ENV = "NSPAWNCTL_REGISTRY_TIMEOUT"


def answer_timeout() -> float:
    """Seconds a registry may keep quiet (NSPAWNCTL_REGISTRY_TIMEOUT, for slow links and
    for tests)."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value <= 24 * 3600:
        raise Usage(f"invalid {TIMEOUT_ENV}={text[:20]!r}", hint="give seconds, e.g. 60")
    return value


def tls_flag(option: str, tls_verify: bool | None) -> list[str]:
    """--tls-verify as the user gave it; nothing when not given, so that registries.conf's
    insecure = true applies (skopeo's default is to verify)."""
    return [] if tls_verify is None else [f"{option}={'true' if tls_verify else 'false'}"]


def _argv(*args: str) -> list[str]:
    return [need_tool("skopeo"), *args]


def inspect_raw(image: str, tls_verify: bool | None, tmpdir: Path,
                what: str = "manifest") -> bytes:
    """The raw manifest (or index) `skopeo inspect --raw docker://IMAGE` prints, bounded in
    size and time.  Nothing in it is trusted: the caller checks it against its digest."""
    timeout = answer_timeout()
    argv = _argv("--tmpdir", str(tmpdir), "inspect", "--raw", "--retry-times", "0",
                 *tls_flag("--tls-verify", tls_verify), f"docker://{image}")
    proc = start(argv, stdout="pipe", stderr="pipe")
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            open_streams = 2
            while open_streams:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _silent(timeout, what, image)
                for key, _ in sel.select(min(left, 1.0)):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    buf = key.data
                    buf += chunk
                    if buf is out and len(out) > MAX_DOCUMENT:
                        raise InvalidInput(
                            f"registry sent a {what} larger than {MAX_DOCUMENT >> 20} "
                            f"MiB for {image}", hint="the registry is broken or hostile")
                    if buf is err and len(err) > MAX_ERROR:
                        del err[:len(err) - MAX_ERROR]
        while proc.poll() is None:  # its output closed: it exits now
            if time.monotonic() > deadline:
                raise _silent(timeout, what, image)
            time.sleep(0.01)
        rc = proc.returncode
    finally:
        if proc.poll() is None:
            kill(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if rc != 0:
        raise failure(bytes(err), image)
    return bytes(out)


def _silent(timeout: float, what: str, image: str) -> Error:
    return Error(f"registry did not answer within {timeout:g} s (fetching the {what} of "
                 f"{image})", hint=f"is it up and reachable? ({TIMEOUT_ENV} sets the time it "
                                   "is given)")


@dataclass
class CopyWatch:
    """What a copy may write, and what to do as it goes.  expected: bytes of the blobs it has
    to fetch (what their descriptors declare); largest: the largest of them; on_file(name) is
    called for every file that appears under the layout's blobs/sha256 (a blob skopeo has
    finished: it renames each into place once whole), on_progress(written, expected)."""

    expected: int
    largest: int
    on_file: Callable[[str], None] = lambda _name: None
    on_progress: Callable[[int, int], None] = lambda _done, _total: None


def copy(image: str, layout: Path, tls_verify: bool | None, watch: CopyWatch,
         tmpdir: Path) -> None:
    """`skopeo copy docker://IMAGE oci:LAYOUT` within the bounds of the module docstring.
    Blobs already in LAYOUT are not fetched again (skopeo reuses them)."""
    timeout = answer_timeout()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    before = {e.name: e.stat(follow_symlinks=False).st_size for e in os.scandir(blobs)}
    start_bytes = sum(before.values()) + _top_bytes(layout)
    allowance = watch.expected + 2 * MAX_DOCUMENT + (64 << 10)  # + its manifest, index.json
    per_file = max(watch.largest, MAX_DOCUMENT)
    deadline_s = timeout + watch.expected / MIN_RATE
    argv = _argv("--tmpdir", str(tmpdir), "copy", "--quiet", "--retry-times", "0",
                 "--remove-signatures", *tls_flag("--src-tls-verify", tls_verify),
                 f"docker://{image}", f"oci:{layout}")
    with open(tmpdir / "skopeo-copy.err", "w+b") as err:
        proc = start(argv, stderr=err, file_size_limit=per_file)
        try:
            t0 = last_change = time.monotonic()
            last_total, seen = -1, set(before)
            while True:
                done = proc.poll() is not None
                total, names = _written(layout, blobs)
                total -= start_bytes
                now = time.monotonic()
                if total != last_total:
                    last_total, last_change = total, now
                    watch.on_progress(max(0, total), watch.expected)
                for name in sorted(names - seen):
                    seen.add(name)
                    watch.on_file(name)
                if total > allowance:
                    raise InvalidInput(f"registry sent more than the image's blobs declare "
                                       f"({watch.expected} bytes) for {image}: stopped",
                                       hint="the registry is broken or hostile; nothing was kept")
                if done:
                    break
                if now - last_change > timeout:
                    raise Error(f"registry sent nothing for {timeout:g} s while fetching "
                                f"{image}: stopped",
                                hint=f"is it up and reachable? ({TIMEOUT_ENV} sets the time "
                                     "it is given)")
                if now - t0 > deadline_s:
                    raise Error(f"fetching {image} took longer than {deadline_s:.0f} s "
                                f"(below {MIN_RATE // 1000} kB/s): stopped",
                                hint=f"the registry is too slow or stalls ({TIMEOUT_ENV} "
                                     "sets the time it is given)")
                wait_up_to(proc, POLL)  # back as soon as skopeo exits
        finally:
            if proc.poll() is None:
                kill(proc)
        if proc.returncode != 0:
            err.seek(0, os.SEEK_END)
            err.seek(max(0, err.tell() - MAX_ERROR))
            raise failure(err.read(), image)


def _top_bytes(layout: Path) -> int:
    total = 0
    for entry in os.scandir(layout):
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:  # renamed into blobs/sha256 since the listing
            continue
    return total


def _written(layout: Path, blobs: Path) -> tuple[int, set[str]]:
    """Bytes in the layout's files (blobs whole and being written, index.json ...), and the
    names of the whole blobs.  skopeo writes each blob as a temporary file in the layout's
    top directory ("oci-put-blob...") and renames it into blobs/sha256 once whole: so blobs
    are looked at first and the top after, and a file that moves between the two looks is
    missed once (the next look counts it), never counted twice."""
    total, names = 0, set()
    for entry in os.scandir(blobs):
        try:
            total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
        if re.fullmatch(r"[a-f0-9]{64}", entry.name):
            names.add(entry.name)
    return total + _top_bytes(layout), names


# --- skopeo's errors, as one line ------------------------------------------------------------

_MSG = re.compile(rb'level=(?:fatal|error) msg="((?:[^"\\]|\\.)*)"')
_WRAPPED = re.compile(r'^Error parsing image name "[^"]*": ')
HINTS = [
    (("unauthorized", "authentication required", "denied", "invalid username/password"),
     "log in first (nspawnctl login REGISTRY, or skopeo login / podman login: the same auth "
     "file), or check that the image exists"),
    (("x509:", "certificate"),
     "trust the registry's CA (/etc/containers/certs.d/HOST:PORT/ca.crt), or mark it "
     "insecure in registries.conf, or pass --tls-verify=false"),
    (("server gave http response to https client",),
     "the registry speaks plain HTTP: mark it insecure = true in registries.conf, or pass "
     "--tls-verify=false if the network is trusted"),
    (("manifest unknown", "name unknown", "not found"),
     "check the repository and tag (nspawnctl never guesses another one)"),
    (("stopped after", "redirect"), "the registry redirects in a loop"),
    (("blocked",), "registries.conf blocks this registry"),
    (("connection refused", "no such host", "i/o timeout", "network is unreachable",
      "no route to host", "connection reset"), "is the registry up and reachable?"),
    (("digest did not match", "size mismatch", "does not match"),
     "the registry sent something other than what it named; nothing was kept"),
    (("file too large",), "the registry sent a blob larger than its descriptor declares; "
                          "nothing was kept"),
    (("exceeded maximum allowed size",), "the registry sent a manifest larger than 4 MiB; "
                                         "the registry is broken or hostile"),
    (("no space left",), "free some space (nspawnctl images prune)"),
]


def failure(stderr: bytes, image: str) -> Error:
    """skopeo's complaint as one Error line with a hint for the usual causes."""
    found = _MSG.findall(stderr)
    if found:
        text = found[-1].decode(errors="replace")
    else:
        lines = stderr.decode(errors="replace").strip().splitlines()
        text = lines[-1] if lines else "skopeo failed without saying why"
    text = text.replace('\\"', '"').replace("\\\\", "\\")
    text = " ".join(text.split())  # one line, whatever a registry put in its error
    # skopeo inspect puts this before any error, the cause after it: the line says the image
    text = _WRAPPED.sub("", text)
    if len(text) > 400:
        text = text[:400] + "..."
    low = text.lower()
    hint = next((h for words, h in HINTS if any(w in low for w in words)), None)
    return Error(f"cannot pull {image}: {text}", hint=hint)


def login(registry: str, username: str | None, password_stdin: bool, tls_verify: bool | None,
          logout: bool = False, all_: bool = False) -> int:
    """skopeo login/logout on the user's terminal (it asks for what it needs there); the
    password only ever on its stdin.  Returns its exit status."""
    if logout:
        argv = _argv("logout", *(["--all"] if all_ else [registry]))
    else:
        argv = _argv("login", *tls_flag("--tls-verify", tls_verify),
                     *(["--username", username] if username else []),
                     *(["--password-stdin"] if password_stdin else []), registry)
    return interactive(argv)
