"""The package's layers hold: no import circle between modules (imports inside functions count too) and no
module importing from a layer above its own. docs/architecture.md draws the same layers."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hrstream"

# Bottom to top; a module may import from its own layer and the layers below it.
LAYERS = (
    {"errors", "types", "resources"},
    {"io", "models", "weights", "schemas", "metrics"},
    {"runtime", "track", "pose", "seg", "synth"},
    {"pipeline", "outputs"},
    {"runs"},
    {"exports", "train", "demo"},
    {"serve", "api", "cli"},
)


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _target(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    """Each module's imports of other hrstream modules."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = _target(name, mods)
                if target is not None and target != mod:
                    graph[mod].add(target)
    return graph


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else ""
    return next((i for i, layer in enumerate(LAYERS) if top in layer), None)


def test_no_import_circles() -> None:
    try:
        graphlib.TopologicalSorter(_graph()).prepare()
    except graphlib.CycleError as e:
        raise AssertionError(f"import circle: {' -> '.join(e.args[1])}") from None


def test_every_subpackage_has_a_layer() -> None:
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert sorted(t for t in tops if _layer(f"hrstream.{t}") is None) == []


def test_no_module_imports_from_a_layer_above() -> None:
    upward = []
    for a, targets in _graph().items():
        for b in targets:
            la, lb = _layer(a), _layer(b)
            if la is not None and lb is not None and lb > la:
                upward.append(f"{a} -> {b}")
    assert upward == []
