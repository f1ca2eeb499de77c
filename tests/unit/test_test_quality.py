"""The tests themselves: no assert that cannot fail, and no test that checks nothing.

A scan of tests/ with ast (cheap: no test is imported or run) for the kinds issue 33 found:

- an assert of a constant that is true (`assert True`, `assert "text"`), of a non-empty tuple,
  list, set, dict or f-string (`assert (x == 1, "message")` is always true), or with `or`
  and a true constant among its operands (`assert x == b"" or True`);
- a comparison of an expression with itself (`a == a`, `x.size >= x.size`): expressions of
  names, attributes, subscripts and constants only, since two calls of one function may
  rightly be compared (a uniqueness check);
- a test function that can fail only by an exception of the code under test: no assert, no
  pytest.raises/warns/fail, no `raise AssertionError`, and no call of a function that
  asserts (see below).

"A function that asserts" is decided over the functions defined under tests/ (module level,
methods and nested functions alike), by name: one whose body has an assert, a pytest.raises,
pytest.warns or pytest.fail, or a `raise AssertionError`, or that calls a function that
asserts (to a fixed point).  A call is matched by the name called: `f(...)` and
`module.f(...)` (a module of tests/) by the functions named f, `obj.m(...)` by the methods
named m of the classes of tests/; any one of them that asserts makes the call count.  Without
types that is a guess on the generous side: the guard can miss a test whose only call shares
its name with a method of tests/ that asserts (`.run()`), but flags none that calls a
helper of tests/ that asserts.  Decorators are not part of a test's body (a skipif's call
checks nothing).
Fixtures are called by their parameter name, so a fixture counts as a function that asserts
when what it returns or yields is a nested function that asserts, or an object of a class of
tests/ whose __call__ asserts (conftest's `nspawnctl`, whose calls fail on a non-zero exit).
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
RAISES = {"raises", "warns", "fail", "deprecated_call"}  # pytest.X


def _is_pytest_raises(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr in RAISES and isinstance(node.func.value, ast.Name) \
        and node.func.value.id == "pytest"


def _body(func: ast.AST):
    """Every node of a function's body (not its decorators: a skipif's call is no check)."""
    for statement in func.body:
        yield from ast.walk(statement)


def _asserts_itself(func: ast.AST) -> bool:
    for node in _body(func):
        if isinstance(node, ast.Assert) or _is_pytest_raises(node):
            return True
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "AssertionError":
                return True
    return False


def _module_aliases(tree: ast.AST) -> set[str]:
    """Names a file binds to modules of tests/ (`from tests.bench import common`)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                "tests")):
            base = TESTS.joinpath(*(node.module or "").split(".")[1:]) if not node.level \
                else None
            for alias in node.names:
                if base is None or (base / f"{alias.name}.py").exists():
                    found.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            found |= {alias.asname or alias.name for alias in node.names
                      if alias.name.startswith("tests.")}
    return found


def _calls(func: ast.AST, aliases: set[str]) -> set[tuple[str, str]]:
    """What func calls: ("f", name) for a function called by name (or through a module of
    tests/: common.guarded), ("m", name) for a method."""
    found = set()
    for node in _body(func):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name):
            found.add(("f", node.func.id))
        elif isinstance(node.func, ast.Attribute):
            value = node.func.value
            through_module = isinstance(value, ast.Name) and value.id in aliases
            found.add(("f" if through_module else "m", node.func.attr))
    return found


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _kinds(tree: ast.AST) -> dict[ast.AST, str]:
    """"m" for each method (a function right in a class body), "f" for every other."""
    methods = {id(f) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body}
    return {f: "m" if id(f) in methods else "f" for f in _functions(tree)}


