"""`make package` builds exactly the app: nothing local-only inside, everything the app imports inside, and the
unpacked zip starts (imports `function_app`, registers its functions) in a fresh virtual environment that has
only requirements.txt installed, as Flex Consumption's remote build would give it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.infra.bicep_model import ROOT
from tests.infra.test_app_settings import bicep_app_settings

LEFT_OUT = (
    "local/",
    "tests/",
    "docs/",
    ".local/",
    "node_modules/",
    ".venv/",
    "infra/",
    ".ci/",
    ".git/",
    ".hypothesis/",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
)
LEFT_OUT_FILES = {
    "package.json",
    "package-lock.json",
    "Makefile",
    "azure.yaml",
    "pytest.ini",
    "pyproject.toml",
    "requirements-dev.txt",
    "local.settings.json",
    "local.settings.json.example",
    ".funcignore",
    ".gitignore",
    "README.md",
}
APP_PACKAGES = ("blueprints", "shared", "d365")
FIRST_PARTY = {"function_app", *APP_PACKAGES, "local", "tests"}

IMPORT_PROBE = f"""
import json, sys
import function_app
modules = {{name: getattr(module, "__file__", None) for name, module in sys.modules.items()
           if name.split(".")[0] in {sorted(FIRST_PARTY)!r}}}
functions = sorted(f.get_function_name() for f in function_app.app.get_functions())
print(json.dumps({{"modules": modules, "functions": functions}}))
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("package") / "leadpush.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "infra" / "package.py"), "--output", str(output)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return output


@pytest.fixture(scope="module")
def names(package) -> set[str]:
    with zipfile.ZipFile(package) as archive:
        return set(archive.namelist())


def test_nothing_local_only_is_packaged(names):
    assert sorted(name for name in names if name.startswith(LEFT_OUT)) == []
    assert sorted(name for name in names if name in LEFT_OUT_FILES or name.startswith(".git")) == []
    assert sorted(name for name in names if "__pycache__" in name or name.endswith(".pyc")) == []


def test_the_host_files_and_every_app_module_are_packaged(names):
    expected = {"host.json", "openapi.yaml", "requirements.txt", "function_app.py"}
    for package in APP_PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".sql"):
                expected.add(path.relative_to(ROOT).as_posix())

    assert expected - names == set()
    assert "shared/postgres/queries.sql" in names
    assert {f"shared/postgres/migrations/{p.name}" for p in (ROOT / "shared" / "migrations").glob("*.sql")} <= names


def test_the_package_is_reproducible(package, tmp_path):
    again = tmp_path / "again.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "infra" / "package.py"), "--output", str(again)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )

    assert again.read_bytes() == package.read_bytes()


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    """A new virtual environment with requirements.txt only (pip's wheel cache makes later runs quick)."""
    directory = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    python = directory / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return python


def test_the_unpacked_app_starts_with_only_its_requirements(package, fresh_python, tmp_path):
    # given: the zip unpacked alone, the app settings Azure would give it, and no service reachable
    app_dir = tmp_path / "wwwroot"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(app_dir)
    env = {"PATH": os.environ["PATH"], **bicep_app_settings()}
    env["DATABASE_URL"] = "postgresql://id-leadpush@127.0.0.1:9/leadpush?sslmode=require"

    # when: the worker would import function_app (-E: no PYTHONPATH, -s: no user site-packages)
    done = subprocess.run(
        [str(fresh_python), "-E", "-s", "-c", IMPORT_PROBE],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then: it imports and registers every function, from the package alone
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"receive_leads", "push_lead", "lead_status", "health", "replay_poison"} <= set(report["functions"])
    outside = {
        name: file
        for name, file in report["modules"].items()
        if file is not None and not Path(file).resolve().is_relative_to(app_dir.resolve())
    }
    assert outside == {}
    assert not [name for name in report["modules"] if name.split(".")[0] in ("local", "tests")]
