"""Compose files as stacks (stacks/compose.py): what maps onto nspawnctl is translated with
its meaning and its lines, everything else is refused by name, all at once."""

import textwrap
from pathlib import Path

import pytest

from nspawnctl.stacks import compose, model, yamlfile

# A realistic file: a web front and a database on one network, ports, env, order, limits, a
# bind, and what compose files carry besides (version, x-* anchors, a merge key).
REALISTIC = """\
name: shop
version: "3.9"
x-limits: &limits
  mem_limit: 512m
services:
  web:
    image: registry.example/shop/web:1.4
    container_name: shop-web
    entrypoint: ["/usr/local/bin/web"]
    command: --port 80 --price "$$5"
    environment:
      MODE: prod
      WORKERS: 4
    ports:
      - "8080:80"
      - "127.0.0.1:8443:443/tcp"
      - "5353:53/udp"
      - target: 9000
        published: 9000
        host_ip: 127.0.0.1
    volumes:
      - ./static:/srv/static:ro
      - type: bind
        source: /var/log/shop
        target: /var/log/web
    networks: [backend]
    depends_on:
      db:
        condition: service_started
        restart: true
    restart: unless-stopped
    cpus: 1.5
    <<: *limits
    x-note: ignored, as compose ignores it
  db:
    image: postgres:16
    entrypoint: [docker-entrypoint.sh]
    command: postgres -c max_connections=50
    env_file: db.env
    environment:
      - POSTGRES_PASSWORD=secret
      - DB_NAME=orders
    networks:
      backend: {}
    deploy:
      resources:
        limits:
          memory: 1g
          cpus: "0.5"
          pids: 200
    restart: "no"
    hostname: database
  cache:
    image: redis@sha256:0ed5d5928d4737458944eb604cc8509e245c3e19d02ad83935398bc4b991aac7
    expose: ["6379"]
networks:
  backend:
    ipam:
      config:
        - subnet: 10.99.0.0/24
"""


def translate(text: str, base: Path, ignore: bool = False):
    doc, problems = yamlfile.parse(textwrap.dedent(text))
    assert problems == []
    return compose.translate(doc, base, ignore)


