"""compose's healthcheck as the native health-* keys, and what of it is refused (one line
each, with its line number)."""

import pytest

from nspawnctl.stacks import apply, model
from tests.unit.fakes import context
from tests.unit.test_stack_compose import plain, texts, translate


def web(check: str) -> str:
    return "services:\n  web:\n    image: nginx\n    healthcheck:\n" + check


@pytest.mark.parametrize("check, keys", [
    ("      test: curl -f http://localhost/\n", {"health-cmd": "curl -f http://localhost/"}),
    ('      test: ["CMD-SHELL", "pg_isready || exit 1"]\n',
     {"health-cmd": "pg_isready || exit 1"}),
    ('      test: ["CMD", "curl", "-f", "http://x/a b"]\n',
     {"health-cmd": "curl -f 'http://x/a b'"}),
    ('      test: ["NONE"]\n', {"health-cmd": "none"}),
    ("      disable: true\n", {"health-cmd": "none"}),
    ('      test: ["CMD", "true"]\n      interval: 1m30s\n      timeout: 10s\n'
     "      retries: 5\n      start_period: 0s\n",
     {"health-cmd": "true", "health-interval": "1m30s", "health-timeout": "10s",
      "health-retries": 5, "health-start-period": "0s"}),
])
def test_a_healthcheck_becomes_the_health_keys(tmp_path, check, keys):
    out, problems, warnings = translate(web(check), tmp_path)
    assert texts(problems) == [] and warnings == []
    container = plain(out)["containers"]["web"]
    assert {k: v for k, v in container.items() if k.startswith("health")} == keys
    assert set(keys) <= set(model.SETTING_KEYS)  # keys a stack file takes


@pytest.mark.parametrize("check, says", [
    ('      test: ""\n', "5: services.web.healthcheck.test: invalid health command ''"),
    ('      test: ["CMD"]\n', "5: services.web.healthcheck.test: expected a command"),
    ('      test: ["SHELL", "x"]\n', "5: services.web.healthcheck.test: expected a command"),
    ('      test: ["CMD", "true"]\n      interval: 0s\n',
     "6: services.web.healthcheck.interval: invalid health interval '0s'"),
    ('      test: ["CMD", "true"]\n      retries: 0\n',
     "6: services.web.healthcheck.retries: invalid health retries '0'"),
    ('      test: ["CMD", "true"]\n      interval: [1]\n',
     "6: services.web.healthcheck.interval: expected a duration"),
    ('      test: ["CMD", "true"]\n      start_interval: 1s\n',
     "6: services.web.healthcheck.start_interval: not supported by nspawnctl"),
])
def test_a_bad_healthcheck_is_one_line_at_its_line(tmp_path, check, says):
    _, problems, _ = translate(web(check), tmp_path)
    assert len(problems) == 1 and texts(problems)[0].startswith("compose.yaml:" + says), \
        texts(problems)


@pytest.mark.parametrize("check", ["      disable: true\n", '      test: ["NONE"]\n'])
def test_no_check_reaches_create_as_given_so_the_images_is_left_out(tmp_path, paths,
                                                                     monkeypatch, check):
    """compose's disable: true and test: [NONE] are health-cmd: none, which create is told
    the file gave (sources/oci/source.py apply_image_config then leaves the image's out)."""
    out, problems, _ = translate(web(check), tmp_path)
    stack, problems = model.load(out, "shop")
    assert problems == []
    seen: dict = {}
    monkeypatch.setattr(apply.create, "create", lambda ctx, name, source, cfg, request, **kw:
                        seen.update(cfg=cfg, **kw))
    apply._create(context(paths), stack, "web")
    assert "health_cmd" in seen["given"] and seen["cfg"].health_cmd == ()
