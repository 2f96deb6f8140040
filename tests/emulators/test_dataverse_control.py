"""The control API: records, stats, reset, schema changes and keys."""
from __future__ import annotations

from tests.emulators.conftest import Api, error_of


def test_stats_count_requests_by_kind_and_status(api: Api) -> None:
    lead_id = api.create(subject="s")
    api.get(f"leads({lead_id})")
    api.patch(f"leads({lead_id})", json={"subject": "t"})
    api.get("leads")
    api.get("WhoAmI")
    api.get("EntityDefinitions(LogicalName='lead')")
    api.delete(f"leads({lead_id})")
    api.get("Leads")

    stats = api.control("GET", "stats").json()

    assert stats["requests"] == 8
    assert stats["by_kind"] == {"GET leads": 1, "GET lead": 1, "PATCH lead": 1, "POST leads": 1,
                                "DELETE lead": 1, "metadata": 1, "whoami": 1, "other": 1}
    assert stats["status_counts"] == {"204": 3, "200": 4, "404": 1}
    assert api.control("POST", "stats/reset").status_code == 204
    assert api.control("GET", "stats").json()["requests"] == 0


def test_reset_clears_records_rules_faults_and_schema(api: Api) -> None:
    api.create(subject="s")
    api.control("POST", "rules", {"column": "subject", "equals": "x", "status": 400, "code": "0x1", "message": "m"})
    api.control("POST", "schema/columns", {"logical_name": "hnt_extra", "attribute_type": "String"})
    api.control("POST", "faults", {"script": [{"status": 503}]})

    assert api.control("POST", "reset").status_code == 204

    assert api.records() == []
    assert "hnt_extra" not in {c["logical_name"] for c in api.control("GET", "schema").json()["columns"]}
    assert api.post("leads", json={"subject": "x"}).status_code == 204


def test_delete_a_lead_through_the_control_api(api: Api) -> None:
    lead_id = api.create(subject="s")

    assert api.control("DELETE", f"leads/{lead_id}").status_code == 204
    assert api.control("DELETE", f"leads/{lead_id}").status_code == 404
    assert error_of(api.get(f"leads({lead_id})"))[0] == 404


def test_added_columns_are_validated_and_removed_columns_refused(api: Api) -> None:
    created = api.control("POST", "schema/columns", {"logical_name": "hnt_note", "attribute_type": "String",
                                                     "max_length": 5})
    assert created.status_code == 201

    assert api.post("leads", json={"hnt_note": "12345"}).status_code == 204
    assert error_of(api.post("leads", json={"hnt_note": "123456"}))[:2] == (400, "0x80044331")

    assert api.control("DELETE", "schema/columns/hnt_note").status_code == 204
    assert error_of(api.post("leads", json={"hnt_note": "1"}))[:2] == (400, "0x80048d19")
    assert all("hnt_note" not in r for r in api.records())


def test_an_added_option_becomes_valid(api: Api) -> None:
    assert error_of(api.post("leads", json={"hnt_segment": 100000004}))[:2] == (400, "0x8004431A")

    added = api.control("POST", "schema/columns/hnt_segment/options", {"value": 100000004, "label": "Startup"})

    assert added.status_code == 201
    assert api.post("leads", json={"hnt_segment": 100000004}).status_code == 204


def test_schema_change_errors(api: Api) -> None:
    assert api.control("POST", "schema/columns", {"logical_name": "subject", "attribute_type": "String"}).status_code == 409
    assert api.control("POST", "schema/columns", {"logical_name": "x", "attribute_type": "Lookup"}).status_code == 400
    assert api.control("DELETE", "schema/columns/leadid").status_code == 400
    assert api.control("DELETE", "schema/columns/hnt_domain").status_code == 409
    assert api.control("DELETE", "schema/columns/nope").status_code == 404
    assert api.control("POST", "schema/columns/subject/options", {"value": 1, "label": "x"}).status_code == 400
    assert api.control("POST", "keys", {"name": "k", "columns": ["description"]}).status_code == 400
    assert api.control("GET", "nothing").status_code == 404


def test_a_key_over_clashing_records_fails_to_activate(api: Api) -> None:
    api.create(emailaddress1="same@x.com")
    api.create(emailaddress1="SAME@x.com")

    key = api.control("POST", "keys", {"name": "email_key", "columns": ["emailaddress1"]}).json()

    assert key["status"] == "Failed"
    assert error_of(api.patch("leads(emailaddress1='same@x.com')", json={}))[:2] == (400, "0x80060890")


def test_schema_lists_columns_and_keys(api: Api) -> None:
    schema = api.control("GET", "schema").json()

    columns = {c["logical_name"]: c for c in schema["columns"]}
    assert columns["subject"] == {"logical_name": "subject", "attribute_type": "String", "max_length": 300,
                                  "options": []}
    assert columns["hnt_commercialheat"]["options"][0] == {"value": 100000000, "label": "Hot"}
    assert schema["keys"] == [{"name": "hnt_domain_key", "columns": ["hnt_domain"], "status": "Active"}]
