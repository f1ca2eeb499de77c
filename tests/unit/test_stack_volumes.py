"""Named volumes in stacks: a stack file's volumes: (made when missing, never removed by
apply) and the container key volume:; compose's top-level volumes and a service's NAME:PATH
mounts map onto them."""

import textwrap

from nspawnctl.settings.values import VolumeMount
from nspawnctl.stacks import compose, model, plan, record, yamlfile
from nspawnctl.store import volumes
from tests.unit.fakes import FakeBus, context


class Bus(FakeBus):
    def list_units(self, patterns):
        return []


def load(text):
    doc, problems = yamlfile.parse(textwrap.dedent(text))
    assert problems == []
    return model.load(doc, "st")


def plan_of(paths, text):
    stack, problems = load(text)
    assert problems == []
    return plan.make(context(paths, Bus()), stack, record.read(paths, stack.name), False)


FILE = """\
    volumes:
      data:
      logs: {}
    containers:
      web:
        network: none
        volume: ['data:/srv', 'logs:/var/log/app:ro']
    """


def test_a_stack_makes_its_volumes_first_and_only_the_missing_ones(paths):
    stack, problems = load(FILE)
    assert problems == [] and list(stack.volumes) == ["data", "logs"]
    assert stack.containers["web"].config.volumes == (
        VolumeMount("data", "/srv"), VolumeMount("logs", "/var/log/app", True))
    steps = plan_of(paths, FILE).steps
    assert [(s.text(), s.kind) for s in steps] == [
        ("create volume data", "volume"), ("create volume logs", "volume"),
        ("create web: from debootstrap:bookworm", "container"), ("start web", "container")]
    volumes.create(paths, "data")
    assert [s.text() for s in plan_of(paths, FILE).steps][:1] == ["create volume logs"]


def test_an_unknown_volume_and_a_bad_name_are_problems(paths):
    stack, problems = load("volumes:\n  a/b:\n  ok: {size: 1}\n")
    assert [p.text("f") for p in problems] == [
        "f:2: volumes.a/b: invalid volume name 'a/b'",
        "f:3: volumes.ok: a volume takes no keys (nothing, or {})"]
    found = plan_of(paths, "containers:\n  web:\n    network: none\n    volume: ['x:/x']\n")
    assert [p.text("f") for p in found.problems] == [
        "f:2: containers.web.volume: no volume named 'x', in the file (volumes:) or on this "
        "host"]
    volumes.create(paths, "x")  # one on the host will do
    assert plan_of(paths, "containers:\n  web:\n    network: none\n"
                          "    volume: ['x:/x']\n").problems == []


COMPOSE = """\
    services:
      db:
        image: postgres
        volumes:
          - pgdata:/var/lib/postgresql/data
          - ./conf:/etc/conf:ro
          - type: volume
            source: logs
            target: /var/log
            read_only: true
    volumes:
      pgdata:
      logs: {}
    """


def test_compose_named_volumes_map_onto_the_stacks(tmp_path):
    doc, problems = yamlfile.parse(textwrap.dedent(COMPOSE))
    out, problems, warnings = compose.translate(doc, tmp_path, False)
    assert problems == [] and warnings == []
    assert dict(out["volumes"]) == {"pgdata": None, "logs": None}
    db = out["containers"]["db"]
    assert list(db["volume"]) == ["pgdata:/var/lib/postgresql/data", "logs:/var/log:ro"]
    assert list(db["bind"]) == [f"{tmp_path}/conf:/etc/conf:ro"]
    stack, more = model.load(out, "st")
    assert more == [] and list(stack.volumes) == ["pgdata", "logs"]


def test_compose_refuses_an_undeclared_named_volume(tmp_path):
    doc, _ = yamlfile.parse("services:\n  db:\n    image: postgres\n    volumes:\n"
                            "      - pgdata:/data\n      - type: volume\n"
                            "        source: other\n        target: /o\n")
    out, problems, _ = compose.translate(doc, tmp_path, False)
    assert [p.text("f") for p in problems] == [
        "f:5: services.db.volumes[0]: pgdata is not a named volume of the file's (volumes:)",
        "f:7: services.db.volumes[1].source: other is not a named volume of the file's "
        "(volumes:)"]
