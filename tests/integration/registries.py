"""Registries for the pull tests, in the testbed's outside world (tests/outside.py): Debian's
docker-registry (the CNCF distribution registry) on documentation addresses in the upstream
namespace, each a transient unit of the testbed's systemd:

    tls     203.0.113.50:5000  HTTPS, certificate from a test CA the testbed trusts through
                               /etc/containers/certs.d/203.0.113.50:5000/ca.crt
    auth    203.0.113.51:5000  HTTPS as above, and htpasswd Basic auth (USER / PASSWORD)
    plain   203.0.113.52:5000  plain HTTP: refused unless marked insecure or --tls-verify=false
    hostile 203.0.113.60:5000  tests/hostile_registry.py (plain HTTP, marked insecure)
(203.0.113.53 is the outside world's DNS, .80 its web server.)

Images are OCI layouts built on this machine (tests/unit/imagebuild.py), copied into the
testbed and pushed there with `skopeo copy`.  Each registry's access log is a file, so a test
counts the blobs a pull fetched."""

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from nspawnctl.sources.oci import parse_platform
from tests import imagetools, outside
from tests.unit import imagebuild as ib

PORT = 5000
ADDRS = {"tls": "203.0.113.50", "auth": "203.0.113.51", "plain": "203.0.113.52",
         "hostile": "203.0.113.60"}
ROOT = "/srv/registry"
CERTS_D = "/etc/containers/certs.d"
INSECURE_CONF = "/etc/containers/registries.conf.d/50-nspawnctl-test.conf"
USER, PASSWORD = "tester", "s3cret-registry-pw"
HTPASSWD = f"{USER}:$2b$04$dtFpBS848woOXXhuGD/dAONP/Nnrb15ihv0.a7QNnHf35VjFMjX2K\n"
ARCH = parse_platform(None).architecture
PAGE = b"<h1>served from a pulled image</h1>\n"


def registry(which: str) -> str:
    return f"{ADDRS[which]}:{PORT}"


def unit(which: str) -> str:
    return f"test-registry-{which}.service"


CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}/{which}/data
  delete:
    enabled: true
