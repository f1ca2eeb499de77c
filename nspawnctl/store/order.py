"""Order between containers: `--after NAME` and `--requires NAME`, written as After=/Requires=
of the container's unit (settings/model.py), so systemd starts them in order at boot and on
`nspawnctl start`, and a stop of a required container stops those that require it.

Checked here, where the other containers can be read: every name must exist, and the order
must have no cycle (systemd would break one by dropping a start job at random).
"""

from collections.abc import Iterable

from ..errors import Conflict, Error, NotFound, Usage
from ..paths import Paths
from ..settings.files import load_config
from ..settings.model import ContainerConfig, dependencies
from .containers import Store


def check(paths: Paths, name: str, cfg: ContainerConfig):
    """Refuse cfg for container NAME if it names a missing container or closes a cycle."""
    deps = dependencies(cfg)
    if not deps:
        return
    store = Store(paths)
    for dep in deps:
        if dep == name:
            raise Usage(f"{name} cannot be ordered after itself")
        if not store.exists(dep):
            raise NotFound(f"no container named {dep!r} to order {name} after",
                           hint="see 'nspawnctl list' for the containers there are")
    graph = _graph(paths, store.names())
    graph[name] = deps
    cycle = _cycle_through(graph, name)
    if cycle:
        raise Conflict(f"ordering {name} after {', '.join(deps)} makes a cycle: "
                       + " -> ".join(cycle))


def dependents(paths: Paths, name: str, ignoring: Iterable[str] = ()) -> list[str]:
    """The containers (but those in ignoring) ordered after NAME or requiring it."""
    skip = set(ignoring)
    return [other for other, deps in _graph(paths, Store(paths).names()).items()
            if name in deps and other not in skip and other != name]


def _graph(paths: Paths, names: list[str]) -> dict[str, tuple[str, ...]]:
    graph = {}
    for other in names:
        try:
            graph[other] = dependencies(load_config(paths, other))
        except Error:
            graph[other] = ()  # a container with broken settings says so in its own commands
    return graph


def _cycle_through(graph: dict[str, tuple[str, ...]], start: str) -> list[str] | None:
    """A path start -> ... -> start along graph's edges, if there is one (iterative: the
    graph is as deep as there are containers)."""
    parent: dict[str, str] = {}
    stack = [start]
    seen = set()
    while stack:
        node = stack.pop()
        for dep in graph.get(node, ()):
            if dep == start:
                return [start] + list(reversed(_walk_back(parent, node, start))) + [start]
            if dep not in seen:
                seen.add(dep)
                parent[dep] = node
                stack.append(dep)
    return None


def _walk_back(parent: dict[str, str], node: str, start: str) -> list[str]:
    """node, its parent, ... up to (not including) start."""
    path = []
    while node != start:
        path.append(node)
        node = parent[node]
    return path
