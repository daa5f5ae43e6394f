"""The package's import graph keeps the architecture: wings import only downwards, no circles,
no private name imported across modules.

Parsed, not imported: every ``import`` and ``from ... import`` of ``bayesqid`` anywhere in a
module (inside functions and ``TYPE_CHECKING`` blocks too) is an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bayesqid"

#: Wings bottom to top; a module may import its own wing or any wing below it.
WINGS = ("floor", "lang", "data", "engines", "sampling", "questions", "checks", "report", "measure", "lab",
         "cli", "api")
FLOOR = {"bayesqid.argtypes", "bayesqid.constants", "bayesqid.errors", "bayesqid.outputs"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def wing(module: str) -> str:
    if module == "bayesqid":
        return "api"
    if module in FLOOR:
        return "floor"
    second = module.split(".")[1]
    return second if second in WINGS else f"unknown:{second}"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    if not module_name_is_package(module):
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def module_name_is_package(module: str) -> bool:
    return (SRC.parent / Path(*module.split(".")) / "__init__.py").exists()


def edges() -> list[tuple[str, str, str, int]]:
    """(importer, imported module, imported name or '', line) for every import of bayesqid."""
    known = modules()
    out = []
    for mod, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out += [(mod, a.name, "", node.lineno) for a in node.names if a.name.startswith("bayesqid")]
            elif isinstance(node, ast.ImportFrom):
                target = resolve(mod, node)
                if not target.startswith("bayesqid"):
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    # ``from bayesqid.report import figures`` imports a module, not a name.
                    if sub in known:
                        out.append((mod, sub, "", node.lineno))
                    else:
                        out.append((mod, target, a.name, node.lineno))
    return out


def test_every_module_belongs_to_a_known_wing():
    unknown = sorted(m for m in modules() if wing(m).startswith("unknown"))
    assert unknown == []


def test_wings_import_only_downwards():
    rank = {w: i for i, w in enumerate(WINGS)}
    upward = [f"{src}:{line} imports {dst} ({wing(src)} -> {wing(dst)})"
              for src, dst, _name, line in edges()
              if rank[wing(dst)] > rank[wing(src)]]
    assert upward == []


def test_no_private_name_is_imported_across_modules():
    private = [f"{src}:{line} imports {dst}.{name}" for src, dst, name, line in edges()
               if name.startswith("_") and name != "__version__"]
    assert private == []


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, as the circle it closes."""
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_circle():
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for src, dst, _name, _line in edges():
        # The top package re-exports everything; only circles between modules matter.
        if dst in graph and dst != src and dst != "bayesqid":
            graph[src].add(dst)
    assert find_cycles(graph) == []


def test_the_circle_finder_finds_circles():
    """Negative control: the finder reports a planted circle and passes a chain."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_wing_ranks_catch_an_upward_import():
    rank = {w: i for i, w in enumerate(WINGS)}
    assert rank[wing("bayesqid.sampling.fit")] > rank[wing("bayesqid.lang.spec")]
    assert wing("bayesqid.errors") == "floor" and wing("bayesqid") == "api"


def test_the_floor_imports_nothing_of_ours():
    floor_edges = [(s, d) for s, d, _n, _l in edges() if s in FLOOR]
    assert floor_edges == []
