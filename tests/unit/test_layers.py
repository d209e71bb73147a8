"""The house plan, checked: mixgap/'s import graph (imports inside functions included) has no cycle and no edge
from a lower layer to a higher one, no module is over 400 lines, and the code speaks of the project, not its
history. Layers, lowest first: core < grading, stats < stages < results < plan < pipeline."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mixgap"
LAYERS = {"core": 0, "grading": 1, "stats": 1, "published": 1, "stages": 2, "results": 3, "plan": 4, "pipeline": 5}
#: Dependencies a function may import lazily (they slow the CLI's start or are optional on a CPU machine).
HEAVY = {"torch", "transformers", "datasets", "vllm", "deepspeed", "peft", "accelerate", "matplotlib", "wandb",
         "math_verify", "sympy", "latex2sympy2_extended", "huggingface_hub", "gguf", "safetensors"}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def in_functions(tree: ast.AST) -> set[int]:
    """ids of the import statements inside a function (a lazy import)."""
    return {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))}


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """``(imported mixgap module, line, inside a function)`` for every import of a mixgap module in ``path``."""
    tree = ast.parse(path.read_text())
    lazy = in_functions(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.startswith("mixgap") and target != name and not name.startswith(target + "."):
                found.append((target, node.lineno, id(node) in lazy))
                break
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], -1) if len(parts) > 1 else -1


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {t for t, _, _ in imports(name, path, known)} for name, path in known.items()}


def test_no_import_cycle():
    edges = graph()
    for start in edges:  # depth-first search for a path back to start
        stack, seen = list(edges[start]), set()
        while stack:
            node = stack.pop()
            assert node != start, f"import cycle through {start}"
            if node not in seen:
                seen.add(node)
                stack.extend(edges.get(node, ()))


def test_no_module_imports_one_above_it():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a) >= 0]
    assert not upward, upward


def test_every_mixgap_module_sits_in_a_layer():
    assert not [m for m in modules() if m != "mixgap" and layer(m) < 0]


def test_imports_inside_functions_only_for_heavy_dependencies():
    lazy = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        inside = in_functions(tree)
        for node in ast.walk(tree):
            if id(node) in inside:
                name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if node.__dict__.get("level") or (name or "").split(".")[0] not in HEAVY:
                    lazy.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not lazy, lazy


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size_and_no_history(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 400, f"{path.name}: {len(text.splitlines())} lines"
    assert not re.search(r"[Ii]ssues? ?#?[0-9]+", text), "code speaks of the project, not of issue numbers"
    assert "PLC0415" not in text, "ruff does not select PLC: the tag silences nothing"


def test_test_files_have_distinct_names():
    """pytest imports test modules by their base name (rootdir-relative, no packages): two test_x.py in
    tests/unit and tests/integration stop the whole collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


#: Imports a module makes for their side effect, not to re-export: each backend module registers its class.
REGISTERS = {"mixgap.stages.backends": {"dataset", "hf", "vllm"}}


def test_no_module_re_exports_what_another_defines():
    """Importers import a name from the module that defines it: no module lists an ``__all__`` (a facade's list of
    re-exports), and every name a module imports from another mixgap module is used in it."""
    facades = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets) for n in tree.body):
            facades.append(f"{name}: __all__")
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mixgap"):
                unused = {a.asname or a.name for a in node.names} - used - REGISTERS.get(name, set())
                facades += [f"{name}: {n} (from {node.module})" for n in sorted(unused)]
    assert not facades, facades
