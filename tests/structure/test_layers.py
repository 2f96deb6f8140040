"""The tree shows the layers, and imports follow them.

Inside shared/, each subpackage has a rank; a module imports its own subpackage or ranks below it,
never a sibling of its rank or anything above:

    observability            logging, redaction, telemetry names: used by every layer
    model, intake            value types, outcomes, errors, ports; the webhook's input rules
    writes                   Dataverse write rules (matching, single and bulk writers)
    usecases | postgres | storage    the use cases, and the adapters behind the ports (siblings)
    runtime                  settings, the container, command-line entry points

d365/ knows nothing of shared/, blueprints/ or the Functions host; nothing in the app imports the
local tools; and no two modules import each other, directly or around a cycle.
"""
from __future__ import annotations

import pytest

from tests.structure.app_modules import Module, app_modules, module_names

RANKS = {
    "shared.observability": 0,
    "shared.model": 1,
    "shared.intake": 1,
    "shared.writes": 2,
    "shared.usecases": 3,
    "shared.postgres": 3,
    "shared.storage": 3,
    "shared.runtime": 4,
}
DRIVER_FREE = ("shared.model", "shared.intake", "shared.writes", "shared.usecases")
ONLY_IN = {"psycopg2": "shared.postgres", "azure.storage": "shared.storage"}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer(name: str) -> str | None:
    return next((package for package in RANKS if _within(name, package)), None)


def _app_imports(module: Module) -> set[str]:
    """The app modules `module` imports (a `from package import name` counts the package's module)."""
    known = module_names()
    return {name for name in module.imports if name in known and name != module.name}


MODULES = app_modules()


def test_every_module_of_shared_is_in_a_layer() -> None:
    unplaced = [m.name for m in MODULES if m.name.startswith("shared.") and _layer(m.name) is None]
    assert unplaced == []


@pytest.mark.parametrize("module", [m for m in MODULES if _layer(m.name)], ids=lambda m: m.name)
def test_a_layer_imports_only_itself_and_the_layers_below(module: Module) -> None:
    own = _layer(module.name)
    assert own is not None
    upward = [
        name for name in _app_imports(module)
        if (layer := _layer(name)) is not None and layer != own and RANKS[layer] >= RANKS[own]
    ]
    assert upward == [], f"{module.name} ({own}) imports {upward}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.name.startswith(DRIVER_FREE)], ids=lambda m: m.name)
def test_the_model_and_the_use_cases_import_no_driver_and_no_azure_sdk(module: Module) -> None:
    drivers = sorted(name for name in module.imports if name.split(".")[0] in ("psycopg2", "azure"))
    assert drivers == []


@pytest.mark.parametrize("driver", list(ONLY_IN))
def test_each_driver_is_imported_in_one_subpackage_only(driver: str) -> None:
    importers = sorted(m.name for m in MODULES if any(_within(name, driver) for name in m.imports))
    assert importers, f"nothing imports {driver}: the rule checks nothing"
    assert [name for name in importers if not _within(name, ONLY_IN[driver])] == []


def test_d365_knows_nothing_of_the_app_around_it() -> None:
    # azure.identity and azure.core are how d365 signs in; the Functions and Storage SDKs are not among them.
    allowed = ("azure.identity", "azure.core")
    found = sorted((m.name, name) for m in MODULES if m.name.startswith("d365") for name in m.imports
                   if name.split(".")[0] in ("shared", "blueprints", "function_app", "local", "azure")
                   and not name.startswith(allowed))
    assert found == []


def test_the_app_never_imports_the_local_tools_or_the_tests() -> None:
    assert [m.name for m in MODULES if any(n.split(".")[0] in ("local", "tests") for n in m.imports)] == []


def test_only_the_triggers_know_azure_functions() -> None:
    knowing = sorted(m.name for m in MODULES if any(_within(n, "azure.functions") for n in m.imports))
    assert knowing and all(name == "function_app" or name.startswith("blueprints") for name in knowing)


def test_no_import_cycle() -> None:
    graph = {m.name: _app_imports(m) for m in MODULES}
    # A package's __init__ re-exporting its modules is not a cycle of design.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not _within(t, name) and not _within(name, t)}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            raise AssertionError("import cycle: " + " -> ".join([*visiting[visiting.index(name):], name]))
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph.get(name, ())):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
