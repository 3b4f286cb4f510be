"""The package's shape: no module reaches into another module's private names, and
every module says what it exports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "detector"


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _private_imports(path: Path) -> list[str]:
    """``from .x import _name`` (relative imports within the package) and ``x._name``
    on a sibling module imported as ``from . import x``, in ``path``."""
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
    # ``from . import jobs`` then ``jobs._name``: the same reach, by attribute.
    modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and n.level > 0 and n.module is None for a in n.names}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} "
                         f"{node.value.id}.{node.attr}")
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level(tree: ast.Module) -> tuple[list[str] | None, set[str], set[str]]:
    """(``__all__``, names the module defines, names it imports) at its top level."""
    exported, defined, imported = None, set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for name in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(name, ast.Name):
                        defined.add(name.id)
                        if name.id == "__all__":
                            exported = [e.value for e in node.value.elts]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return exported, defined, imported


_FACES = {_module_name(p): (p, *_top_level(ast.parse(p.read_text(encoding="utf-8"))))
          for p in _modules()}
# Public names that are not in their module's __all__, each with why.
_NOT_IN_ALL = {
    # click commands: the CLI's face is the group `main`; the commands are reached through it
    "detector.cli": {"backtest", "evaluate", "explain", "generate", "report", "score", "train"},
}


def test_every_name_in_all_exists():
    import importlib

    missing = []
    for mod, (_path, exported, defined, imported) in _FACES.items():
        for name in exported or ():
            if name in defined | imported:
                continue
            # A package __init__ may resolve its names lazily (module __getattr__).
            if "__getattr__" in defined and hasattr(importlib.import_module(mod), name):
                continue
            missing.append(f"{mod}.{name}")
    assert not missing, f"__all__ names that the module does not define: {missing}"


def test_public_modules_list_their_public_names_in_all():
    unlisted = []
    for mod, (path, exported, defined, _) in _FACES.items():
        if path.name.startswith("_") and path.name != "__init__.py":
            continue  # a private module: its package's __init__ is the face
        names = {n for n in defined if not n.startswith("_")} - set(exported or ())
        unlisted += [f"{mod}.{n}" for n in sorted(names - _NOT_IN_ALL.get(mod, set()))]
    assert not unlisted, ("public names missing from their module's __all__ (list them, "
                          f"or make them private): {unlisted}")


def test_names_imported_across_modules_are_in_the_exporting_modules_all():
    """What one module takes from another is that module's public face (its __all__)."""
    outside = []
    for mod, (path, *_rest) in _FACES.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level > 0):
                continue
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            if target not in _FACES or target.endswith("._version"):
                continue  # a subpackage import, or the version (private by name only)
            exported = set(_FACES[target][1] or ())
            for alias in node.names:
                if (alias.name not in exported and f"{target}.{alias.name}" not in _FACES
                        and alias.name not in _NOT_IN_ALL.get(target, set())):
                    outside.append(f"{mod}:{node.lineno} {alias.name} from {target}")
    assert not outside, f"names imported from outside the module's __all__: {outside}"
