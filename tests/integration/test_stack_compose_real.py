"""A compose file applied for real (issue 29): services from an image in a local registry
(Debian's docker-registry in the testbed's outside world), ports, environment, limits,
depends_on and restart become containers that serve; a second apply changes nothing; a key
nspawnctl cannot honour is refused with its line, or with --ignore-unsupported said and
left out."""

import hashlib
import json

import pytest

from nspawnctl.errors import INVALID_INPUT
from tests.integration import registries as R
from tests.integration.helpers import listing
from tests.integration.test_registry import regs, world  # noqa: F401 (fixtures)
from tests.integration.test_stacks import DIR, served, stack_file

pytestmark = pytest.mark.integration

TLS = R.registry("tls")
COMPOSE = f"""name: cmp
services:
  cdb:
    image: {TLS}/test/web:1
    command: ["-v"]
  cweb:
    image: {TLS}/test/web:1
    ports: ["18100:80"]
    environment:
      MODE: prod
    mem_limit: 64m
    depends_on: [cdb]
    restart: always
x-notes: extension keys are the author's, and ignored
"""


def test_a_compose_file_comes_up_and_converges(host, nspawnctl, regs):  # noqa: F811
    path = stack_file(host, "compose", COMPOSE)
    host.path(path).parent.joinpath("www").mkdir(exist_ok=True)
    try:
        r = nspawnctl("apply", "-f", path)
        assert r.stdout.splitlines()[:2] == [
            f"created cdb: from docker://{TLS}/test/web:1",
            f"created cweb: from docker://{TLS}/test/web:1"], r.stdout
        # command alone: the arguments of the image's entrypoint (create --args)
        db = json.loads(nspawnctl("status", "cdb", "--json").stdout)
        assert db["command"] == R.httpd() + ["-v"], db["command"]
        web = json.loads(nspawnctl("status", "cweb", "--json").stdout)
        assert web["stack"] == "cmp" and web["state"] == "running"
        assert web["memory"] == 64 << 20 and "MODE=prod" in web["env"]
        assert web["after"] == ["cdb"] and web["restart"] == "always" and web["enabled"]
        assert web["port"] == ["18100:80/tcp"] and web["network"] == "default"
        page = R.PAGE.decode()
        served(host, 18100, page)
        r = nspawnctl("apply", "-f", path)
        assert r.stdout.strip() == "stack cmp: nothing to do, the host matches the file"
        # a key it cannot honour: refused, with its line, before anything changes
        host.path(path).write_text(COMPOSE.replace("    restart: always\n",
                                                   "    restart: always\n    cap_add: [ALL]\n"))
        r = nspawnctl("apply", "-f", path, check=False)
        assert r.returncode == INVALID_INPUT
        assert f"{path}:14: services.cweb.cap_add: not supported by nspawnctl" in r.stderr, \
            r.stderr
        r = nspawnctl("apply", "-f", path, "--ignore-unsupported")
        assert f"warning: {path}:14: services.cweb.cap_add" in r.stderr, r.stderr
        assert "nothing to do" in r.stdout
    finally:
        nspawnctl("apply", "-f", "-", "--prune", input="name: cmp\n")
    assert not {"cdb", "cweb"} & set(listing(nspawnctl))


def test_a_service_reads_its_secrets_at_run_secrets(host, nspawnctl, regs):  # noqa: F811
    """Compose secrets (issue 32): the service's command reads /run/secrets/token (a
    root-owned 0600 file: readable by the container's root through the idmapped bind, as
    under Docker) and a second secret at its absolute target, and serves their sha256 and
    size, so no value is on a command line; neither is writable; the value is in no output,
    the stack's record, spec or the process list."""
    token, key = "tok-7Hq2-compose-secret\n", "key-Vw3s"
    page_dir = "/www2"
    run = (f"/bin/busybox mkdir -p {page_dir} && cd {page_dir} && "
           "/bin/busybox sha256sum /run/secrets/token > index.html && "
           "/bin/busybox wc -c < /etc/app/key >> index.html && "
           "{ (echo x > /run/secrets/token) 2>/dev/null && echo writable >> index.html; "
           f"true; }} && exec /bin/busybox httpd -f -p 80 -h {page_dir}")
    text = (f"name: csec\nservices:\n  csec:\n    image: {TLS}/test/web:1\n"
            f"    entrypoint: [/bin/busybox, sh, -c, '{run}']\n"
            f"    ports: [\"18101:80\"]\n    secrets:\n      - token\n"
            f"      - source: app_key\n        target: /etc/app/key\n"
            f"secrets:\n  token:\n    file: ./token.txt\n  app_key:\n    file: ./key.txt\n")
    path = stack_file(host, "csec", text)
    directory = host.path(path).parent
    (directory / "token.txt").write_text(token)
    (directory / "key.txt").write_text(key)
    # root's alone: the container's root reads it only through the idmapped bind
    (directory / "token.txt").chmod(0o600)
    assert host.run(["stat", "-c", "%a %U", f"{DIR}/token.txt"]).stdout == "600 root\n"
    try:
        r = nspawnctl("apply", "-f", path)
        digest = hashlib.sha256(token.encode()).hexdigest()
        served(host, 18101, f"{digest}  /run/secrets/token\n{len(key)}\n")
        again = nspawnctl("apply", "-f", path, "--json")
        assert not json.loads(again.stdout)["changed"], again.stdout
        seen = (r.stdout + r.stderr + again.stdout + nspawnctl("spec", "csec").stdout
                + nspawnctl("status", "csec", "--json").stdout
                + host.path("/var/lib/nspawnctl/stacks/csec.json").read_text()
                + host.run(["ps", "-eo", "args"]).stdout)
        assert "/run/secrets/token:ro:idmap" in seen
        assert token.strip() not in seen and key not in seen
    finally:
        nspawnctl("apply", "-f", "-", "--prune", input="name: csec\n")
