"""The package's shape: imports flow one way (no cycle between modules), and the concerns the
README gives one home each stay there (pystemd in systemd/bus.py, processes in run.py)."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nspawnctl"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every nspawnctl module `path` imports, at the top or inside a function."""
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool) -> set[str]:
    """The nspawnctl modules that source (module `name`) imports.

    Each name counts: `from pkg import a, b` imports pkg.a and pkg.b when they are modules,
    and pkg itself for a name that is not one (a function or class of pkg/__init__.py);
    `import x, y` imports both."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES
                       else target for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.startswith("nspawnctl") and t in MODULES)
    found.discard(name)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    # A package's __init__ that only names its folder is no edge: importing pkg.mod runs it.
    return {name: {t for t in imports_of(path)} for name, path in MODULES.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(edges, 0)
    for start in edges:
        if colour[start]:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if colour.get(child, 2) == 1:
                    return path[path.index(child):] + [child]
                if colour.get(child) == 0:
                    colour[child] = 1
                    path.append(child)
                    stack.append((child, iter(sorted(edges[child]))))
                    break
            else:
                colour[node] = 2
                path.pop()
                stack.pop()
    return None


def test_no_import_cycle_inside_the_package():
    assert find_cycle(graph()) is None


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_graph_has_every_name_of_an_import():
    """An edge per module named, not one per import statement: a cycle hides in the second
    name of `from . import a, b` as well as in the first."""
    source = ("from . import overlay, snapshots\nfrom ..settings import files, model\n"
              "import nspawnctl.errors, nspawnctl.run\nfrom ..paths import Paths, service_unit\n"
              "from ..sources import registry_of_nothing\n")
    assert imports_in(source, "nspawnctl.store.containers", False) == {
        "nspawnctl.store.overlay", "nspawnctl.store.snapshots", "nspawnctl.settings.files",
        "nspawnctl.settings.model", "nspawnctl.errors", "nspawnctl.run", "nspawnctl.paths",
        "nspawnctl.sources"}


# The layers, lowest first (docs/architecture.md draws them).  A module may import modules of
# a lower tier, and of its own package; not one of a higher tier, nor another package of its
# own tier (sources and formats are peers: neither reaches into the other).  Prefixes name
# the modules of a tier; the longest one that matches decides.
TIERS: list[tuple[str, ...]] = [
    ("nspawnctl", "nspawnctl.errors", "nspawnctl.log", "nspawnctl.names", "nspawnctl.paths",
     "nspawnctl.run", "nspawnctl.ptyrelay", "nspawnctl.confine", "nspawnctl.remote",
     "nspawnctl.text"),
    ("nspawnctl.fs",),
    ("nspawnctl.systemd",),
    ("nspawnctl.settings",),
    ("nspawnctl.network",),
    ("nspawnctl.store",),
    ("nspawnctl.formats",),
    ("nspawnctl.sources",),
    ("nspawnctl.runtime",),
    ("nspawnctl.ops",),
    ("nspawnctl.stacks",),
    ("nspawnctl.cli",),
    ("nspawnctl.__main__",),
]
# Within ops, modules are entry points: only what they all share is imported between them.
OPS_SHARED = "nspawnctl.ops.common"


def tier_of(module: str) -> tuple[int, str]:
    """(tier, the prefix that placed it) of a module of the package."""
    found = [(len(prefix), rank, prefix) for rank, prefixes in enumerate(TIERS)
             for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
    assert found, f"{module} is in no tier: add it to TIERS"
    _, rank, prefix = max(found)
    return rank, prefix


def wrong_imports(edges: dict[str, set[str]]) -> list[str]:
    """The imports that run up a tier, or sideways into another package of the same tier, or
    from one operation into another."""
    wrong = []
    for source, targets in sorted(edges.items()):
        rank, prefix = tier_of(source)
        for target in sorted(targets):
            target_rank, target_prefix = tier_of(target)
            if target_rank > rank:
                wrong.append(f"{source} -> {target}: up, from tier {rank} to {target_rank}")
            elif target_rank == rank and target_prefix != prefix and rank > 0:
                wrong.append(f"{source} -> {target}: sideways, within tier {rank}")
            elif prefix == "nspawnctl.ops" and target_prefix == prefix \
                    and target != OPS_SHARED and source != "nspawnctl.ops":
                wrong.append(f"{source} -> {target}: one operation into another")
    return wrong


def test_imports_run_down_the_tiers():
    assert wrong_imports(graph()) == []


def test_the_tier_check_finds_wrong_imports():
    edges = {"nspawnctl.store.containers": {"nspawnctl.ops.create"},   # up
             "nspawnctl.sources.tarball": {"nspawnctl.formats.tar"},   # down: fine
             "nspawnctl.formats.oci": {"nspawnctl.sources.oci"},       # up (formats < sources)
             "nspawnctl.network.state": {"nspawnctl.settings.model"},  # down: fine
             "nspawnctl.settings.model": {"nspawnctl.network.state"},  # up
             "nspawnctl.ops.clone": {"nspawnctl.ops.create", "nspawnctl.ops.common"},
             "nspawnctl.network.model": {"nspawnctl.settings.networking"}}  # down: fine
    assert wrong_imports(edges) == [
        "nspawnctl.formats.oci -> nspawnctl.sources.oci: up, from tier 6 to 7",
        "nspawnctl.ops.clone -> nspawnctl.ops.create: one operation into another",
        "nspawnctl.settings.model -> nspawnctl.network.state: up, from tier 3 to 4",
        "nspawnctl.store.containers -> nspawnctl.ops.create: up, from tier 5 to 9"]


def test_one_home_per_concern():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        if "pystemd" in imported:
            assert name == "nspawnctl.systemd.bus", name
        if "subprocess" in imported:
            assert name == "nspawnctl.run", name


def test_every_package_ships():
    """pyproject.toml lists packages by hand (units/ is mapped in as nspawnctl.units): a new
    folder left out of it would be missing from the installed tool."""
    import tomllib
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"nspawnctl.units"}
    assert config["package-dir"] == {"nspawnctl.units": "units"}


def test_every_file_in_units_is_used():
    """A unit file nobody renders is dead; a name the code renders must exist (issue 13)."""
    units = PACKAGE.parent / "units"
    names = {p.name for p in units.iterdir() if p.is_file() and p.name != "__init__.py"}
    code = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for name in names:
        assert f'"{name}"' in code, f"units/{name} is not used by the code"


UNIT_SECTION = re.compile(r"^\[(Unit|Service|Mount|Install|Timer|Socket|Path)\]", re.MULTILINE)


def test_no_unit_is_written_from_a_string_in_the_code():
    """Every unit file comes from units/ (issue 13): no string in the package holds a unit
    section header (docstrings may name one in passing, not start a line with it)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and UNIT_SECTION.search(node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


# Imported only where they are used: each costs 1-4 ms of the start-up of every command, and
# list, status, start and stop use none of them (issue 16: list is timed against the floor of
# a bare `import click`).
NOT_AT_START_UP = ("logging", "subprocess", "tempfile", "socket", "shutil",
                   "importlib.resources", "locale")


def _printed_by_a_fresh_python(code: str) -> list[str]:
    """The words `code` prints in a new interpreter that has imported nothing of ours before.
    -I -S: no site-packages (and so no sitecustomize or .pth file importing things first);
    click, tabulate and pystemd come from Debian's dist-packages, put back by hand."""
    import subprocess
    import sys
    path = [str(PACKAGE.parent), "/usr/lib/python3/dist-packages"]
    out = subprocess.run([sys.executable, "-I", "-S", "-c",
                          f"import sys; sys.path[:0] = {path!r}; {code}"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_list_start_and_stop_load_no_module_they_do_not_use():
    code = ("import sys; import nspawnctl.cli, nspawnctl.ops.inventory, nspawnctl.ops.lifecycle;"
            f" print(' '.join(m for m in {NOT_AT_START_UP!r} if m in sys.modules))")
    assert _printed_by_a_fresh_python(code) == []


def test_every_package_is_shipped():
    """pyproject.toml lists the packages setuptools installs: one left out imports from a
    checkout (and the editable venv) but not where provision.sh installs nspawnctl."""
    import tomllib
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts)
             for p in PACKAGE.rglob("__init__.py")}
    assert found - listed == set()


def test_the_commands_that_make_no_tree_load_no_source():
    """nspawnctl.sources (debootstrap, OCI, registry, scratch: about 60 ms of imports, a
    quarter of a health check's CPU, issue 31) is not loaded by the modules of start, stop, exec,
    health, wait (cli/lifecycle.py), set, snapshots and cp, doctor.  (list and status share
    cli/inventory.py with `images`, which needs it.)"""
    code = ("import sys; import nspawnctl.cli.lifecycle, nspawnctl.cli.settings,"
            " nspawnctl.cli.day2, nspawnctl.cli.host;"
            " print(' '.join(m for m in sys.modules if m.startswith('nspawnctl.sources')))")
    assert _printed_by_a_fresh_python(code) == []
