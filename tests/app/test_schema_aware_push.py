"""Schema-aware mapping on real components: the org's metadata decides what is sent and how."""
from __future__ import annotations

import time

import pytest

from tests.app.helpers import forget, lead, sync_rows

POST_MVP = ("hnt_prioritycategory", "hnt_prioritylabel", "hnt_technicalheat", "hnt_commercialsegment",
            "hnt_commercialheat", "hnt_ispartnercenterreferral")


def option(emulator, column: str, label: str) -> int:
    for c in emulator.control("GET", "schema")["columns"]:
        if c["logical_name"] == column:
            return next(o["value"] for o in c["options"] if o["label"] == label)
    raise AssertionError(f"no column {column}")


def only_record(emulator) -> dict:
    records = emulator.leads()
    assert len(records) == 1
    return records[0]


def test_same_lead_syncs_in_an_org_without_and_an_org_with_the_post_mvp_columns(pipeline, dataverse, database_url):
    hunter_lead = lead(4001, referral_id="PC-77", referral_type="Partner Center")

    # an org without the six post-MVP columns
    mvp = dataverse("mvp")
    assert pipeline(mvp).push(hunter_lead).outcome == "created"
    record = only_record(mvp)
    assert not any(column in record for column in POST_MVP)
    assert sync_rows(database_url, [4001])[4001]["warnings"] == []

    # an org with them (a deployment of its own: the first org's sync state is not its business)
    forget(database_url, 4001)
    full = dataverse("full")
    assert pipeline(full).push(hunter_lead).outcome == "created"
    record = only_record(full)
    assert record["hnt_prioritycategory"] == option(full, "hnt_prioritycategory", "High")
    assert record["hnt_prioritylabel"] == "P1"
    assert record["hnt_technicalheat"] == option(full, "hnt_technicalheat", "Hot")
    assert record["hnt_commercialsegment"] == "Mid-Market"
    assert record["hnt_commercialheat"] == option(full, "hnt_commercialheat", "Warm")
    assert record["hnt_ispartnercenterreferral"] is True
    assert record["hnt_referraltype"] == option(full, "hnt_referraltype", "Partner Center")


def test_odd_values_never_block_a_lead_and_leave_warnings_on_its_row(pipeline, dataverse, database_url):
    emulator = dataverse("full")
    emulator.control("DELETE", "schema/columns/hnt_provider")  # a mapped column the org lacks
    p = pipeline(emulator)

    result = p.push(lead(4002, segment="Galactic", canonical_name="x" * 150))

    assert result.outcome == "created"
    record = only_record(emulator)
    assert "hnt_segment" not in record and "hnt_provider" not in record
    assert record["companyname"] == "x" * 100
    warnings = sync_rows(database_url, [4002])[4002]["warnings"]
    assert any(w.startswith("hnt_segment:") and "Galactic" in w for w in warnings)
    assert any(w.startswith("companyname:") for w in warnings)
    assert sync_rows(database_url, [4002])[4002]["status"] == "synced"


def test_choice_added_in_the_org_is_used_after_the_metadata_refresh(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator, D365_METADATA_TTL_SECONDS="1")
    p.push(lead(4003, segment="Enterprise"))
    assert "hnt_segment" not in only_record(emulator)
    loads = p.container.schema.loads

    emulator.control("POST", "schema/columns/hnt_segment/options", json={"value": 100000099, "label": "Enterprise"})
    time.sleep(1.2)
    p.push(lead(4003, segment="Enterprise", updated_at="2026-11-27T11:00:00Z"))

    assert only_record(emulator)["hnt_segment"] == 100000099
    assert p.container.schema.loads == loads + 1
    assert sync_rows(database_url, [4003])[4003]["warnings"] == []


def test_column_dropped_by_the_org_between_refreshes_is_left_out_on_the_retry(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    p.container.schema.get()  # cached while the org still has the column
    emulator.control("DELETE", "schema/columns/hnt_provider")

    first = p.push(lead(4004))
    second = p.push(lead(4004), dequeue_count=2)

    assert first.action.value == "retry"  # Dataverse rejected the column; the metadata is read again
    assert second.outcome == "created"
    assert "hnt_provider" not in only_record(emulator)


def test_choice_overrides_map_hunter_words_to_the_orgs_labels(pipeline, dataverse, tmp_path):
    emulator = dataverse("mvp")
    overrides = tmp_path / "choices.json"
    overrides.write_text('{"hnt_segment": {"Existing": "Partner"}, "hnt_source": {"Manual": 100000002}}')
    p = pipeline(emulator, D365_CHOICE_OVERRIDES_FILE=str(overrides))

    p.push(lead(4005))

    record = only_record(emulator)
    assert record["hnt_segment"] == option(emulator, "hnt_segment", "Partner")
    assert record["hnt_source"] == 100000002


def test_a_bad_overrides_file_stops_start_up(app_env, dataverse, tmp_path):
    from d365.mapping import ChoiceOverridesError
    from shared.runtime.container import Container
    from shared.runtime.settings import Settings

    overrides = tmp_path / "choices.json"
    overrides.write_text('{"hnt_nosuchcolumn": {"a": 1}}')
    settings = Settings.from_env(app_env(dataverse("mvp"), D365_CHOICE_OVERRIDES_FILE=str(overrides)))

    with pytest.raises(ChoiceOverridesError, match="hnt_nosuchcolumn"):
        Container(settings)
