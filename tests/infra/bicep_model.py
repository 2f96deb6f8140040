"""Reading infra/*.bicep as data, for the infrastructure tests.

`pycep` (pycep-parser) turns a Bicep file into JSON without the Bicep CLI. Its output does not tell a string
literal from a symbol name (both are plain strings), so `Template.resolve` treats a string as a symbol when the
file declares one by that name, and substitutes `${...}` interpolations the same way. Expressions it cannot
evaluate (a resource's runtime properties) become `<symbol.path>` placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """The parsed template; raises on a syntax error."""
    return BicepParser().parse(file_path=path)


def load(relative: str, params: Mapping[str, Any] | None = None) -> Template:
    path = INFRA / relative
    return Template(path, parse(path), dict(params or {}))


def unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, whether or not it has an `if (...)` condition."""
    if "condition" in config and isinstance(config.get("config"), dict):
        return config["config"]
    return config


@dataclass
class Template:
    path: Path
    tree: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("resources") or {}

    @property
    def modules(self) -> dict[str, dict[str, Any]]:
        return self.tree.get("modules") or {}

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Declared (not `existing`) resources of one type, by symbol, with their unwrapped bodies."""
        return {
            symbol: unwrap(resource["config"])
            for symbol, resource in self.resources.items()
            if resource["type"].lower() == resource_type.lower() and not resource.get("existing")
        }

    def variable(self, name: str) -> Any:
        return self.tree["variables"][name]["value"]

    def resolve(self, value: Any) -> Any:
        """Evaluate `value` as far as the template's own parameters and variables allow."""
        if isinstance(value, str):
            if self._is_symbol(value):
                return self._symbol(value)
            return _INTERPOLATION.sub(lambda m: str(self.resolve_expression(m.group(1).strip())), value)
        if isinstance(value, dict) and "operator" in value and value["operator"]["type"] == "property_accessor":
            return self.resolve_expression(_dotted(value))
        if isinstance(value, dict) and "function" in value:
            function = value["function"]
            arguments = [self.resolve(argument) for argument in function["parameters"].values()]
            if function["type"] == "string" and len(arguments) == 1:
                return str(arguments[0])
            return f"<{function['type']}()>"
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def resolve_expression(self, expression: str) -> Any:
        head, _, rest = expression.partition(".")
        if not rest:
            return self._symbol(head) if self._is_symbol(head) else f"<{expression}>"
        if head in self.resources and rest == "name":
            return self.resolve(unwrap(self.resources[head]["config"])["name"])
        return f"<{expression}>"

    def _is_symbol(self, name: str) -> bool:
        return name in (self.tree.get("parameters") or {}) or name in (self.tree.get("variables") or {})

    def _symbol(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        declared = (self.tree.get("parameters") or {}).get(name)
        if declared is not None:
            if "default" in declared:
                return self.resolve(declared["default"])
            return f"<{name}>"
        return self.resolve(self.variable(name))


def expression(value: Any) -> Any:
    """`a.b.c` for a property access, anything else unchanged (lists element-wise)."""
    if isinstance(value, list):
        return [expression(item) for item in value]
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        return _dotted(value)
    return value


def _dotted(value: Any) -> str:
    if isinstance(value, str):
        return value
    operands = value["operator"]["operands"]
    return f"{_dotted(operands['operand_1'])}.{_dotted(operands['operand_2'])}"
