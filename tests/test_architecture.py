"""The package's shape: no module reaches into another module's private names, and
every module says what it exports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "detector"


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _private_imports(path: Path) -> list[str]:
    """``from .x import _name`` (relative imports within the package) in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            target = node.module or ""
            if target.split(".")[-1] == "_version":
                continue  # the version module is private by name, public by purpose
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} "
                                 f"from {'.' * node.level}{target} import {alias.name}")
    return found


def test_no_module_imports_another_modules_private_name():
    found = [hit for p in _modules() for hit in _private_imports(p)]
    assert not found, "private names imported across modules (give them a public name):\n" + \
        "\n".join(found)


def test_every_public_module_declares_all():
    missing = []
    for p in _modules():
        if p.name.startswith("_") and p.name != "__init__.py":
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                 if isinstance(t, ast.Name)}
        if "__all__" not in names:
            missing.append(str(p.relative_to(PACKAGE.parent)))
    assert not missing, f"modules without __all__: {missing}"
