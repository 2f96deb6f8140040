"""HTTP route templates (`leads/{company_id}`, `leads/{id:int}`, `files/{*rest}`) matched like ASP.NET.

Matching is case-insensitive and ignores a trailing slash. Among routes that match a path, the
one with fewer parameters wins, so `leads/export` beats `leads/{id}`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "float": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}
_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}")


class RouteTemplateError(ValueError):
    """A route template uses syntax this host does not understand."""


@dataclass(frozen=True)
class Route(Generic[T]):
    template: str
    pattern: re.Pattern[str]
    parameter_count: int
    methods: frozenset[str] | None  # None: every method
    target: T


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    target: T
    route_params: dict[str, str]


class MethodNotAllowed(Exception):
    """A route matches the path but not the method; `allowed` lists the methods it takes."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def compile_route(template: str, methods: Iterable[str] | None, target: T) -> Route[T]:
    """Compile a route template. Raises RouteTemplateError for an unknown constraint."""
    parts: list[str] = []
    position = 0
    count = 0
    template = template.strip("/")
    for match in _PARAMETER.finditer(template):
        catch_all, name, constraint, optional = match.groups()
        if constraint and constraint not in _CONSTRAINTS:
            raise RouteTemplateError(f"route {template!r}: unknown constraint {constraint!r}")
        literal = template[position:match.start()]
        value = ".*" if catch_all else _CONSTRAINTS.get(constraint or "", "[^/]+")
        group = f"(?P<{name}>{value})"
        if optional or catch_all:
            # An optional last segment may be left out along with its slash.
            if literal.endswith("/"):
                parts.append(re.escape(literal[:-1]) + f"(?:/{group})?")
            else:
                parts.append(re.escape(literal) + f"{group}?")
        else:
            parts.append(re.escape(literal) + group)
        position = match.end()
        count += 1
    parts.append(re.escape(template[position:]))
    pattern = re.compile("".join(parts), re.IGNORECASE)
    allowed = None if methods is None else frozenset(m.upper() for m in methods)
    return Route(template=template, pattern=pattern, parameter_count=count, methods=allowed, target=target)


def match_route(routes: Iterable[Route[T]], path: str, method: str) -> RouteMatch[T] | None:
    """The best route for `path` (as sent, without prefix and query) and `method`, or None.

    Raises MethodNotAllowed when only routes for other methods match the path.
    """
    path = path.strip("/")
    allowed: set[str] = set()
    for route in sorted(routes, key=lambda r: r.parameter_count):
        found = route.pattern.fullmatch(path)
        if not found:
            continue
        if route.methods is not None and method.upper() not in route.methods:
            allowed |= route.methods
            continue
        params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
        return RouteMatch(target=route.target, route_params=params)
    if allowed:
        raise MethodNotAllowed(sorted(allowed))
    return None
