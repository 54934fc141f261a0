"""The import graph of harness/ against docs/architecture.md, read with
ast (nothing is imported): no cycle, every import goes to the same or a
lower layer, no import hides inside a function, every harness module
imported exists in this tree, reference/ imports nothing of harness/, and
no module is over ~500 lines without saying why at its top."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"

# docs/architecture.md, "Who may import whom": the layers, lowest first.
# A module may import modules of its own layer (without a cycle) and of
# the layers below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("harness.errors",),
    ("harness.qemu",),
    ("harness.vocabulary",),
    ("harness.records",),
    ("harness.datafile", "harness.casefile", "harness.baseline", "harness.report",
     "harness.shards", "harness.coverage"),
    ("harness.kinds", "harness.plan", "harness.matrix"),
    ("harness.judge",),
    ("harness.single",),
    ("harness.debug", "harness.findings", "harness.resume"),
    ("harness.workers", "harness.costs"),
    ("harness.run",),
    ("harness.bench",),
    ("harness.cli",),
)
MAX_LINES = 500
# What a module over MAX_LINES says at its top.
SIZE_REASON = re.compile(r"[Ll]onger than 500 lines because")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(top: Path = HARNESS) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(top.rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def package_names(path: Path) -> set[str]:
    """The names a module defines at its top level (for a package's
    ``__init__``: what ``from package import name`` can mean besides a
    submodule)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(module, line) of every harness or reference import in the file;
    ``from package import name`` counts as importing the submodule
    ``package.name`` when there is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, path.name == "__init__.py", node)
            defined = package_names(known[target]) if target in known else set()
            # A name a package does not define is meant as its submodule.
            subs = [f"{target}.{a.name}" for a in node.names
                    if f"{target}.{a.name}" in known
                    or (known.get(target, path).name == "__init__.py" and a.name not in defined)]
            out += [(s, node.lineno) for s in subs] or [(target, node.lineno)]
    return [(m, line) for m, line in out if m.split(".")[0] in ("harness", "reference")]


def layer_of(module: str) -> int:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


KNOWN = modules()
GRAPH = {name: [m for m, _ in imports_of(name, path, KNOWN) if m.startswith("harness")]
         for name, path in KNOWN.items()}


def test_every_harness_import_names_a_module_of_this_tree():
    """An import of a module that moved away must fail here, not be served
    by another copy of harness on the path (an editable install of another
    work tree did exactly that once)."""
    tests = {module_name(p): p for p in sorted((ROOT / "tests").glob("*.py"))}
    missing = [f"{path.relative_to(ROOT)}:{line}: {m}"
               for name, path in {**KNOWN, **tests}.items()
               for m, line in imports_of(name, path, KNOWN)
               if m.startswith("harness") and m not in KNOWN]
    assert missing == []


def test_no_import_cycle():
    state: dict[str, int] = {}     # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH.get(node, []):
            if nxt == node or nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_imports_go_to_the_same_or_a_lower_layer():
    wrong = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
             for a, targets in GRAPH.items() for b in targets
             if b in KNOWN and a != "harness" and b != "harness" and layer_of(b) > layer_of(a)]
    assert wrong == []


def test_the_layer_rule_can_fail():
    """The check above would see a library module importing the CLI."""
    assert layer_of("harness.cli.main") > layer_of("harness.bench") > layer_of("harness.qemu.boot")


def test_no_import_inside_a_function():
    """Imports at the top of the module only: an import inside a function
    is how cycles were dodged before (issue 16)."""
    found = []
    for name, path in KNOWN.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found += [f"{name}:{n.lineno}" for n in ast.walk(node)
                          if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert found == []


def test_reference_imports_nothing_of_the_harness():
    ref = modules(ROOT / "reference")
    wrong = [f"{name}: {m}" for name, path in ref.items()
             for m, _ in imports_of(name, path, ref) if m.startswith("harness")]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_no_module_is_long_without_a_reason(name):
    text = KNOWN[name].read_text(encoding="utf-8")
    if text.count("\n") > MAX_LINES:
        doc = ast.get_docstring(ast.parse(text)) or ""
        assert SIZE_REASON.search(doc), (f"{name}: {text.count(chr(10))} lines and no "
                                         f"'longer than 500 lines because' at its top")


def test_the_layers_are_the_documented_ones():
    """docs/architecture.md lists the same layers, in the same order."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = [line for line in doc.splitlines() if re.match(r"\| *\d+ *\|", line)]
    documented = [tuple(sorted(re.findall(r"`(harness[\w.]*)`", line))) for line in table]
    assert documented == [tuple(sorted(names)) for names in LAYERS]
