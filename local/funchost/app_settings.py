"""Binding values that name app settings: `%NAME%` expressions and `connection` settings."""
from __future__ import annotations

import re
from typing import Mapping

from shared.runtime.env import SettingsError
from shared.runtime.storage_settings import storage_from_env
from shared.storage.config import StorageConfig

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


def storage(setting_name: str | None, environ: Mapping[str, str]) -> StorageConfig:
    """The storage a binding's `connection` names, as the host reads it: a connection string in the
    setting, or an identity-based connection in `<setting>__*` settings. Raises AppSettingError."""
    name = setting_name or DEFAULT_STORAGE_SETTING
    try:
        return storage_from_env(environ, name)
    except SettingsError as exc:
        raise AppSettingError(f"a binding's storage connection {name!r}: " + "; ".join(exc.problems)) from exc
