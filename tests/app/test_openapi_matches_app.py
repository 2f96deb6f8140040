"""openapi.yaml describes exactly the HTTP routes function_app.py registers, with their auth."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import azure.functions as func
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_every_http_function_is_described_with_its_methods_and_auth(monkeypatch):
    for name, value in {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "DATABASE_URL": "postgresql://x",
                        "D365_URL": "https://contoso.crm.dynamics.com", "HUNTER_WEBHOOK_SECRET": "s"}.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("function_app", None)
    app = importlib.import_module("function_app").app
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text())

    registered = {}
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger.type != "httpTrigger":
            continue
        path = "/api/" + re.sub(r"\{(\w+):\w+\}", r"{\1}", trigger.route)
        for method in trigger.methods:
            method = method.value if hasattr(method, "value") else str(method)
            registered[(path, method.lower())] = trigger.auth_level

    described = {(path, method): operation for path, item in spec["paths"].items()
                 for method, operation in item.items() if method in ("get", "post", "put", "patch", "delete")}
    assert set(described) == set(registered)
    for key, auth_level in registered.items():
        security = described[key].get("security", spec["security"])
        if auth_level == func.AuthLevel.ANONYMOUS:
            assert security == [], key
        elif auth_level == func.AuthLevel.ADMIN:
            assert {next(iter(s)) for s in security} <= {"masterKey", "masterKeyQuery"}, key
        else:
            assert {next(iter(s)) for s in security} <= {"functionKey", "functionKeyQuery"}, key
    sys.modules.pop("function_app", None)
