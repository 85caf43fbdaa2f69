"""The layers of minivm (docs/architecture.md), checked on the source.

Every module under minivm/ (packages too) is parsed; every import of one of
minivm's own modules, function-level imports included, is an edge. A module
may import only from its own layer or below, and the graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import minivm

ROOT = Path(minivm.__file__).parent

#: Layer of each module, bottom (0) to top (4). A name stands for the module
#: and, if it is a package, everything inside it.
LAYERS = {
    "version": 0, "errors": 0, "isa": 0,
    "assembler": 1, "asm_hints": 1, "asm_source": 1, "image": 1, "container": 1, "disasm": 1, "program": 1,
    "memory": 2, "devices": 2, "disks": 2, "state": 2, "engine": 2, "machine": 2,
    "probes": 2,
    "checkpoint": 3, "resume": 3, "ckptfile": 3, "store": 3, "modes": 3, "history": 3, "precopy": 3, "resumestats": 3,
    "minivm": 4, "api": 4, "report": 4, "timeline": 4, "repl": 4, "interrupts_guard": 4,
    "demos": 4, "pictures": 4, "cli": 4, "bench": 4, "__main__": 4, "pytest_plugin": 4,
    "lab": 4, "labguest": 4, "labsvg": 4, "labcli": 4,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("minivm",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule; ``from mod import name``, mod.
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in subs if t in modules] or [base]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _layer(name: str) -> int | None:
    """The layer of a module: its own entry, or its top package's (minivm.engine.x)."""
    parts = name.split(".")
    if len(parts) == 1:
        return LAYERS["minivm"]
    return LAYERS.get(parts[1]) if parts[1] != "minivm" else None


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    unknown = [name for name in _modules() if _layer(name) is None]
    assert not unknown, (f"{unknown}: not in the layer table; put each in LAYERS in "
                         "tests/test_layers.py (and in docs/architecture.md)")


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
              for name, targets in _graph().items() for target in sorted(targets)
              if _layer(target) is not None and _layer(name) is not None
              and _layer(target) > _layer(name)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}          # 1 on the path, 2 done
    path: list[str] = []

    def visit(name):
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_checker_sees_function_level_and_package_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from . import inner\n")
    (tmp_path / "pkg" / "inner.py").write_text("def f():\n    from ..cli import main\n")
    modules = {"minivm.pkg": tmp_path / "pkg" / "__init__.py",
               "minivm.pkg.inner": tmp_path / "pkg" / "inner.py", "minivm.cli": ROOT / "cli.py"}
    assert _imports("minivm.pkg", modules["minivm.pkg"], modules) == {"minivm.pkg.inner"}
    assert _imports("minivm.pkg.inner", modules["minivm.pkg.inner"], modules) == {"minivm.cli"}
    assert _layer("minivm.engine.blocks") == 2 and _layer("minivm.repl.session") == 4
    assert _layer("minivm.newthing") is None and _layer("minivm") == 4


#: Written by ``python -m minivm.engine.generate`` (one long dispatch chain each).
GENERATED = {ROOT / "engine" / "reference.py", ROOT / "engine" / "exact.py"}
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 120


def test_no_class_or_function_too_long_to_read():
    """Outside generated code, no class over 400 lines and no function over
    120: past that, a unit does more than one thing."""
    too_long = []
    for name, path in _modules().items():
        if path in GENERATED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES or \
                    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and size > MAX_FUNCTION_LINES:
                too_long.append(f"{name}.{node.name}: {size} lines")
    assert not too_long, too_long
    assert all(path.exists() for path in GENERATED)