def plain(value):
    """A Doc/Seq tree as plain dicts and lists, to compare with what a test expects."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def texts(problems):
    return [p.text("compose.yaml") for p in problems]


def test_a_realistic_compose_file_becomes_the_native_stack(tmp_path):
    (tmp_path / "db.env").write_text("# the database\nDB_USER=shop\n\nDB_NAME=shop\n")
    out, problems, warnings = translate(REALISTIC, tmp_path)
    assert texts(problems) == []
    assert warnings == []
    assert plain(out) == {
        "name": "shop",
        "networks": {"backend": {"subnet": "10.99.0.0/24"}},
        "containers": {
            "shop-web": {
                "from": "docker://registry.example/shop/web:1.4",
                "boot": False,
                "cmd": ["/usr/local/bin/web", "--port", "80", "--price", "$5"],
                "env": ["MODE=prod", "WORKERS=4"],
                "port": ["8080:80", "127.0.0.1:8443:443", "5353:53/udp", "127.0.0.1:9000:9000"],
                "bind": [f"{tmp_path}/static:/srv/static:ro", "/var/log/shop:/var/log/web"],
                "network": "backend",
                "after": ["db"],
                "requires": ["db"],
                "restart": "always",
                "enabled": True,
                "memory": "512M",
                "cpus": 1.5,
            },
            "db": {
                "from": "docker://docker.io/library/postgres:16",
                "boot": False,
                "cmd": ["docker-entrypoint.sh", "postgres", "-c", "max_connections=50"],
                # environment wins over env_file, and stands where it is said
                "env": ["DB_USER=shop", "POSTGRES_PASSWORD=secret", "DB_NAME=orders"],
                "network": "backend",
                "restart": "no",
                "memory": "1G",
                "cpus": 0.5,
                "tasks": 200,
                "hostname": "database",
            },
            "cache": {
                "from": "docker://docker.io/library/redis@sha256:0ed5d5928d4737458944eb604cc85"
                        "09e245c3e19d02ad83935398bc4b991aac7",
                "boot": False,
                "network": "default",
            },
        },
    }


def test_every_produced_key_keeps_its_compose_line(tmp_path):
    (tmp_path / "db.env").write_text("DB_USER=shop\n")
    out, _, _ = translate(REALISTIC, tmp_path)
    lines = REALISTIC.splitlines()

    def at(line: int) -> str:
        return lines[line - 1].strip()

    web, db = out["containers"]["shop-web"], out["containers"]["db"]
    assert [at(out.line_of(k)) for k in out] == ["name: shop", "networks:", "services:"]
    assert at(out["containers"].line_of("shop-web")) == "web:"
    assert at(web.line_of("from")).startswith("image: registry.example")
    assert at(web.line_of("cmd")).startswith("entrypoint:")
    assert [at(n) for n in web["port"].lines] == [
        '- "8080:80"', '- "127.0.0.1:8443:443/tcp"', '- "5353:53/udp"', "- target: 9000"]
    assert at(web["bind"].lines[0]) == "- ./static:/srv/static:ro"
    assert at(web["requires"].lines[0]) == "restart: true"
    assert at(web.line_of("memory")) == "mem_limit: 512m"   # where the anchor says it
    assert at(db.line_of("tasks")) == "pids: 200"
    assert at(db["env"].lines[1]) == "- POSTGRES_PASSWORD=secret"
    assert at(out["networks"]["backend"].line_of("subnet")) == "- subnet: 10.99.0.0/24"
    assert at(out["containers"]["cache"].line_of("network")) == "cache:"


def test_is_compose():
    assert compose.is_compose(yamlfile.parse("services: {}\n")[0])
    assert not compose.is_compose(yamlfile.parse("containers: {}\n")[0])


UNSUPPORTED = """\
services:
  web:
    image: nginx
    build: .
    cap_add: [NET_ADMIN]
    logging:
      driver: none
    labels: [a=b]
    secrets: [{source: token, mode: 0400}]
    x-fine: 1
volumes:
  data: {driver: local}
secrets:
  token: {external: true}
