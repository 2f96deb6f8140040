"""The log filter that turns a record's event name and `extra` fields into dimensions."""

from __future__ import annotations

import logging

import pytest

from shared.observability.telemetry import LogDimensions


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("shared.usecases.push", logging.INFO, __file__, 1, msg, args or None, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


@pytest.mark.parametrize(
    ("msg", "args", "event"),
    [
        ("d365_push_success company_id=%s", (86,), "d365_push_success"),
        ("%s company_id=%s status=%s", ("d365_push_failed", 86, 400), "d365_push_failed"),
        ("webhook_unavailable: %s", ("down",), "webhook_unavailable"),
        ("host started: 8 function(s)", (), None),  # not an event name: no dimension
        ("Executed 'Functions.push_lead'", (), None),
    ],
)
def test_event_is_the_messages_first_word_when_it_is_an_event_name(msg, args, event):
    record = _record(msg, *args)

    assert LogDimensions().filter(record) is True
    assert getattr(record, "event", None) == event


def test_extra_values_become_attribute_types_and_stay_masked():
    record = _record(
        "d365_push_failed company_id=%s",
        86,
        company_id=86,
        duration_ms=12.5,
        outcome="failed",
        retry_after=None,
        warnings=["a", "b"],
        details={"contact": "it@company86.example", "status": 400},
        when=object,
    )

    LogDimensions().filter(record)

    assert (record.company_id, record.duration_ms, record.outcome, record.retry_after) == (86, 12.5, "failed", None)
    assert record.warnings == ["a", "b"]
    assert isinstance(record.details, str) and '"status": 400' in record.details
    assert "it@company86.example" not in record.details  # a value turned into text is redacted like the rest
    assert record.when == str(object)


def test_an_explicit_event_is_kept():
    record = _record("d365_push_success", event="custom_name")

    LogDimensions().filter(record)

    assert record.event == "custom_name"
