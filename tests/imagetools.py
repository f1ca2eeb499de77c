"""Make images with tools from Debian (podman, skopeo, umoci) and compare unpacked trees.

Used by tests/integration/test_oci_interop.py and tests/bench/bench_oci.py.  podman
runs as root without systemd here, so it gets its own storage under a work
directory, cgroupfs, file events and the vfs driver: nothing lands in
/var/lib/containers.
"""

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
TOOLS = ("podman", "skopeo", "umoci")


def missing_tools() -> list[str]:
    return [t for t in (*TOOLS, str(BUSYBOX)) if shutil.which(t) is None]


def run(*argv, **kw) -> subprocess.CompletedProcess:
    """argv run to its end; a failure raises ToolFailed, which says what the tool said."""
    argv = [str(a) for a in argv]
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise ToolFailed(done.returncode, argv, done.stdout, done.stderr)
    return done


class ToolFailed(subprocess.CalledProcessError):
    """CalledProcessError whose message ends with the tool's last lines of stderr (a CI log
    shows the message, and the bare exit status of a tool says nothing)."""

    def __str__(self):
        said = (self.stderr or "").strip().splitlines()[-10:]
        return "\n".join([super().__str__(), *said])


@dataclass(frozen=True)
class Podman:
    """podman with a private store under work (no systemd, no /var/lib/containers)."""

    work: Path
    runtime: str | None = None  # podman's --runtime (its default: crun here)

    @property
    def runroot(self) -> Path:
        """podman refuses a --runroot over 50 characters ("the specified runroot is longer
        than 50 characters"): a work directory under pytest's /tmp/pytest-of-root/pytest-N
        passes that once N has 4 digits.  So a short one, named after work (every Podman of
        one work directory shares it)."""
        digest = hashlib.blake2s(str(self.work).encode(), digest_size=6).hexdigest()
        return Path(f"/tmp/nspawnctl-podman-{digest}")

    def argv(self, *args) -> list[str]:
        """podman's command line with this store (for a caller that runs it itself)."""
        return [str(a) for a in (
            "podman", "--root", self.work / "storage", "--runroot", self.runroot,
            "--cgroup-manager=cgroupfs", "--events-backend=file", "--storage-driver=vfs",
            *(["--runtime", self.runtime] if self.runtime else []), *args)]

    def __call__(self, *args) -> subprocess.CompletedProcess:
        return run(*self.argv(*args))

    def import_tree(self, tree: Path, name: str, cmd: str = '["/bin/sh"]') -> str:
        tarball = self.work / f"{name.replace('/', '_').replace(':', '_')}.rootfs.tar"
        # GNU tar keeps numeric owners, setuid bits and xattrs the way images carry them.
        run("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", tree,
            "-cf", tarball, ".")
        self("import", "--change", f"CMD {cmd}", tarball, name)
        tarball.unlink()
        return name

    def save(self, name: str, fmt: str, out: Path) -> Path:
        self("save", "--format", fmt, "-o", out, name)
        return out

    def cleanup(self) -> None:
        try:
            self("system", "reset", "--force")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.work / "storage", ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def make_busybox_tree(root: Path) -> Path:
    """A small root tree with what images carry: symlinks, setuid, owners, sticky dirs, links."""
    for d in ("bin", "sbin", "etc", "usr/bin", "var/empty", "home/user"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in ("sh", "ls", "cat", "echo", "sleep", "id"):
        os.symlink("busybox", root / "bin" / applet)
    os.symlink("/bin/busybox", root / "usr/bin/env")
    os.symlink("../bin", root / "sbin/bin")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "user:x:1000:1000::/home/user:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nuser:x:1000:\n")
    (root / "etc/os-release").write_text("ID=busybox\n")
    shutil.copy2(BUSYBOX, root / "bin/su")
    os.chmod(root / "bin/su", 0o4755)
    os.link(root / "bin/su", root / "bin/su-hardlink")
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    (root / "home/user/.profile").write_text("export PS1='$ '\n")
    os.chown(root / "home/user", 1000, 1000)
    os.chown(root / "home/user/.profile", 1000, 1000)
    (root / "var/empty").chmod(0o555)
    (root / "etc/shadow").write_text("root:*:19000::::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    return root


def skopeo_to_oci_dir(source: str, layout: Path, tag: str) -> Path:
    """skopeo copy SOURCE (e.g. "oci-archive:/x.tar") oci:LAYOUT:TAG."""
    run("skopeo", "copy", "--quiet", source, f"oci:{layout}:{tag}")
    return layout


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    """The tree umoci makes of LAYOUT:TAG (as root: owners kept); returns BUNDLE/rootfs."""
    run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
    return bundle / "rootfs"


def umoci_add_layer(layout: Path, tag: str, new_tag: str, change, work: Path) -> None:
    """Unpack TAG, let change(rootfs) edit the tree, repack it as NEW_TAG (a new layer)."""
    bundle = work / f"bundle-{new_tag}"
    umoci_unpack(layout, tag, bundle)
    change(bundle / "rootfs")
    run("umoci", "repack", "--image", f"{layout}:{new_tag}", bundle)
    shutil.rmtree(bundle)


@dataclass(frozen=True)
class Entry:
    type: str
    mode: int
    uid: int
    gid: int
    size: int | None
    sha256: str | None
    target: str | None
    mtime: int | None


def describe(path: Path) -> Entry:
    st = path.lstat()
    kind = stat.S_IFMT(st.st_mode)
    digest = target = None
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
    return Entry({stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
                  stat.S_IFIFO: "fifo"}.get(kind, oct(kind)), stat.S_IMODE(st.st_mode),
                 st.st_uid, st.st_gid, st.st_size if stat.S_ISREG(st.st_mode) else None,
                 digest, target, int(st.st_mtime) if not stat.S_ISDIR(st.st_mode) else None)


def snapshot(root: Path) -> dict[str, Entry]:
    result = {".": describe(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            result[str(p.relative_to(root))] = describe(p)
    return result


def compare_trees(ours: Path, theirs: Path) -> list[str]:
    """Differences entry by entry: type, mode, owner, size, content hash, link target."""
    a, b = snapshot(ours), snapshot(theirs)
    diffs = [f"only in ours: {p}" for p in sorted(a.keys() - b.keys())]
    diffs += [f"only in theirs: {p}" for p in sorted(b.keys() - a.keys())]
    for p in sorted(a.keys() & b.keys()):
        if a[p] != b[p]:
            diffs.append(f"{p}: ours {a[p]} theirs {b[p]}")
    return diffs


def copy_tree(sources: list[Path], root: Path) -> Path:
    """A bigger realistic tree for benchmarks: real files copied below root."""
    for src in sources:
        shutil.copytree(src, root / src.relative_to("/"), symlinks=True, dirs_exist_ok=True)
    return root
