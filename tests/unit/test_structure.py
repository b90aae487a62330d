"""The shape of the code itself: no import circle in hub/, files under 400 lines, and a docstring on every public
definition of hub/ and connectors/ (read from the source with `ast`, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "connectors")
MAX_LINES = 400


def modules(package: str) -> dict[str, Path]:
    """{dotted module name: file} of every module of `package`."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that module `name` imports anywhere: at the top, inside functions and under
    TYPE_CHECKING alike (a circle of type-only imports is a circle of dependencies all the same)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in `base`
        out.update(t for t in map(owner, targets) if t is not None and t != name)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_hub_has_no_import_circle() -> None:
    known = modules("hub")
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert graph["hub.mapping"] >= {"hub.lanes", "hub.windows", "hub.dispatch"}  # the walk sees imports
    found = circles(graph)
    assert not found, "import circles in hub/ (each a set of modules that import one another): " + "; ".join(
        " <-> ".join(component) for component in found
    )


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def undocumented(path: Path, root: Path = ROOT) -> list[str]:
    """The public functions, classes and methods of a module without a docstring (`_private` names, dunder
    methods and the members of private classes are exempt)."""
    missing: list[str] = []

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith(
                "_"
            ):
                if ast.get_docstring(node) is None:
                    missing.append(f"{path.relative_to(root)}:{node.lineno}: {prefix}{node.name}")
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")

    walk(ast.parse(path.read_text(), str(path)).body, "")
    return missing


def test_every_public_definition_states_its_contract() -> None:
    missing = [line for package in PACKAGES for path in modules(package).values() for line in undocumented(path)]
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


def test_the_docstring_check_sees_what_is_missing(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        '"""A module."""\n\n\ndef shown():\n    return 1\n\n\ndef _hidden():\n    return 2\n\n\n'
        'class Kept:\n    """A class."""\n\n    def method(self):\n        return 3\n\n'
        '    def __repr__(self):\n        return ""\n\n\nclass _Private:\n    def method(self):\n        return 4\n'
    )
    assert undocumented(module, tmp_path) == ["probe.py:4: shown", "probe.py:15: Kept.method"]


def test_no_file_passes_400_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for package in PACKAGES
        for path in modules(package).values()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"files over {MAX_LINES} lines (split them by what they do):\n" + "\n".join(long)


def test_loading_a_configuration_builds_each_model_once() -> None:
    """The models with a connector's part (`source`, `on_failure`, `dead_letter_config`) are built once, joined
    with the connectors a configuration names; their generic bases are never built for it."""
    import subprocess
    import sys

    script = (
        "import hub.config as c\n"
        "config = c.load_config('config/hub.yaml')\n"
        "assert type(config) is not c.HubConfig and config.mappings\n"
        "print([m.__name__ for m in (c.HubConfig, c.MappingConfig, c.FunctionConfig, c.DestinationConfig)"
        " if m.__pydantic_complete__])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
