"""JSON responses for the HTTP triggers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import azure.functions as func


def json_response(status: int, body: Any, *, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=_jsonable, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def unavailable(what: str) -> func.HttpResponse:
    """503 for a dependency that is down: the caller should retry; nothing was lost."""
    return json_response(
        503,
        {
            "error": "Service Unavailable",
            "problems": [{"field": what, "reason": "temporarily unavailable, retry later"}],
        },
        headers={"Retry-After": "10"},
    )


def unresolved_setting(name: str) -> func.HttpResponse:
    """503 while a setting's Key Vault reference is unresolved: nothing was accepted; retry after the fix."""
    return json_response(
        503,
        {
            "error": "Service Unavailable",
            "problems": [{"field": name, "reason": "unresolved Key Vault reference; retry later"}],
        },
        headers={"Retry-After": "60"},
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
