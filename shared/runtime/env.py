"""Typed reading of app settings that collects every problem, so one error names them all.

A setting whose value is a Key Vault reference (`@Microsoft.KeyVault(...)`) reached the app unresolved:
App Service passes the reference's own text when it cannot read the secret (the identity's role still
propagating, a wrong URI, the vault out of reach). Such a value is never used: it reads as missing, and the
reader remembers the setting's name (`unresolved`) so start-up, health and the webhook can say which.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

_E = TypeVar("_E", bound=Enum)
_COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_KEY_VAULT_REFERENCE = "@microsoft.keyvault("


def is_key_vault_reference(value: str) -> bool:
    """`value` is a Key Vault reference's text (case and surrounding whitespace aside)."""
    return value.strip().lower().startswith(_KEY_VAULT_REFERENCE)


def unresolved_problem(name: str) -> str:
    return (
        f"{name} holds an unresolved Key Vault reference: the platform could not read the secret (the app "
        "identity's Key Vault role, the secret URI, the vault's network access), so it is treated as missing; "
        "fix the cause and restart the app"
    )


class SettingsError(Exception):
    """One or more settings are missing or malformed; the message names all of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class EnvReader:
    """Reads typed values from an environment mapping, collecting every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.unresolved: set[str] = set()  # settings read whose value is an unresolved Key Vault reference

    def raise_if_problems(self) -> None:
        if self.problems:
            # a setting reported missing (in whatever words) because its reference did not resolve says so
            reasons = [unresolved_problem(n) for n in sorted(self.unresolved) if any(n in p for p in self.problems)]
            raise SettingsError(self.problems + reasons)

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is not None and is_key_vault_reference(value):
            self.unresolved.add(name)
            return None
        return value

    def _get(self, name: str) -> str | None:
        value = self._raw(name)
        return value.strip() if value and value.strip() else None

    def optional(self, name: str, default: str | None = None) -> str | None:
        return self._get(name) or default

    def required(self, name: str, meaning: str) -> str:
        value = self._get(name)
        if value is None:
            self.problems.append(f"{name} is missing: {meaning}")
            return ""
        return value

    def url(self, name: str, meaning: str, *, default: str | None = None) -> str:
        value = self._get(name) or default
        if value is None:
            self.problems.append(f"{name} is missing: {meaning}")
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{name} must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def choice(self, name: str, enum: type[_E], default: _E) -> _E:
        value = self._get(name)
        if value is None:
            return default
        try:
            return enum(value.lower())
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            self.problems.append(f"{name} must be one of {allowed}, got {value!r}")
            return default

    def number(self, name: str, default, kind):
        value = self._get(name)
        if value is None:
            return default
        try:
            number = kind(value)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {value!r}")
            return default
        if number < 0:
            self.problems.append(f"{name} must not be negative, got {value!r}")
        return number

    def flag(self, name: str) -> bool:
        value = (self._get(name) or "").lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self.problems.append(f"{name} must be true or false, got {value!r}")
        return False

    def column(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and not _COLUMN_NAME.match(value):
            self.problems.append(f"{name} must be a Dataverse column logical name, got {value!r}")
        return value

    def columns(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None:
            return default
        if value.strip().lower() in ("", "none", "off"):
            return ()
        names = tuple(part.strip() for part in value.split(",") if part.strip())
        for column in names:
            if not _COLUMN_NAME.match(column):
                self.problems.append(f"{name} must list column logical names, got {column!r}")
        return names

    def existing_file(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and not Path(value).is_file():
            self.problems.append(f"{name} names a file that does not exist: {value!r}")
        return value
