"""The import layering of ``src/signalprop``: no module imports a higher layer, and no import
circle, read statically from every module's ``import`` statements with ``ast``.

What counts as an import: every ``import``/``from ... import`` of a ``signalprop`` module,
at module level *and* inside functions. A lazy (function-local) import is still a dependency:
it only defers the cost, so one that points upward or closes a circle fails here like any
other (none is exempt today; an exemption would go in ``ALLOWED`` with its reason). Imports
under ``if TYPE_CHECKING:`` do not count: they never run. Modules loaded by name at run time
(``importlib.import_module``, the experiment registry's discovery) are not imports here.

``from package import name`` counts as an import of ``package.name`` when that is a module,
else of ``package`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layers, lowest first; a module belongs to the layer of its longest matching prefix and may
#: import its own layer and lower ones. The package root (``signalprop/__init__.py``) is the
#: facade on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("signalprop.errors", "signalprop.version", "signalprop.threads", "signalprop.heartbeat"),
    ("signalprop.config", "signalprop.device", "signalprop.distributed", "signalprop.storage",
     "signalprop.runs", "signalprop.metrics_file", "signalprop.cli_checks"),
    ("signalprop.data",),
    ("signalprop.nn",),
    ("signalprop.diagnostics",),
    ("signalprop.learning",),
    ("signalprop.training_options", "signalprop.train_config", "signalprop.divergence",
     "signalprop.ddp_training", "signalprop.restore"),
    ("signalprop.train",),
    ("signalprop.experiments",),
    ("signalprop.report",),
    ("signalprop.reproduce", "signalprop.reproduce_progress", "signalprop.diagnose"),
    ("signalprop.cli", "signalprop.__main__"),
    ("signalprop",),
)

#: ``(importer, imported) -> why`` for imports allowed against the rules above (none today).
ALLOWED: dict[tuple[str, str], str] = {}

def module_names(src: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file below ``src``."""
    names = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.Module) -> set[int]:
    """``id`` of every node inside an ``if TYPE_CHECKING:`` block."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def imports_of(module: str, path: Path, known: Mapping[str, Path]) -> dict[str, int]:
    """``{imported module: first line}`` of ``module``'s runtime imports of ``known`` modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.setdefault(target, node.lineno)
    return found


def import_graph(src: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` for every module below ``src``."""
    known = module_names(src)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    """Index of the layer whose longest prefix matches ``module``; a module no layer names
    is an error (new top-level modules must be placed)."""
    best, index = "", -1
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    if index < 0:
        raise LookupError(f"{module} is in no layer: add it to LAYERS")
    return index


def upward_imports(graph: Mapping[str, Mapping[str, int]],
                   layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """``"a:line imports b (layer i < j)"`` for each import of a higher layer."""
    found = []
    for module, imported in sorted(graph.items()):
        for target, line in sorted(imported.items()):
            low, high = layer_of(module, layers), layer_of(target, layers)
            if high > low and (module, target) not in ALLOWED:
                found.append(f"{module}:{line} imports {target} (layer {low} < {high})")
    return found


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The import circles: strongly connected groups of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if (node, nxt) in ALLOWED:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = import_graph(SRC)


def test_every_module_has_a_layer():
    for module in GRAPH:
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    assert upward_imports(GRAPH) == []


def test_no_import_circle():
    assert cycles(GRAPH) == []


def test_no_module_imports_another_modules_private_names():
    """``from a import _name`` reaches into ``a``'s internals; a module of the same package may
    use its package's private modules (``report._fmt``)."""
    found = []
    for module, path in module_names(SRC).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("signalprop"):
                found += [f"{module} imports {node.module}.{alias.name}"
                          for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert sorted(found) == []


def test_class_names_are_unique():
    seen: dict[str, str] = {}
    clashes = []
    for module, path in module_names(SRC).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if node.name in seen and seen[node.name] != module:
                    clashes.append(f"{node.name}: {seen[node.name]} and {module}")
                seen.setdefault(node.name, module)
    assert clashes == []


# ---------------------------------------------------------------- the checker itself can fail
def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_circle_through_a_lazy_import(tmp_path: Path):
    src = _write(tmp_path, {
        "signalprop/__init__.py": "",
        "signalprop/a.py": "from signalprop.b import g\n",
        "signalprop/b.py": "def g():\n    from signalprop import a\n    return a\n",
        "signalprop/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from signalprop.a import g\n",
    })
    graph = import_graph(src)
    assert graph["signalprop.b"] == {"signalprop.a": 2}
    assert graph["signalprop.c"] == {}  # type-only imports do not count
    assert cycles(graph) == [["signalprop.a", "signalprop.b"]]


def test_checker_finds_an_upward_import(tmp_path: Path):
    src = _write(tmp_path, {
        "signalprop/__init__.py": "",
        "signalprop/low/__init__.py": "",
        "signalprop/low/x.py": "def f():\n    from ..high import y\n    return y\n",
        "signalprop/high/__init__.py": "",
        "signalprop/high/y.py": "import signalprop.low.x\n",
    })
    layers = (("signalprop.low",), ("signalprop.high",), ("signalprop",))
    graph = import_graph(src)
    assert upward_imports(graph, layers) == [
        "signalprop.low.x:2 imports signalprop.high.y (layer 0 < 1)"]
    with pytest.raises(LookupError, match="in no layer"):
        layer_of("signalprop_other", layers)
