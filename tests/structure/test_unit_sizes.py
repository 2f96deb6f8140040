"""Small units: no class in the app over 250 lines, no function over 60."""
from __future__ import annotations

import ast

from tests.structure.app_modules import app_modules

MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60


def _units() -> list[tuple[str, str, int]]:
    found = []
    for module in app_modules():
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assert node.end_lineno is not None
                found.append((f"{module.name}.{node.name}", type(node).__name__, node.end_lineno - node.lineno + 1))
    return found


def test_the_units_are_measured() -> None:
    assert len(_units()) > 100


def test_no_class_over_250_lines() -> None:
    assert [(name, lines) for name, kind, lines in _units() if kind == "ClassDef" and lines > MAX_CLASS_LINES] == []


def test_no_function_over_60_lines() -> None:
    assert [(name, lines) for name, kind, lines in _units()
            if kind != "ClassDef" and lines > MAX_FUNCTION_LINES] == []
