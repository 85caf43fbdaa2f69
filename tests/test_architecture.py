"""docs/architecture.md must stay true: the paths it cites exist, its map names
every module, its layers are tests/test_layers.py's, and each signature it shows
(```python blocks headed by their file) is the code's: parameter names, kinds,
order and defaults, and the annotations where the page gives them."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import types
from pathlib import Path

from test_layers import LAYERS

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
PATHS = set(re.findall(r"\b(?:minivm|tests|docs|programs|benchmarks)/[\w./-]*\w", TEXT))
STUBS = re.findall(r"^```python\n# (minivm/\S+\.py)\n(.*?)^```", TEXT, re.M | re.S)


def test_every_cited_path_exists():
    missing = sorted(p for p in PATHS if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md cites paths that do not exist: {missing}"


def test_the_map_names_every_module():
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "minivm").rglob("*")
             if p.suffix in (".py", ".lark")}
    assert not files - PATHS, f"not on docs/architecture.md's map: {sorted(files - PATHS)}"


def test_the_layers_are_the_ones_test_layers_enforces():
    section = TEXT.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    assert {name: int(layer) for layer, cell in re.findall(r"^\| (\d) \| ([^|]*) \|", section, re.M)
            for name in re.findall(r"`(\w+)`", cell)} == LAYERS


def _signature(owner, name: str) -> inspect.Signature:
    found = inspect.getattr_static(owner, name)
    return inspect.signature(found.fget if isinstance(found, property) else getattr(owner, name))


def _same(a: inspect.Signature, b: inspect.Signature) -> bool:
    return (len(a.parameters) == len(b.parameters)
            and all((p.name, p.kind, p.default) == (q.name, q.kind, q.default)
                    and p.annotation in (p.empty, q.annotation)
                    for p, q in zip(a.parameters.values(), b.parameters.values()))
            and a.return_annotation in (a.empty, b.return_annotation))


def _problems(body, shown, real, where: str, ns: dict):
    """What differs between the stub statements ``body`` (run as ``shown``) and ``real``."""
    for node in body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", node)
        name = getattr(target, "name", None) or target.id
        notes, here = inspect.get_annotations(real), f"{where}.{name}"
        if not hasattr(real, name) and name not in notes:
            yield f"{here}: not in the code"
        elif isinstance(node, ast.ClassDef):
            yield from _problems(node.body, getattr(shown, name), getattr(real, name), here, ns)
        elif isinstance(node, ast.FunctionDef):
            a, b = _signature(shown, name), _signature(real, name)
            if not _same(a, b):
                yield f"{here}: shown as {a}, is {b}"
        else:                       # NAME = value, NAME: Type, a dataclass field
            kind = inspect.get_annotations(shown).get(name)
            if kind and (notes[name] != kind if name in notes
                         else not isinstance(getattr(real, name), eval(kind, ns))):
                yield f"{here}: not {kind}"
            if node.value and getattr(shown, name) != getattr(real, name):
                yield f"{here}: shown as {getattr(shown, name)!r}, is {getattr(real, name)!r}"


def test_every_signature_shown_is_the_code_s():
    assert sum(code.count("def ") for _, code in STUBS) >= 50, "where are the ```python blocks?"
    problems = []
    for path, code in STUBS:
        name = ".".join(Path(path).with_suffix("").parts).removesuffix(".__init__")
        try:
            real = importlib.import_module(name)
        except ImportError as exc:
            problems.append(f"{path}: {exc}")
            continue
        shown = types.ModuleType(name)
        shown.__dict__.update(vars(real), __annotations__={})
        exec(compile("from __future__ import annotations\n" + code, path, "exec"), vars(shown))
        problems += _problems(ast.parse(code).body, shown, real, name, vars(shown))
    assert not problems, "docs/architecture.md differs from the code:\n" + "\n".join(problems)
