"""Binding values that name app settings: `%NAME%` expressions and `connection` settings."""
from __future__ import annotations

import re
from typing import Mapping

DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"

_EXPRESSION = re.compile(r"%([^%]+)%")


class AppSettingError(Exception):
    """A binding refers to an app setting that is not set."""


def resolve(value: str, environ: Mapping[str, str]) -> str:
    """Replace each `%NAME%` in a binding value with the app setting NAME. Raises AppSettingError."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise AppSettingError(f"app setting {name!r} (used as %{name}% in a binding) is not set")
        return environ[name]

    return _EXPRESSION.sub(setting, value)


def connection_string(setting_name: str | None, environ: Mapping[str, str]) -> str:
    """The storage connection string held by a binding's `connection` setting. Raises AppSettingError."""
    name = setting_name or DEFAULT_STORAGE_SETTING
    value = environ.get(name)
    if not value:
        raise AppSettingError(f"app setting {name!r} (a binding's storage connection) is not set")
    return value