configs: {}
"""


def test_every_unsupported_key_is_named_at_once(tmp_path):
    _, problems, warnings = translate(UNSUPPORTED, tmp_path)
    assert warnings == []
    go_on = "(--ignore-unsupported to go on without it)"
    assert texts(problems) == [
        f"compose.yaml:12: volumes.data: not supported by nspawnctl: a volume's options (a "
        f"plain name is) {go_on}",
        "compose.yaml:14: secrets.token.external: not supported by nspawnctl: a secret of "
        f"a swarm (give file: PATH) {go_on}",
        f"compose.yaml:15: configs: not supported by nspawnctl {go_on}",
        f"compose.yaml:4: services.web.build: not supported by nspawnctl {go_on}",
        f"compose.yaml:5: services.web.cap_add: not supported by nspawnctl {go_on}",
        f"compose.yaml:6: services.web.logging: not supported by nspawnctl {go_on}",
        f"compose.yaml:8: services.web.labels: not supported by nspawnctl {go_on}",
        f"compose.yaml:9: services.web.secrets[0].mode: not supported by nspawnctl {go_on}",
    ]


def test_ignore_unsupported_turns_them_into_warnings(tmp_path):
    out, problems, warnings = translate(UNSUPPORTED, tmp_path, ignore=True)
    assert problems == []
    assert [w.split(": ")[:2] for w in warnings] == [
        ["12", "volumes.data"], ["14", "secrets.token.external"], ["15", "configs"],
        ["4", "services.web.build"], ["5", "services.web.cap_add"],
        ["6", "services.web.logging"], ["8", "services.web.labels"],
        ["9", "services.web.secrets[0].mode"], ["9", "services.web.secrets[0]"]]
    assert warnings[-1] == ("9: services.web.secrets[0]: secret token is left out "
                            "(secrets.token is not supported)")
    assert warnings[4] == ("5: services.web.cap_add: not supported by nspawnctl; left out "
                           "(--ignore-unsupported)")
    assert plain(out) == {"volumes": {"data": None}, "containers": {"web": {
        "from": "docker://docker.io/library/nginx:latest", "boot": False,
        "network": "default"}}}


# One bad value each: (the service's lines after `image: busybox`, the problem's line, key
# and the start of its message).  Line 1 is `services:`, 2 `  s:`, 3 the image.
BAD = [
    ('ports: ["80"]', 4, "services.s.ports[0]", "'80': a container port alone"),
    ('ports: ["127.0.0.1::80"]', 4, "services.s.ports[0]", "'127.0.0.1::80': a container "
                                                             "port alone"),
    ("ports: [8080]", 4, "services.s.ports[0]", "8080: a container port alone"),
    ("ports:\n  - 22:22", 5, "services.s.ports[0]", "1342: a container port alone"),
    ('ports: ["x:80"]', 4, "services.s.ports[0]", "'x' is not a port number"),
    ('ports: ["70000:80"]', 4, "services.s.ports[0]", "'70000': not a range of ports"),
    ('ports: ["1-200:1-200"]', 4, "services.s.ports[0]", "1-200: a range of 200 ports"),
    ('ports: ["8000-9000:80"]', 4, "services.s.ports[0]", "8000-9000:80: the host port is"),
    ('ports: ["[::1]:80:80"]', 4, "services.s.ports[0]", "invalid published port"),
    ('ports: ["80:80/sctp"]', 4, "services.s.ports[0]", "invalid published port"),
    ("ports:\n  - target: 80", 5, "services.s.ports[0]", "no published"),
    ("ports:\n  - target: [80]\n    published: 80", 5, "services.s.ports[0].target",
     "expected a port, not a list"),
    ("ports: {web: 80}", 4, "services.s.ports", "expected a list of ports, not a mapping"),
    ("mem_limit: lots", 4, "services.s.mem_limit", "invalid size 'lots'"),
    ("mem_limit: 50%", 4, "services.s.mem_limit", "invalid size '50%'"),
    ("mem_limit: [1]", 4, "services.s.mem_limit", "expected a number, not a list"),
    ("cpus: many", 4, "services.s.cpus", "invalid CPU count 'many'"),
    ("pids_limit: 0", 4, "services.s.pids_limit", "invalid task limit 0"),
    ("pids_limit: true", 4, "services.s.pids_limit", "expected a number, not true"),
    ("mem_limit: 1g\ndeploy:\n  resources:\n    limits:\n      memory: 2g", 8,
     "services.s.deploy.resources.limits.memory", "differs from services.s.mem_limit"),
    ("environment: [FOO]", 4, "services.s.environment[0]", "no value: compose takes it"),
    ("environment:\n  FOO:", 5, "services.s.environment.FOO", "no value: compose takes it"),
    ("environment:\n  FOO: yes", 5, "services.s.environment.FOO", "a YAML boolean"),
    ("environment:\n  FOO: [1]", 5, "services.s.environment.FOO", "expected text"),
    ("environment: FOO=1", 4, "services.s.environment", "expected a list of NAME=VALUE"),
    ('environment: ["1X=2"]', 4, "services.s.environment[0]", "invalid environment"),
    ('environment: ["A=$HOME"]', 4, "services.s.environment[0]", "$HOME: compose's variables"),
    ("env_file: missing.env", 4, "services.s.env_file", "no such file"),
    ("env_file: quoted.env", 4, "services.s.env_file", "quoted.env:2: quotes, escapes"),
    ("volumes: [data:/data]", 4, "services.s.volumes[0]", "data is not a named volume of "
                                                          "the file's (volumes:)"),
    ("volumes: [/data]", 4, "services.s.volumes[0]", "not supported by nspawnctl: /data is "
                                                     "an anonymous volume"),
    ("volumes: ['./x:rel']", 4, "services.s.volumes[0]", "invalid bind mount"),
    ("volumes: ['~/x:/x']", 4, "services.s.volumes[0]", "~/x: give the host path in full"),
    ("volumes: ['/x:/x:shared']", 4, "services.s.volumes[0]", "not supported by nspawnctl: "
                                                              "mode shared"),
    ("volumes:\n  - type: tmpfs\n    target: /t", 5, "services.s.volumes[0].type",
     "not supported by nspawnctl: 'tmpfs' mounts"),
    ("volumes:\n  - type: bind\n    source: /a\n    target: /b\n    read_only: 1", 8,
     "services.s.volumes[0].read_only", "expected true or false, not the number 1"),
    ("networks: [a, b]", 4, "services.s.networks", "2 networks: a container is on one"),
    ("networks: [elsewhere]", 4, "services.s.networks[0]", "no network elsewhere"),
    ("networks:\n  a:\n    aliases: [x]", 6, "services.s.networks.a.aliases",
     "not supported by nspawnctl"),
    ("network_mode: service:db", 4, "services.s.network_mode", "not supported by nspawnctl: "
                                                               "'service:db'"),
    ("network_mode: host\nnetworks: [a]", 4, "services.s.network_mode", "given with networks"),
    ("depends_on: [nothing]", 4, "services.s.depends_on[0]", "no service nothing"),
    ("depends_on:\n  t:\n    condition: service_completed_successfully", 6,
     "services.s.depends_on.t.condition", "not supported by nspawnctl "
                                          "(service_completed_successfully)"),
    ("restart: sometimes", 4, "services.s.restart", "unknown policy 'sometimes'"),
    ("restart: always:3", 4, "services.s.restart", "unknown policy 'always:3'"),
    ("command: []", 4, "services.s.command", "nothing to run (an empty command)"),
    ("entrypoint: 'unclosed \"quote'", 4, "services.s.entrypoint", "cannot split"),
    ("entrypoint: []\ncommand: []", 4, "services.s.entrypoint", "nothing left to run"),
    ("command: [run, 1]\nentrypoint: []", 4, "services.s.command[1]", "expected a word, "
                                                                      "not the number 1"),
    ("container_name: t", 5, "services.t", "its container's name t is also service s's"),
    ("pull_policy: daily", 4, "services.s.pull_policy", "not supported by nspawnctl: 'daily'"),
    ("expose: 80", 4, "services.s.expose", "expected a list of ports, not the number 80"),
    ("deploy:\n  replicas: 3", 5, "services.s.deploy.replicas", "not supported by nspawnctl"),
]


@pytest.mark.parametrize("lines, line, key, message", BAD)
def test_each_bad_value_is_one_problem_with_its_line(tmp_path, lines, line, key, message):
    (tmp_path / "quoted.env").write_text("A=1\nB=\"two\"\n")
    service = textwrap.indent(lines, "    ")
    text = (f"services:\n  s:\n    image: busybox\n{service}\n  t:\n    image: busybox\n"
            f"networks:\n  a:\n  b:\n")
    _, problems, _ = translate(text, tmp_path)
    assert [(p.line, p.key) for p in problems] == [(line, key)], texts(problems)
    assert message in problems[0].message, problems[0].message


def test_the_service_names_compose_does_not_know_say_so(tmp_path):
    _, problems, _ = translate("services:\n  s:\n    hostname: x\n", tmp_path)
    assert texts(problems) == ["compose.yaml:2: services.s: no image: nspawnctl runs images "
                               "from a registry and does not build them"]
    _, problems, _ = translate("services: [a]\n", tmp_path)
    assert texts(problems) == ["compose.yaml:1: services: expected a mapping of services, "
                               "not a list"]
    _, problems, _ = translate("services:\n  s: nginx\n", tmp_path)
    assert texts(problems) == ["compose.yaml:2: services.s: expected a mapping, not 'nginx'"]


def test_image_references_keep_dockers_meaning(tmp_path):
    cases = {"nginx": "docker.io/library/nginx:latest",
             "nginx:1.25": "docker.io/library/nginx:1.25",
             "library/redis": "docker.io/library/redis:latest",
             "bitnami/redis:7": "docker.io/bitnami/redis:7",
             "my.registry:5000/redis": "my.registry:5000/redis:latest",
             "localhost/x/y:2": "localhost/x/y:2",
             "registry.example/x/y@sha256:" + "a" * 64: "registry.example/x/y@sha256:" + "a" * 64}
    for given, meant in cases.items():
        out, problems, _ = translate(f"services:\n  s:\n    image: {given}\n", tmp_path)
        assert problems == [], given
        assert out["containers"]["s"]["from"] == f"docker://{meant}", given
    _, problems, _ = translate("services:\n  s:\n    image: Nginx\n", tmp_path)
    assert texts(problems) == ["compose.yaml:3: services.s.image: invalid image reference "
                               "Nginx: repository names must be lowercase"]


@pytest.mark.parametrize("given, native", [
    ('"3000:3000"', ["3000:3000"]),
    ('"127.0.0.1:5000-5002:6000-6002"',
     ["127.0.0.1:5000:6000", "127.0.0.1:5001:6001", "127.0.0.1:5002:6002"]),
    ('"0.0.0.0:53:53/udp"', ["0.0.0.0:53:53/udp"]),
    ('"9090-9091:8080-8081/udp"', ["9090:8080/udp", "9091:8081/udp"]),
    ("{target: 80, published: '8080', protocol: udp, name: web, app_protocol: http, "
     "mode: host}", ["8080:80/udp"]),
    ("{target: '80-81', published: 8080-8081}", ["8080:80", "8081:81"]),
])
def test_ports_short_and_long(tmp_path, given, native):
    out, problems, _ = translate(f"services:\n  s:\n    image: busybox\n    ports:\n"
                                 f"      - {given}\n", tmp_path)
    assert problems == []
    assert out["containers"]["s"]["port"] == native


@pytest.mark.parametrize("given, native", [
    ("512m", "512M"), ("1g", "1G"), ("1gb", "1G"), ("2048k", "2M"), ("1073741824", "1G"),
    ("1.5g", "1536M"), ("300m", "300M"), ("2b", "2"), ("'1024kb'", "1M")])
def test_compose_sizes_become_what_memory_takes(tmp_path, given, native):
    out, problems, _ = translate(f"services:\n  s:\n    image: busybox\n    mem_limit: {given}\n",
                                 tmp_path)
    assert problems == []
    assert out["containers"]["s"]["memory"] == native


@pytest.mark.parametrize("given, restart, enabled", [
    ("no", "no", None), ('"no"', "no", None), ("always", "always", True),
    ("on-failure", "on-failure", None), ("unless-stopped", "always", True)])
def test_restart_policies(tmp_path, given, restart, enabled):
    out, problems, warnings = translate(f"services:\n  s:\n    image: busybox\n"
                                        f"    restart: {given}\n", tmp_path)
    assert problems == [] and warnings == []
    assert out["containers"]["s"]["restart"] == restart
    assert out["containers"]["s"].get("enabled") is enabled


def test_no_limit_values_set_none(tmp_path):
    out, problems, _ = translate("services:\n  s:\n    image: busybox\n    cpus: 0.000\n"
                                 "    pids_limit: -1\n", tmp_path)
    assert problems == []
    assert "cpus" not in out["containers"]["s"] and "tasks" not in out["containers"]["s"]


def test_on_failure_retries_are_said_not_kept(tmp_path):
    out, problems, warnings = translate("services:\n  s:\n    image: busybox\n"
                                        "    restart: on-failure:5\n", tmp_path)
    assert problems == []
    assert out["containers"]["s"]["restart"] == "on-failure"
    assert warnings == ["4: services.s.restart: on-failure:5: restarted on every failure, "
                        "within systemd's start rate limit, not at most 5 times"]


def test_command_alone_is_the_entrypoints_arguments(tmp_path):
    out, problems, warnings = translate("services:\n  s:\n    image: alpine\n"
                                        "    command: sleep infinity\n", tmp_path)
    assert problems == [] and warnings == []
    assert out["containers"]["s"]["args"] == ["sleep", "infinity"]
    assert "cmd" not in out["containers"]["s"]
    # an empty entrypoint says there is none: the command is then exactly what compose runs
    out, problems, warnings = translate("services:\n  s:\n    image: alpine\n    entrypoint: []\n"
                                        "    command: [sleep, infinity]\n", tmp_path)
    assert problems == [] and warnings == []
    assert out["containers"]["s"]["cmd"] == ["sleep", "infinity"]


def test_completed_condition_with_ignore_unsupported_still_orders(tmp_path):
    out, problems, warnings = translate(
        "services:\n  s:\n    image: busybox\n    depends_on:\n      t:\n"
        "        condition: service_completed_successfully\n  t:\n    image: busybox\n",
        tmp_path, ignore=True)
    assert problems == []
    assert out["containers"]["s"]["after"] == ["t"]
    assert warnings == ["6: services.s.depends_on.t.condition: not supported by nspawnctl "
                        "(service_completed_successfully): nspawnctl does not wait for a "
                        "container to finish; ordered after t only (--ignore-unsupported)"]


def test_depends_on_names_containers_by_their_container_name(tmp_path):
    out, problems, _ = translate("services:\n  s:\n    image: busybox\n    depends_on: [t]\n"
                                 "  t:\n    image: busybox\n    container_name: tee\n", tmp_path)
    assert problems == []
    assert list(out["containers"]) == ["s", "tee"]
    assert out["containers"]["s"]["after"] == ["tee"]


def test_networks_external_named_default_and_modes(tmp_path):
    out, problems, _ = translate("""\
        services:
          a: {image: busybox, networks: [outside]}
          b: {image: busybox}
          c: {image: busybox, network_mode: host}
          d: {image: busybox, networks: {inner: null}}
        networks:
          outside: {external: true, name: lan}
          inner: {name: shop-inner, driver: bridge, internal: false}
          unused:
        """, tmp_path)
    assert texts(problems) == []
    assert plain(out["networks"]) == {"shop-inner": {}, "unused": {}}   # not the external one
    assert [c["network"] for c in out["containers"].values()] == [
        "lan", "default", "host", "shop-inner"]
    out, problems, _ = translate("""\
        services:
          b: {image: busybox}
        networks:
          default: {name: mine}
        """, tmp_path)
    assert problems == [] and out["containers"]["b"]["network"] == "mine"
    assert plain(out["networks"]) == {"mine": {}}
    _, problems, _ = translate("""\
        services:
          b: {image: busybox}
        networks:
          default:
            ipam: {config: [{subnet: 10.1.0.0/24, gateway: 10.1.0.9}]}
          other: {external: true, driver: bridge}
        """, tmp_path)
    assert texts(problems) == [
        "compose.yaml:5: networks.default.ipam.config[0].gateway: not supported by nspawnctl "
        "(--ignore-unsupported to go on without it)",
        "compose.yaml:4: networks.default: the default network is nspawnctl's, shared by "
        "every container: give this one a name (networks.default.name) to configure it",
        "compose.yaml:6: networks.other.driver: not supported by nspawnctl "
        "(--ignore-unsupported to go on without it)"]


def test_env_files_simple_part(tmp_path):
    (tmp_path / "a.env").write_text("A=1\nexport_not=2\nQ='it is $literal'\n")
    (tmp_path / "raw.env").write_text('R="kept $as is"\nA=2\n')
    out, problems, _ = translate("""\
        services:
          s:
            image: busybox
            env_file:
              - a.env
              - {path: raw.env, format: raw}
              - {path: absent.env, required: false}
        """, tmp_path)
    assert texts(problems) == []
    assert out["containers"]["s"]["env"] == ["export_not=2", "Q=it is $literal",
                                             'R="kept $as is"', "A=2"]
    (tmp_path / "big.env").write_text("A=" + "x" * compose.ENV_FILE_MAX)
    _, problems, _ = translate("services:\n  s:\n    image: busybox\n    env_file: big.env\n",
                               tmp_path)
    assert texts(problems) == [f"compose.yaml:4: services.s.env_file: env file "
                               f"{tmp_path}/big.env is larger than 256 KiB"]


def test_binds_are_made_absolute_from_the_compose_files_directory(tmp_path):
    out, problems, _ = translate("""\
        services:
          s:
            image: busybox
            volumes:
              - ../shared:/shared:ro,z
              - .:/src
              - type: bind
                source: ./conf
                target: /etc/app
                read_only: true
                bind: {create_host_path: false}
        """, tmp_path / "project")
    assert problems == []
    assert out["containers"]["s"]["bind"] == [
        f"{tmp_path}/shared:/shared:ro", f"{tmp_path}/project:/src",
        f"{tmp_path}/project/conf:/etc/app:ro"]


def test_interpolation_is_refused_and_double_dollars_are_dollars(tmp_path):
    out, problems, _ = translate("""\
        services:
          s:
            image: "busybox:${TAG:-1}"
            entrypoint: [sh, -c, 'echo $$HOME costs 5$']
        """, tmp_path)
    assert texts(problems) == ["compose.yaml:3: services.s.image: ${: compose's variables "
                               "($VAR, ${VAR}) are not supported by nspawnctl: write the value "
                               "(or $$ for a $)"]
    assert out["containers"]["s"]["cmd"] == ["sh", "-c", "echo $HOME costs 5$"]


def test_a_stack_files_key_in_a_compose_file_is_refused(tmp_path):
    _, problems, _ = translate("services: {}\ncontainers: {}\nname: [x]\n", tmp_path)
    assert texts(problems) == [
        "compose.yaml:2: containers: a stack file's key in a compose file (services:): write "
        "the file in one format",
        "compose.yaml:3: name: expected the project's name as text, not a list"]


def test_published_ports_are_bounded(tmp_path):
    ranges = "".join(f'      - "{n}-{n + 99}:{n}-{n + 99}"\n' for n in range(1000, 60000, 100))
    _, problems, _ = translate(f"services:\n  s:\n    image: busybox\n    ports:\n{ranges}",
                               tmp_path)
    assert texts(problems) == ["compose.yaml:15: services.s.ports[10]: more than 1000 "
                               "published ports in this service"]


def test_x_names_of_services_are_services_and_x_keys_elsewhere_are_ignored(tmp_path):
    out, problems, warnings = translate("""\
        x-top: {a: "${NOT_READ}"}
        services:
          x-web:
            image: busybox
            x-note: "${NOT_READ_EITHER}"
        """, tmp_path)
    assert problems == [] and warnings == []
    assert list(out["containers"]) == ["x-web"]


# ---------------------------------------------------------------- secrets

SECRETS = """\
services:
  web:
    image: nginx
    volumes: ["./static:/srv"]
    secrets:
      - db_password
      - source: api_key
        target: key.txt
      - source: api_key
        target: /etc/app/key
