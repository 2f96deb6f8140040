"""The unauthenticated control API under `/_emulator/`, used by tests, `make run` and the benchmark.

GET  leads | leads/<id> | stats | schema    DELETE faults | rules | schema/columns/<name>
POST reset | stats/reset | faults | rules | schema/columns | schema/columns/<name>/options | keys
POST errors ({"unknown_property": "0x80048d19" | "0x0"}: which form answers an unknown body property)
GET/POST bulk ({"supported": bool})   GET/POST/DELETE protection (protection.Limits as JSON)
GET/POST paging ({"max_page_size": 1..5000}: the server's largest page, 5000 unless lowered; reset restores it)

A person in the CRM (people.py; each answers the record(s) written, and bumps version and modifiedon):
POST   leads                  make a record as a salesperson would (checked like a Web API create, a new id)
PATCH  leads/<id>             edit columns as a Web API update body names them; "ownerid": <guid> assigns it
POST   leads/<id>/qualify     Qualified / Qualified (an open lead only)
POST   leads/<id>/disqualify  Disqualified, {"status": 4 | 5 | 6 | 7} (default 4 Lost)
POST   leads/<id>/reopen      Open / New
POST   leads/<id>/merge       {"into": <master id>}: answers {"subordinate": ..., "master": ...}
DELETE leads/<id>             delete it
A Dataverse error answers with its HTTP status and {"error": "<code>: <message>"}.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.emulators.dataverse import errors, people
from local.emulators.dataverse.bulk import BulkSupport
from local.emulators.dataverse.faults import FaultPlan
from local.emulators.dataverse.lifecycle import LOST
from local.emulators.dataverse.payload import parse_values
from local.emulators.dataverse.protection import Limits, ServiceProtection
from local.emulators.dataverse.queryoptions import PageLimit
from local.emulators.dataverse.schema import CREATABLE_TYPES, PRIMARY_KEY, AttributeType, Column, Option, Schema
from local.emulators.dataverse.stats import Stats
from local.emulators.dataverse.store import LeadStore, Rule, SchemaChangeError

_DEFAULT_MAX_LENGTHS = {AttributeType.STRING: 100, AttributeType.MEMO: 2000}


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Emulator:
    """The state the control API reaches."""

    store: LeadStore
    faults: FaultPlan
    stats: Stats
    bulk_support: BulkSupport
    protection: ServiceProtection
    page_limit: PageLimit


def handle(emulator: Emulator, method: str, path: str, body: Any) -> tuple[int, Any]:
    """Answer `method path` (relative to /_emulator/) with `(status, json payload or None)`."""
    parts = [p for p in path.split("/") if p]
    try:
        route = _route(method, parts)
        if route is None:
            raise ControlError(404, f"no control route {method} /_emulator/{path}")
        return route(emulator, parts, body)
    except (ControlError, SchemaChangeError) as error:
        return error.status, {"error": str(error)}
    except errors.ODataError as error:
        return error.status, {"error": f"{error.code}: {error.message}"}
    except (ValueError, TypeError, KeyError) as error:
        return 400, {"error": f"bad request: {error}"}


def _route(method: str, parts: list[str]) -> Callable[[Emulator, list[str], Any], tuple[int, Any]] | None:
    shape = tuple("*" if i > 0 and parts[i - 1] in ("leads", "columns") else p for i, p in enumerate(parts))
    return _ROUTES.get((method, shape))


def _leads(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, {"value": emulator.store.records()}


def _create_lead(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    values = parse_values(emulator.store.schema, _object(body), creating=True)
    values[PRIMARY_KEY] = emulator.store.new_id()
    return 201, emulator.store.create(values)


def _lead(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    record = emulator.store.by_id.get(parts[1].lower())
    if record is None:
        raise ControlError(404, f"no lead {parts[1]}")
    return 200, dict(record)


def _edit_lead(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, people.edit(emulator.store, parts[1].lower(), _object(body))


def _qualify(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, people.qualify(emulator.store, parts[1].lower())


def _disqualify(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    status = _object(body or {}).get("status", LOST)
    if not isinstance(status, int) or isinstance(status, bool):
        raise ControlError(400, "status must be a whole number (a Disqualified status reason, 4 to 7)")
    return 200, people.disqualify(emulator.store, parts[1].lower(), status)


def _reopen(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, people.reopen(emulator.store, parts[1].lower())


def _merge(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    subordinate, master = people.merge(emulator.store, parts[1].lower(), str(_object(body)["into"]).lower())
    return 200, {"subordinate": subordinate, "master": master}


def _paging(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, {"max_page_size": emulator.page_limit.size}


def _set_paging(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.page_limit.set(_object(body)["max_page_size"])
    return _paging(emulator, parts, body)


def _set_error_forms(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    errors.set_unknown_property_form(str(_object(body)["unknown_property"]))
    return 200, {"unknown_property": errors.unknown_property_form()}


def _delete_lead(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    if not emulator.store.delete_by_id(parts[1].lower()):
        raise ControlError(404, f"no lead {parts[1]}")
    return 204, None


def _stats(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, emulator.stats.snapshot()


def _reset_stats(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.stats.reset()
    return 204, None


def _reset(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.store.reset()
    emulator.stats.reset()
    emulator.faults.clear()
    emulator.bulk_support.reset()
    emulator.protection.reset()
    emulator.page_limit.reset()
    errors.set_unknown_property_form(errors.PAYLOAD_ERROR)
    return 204, None


def _set_faults(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.faults.configure(_object(body))
    return 200, emulator.faults.describe()


def _clear_faults(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.faults.clear()
    return 204, None


def _bulk(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, {"supported": emulator.bulk_support.supported}


def _set_bulk(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    supported = _object(body)["supported"]
    if not isinstance(supported, bool):
        raise ControlError(400, "supported must be true or false")
    emulator.bulk_support.supported = supported
    return _bulk(emulator, parts, body)


def _protection(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, emulator.protection.describe()


def _set_protection(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.protection.configure(Limits.from_dict(_object(body)))
    return _protection(emulator, parts, body)


def _clear_protection(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.protection.configure(Limits())
    return 204, None


def _add_rule(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    spec = _object(body)
    rule = Rule(
        column=str(spec["column"]),
        equals=spec["equals"],
        status=int(spec.get("status", 400)),
        code=str(spec.get("code", "0x80040265")),
        message=str(spec.get("message", "Plug-in rejected the record")),
    )
    emulator.store.add_rule(rule)
    return 201, {"rules": [r.__dict__ for r in emulator.store.rules()]}


def _clear_rules(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.store.clear_rules()
    return 204, None


def describe_schema(schema: Schema) -> dict:
    return {
        "columns": [
            {
                "logical_name": c.logical_name,
                "attribute_type": c.attribute_type.value,
                "max_length": c.max_length,
                "options": [{"value": o.value, "label": o.label} for o in c.options],
            }
            for c in schema.columns.values()
        ],
        "keys": [{"name": k.name, "columns": list(k.columns), "status": k.status.value} for k in schema.keys.values()],
    }


def _schema(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    return 200, describe_schema(emulator.store.schema)


def _add_column(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    spec = _object(body)
    kind = AttributeType(spec["attribute_type"])
    if kind not in CREATABLE_TYPES:
        raise ControlError(400, f"attribute_type must be one of {', '.join(t.value for t in CREATABLE_TYPES)}")
    name = str(spec["logical_name"])
    options = tuple(_option(o) for o in spec.get("options", []))
    if kind is not AttributeType.PICKLIST and options:
        raise ControlError(400, "only Picklist columns take options")
    max_length = spec.get("max_length", _DEFAULT_MAX_LENGTHS.get(kind))
    column = Column(
        name,
        kind,
        str(spec.get("display_name") or name),
        max_length=int(max_length) if kind in _DEFAULT_MAX_LENGTHS else None,
        options=options,
        is_custom=True,
    )
    emulator.store.add_column(column)
    return 201, describe_schema(emulator.store.schema)


def _remove_column(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.store.remove_column(parts[2])
    return 204, None


def _add_option(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    emulator.store.add_option(parts[2], _option(_object(body)))
    return 201, describe_schema(emulator.store.schema)


def _add_key(emulator: Emulator, parts: list[str], body: Any) -> tuple[int, Any]:
    spec = _object(body)
    columns = spec["columns"]
    if not isinstance(columns, list):
        raise ControlError(400, "columns must be a list of column names")
    key = emulator.store.add_key(str(spec["name"]), tuple(str(c) for c in columns))
    return 201, {"name": key.name, "columns": list(key.columns), "status": key.status.value}


def _option(spec: Any) -> Option:
    spec = _object(spec)
    value = spec["value"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(400, "an option value must be an integer")
    return Option(value, str(spec["label"]))


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


_ROUTES: dict[tuple[str, tuple[str, ...]], Callable[[Emulator, list[str], Any], tuple[int, Any]]] = {
    ("GET", ("leads",)): _leads,
    ("POST", ("leads",)): _create_lead,
    ("GET", ("leads", "*")): _lead,
    ("PATCH", ("leads", "*")): _edit_lead,
    ("DELETE", ("leads", "*")): _delete_lead,
    ("POST", ("leads", "*", "qualify")): _qualify,
    ("POST", ("leads", "*", "disqualify")): _disqualify,
    ("POST", ("leads", "*", "reopen")): _reopen,
    ("POST", ("leads", "*", "merge")): _merge,
    ("GET", ("paging",)): _paging,
    ("POST", ("paging",)): _set_paging,
    ("POST", ("errors",)): _set_error_forms,
    ("GET", ("stats",)): _stats,
    ("POST", ("stats", "reset")): _reset_stats,
    ("POST", ("reset",)): _reset,
    ("POST", ("faults",)): _set_faults,
    ("DELETE", ("faults",)): _clear_faults,
    ("POST", ("rules",)): _add_rule,
    ("DELETE", ("rules",)): _clear_rules,
    ("GET", ("schema",)): _schema,
    ("POST", ("schema", "columns")): _add_column,
    ("DELETE", ("schema", "columns", "*")): _remove_column,
    ("POST", ("schema", "columns", "*", "options")): _add_option,
    ("POST", ("keys",)): _add_key,
    ("GET", ("bulk",)): _bulk,
    ("POST", ("bulk",)): _set_bulk,
    ("GET", ("protection",)): _protection,
    ("POST", ("protection",)): _set_protection,
    ("DELETE", ("protection",)): _clear_protection,
}
