"""Order between containers: `--after NAME` and `--requires NAME`, written as After=/Requires=
of the container's unit (settings/model.py), so systemd starts them in order at boot and on
`nspawnctl start`, and a stop of a required container stops those that require it.

Checked here, where the other containers can be read: every name must exist, the order
must have no cycle (systemd would break one by dropping a start job at random), and a
container waited for with NAME:healthy must have a health worth waiting for.
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
    for dep in cfg.wait_healthy:
        if not has_health(load_config(paths, dep)):
            raise Usage(no_health(dep), hint=no_health_hint(dep))


def has_health(cfg: ContainerConfig) -> bool:
    """Whether waiting for a container's health (NAME:healthy) says more than --after: it
    has a check (--health-cmd), or it boots (healthy: its systemd is running, not only
    started, runtime/health.py).  A single command without a check is healthy while it runs,
    which --after says already."""
    return bool(cfg.health_cmd) or cfg.boot


def no_health(dep: str) -> str:
    return f"{dep} has no health check (--health-cmd) to wait for: it runs a single command"


def no_health_hint(dep: str) -> str:
    return (f"give it one (nspawnctl set {dep} --health-cmd CMD), or order after it without "
            ":healthy")


def health_dependents(paths: Paths, name: str) -> list[str]:
    """The containers that wait for NAME's health at their start (NAME:healthy)."""
    found = []
    for other in Store(paths).names():
        try:
            if name in load_config(paths, other).wait_healthy:
                found.append(other)
        except Error:
            pass  # broken settings: its own commands say so
    return found


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