def asserting_names(trees: list[ast.AST]) -> set[tuple[str, str]]:
    """The functions under tests/ that assert (see the module docstring), as _calls names
    them."""
    funcs = [(f, kind, _module_aliases(tree)) for tree in trees
             for f, kind in _kinds(tree).items()]
    classes = {c.name: c for tree in trees for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}
    found = {(kind, f.name) for f, kind, _ in funcs if _asserts_itself(f)}
    while True:  # to a fixed point: a function that calls one that asserts asserts
        more = {(kind, f.name) for f, kind, aliases in funcs
                if (kind, f.name) not in found and _calls(f, aliases) & found}
        for f, kind, aliases in funcs:  # a fixture handing out something that asserts
            if (kind, f.name) in found or not _is_fixture(f):
                continue
            for node in _body(f):
                value = node.value if isinstance(node, (ast.Return, ast.Yield)) else None
                if isinstance(value, ast.Name) and any(
                        g.name == value.id and ("f", g.name) in found for g in _functions(f)):
                    more.add((kind, f.name))
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and \
                        value.func.id in classes and ("m", "__call__") in found and any(
                            m.name == "__call__" and (_asserts_itself(m) or _calls(m, aliases)
                                                      & found)
                            for m in _functions(classes[value.func.id])):
                    more.add((kind, f.name))
        if not more:
            return found
        found |= more


def _is_fixture(func: ast.AST) -> bool:
    for d in func.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def _always_true(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts)
    if isinstance(node, ast.Dict):
        return bool(node.keys)
    if isinstance(node, ast.JoinedStr):
        return any(not isinstance(v, ast.Constant) or v.value for v in node.values)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        return any(_always_true(v) for v in node.values)
    return False


def _plain(node: ast.AST) -> bool:
    """An expression of names, attributes, subscripts and constants: no call in it."""
    return all(isinstance(n, (ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.Slice,
                              ast.expr_context)) for n in ast.walk(node))


def findings(source: str, where: str, asserting: set[tuple[str, str]]) -> list[str]:
    """What is wrong in one file's source (where: its name in the messages); test functions
    are looked at in test modules only (test_*.py, as pytest collects them)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            if _always_true(node.test) or any(
                    isinstance(n, ast.BoolOp) and isinstance(n.op, ast.Or)
                    and any(_always_true(v) for v in n.values) for n in ast.walk(node.test)):
                found.append(f"{where}:{node.lineno}: assert that cannot fail")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for a, b in zip(sides, sides[1:]):
                if _plain(a) and ast.dump(a) == ast.dump(b):
                    found.append(f"{where}:{node.lineno}: {ast.unparse(a)} compared with itself")
    if not Path(where).name.startswith("test_"):
        return found
    aliases = _module_aliases(tree)
    for func, kind in _kinds(tree).items():
        if kind != "f" or not func.name.startswith("test") or func.col_offset:
            continue
        if not (_asserts_itself(func) or _calls(func, aliases) & asserting):
            found.append(f"{where}:{func.lineno}: {func.name} checks nothing (no assert, "
                         "pytest.raises, nor a call of a function that asserts)")
    return found


def files_under_tests() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if not p.name.startswith("_"))


def test_no_test_that_cannot_fail_or_checks_nothing():
    files = files_under_tests()
    asserting = asserting_names([ast.parse(p.read_text()) for p in files])
    found = [f for p in files for f in findings(p.read_text(), str(p.relative_to(TESTS)),
                                                 asserting)]
    assert found == [], "\n".join(found)


PLANTED = '''
def test_always():
    assert True
    assert r.read(10) == b"" or True
    assert (x == 1, "the message makes it a tuple")
    assert size == size


def test_nothing(tmp_path):
    helper_that_only_prints(tmp_path)


def test_through_a_helper(nspawnctl):
    check_it(1)
    nspawnctl("start", "c1")
'''


HELPERS = '''
def check_it(x):
    assert x


def helper_that_only_prints(p):
    print(p)


class Runner:
    def __call__(self, *args):
        if not args:
            raise AssertionError("failed")


@pytest.fixture
def nspawnctl():
    return Runner()
'''


def test_the_guard_finds_what_it_is_for():
    """The checker on a planted file: each kind is found, once, and a test that calls a
    function that asserts (or a fixture whose calls assert) is not."""
    helpers = ast.parse(HELPERS)
    found = findings(PLANTED, "test_planted.py", asserting_names([helpers, ast.parse(PLANTED)]))
    assert found == [
        "test_planted.py:3: assert that cannot fail",
        "test_planted.py:4: assert that cannot fail",
        "test_planted.py:5: assert that cannot fail",
        "test_planted.py:6: size compared with itself",
        "test_planted.py:9: test_nothing checks nothing (no assert, pytest.raises, nor a call of a "
        "function that asserts)",
    ]
