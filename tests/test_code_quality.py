"""The app's code passes ruff (lint and format) and mypy, as configured in pyproject.toml.

Covers the deployed code only (function_app.py, blueprints/, shared/, d365/); the local tools and
the tests are not checked. Each tool runs from the same virtual environment as pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP_PATHS = ["function_app.py", "blueprints", "shared", "d365"]
BIN = Path(sys.executable).parent

CHECKS = {
    "ruff check": ["ruff", "check", "--no-fix", "--output-format=concise", *APP_PATHS],
    "ruff format": ["ruff", "format", "--check", "--diff", *APP_PATHS],
    "mypy": ["mypy", *APP_PATHS],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_app_code_passes(name: str) -> None:
    tool, *args = CHECKS[name]
    executable = BIN / tool
    assert executable.exists(), f"{executable} is missing: run `make setup` (it is in requirements-dev.txt)"

    result = subprocess.run([str(executable), *args], cwd=REPO, capture_output=True, text=True, timeout=300)

    if result.returncode != 0:
        pytest.fail(
            f"`{tool} {' '.join(args)}` exited {result.returncode}:\n{result.stdout}{result.stderr}", pytrace=False
        )
