"""openapi.yaml is written by hand; these tests keep it in step with the code that enforces it."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.intake import LEAD_FIELDS, MAX_LEADS, DeliveryConflict, IntakeError, Problem, parse_leads
from shared.intake.signature import MAX_DELIVERY_ID_CHARS

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = spec["components"][section][name]
    return node


def test_is_openapi_3_0_3_with_the_routes(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.0.3"
    assert {path: sorted(operations) for path, operations in spec["paths"].items()} == {
        "/api/leads": ["post"],
        "/api/leads/{company_id}": ["get"],
        "/api/health": ["get"],
        "/api/manage/replay": ["post"],
        "/api/openapi.yaml": ["get"],
    }


def test_lead_fields_and_required_match_the_validation_table(spec: dict[str, Any]) -> None:
    lead = spec["components"]["schemas"]["Lead"]

    assert list(lead["properties"]) == list(LEAD_FIELDS)
    assert lead["required"] == [name for name, field in LEAD_FIELDS.items() if field.required]


@pytest.mark.parametrize("name", list(LEAD_FIELDS))
def test_lead_field_constraints_match_its_validator(spec: dict[str, Any], name: str) -> None:
    documented = spec["components"]["schemas"]["Lead"]["properties"][name]
    field = LEAD_FIELDS[name]

    enforced = field.validate.schema()

    assert {key: documented.get(key) for key in enforced} == enforced
    assert documented.get("nullable", False) is (not field.required)


def test_batch_size_matches_max_leads(spec: dict[str, Any]) -> None:
    leads = spec["components"]["schemas"]["LeadBatch"]["properties"]["leads"]

    assert (leads["minItems"], leads["maxItems"]) == (1, MAX_LEADS)


def test_intake_headers_match_the_code(spec: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in spec["paths"]["/api/leads"]["post"]["parameters"]}

    assert {name: p["required"] for name, p in parameters.items()} == {
        "X-Hunter-Signature": True,
        "X-Hunter-Timestamp": False,
        "X-Hunter-Delivery": False,
    }
    assert parameters["X-Hunter-Delivery"]["schema"]["maxLength"] == MAX_DELIVERY_ID_CHARS


@pytest.mark.parametrize("status", ["400", "401", "409", "413", "415"])
def test_refusals_document_the_body_intake_error_produces(spec: dict[str, Any], status: str) -> None:
    response = resolve(spec, spec["paths"]["/api/leads"]["post"]["responses"][status])
    schema = resolve(spec, response["content"]["application/json"]["schema"])
    problem = resolve(spec, schema["properties"]["problems"]["items"])

    body = IntakeError(int(status), [Problem("domain", "must not contain a port")]).response_body()

    assert set(schema["required"]) == set(body)
    assert set(problem["required"]) == set(body["problems"][0])


def test_delivery_conflict_is_a_documented_refusal(spec: dict[str, Any]) -> None:
    responses = spec["paths"]["/api/leads"]["post"]["responses"]

    conflict = DeliveryConflict()

    assert str(conflict.status) in responses
    assert [p.field for p in conflict.problems] == ["X-Hunter-Delivery"]


def test_example_lead_is_complete_and_valid(spec: dict[str, Any]) -> None:
    example = spec["components"]["schemas"]["Lead"]["example"]

    [lead] = parse_leads(json.dumps(example).encode(), "application/json", now=datetime.now(timezone.utc))

    assert list(example) == list(lead) == list(LEAD_FIELDS)
