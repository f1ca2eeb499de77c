"""Image text never becomes settings (issue 26, item 1), on a real systemd host.

The attack: an OCI image whose Env holds U+2028 (or another character some reader ends lines
at) between lines such as `PrivateUsers=no` and `[Files]` `Bind=/:/host`.  Written into the
container's .nspawn file it is one line for systemd; a reader that split there would write
the pieces back as real lines at the next edit, and the next start would run the image as the
host's root with / mounted.  Here:

- create from such an image is refused with one line, and nothing is made;
- a .nspawn file that already holds such a value (an older nspawnctl wrote it, or a hand edit)
  keeps it as one line through `set` and `clone`, and the container still starts in a user
  namespace of its own, with no bind of the host's / (checked on the running container).
"""

import json

import pytest

from tests.integration.helpers import store_problems
from tests.integration.test_oci_containers import busybox_layer, oci_archive

pytestmark = pytest.mark.integration

WORK = "/root/nspawnctl-hostile-settings"
NAME = "hostile-env"
SEPARATORS = {"u2028": "\u2028", "u2029": "\u2029", "nel": "\x85", "vt": "\v", "ff": "\f",
              "fs": "\x1c", "gs": "\x1d", "rs": "\x1e"}
LINES = ["PrivateUsers=no", "Capability=all", "[Files]", "Bind=/:/host", "[Exec]"]


@pytest.fixture(scope="module")
def archives(host, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-settings")
    layer = busybox_layer()
    host.run(["mkdir", "-p", WORK])
    made = {}
    for key, sep in SEPARATORS.items():
        env = ["PATH=/bin:/usr/bin", "X=1" + sep + sep.join(LINES)]
        archive = oci_archive(work, f"env-{key}", [layer], Env=env)
        made[key] = f"{WORK}/{archive.name}"
        host.path(made[key]).write_bytes(archive.read_bytes())
    plain = oci_archive(work, "plain", [layer])
    made["plain"] = f"{WORK}/{plain.name}"
    host.path(made["plain"]).write_bytes(plain.read_bytes())
    yield made
    host.run(["rm", "-rf", WORK])


@pytest.mark.parametrize("sep", SEPARATORS)
def test_create_refuses_an_image_whose_env_hides_lines(host, nspawnctl, archives, sep):
    result = nspawnctl.fails("create", NAME, "--from", f"oci-archive:{archives[sep]}")
    assert "environment variable" in result.error and "not allowed" in result.error, result
    assert not host.path(f"/etc/systemd/nspawn/{NAME}.nspawn").exists()
    assert not host.path(f"/var/lib/machines/{NAME}").exists()
    assert store_problems(host, nspawnctl) == []


def _user_namespace_of(host, nspawnctl, name) -> tuple[str, str]:
    """The running container's uid_map and its mount points."""
    leader = json.loads(nspawnctl("status", name, "--json").stdout)["leader"]
    uid_map = host.run(["cat", f"/proc/{leader}/uid_map"]).stdout.split()
    mountinfo = host.run(["cat", f"/proc/{leader}/mountinfo"]).stdout.splitlines()
    return " ".join(uid_map), [line.split()[4] for line in mountinfo]


def test_a_settings_file_holding_such_a_value_stays_one_line(host, nspawnctl, made,
                                                              archives):
    name = made("hostile-kept", "--from", f"oci-archive:{archives['plain']}")
    path = host.path(f"/etc/systemd/nspawn/{name}.nspawn")
    value = "X=1\u2028" + "\u2028".join(LINES)
    text = path.read_text()
    assert "[Exec]\n" in text
    # as nspawnctl before issue 26 wrote an image's Env: unquoted, one line for systemd
    path.write_text(text.replace("[Exec]\n", f"[Exec]\nEnvironment={value}\n", 1))
    nspawnctl("set", name, "--tasks", "100")
    nspawnctl("clone", name, f"{name}-2")
    try:
        for each in (name, f"{name}-2"):
            nspawnctl("start", each)
            uid_map, mounts = _user_namespace_of(host, nspawnctl, each)
            nspawnctl("stop", each)
            assert not uid_map.startswith("0 0 "), f"{each} runs as the host's root: {uid_map}"
            assert "/host" not in mounts, f"{each} has the host's / mounted"
            written = host.path(f"/etc/systemd/nspawn/{each}.nspawn").read_text()
            assert f"Environment={value}\n" in written
            assert not set(LINES[:2] + LINES[3:4]) & set(written.split("\n")), written
    finally:
        nspawnctl("remove", "--force", f"{name}-2", check=False)