secrets:
  db_password:
    file: ./db_password.txt
  api_key:
    file: {key}
"""


def test_secrets_are_read_only_idmapped_binds_at_run_secrets(tmp_path):
    (tmp_path / "db_password.txt").write_text("s3cr3t-value\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/api").write_text("k3y-value")
    text = SECRETS.format(key=tmp_path / "keys/api")
    out, problems, warnings = translate(text, tmp_path)
    assert (texts(problems), warnings) == ([], [])
    web = out["containers"]["web"]
    assert plain(web["bind"]) == [
        f"{tmp_path}/static:/srv",
        f"{tmp_path}/db_password.txt:/run/secrets/db_password:ro:idmap",
        f"{tmp_path}/keys/api:/run/secrets/key.txt:ro:idmap",
        f"{tmp_path}/keys/api:/etc/app/key:ro:idmap"]
    lines = textwrap.dedent(text).splitlines()
    assert [lines[n - 1].strip() for n in web["bind"].lines] == [
        'volumes: ["./static:/srv"]', "- db_password",
        "- source: api_key", "- source: api_key"]
    # read back as apply reads it: read-only idmapped binds, and the values nowhere
    stack, more = model.load(out, "s")
    assert more == []
    binds = stack.containers["web"].config.binds
    assert [(b.dest, b.readonly, b.idmap) for b in binds[1:]] == [
        ("/run/secrets/db_password", True, True), ("/run/secrets/key.txt", True, True),
        ("/etc/app/key", True, True)]
    said = repr(stack) + yamlfile.dump(plain(out))
    assert "s3cr3t" not in said and "k3y" not in said


def test_what_secrets_cannot_be_is_said_with_its_line(tmp_path):
    (tmp_path / "ok").write_text("x")
    (tmp_path / "dir").mkdir()
    text = """\
    services:
      web:
        image: nginx
        secrets:
          - nope
          - source: ok
            target: ../../etc/shadow
          - source: ok
            uid: "0"
            gid: "0"
            mode: 0440
          - ok
          - source: ok
            target: /run/secrets/ok
          - [ok]
    secrets:
      ok: {file: ./ok}
      missing: {file: ./missing}
      dir: {file: ./dir}
      env: {environment: TOKEN}
      "-bad": {file: ./ok}
      empty: {}
      list: [./ok]
    """
    _, problems, _ = translate(text, tmp_path)
    go_on = "(--ignore-unsupported to go on without it)"
    assert texts(problems) == [
        f"compose.yaml:18: secrets.missing.file: {tmp_path}/missing: No such file or "
        "directory",
        f"compose.yaml:19: secrets.dir.file: not a regular file: {tmp_path}/dir",
        "compose.yaml:20: secrets.env.environment: not supported by nspawnctl: compose reads "
        "the value from the environment it runs in, and nspawnctl does not (put it in a "
        f"file: file: PATH) {go_on}",
        "compose.yaml:21: secrets.-bad: invalid secret name '-bad': letters, digits and . _ -, "
        "starting with a letter or digit",
        "compose.yaml:22: secrets.empty: no file: (a secret is file: PATH)",
        "compose.yaml:23: secrets.list: expected a mapping (file: PATH), not a list",
        "compose.yaml:5: services.web.secrets[0]: no secret nope in the top-level secrets",
        "compose.yaml:6: services.web.secrets[1]: invalid target '../../etc/shadow': a "
        "file's name in /run/secrets, or an absolute path without '..'",
        f"compose.yaml:9: services.web.secrets[2].uid: not supported by nspawnctl {go_on}",
        f"compose.yaml:10: services.web.secrets[2].gid: not supported by nspawnctl {go_on}",
        f"compose.yaml:11: services.web.secrets[2].mode: not supported by nspawnctl {go_on}",
        "compose.yaml:13: services.web.secrets[4]: /run/secrets/ok is secret ok's too",
        "compose.yaml:15: services.web.secrets[5]: expected a secret's name (or source: and "
        "target:), not a list",
    ]
    # with --ignore-unsupported: uid, gid and mode left out (the file's own), said
    _, problems, warnings = translate(text, tmp_path, ignore=True)
    assert not any("uid" in p or "mode" in p for p in texts(problems))
    assert [w.split(": ")[1] for w in warnings] == [
        "secrets.env.environment", "services.web.secrets[2].uid",
        "services.web.secrets[2].gid", "services.web.secrets[2].mode"]
