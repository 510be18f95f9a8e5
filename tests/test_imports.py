"""The package's own modules import each other without cycles.

Every `import` of a `nanodet_ghost` module is read with `ast`, at module level and inside functions
alike (a function-local import that only hides a cycle still counts); imports under
`if TYPE_CHECKING:` never run and are left out. A name taken from a package `__init__` that the
`__init__` only re-exports counts as an import of the module that defines it, so
`from nanodet_ghost.model import build_model` depends on `model.build`, not on everything the
package `__init__` imports. Importing a module is not counted as importing its parent packages.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from nanodet_ghost.paths import REPO_ROOT

PACKAGE = "nanodet_ghost"


def module_files(root: Path) -> Dict[str, Path]:
    """`{dotted module name: file}` of every module of the package under `root` (`__init__`
    files under their package's name)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> List[ast.stmt]:
    """Every Import / ImportFrom of `tree`, at any depth, except those under `if TYPE_CHECKING:`."""
    found: List[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class ImportGraph:
    """Directed graph `module -> {modules it imports}` over the package's own modules."""

    def __init__(self, root: Path) -> None:
        self.files = module_files(root)
        self.trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path))
                      for name, path in self.files.items()}
        self.edges: Dict[str, Set[str]] = {name: set() for name in self.files}
        for name, tree in self.trees.items():
            for node in _import_nodes(tree):
                self.edges[name] |= self._targets(name, node)
            self.edges[name].discard(name)

    def _is_package(self, module: str) -> bool:
        return self.files[module].name == "__init__.py"

    def _defining_module(self, package: str, attr: str, seen: Tuple[str, ...] = ()) -> str:
        """The module that defines `attr` of `package` (following its `__init__`'s re-exports)."""
        if package in seen or not self._is_package(package):
            return package
        for node in ast.iter_child_nodes(self.trees[package]):
            if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == attr for a in node.names):
                source = _absolute(package, True, node)
                original = next(a.name for a in node.names if (a.asname or a.name) == attr)
                if f"{source}.{original}" in self.files:
                    return f"{source}.{original}"
                if source in self.files:
                    return self._defining_module(source, original, seen + (package,))
        return package

    def _targets(self, module: str, node: ast.stmt) -> Set[str]:
        targets: Set[str] = set()
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and alias.name in self.files:
                    targets.add(alias.name)
            return targets
        assert isinstance(node, ast.ImportFrom)
        source = _absolute(module, self._is_package(module), node)
        if source.split(".")[0] != PACKAGE:
            return targets
        for alias in node.names:
            if f"{source}.{alias.name}" in self.files:  # a submodule
                targets.add(f"{source}.{alias.name}")
            elif source in self.files:  # a name: where it is defined
                targets.add(self._defining_module(source, alias.name))
        return targets

    def cycles(self) -> List[List[str]]:
        """One cycle (`[a, b, ..., a]`) per strongly connected component of more than one module."""
        index: Dict[str, int] = {}
        low: Dict[str, int] = {}
        stack: List[str] = []
        on_stack: Set[str] = set()
        components: List[List[str]] = []

        def connect(v: str) -> None:  # Tarjan; the package is small enough for recursion
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in sorted(self.edges[v]):
                if w not in index:
                    connect(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

        for v in sorted(self.edges):
            if v not in index:
                connect(v)
        return [self._cycle_through(component) for component in components]

    def _cycle_through(self, component: List[str]) -> List[str]:
        """A shortest cycle from the first module of `component` back to itself (breadth first)."""
        start, members = component[0], set(component)
        parent: Dict[str, Optional[str]] = {start: None}
        queue = [start]
        while queue:
            v = queue.pop(0)
            for w in sorted(self.edges[v] & members):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])  # type: ignore[arg-type]
                    return path[::-1] + [start]
                if w not in parent:
                    parent[w] = v
                    queue.append(w)
        return component  # unreachable for a strongly connected component


def _write(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_package_has_no_import_cycle() -> None:
    graph = ImportGraph(REPO_ROOT)
    assert len(graph.files) > 50, f"only {len(graph.files)} modules found under {REPO_ROOT / PACKAGE}"
    cycles = graph.cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "inference/__init__.py": "from nanodet_ghost.inference.factory import make\n",
        "inference/factory.py": "def make():\n    from .predictor import Predictor\n    return Predictor\n",
        "inference/predictor.py": "import numpy\nfrom nanodet_ghost.inference import factory\nclass Predictor: ...\n",
    })
    assert ImportGraph(root).cycles() == [["nanodet_ghost.inference.factory", "nanodet_ghost.inference.predictor",
                                           "nanodet_ghost.inference.factory"]]


def test_re_exported_name_points_at_its_module(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "model/__init__.py": "from .build import build_model\nfrom nanodet_ghost.model.weights import load\n"
                             "def load_detector(): ...\n",
        "model/build.py": "from nanodet_ghost.model.backbone import ghostnet\n",
        "model/weights.py": "import torch\n",
        "model/backbone/__init__.py": "",
        "model/backbone/ghostnet.py": "from nanodet_ghost.model import load\nfrom typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from nanodet_ghost.model.build import build_model\n",
        "tool.py": "import nanodet_ghost.model.build\nfrom nanodet_ghost.model import load_detector\n",
    })
    graph = ImportGraph(root)
    assert graph.edges["nanodet_ghost.model.backbone.ghostnet"] == {"nanodet_ghost.model.weights"}
    assert graph.edges["nanodet_ghost.tool"] == {"nanodet_ghost.model.build", "nanodet_ghost.model"}
    assert graph.cycles() == []
    # Taking a name the package __init__ defines itself does close a cycle.
    (root / PACKAGE / "model" / "weights.py").write_text("from nanodet_ghost.model import load_detector\n")
    assert ImportGraph(root).cycles() == [["nanodet_ghost.model", "nanodet_ghost.model.weights",
                                           "nanodet_ghost.model"]]


@pytest.mark.parametrize("line, target", [
    ("from . import sibling", "nanodet_ghost.a.sibling"),
    ("from .. import top", "nanodet_ghost.top"),
    ("from ..b.deep import thing", "nanodet_ghost.b.deep"),
    ("import nanodet_ghost.b.deep as deep", "nanodet_ghost.b.deep"),
])
def test_relative_and_dotted_imports_resolve(tmp_path: Path, line: str, target: str) -> None:
    root = _write(tmp_path, {
        "__init__.py": "", "top.py": "", "a/__init__.py": "", "a/sibling.py": "", "b/__init__.py": "",
        "b/deep.py": "thing = 1\n", "a/mod.py": f"def f():\n    {line}\n",
    })
    assert ImportGraph(root).edges["nanodet_ghost.a.mod"] == {target}