http:
  addr: {addr}:{port}
{tls}{auth}"""


class Registries:
    def __init__(self, host, work: Path):
        self.host, self.work = host, work

    # --- up and down ----------------------------------------------------------------------

    def up(self):
        host = self.host
        self._sh(f"rm -rf {ROOT} && mkdir -p {ROOT}")
        self._certificates()
        for which, addr in ADDRS.items():
            self._sh(f"ip -n {outside.UPSTREAM_NS} addr add {addr}/32 dev {outside.UPSTREAM_LINK}")
            self._sh(f"mkdir -p {ROOT}/{which}/data")
            if which != "hostile":
                tls = (f"  tls:\n    certificate: {ROOT}/server.crt\n    key: {ROOT}/server.key\n"
                       if which in ("tls", "auth") else "")
                auth = (f"auth:\n  htpasswd:\n    realm: test\n    path: {ROOT}/htpasswd\n"
                        if which == "auth" else "")
                Path(host.path(f"{ROOT}/{which}/config.yml")).write_text(CONFIG.format(
                    root=ROOT, which=which, addr=addr, port=PORT, tls=tls, auth=auth))
        Path(host.path(f"{ROOT}/htpasswd")).write_text(HTPASSWD)
        self._sh(f"mkdir -p {CERTS_D}/{registry('tls')} {CERTS_D}/{registry('auth')} && "
                 f"cp {ROOT}/ca.crt {CERTS_D}/{registry('tls')}/ca.crt && "
                 f"cp {ROOT}/ca.crt {CERTS_D}/{registry('auth')}/ca.crt")
        self._sh(f"mkdir -p {Path(INSECURE_CONF).parent}")
        Path(host.path(INSECURE_CONF)).write_text(
            f'[[registry]]\nlocation = "{registry("hostile")}"\ninsecure = true\n')
        self._sh(f"mkdir -p {ROOT}/hostile/data/blobs/sha256 && "
                 f"echo '{{}}' > {ROOT}/hostile/data/tags.json")
        for which in ADDRS:
            self.start(which)
        return self

    def down(self):
        for which in ADDRS:
            self.host.run(["systemctl", "stop", unit(which)])
        self.host.run(["rm", "-rf", ROOT, f"{CERTS_D}/{registry('tls')}",
                       f"{CERTS_D}/{registry('auth')}", INSECURE_CONF])

    def start(self, which: str):
        if which == "hostile":
            command = (f"exec python3 /usr/src/nspawnctl/tests/hostile_registry.py "
                       f"{ADDRS[which]} {PORT} {ROOT}/hostile/data")
        else:
            command = f"exec docker-registry serve {ROOT}/{which}/config.yml"
        r = self.host.run(["systemd-run", f"--unit={unit(which)}", "--collect", "--quiet",
                           f"--property=NetworkNamespacePath=/run/netns/{outside.UPSTREAM_NS}",
                           "sh", "-c", f"{command} >>{ROOT}/{which}.log 2>&1"])
        assert r.returncode == 0, str(r)
        deadline = time.monotonic() + 20
        while f"{ADDRS[which]}:{PORT}" not in self.host.run(
                ["ip", "netns", "exec", outside.UPSTREAM_NS, "ss", "-Hltn"]).stdout:
            assert time.monotonic() < deadline, self.host.run(["cat", f"{ROOT}/{which}.log"])
            time.sleep(0.1)

    def stop(self, which: str):
        self.host.run(["systemctl", "stop", unit(which)])

    def _certificates(self):
        """A test CA and a certificate for the TLS registries' addresses, made here with
        openssl; the testbed trusts the CA only through certs.d."""
        d = Path(tempfile.mkdtemp(dir=self.work))
        ext = d / "ext"
        ext.write_text(f"subjectAltName=IP:{ADDRS['tls']},IP:{ADDRS['auth']}\n"
                       "extendedKeyUsage=serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for argv in (["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                      "-subj", "/CN=nspawnctl test CA"],
                     ["req", *ec, "-keyout", "server.key", "-out", "server.csr",
                      "-subj", "/CN=registry.test"],
                     ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                      "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext"]):
            subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True)
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copyfile(d / name, self.host.path(f"{ROOT}/{name}"))

    def _sh(self, script: str):
        r = self.host.run(["sh", "-ec", script])
        assert r.returncode == 0, str(r)

    # --- images ---------------------------------------------------------------------------

    def push(self, layout: Path, tag: str, which: str, repo: str, ref: str,
             all_: bool = False) -> str:
        """Copy layout (on this machine) into the testbed and push its image tag there to
        REGISTRY/repo:ref; returns the manifest (or index) digest the registry has."""
        inside = f"/root/layouts/{layout.name}"
        self.host.run(["rm", "-rf", inside])
        self.host.run(["mkdir", "-p", "/root/layouts"])
        shutil.copytree(layout, self.host.path(inside))
        dest = f"docker://{registry(which)}/{repo}:{ref}"
        creds = ["--dest-creds", f"{USER}:{PASSWORD}"] if which == "auth" else []
        tls = ["--dest-tls-verify=false"] if which == "plain" else []
        r = self.host.run(["skopeo", "copy", "-q", *(["--all"] if all_ else []), *creds, *tls,
                           f"oci:{inside}:{tag}", dest])
        assert r.returncode == 0, str(r)
        return self.digest(which, repo, ref)

    def digest(self, which: str, repo: str, ref: str) -> str:
        creds = ["--creds", f"{USER}:{PASSWORD}"] if which == "auth" else []
        tls = ["--tls-verify=false"] if which == "plain" else []
        r = self.host.run(["skopeo", "inspect", "--raw", *creds, *tls,
                           f"docker://{registry(which)}/{repo}:{ref}"])
        assert r.returncode == 0, str(r)
        return ib.sha256(r.stdout.encode())

    def log_mark(self, which: str) -> int:
        return len(self.host.run(["cat", f"{ROOT}/{which}.log"]).stdout.splitlines())

    def blob_gets(self, which: str, since: int = 0) -> list[str]:
        """The digests of the blobs the registry sent (GET, 200) since a log_mark."""
        lines = self.host.run(["cat", f"{ROOT}/{which}.log"]).stdout.splitlines()[since:]
        return [m.group(1) for line in lines
                if (m := re.search(r'"GET /v2/[^ ]+/blobs/(sha256:[a-f0-9]{64}) HTTP/[0-9.]+" 200',
                                   line))]


# --- the images the tests pull -----------------------------------------------------------

BUSYBOX = imagetools.BUSYBOX


def httpd(root: str = "/www", binary: str = "/bin/busybox") -> list[str]:
    return [binary, "httpd", "-f", "-p", "80", "-h", root]


def config(layers: list[bytes], arch: str = ARCH, **run) -> dict:
    settings = {"Entrypoint": httpd(), "Cmd": None, "Env": ["PATH=/bin"], "WorkingDir": "/",
                "User": None, "ExposedPorts": {"80/tcp": {}}, "Volumes": None, **run}
    return ib.image_config([ib.sha256(t) for t in layers], arch, **settings)


def layout(work: Path, name: str, layers: list[bytes], tag: str = "1", **run) -> Path:
    ib.oci_layout(work / name, layers, ref=tag, config=config(layers, **run))
    return work / name


SCRATCH_BASE = ib.layer(ib.dir("bin"), ib.file("bin/busybox", BUSYBOX.read_bytes(), 0o755))


def www(page: bytes, root: str = "www") -> bytes:
    return ib.layer(ib.dir(root), ib.file(f"{root}/index.html", page))


def shapes() -> dict[str, tuple[list[bytes], dict]]:
    """Images shaped like the common ones, each serving its name: FROM scratch (one static
    program, no /usr, no /etc), distroless (users and certificates, no shell, a non-root
    user), Alpine (busybox with its links, /etc, no init), Debian slim (merged /usr)."""
    busybox = BUSYBOX.read_bytes()
    return {
        "scratch": ([SCRATCH_BASE, www(b"scratch\n")], {}),
        "distroless": ([ib.layer(
            ib.dir("etc"), ib.file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
                                                 b"nonroot:x:65532:65532::/home/nonroot:/sbin/"
                                                 b"nologin\n"),
            ib.file("etc/group", b"root:x:0:\nnonroot:x:65532:\n"),
            ib.file("etc/nsswitch.conf", b"hosts: files dns\n"),
            ib.file("etc/os-release", b'PRETTY_NAME="Distroless"\nID=debian\n'),
            ib.dir("etc/ssl"), ib.dir("etc/ssl/certs"),
            ib.file("etc/ssl/certs/ca-certificates.crt", b""),
            ib.dir("home"), ib.dir("home/nonroot", uid=65532, gid=65532),
            ib.dir("tmp", 0o1777), ib.dir("usr"), ib.dir("usr/share"),
            ib.dir("var"), ib.dir("var/lib"), ib.dir("var/lib/dpkg"),
            ib.dir("var/lib/dpkg/status.d")),
            # busybox under its own name: it picks the applet by the name it is run as
            ib.layer(ib.dir("app"), ib.file("app/busybox", busybox, 0o755)),
            www(b"distroless\n", "app/www")],
            {"Entrypoint": httpd("/app/www", "/app/busybox"), "User": "65532:65532",
             "Env": ["PATH=/usr/local/bin:/usr/bin:/bin",
                     "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]}),
        "alpine": ([ib.layer(
            ib.dir("bin"), ib.file("bin/busybox", busybox, 0o755),
            *[ib.symlink(f"bin/{a}", "/bin/busybox") for a in ("sh", "ls", "cat", "httpd")],
            ib.dir("etc"), ib.file("etc/os-release", b'NAME="Alpine Linux"\nID=alpine\n'),
            ib.file("etc/alpine-release", b"3.19.0\n"),
            ib.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ib.dir("lib"), ib.dir("sbin"), ib.dir("usr"), ib.dir("usr/bin"), ib.dir("usr/sbin"),
            ib.dir("var"), ib.dir("tmp", 0o1777), ib.dir("root", 0o700)),
            www(b"alpine\n")],
            {"Entrypoint": None, "Cmd": httpd(binary="/bin/httpd"),
             "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}),
        "debian-slim": ([ib.layer(
            ib.dir("usr"), ib.dir("usr/bin"), ib.file("usr/bin/busybox", busybox, 0o755),
            ib.dir("usr/lib"), ib.dir("usr/sbin"),
            ib.symlink("bin", "usr/bin"), ib.symlink("sbin", "usr/sbin"),
            ib.symlink("lib", "usr/lib"),
            ib.dir("etc"), ib.file("etc/os-release", b'PRETTY_NAME="Debian GNU/Linux 12 '
                                                     b'(bookworm)"\nID=debian\n'),
            ib.file("etc/debian_version", b"12.5\n"),
            ib.file("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
            ib.file("etc/group", b"root:x:0:\n"),
            ib.dir("var"), ib.dir("var/lib"), ib.dir("var/lib/dpkg"),
            ib.file("var/lib/dpkg/status", b""), ib.dir("tmp", 0o1777), ib.dir("root", 0o700)),
            www(b"debian-slim\n")],
            {"Entrypoint": None, "Cmd": httpd(binary="/bin/busybox"),
             "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}),
    }


def index_layout(work: Path, name: str, images: dict[str, list[bytes]], tag: str = "1") -> Path:
    """An OCI layout whose tag names an image index of one image per architecture."""
    root = work / name
    root.mkdir()
    manifests = []
    for arch, layers in images.items():
        built = ib.write_manifest(root, layers, arch=arch, config=config(layers, arch=arch))
        manifests.append(dict(built.manifest, platform={"os": "linux", "architecture": arch}))
    index = ib.write_blob(root, json.dumps({"schemaVersion": 2, "mediaType": ib.OCI_INDEX,
                                            "manifests": manifests}).encode(), ib.OCI_INDEX,
                          annotations={"org.opencontainers.image.ref.name": tag})
    ib.write_index(root, [index])
    return root
