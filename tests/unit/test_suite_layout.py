"""The suite's own layout: what `make test` needs to collect every tier in one pytest run.

`make test` collects tests/unit, tests/netns and tests/integration together, and pytest's
default import mode imports each test module by its basename: two tiers with a file of the
same name stop the whole run at collection (it happened: tests/unit/test_hold.py and
tests/integration/test_hold.py failed CI in 19 s while each tier passed alone).
"""

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own():
    where = collections.defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        where[path.name].append(str(path.relative_to(TESTS)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, f"test modules sharing a basename: {shared}"
