"""Import-graph checks for a package: layer order, cycles, and Lightning kept out of the core.

Reads every ``*.py`` of the package with :mod:`ast`, so imports inside functions, ``try`` blocks
and ``if TYPE_CHECKING:`` blocks all count (nothing is imported or executed).

Rules (:func:`check`):
  * every module has a layer: the longest dotted prefix in ``layers`` that names it or a package
    above it; the exempt modules (the package root, its public face) have none and take part in no
    direction check;
  * a module never imports a module of a higher layer;
  * no import cycle between modules, except a package ``__init__`` importing its own children
    (re-exports; its children may import the package's contract from it);
  * modules of layer <= ``core_max`` never import Lightning.

``if TYPE_CHECKING:`` imports get no exemption: an annotation that names a higher layer's type is a
dependency on that layer's API, and a cycle through annotations is still a design cycle. The lazy
re-exports of package ``__init__``s declare their names there on purpose, so this checker and type
checkers see the edges that ``__getattr__`` creates at run time.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written in ``path`` at ``line``."""

    source: str  # importing module, dotted
    target: str  # imported module (internal) or dotted name (external)
    line: int
    type_checking: bool  # inside an ``if TYPE_CHECKING:`` block


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/a/b.py`` → ``pkg.a.b``; ``root/pkg/a/__init__.py`` → ``pkg.a``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (a folder under ``root``) by dotted name."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, module: str, modules: dict[str, Path]) -> list[Import]:
    """Every import in the file, resolved: internal targets are module names of ``modules``.

    ``from pkg.a import b`` targets the module ``pkg.a.b`` when there is one, else ``pkg.a``.
    """
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(module, a.name, node.lineno, type_checking) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..a import b
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                found.append(Import(module, full if full in modules else base, node.lineno, type_checking))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking)

    visit(tree, False)
    return found


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of the longest prefix in ``layers`` that is ``module`` or a package above it."""
    best = max((p for p in layers if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else layers[best]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def check(root: Path, package: str, layers: dict[str, int], exempt: tuple[str, ...] = (),
          core_max: int | None = None) -> list[str]:
    """Every offence against the rules above, one line each (empty: the package is clean).

    Args:
        root: the folder holding the package folder (the project root).
        package: the package's name, e.g. ``"mmformer"``.
        layers: dotted prefix → layer number; lower layers never import higher ones.
        exempt: modules with no layer that take part in no direction check (the root ``__init__``).
        core_max: modules of this layer or lower never import Lightning (None: no such rule).
    """
    modules = find_modules(root, package)
    where = {m: str(p.relative_to(root)) for m, p in modules.items()}
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    lines: dict[tuple[str, str], int] = {}

    for m in modules:
        layer = layer_of(m, layers)
        if layer is None and m not in exempt:
            problems.append(f"no layer: {m} ({where[m]}) matches no prefix of the layer table; place it")
        for imp in imports_of(modules[m], m, modules):
            note = " (under TYPE_CHECKING)" if imp.type_checking else ""
            if imp.target not in modules:  # external
                if core_max is not None and layer is not None and layer <= core_max \
                        and imp.target.split(".")[0] in LIGHTNING:
                    problems.append(f"lightning in the core: {where[m]}:{imp.line} {m} (layer {layer}) "
                                    f"imports {imp.target}{note}")
                continue
            if imp.target == m:
                continue
            target_layer = layer_of(imp.target, layers)
            if (layer is not None and target_layer is not None and layer < target_layer
                    and m not in exempt and imp.target not in exempt):
                problems.append(f"upward import: {where[m]}:{imp.line} {m} (layer {layer}) imports "
                                f"{imp.target} (layer {target_layer}){note}")
            if modules[m].name == "__init__.py" and imp.target.startswith(m + "."):
                continue  # a package re-exporting its own children
            graph[m].add(imp.target)
            lines.setdefault((m, imp.target), imp.line)

    for comp in _cycles(graph):
        members = set(comp)
        edges = sorted(f"{where[a]}:{lines[a, b]} {a} imports {b}"
                       for a in comp for b in graph[a] if b in members)
        problems.append(f"import cycle: {' <-> '.join(comp)} ({'; '.join(edges)})")
    return problems
