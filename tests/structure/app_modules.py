"""The app's modules (function_app.py, blueprints/, shared/, d365/) as parsed source: their imports
and their units, for the structure tests."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP_ROOTS = ("function_app.py", "blueprints", "shared", "d365")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def imports(self) -> set[str]:
        """Every module name this one imports, at any depth of its code (lazy imports included)."""
        names: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        return names


def _name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def app_modules() -> tuple[Module, ...]:
    paths: list[Path] = []
    for root in APP_ROOTS:
        path = REPO / root
        paths.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return tuple(Module(_name(p), p, ast.parse(p.read_text(), str(p))) for p in paths)


def module_names() -> set[str]:
    return {m.name for m in app_modules()}
