"""The package layout: imports point one way (no cycle), the worker never imports the sandbox
(a test double, not in the image), and files and functions stay within the guide's sizes."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_PACKAGES = ("worker", "contracts")
LAYERED_PACKAGES = ("worker", "contracts", "sandbox")
NOT_IN_THE_IMAGE = {"sandbox", "tests", "bench"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(packages: tuple[str, ...]) -> dict[str, Path]:
    return {module_name(p): p for package in packages for p in (REPO / package).rglob("*.py")}


def imported_modules(path: Path, known: dict[str, Path] | None = None) -> set[str]:
    """Absolute imports anywhere in the file (a function-level import ties modules as well);
    ``from package import submodule`` counts as importing the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            found = submodules & set(known or ())
            names.update(found or {node.module})
    return names


def import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    modules = modules_of(packages)
    return {
        name: {m for m in imported_modules(path, modules) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_production_packages_never_import_the_sandbox() -> None:
    # Given every module of the packages the image ships
    modules = modules_of(PRODUCTION_PACKAGES)
    assert "worker.app" in modules
    # When their imports are read
    offenders = {
        name: sorted(n for n in imported_modules(path) if n.split(".")[0] in NOT_IN_THE_IMAGE)
        for name, path in modules.items()
    }
    # Then none names the sandbox, the tests or the bench
    assert {k: v for k, v in offenders.items() if v} == {}


def test_imports_form_no_cycle() -> None:
    # Given the import graph of the worker, the contracts and the sandbox
    graph = import_graph(LAYERED_PACKAGES)
    assert "worker.process" in graph["worker.supervisor"]
    # When its cycles are looked for / Then there is none
    assert cycles(graph) == []


def test_the_cycle_finder_does_find_a_cycle() -> None:
    # Given a graph where a imports b, b imports c and c imports a
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    # When its cycles are looked for / Then the three are named, d is not
    assert cycles(graph) == [["a", "b", "c"]]


# From the top down; a module imports only its own layer or lower ones. Modules not named
# (api, broker, observability, ops, config, the policy modules) sit between the executor and
# the bottom.
LAYERS = (
    ("cli", ("worker.__main__", "worker.cli")),
    ("process wiring", ("worker.supervisor", "worker.process", "worker.app", "worker.order_setup")),
    (
        "consumer and executor",
        (
            "worker.awaiting",
            "worker.backlogs",
            "worker.consumer",
            "worker.execute",
            "worker.fallback",
            "worker.partitioned",
            "worker.parking",
            "worker.hold_watch",
            "worker.predecessors",
        ),
    ),
    ("parts", ("worker",)),
    ("contracts and store", ("contracts", "worker.store")),
)


def layer_of(module: str) -> int:
    """Index in LAYERS of the most specific prefix naming the module."""
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def test_imports_point_down_the_layers() -> None:
    # Given the import graph of the packages the image ships
    graph = import_graph(PRODUCTION_PACKAGES)
    # When each import is compared with the importer's layer
    upward = sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) < layer_of(module)
    )
    # Then none points up
    assert upward == []


def test_only_the_frames_adapter_reaches_under_pikas_blocking_channel() -> None:
    # Given every production module; When each is searched for ``._impl`` attribute access
    reaching = sorted(
        module
        for module, path in modules_of(PRODUCTION_PACKAGES).items()
        if any(
            isinstance(node, ast.Attribute) and node.attr == "_impl"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    # Then only worker.broker.frames does (its docstring says why)
    assert reaching == ["worker.broker.frames"]


# The developer guide's size limits: a file a reader can hold in mind, a function that does
# one step. No exceptions are listed: a new one needs its reason here.
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 40
SIZED_PACKAGES = ("worker", "contracts", "sandbox")


def long_functions(path: Path, limit: int) -> list[str]:
    """``line name (n lines)`` of every function or method longer than ``limit``, decorators
    excluded, its docstring included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{node.lineno} {node.name} ({length} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > limit
    ]


def test_no_file_is_over_300_lines() -> None:
    # Given every module of the worker, the contracts and the sandbox
    modules = modules_of(SIZED_PACKAGES)
    assert "sandbox.server" in modules
    # When their lines are counted
    lines = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules.items()
    }
    # Then none is over the limit
    assert {name: n for name, n in lines.items() if n > MAX_FILE_LINES} == {}


def test_no_function_is_over_40_lines() -> None:
    # Given every module of the worker, the contracts and the sandbox
    modules = modules_of(SIZED_PACKAGES)
    # When each function's and method's lines are counted
    long = [
        f"{name}:{function}"
        for name, path in modules.items()
        for function in long_functions(path, MAX_FUNCTION_LINES)
    ]
    # Then none is over the limit
    assert long == []


def test_the_function_measure_counts_from_def_to_last_line(tmp_path: Path) -> None:
    # Given a module with a 3-line function and a 5-line method
    source = tmp_path / "sample.py"
    source.write_text(
        "def short():\n    a = 1\n    return a\n\n\n"
        "class K:\n    @property\n    def long(self):\n        a = 1\n        b = 2\n"
        "        c = 3\n        return a + b + c\n",
        encoding="utf-8",
    )
    # When functions over 3 lines are looked for / Then only the method is named, with its size
    assert long_functions(source, 3) == ["8 long (5 lines)"]
