"""Issue 8: a final failure stays visible, and the sweeper re-sends lost leads but not slow ones.

(a) an older or unchanged delivery after the newest version failed keeps `failed` and its reason;
(b) a newer version that fails permanently ends `failed`; (c) a lead left in `error` whose message
was lost is swept; (d) a lead whose message only waits behind a long queue is not re-sent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from shared.runtime.container import Container
from shared.model.messages import LeadMessage, LeadRef
from shared.runtime.settings import Settings
from shared.usecases.sweep import requeue_stuck_leads
from tests.app.helpers import attempts, lead, queue_length, sync_rows, wait_for
from tests.failure_modes.support import fresh, lead_status, plain_queue, post, wait_statuses

T1, T2, T3 = "2026-11-27T08:00:00Z", "2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z"


def _reject(emulator, score: int, message: str) -> None:
    """Dataverse refuses (400, a plug-in) any record written with this score."""
    emulator.control(
        "POST",
        "rules",
        json={"column": "hnt_finalscore", "equals": score, "status": 400, "code": "0x80040265", "message": message},
    )


def _handled(azurite, env: dict[str, str]) -> None:
    wait_for(lambda: queue_length(azurite, env["LEAD_QUEUE_NAME"]) == 0, what="the lead queue drained")


def test_an_older_or_unchanged_delivery_after_the_newest_failed_keeps_it_failed(
    app_env, dataverse, local_host, azurite, database_url
):
    c = 8600
    fresh(database_url, c)
    emulator = dataverse("mvp")
    env = app_env(emulator)
    host = local_host(env)
    assert post(host, lead(c, readiness_score=10, updated_at=T1)).status_code == 202
    wait_statuses(database_url, {c: "synced"})
    _reject(emulator, 77, "Plug-in rejected score 77")
    assert post(host, lead(c, readiness_score=77, updated_at=T2)).status_code == 202
    failed = wait_statuses(database_url, {c: "failed"})[c]
    assert "Plug-in rejected score 77" in failed["last_error"]

    # an older delivery: the first version's message, delivered late
    plain_queue(env, env["LEAD_QUEUE_NAME"]).send_message(
        LeadRef(c, datetime(2026, 11, 27, 8, tzinfo=UTC), "late-delivery").to_wire()
    )
    _handled(azurite, env)
    row = sync_rows(database_url, [c])[c]
    assert (row["status"], row["last_error"]) == ("failed", failed["last_error"]), (
        "an older delivery after the newest version failed must keep failed and last_error"
    )

    # an unchanged delivery: Hunter posts the failed version again
    assert post(host, lead(c, readiness_score=77, updated_at=T2)).status_code == 202
    row = sync_rows(database_url, [c])[c]
    assert (row["status"], row["last_error"]) == ("failed", failed["last_error"]), (
        "a re-post of the failed version must not turn the lead back to queued"
    )
    _handled(azurite, env)
    row = sync_rows(database_url, [c])[c]
    assert (row["status"], row["last_error"]) == ("failed", failed["last_error"])
    assert lead_status(host, c)["status"] == "failed"
    assert [r["hnt_finalscore"] for r in emulator.leads()] == [10], "Dataverse keeps the last version it took"
    assert [a["outcome"] for a in attempts(database_url, c)] == ["created", "failed", "skipped", "skipped"], (
        "both later deliveries were handled, and skipped"
    )


@pytest.mark.parametrize("before", ["synced", "failed"])
def test_a_newer_version_that_fails_permanently_ends_failed(
    app_env, dataverse, local_host, azurite, database_url, before
):
    c = 8610 if before == "synced" else 8611
    fresh(database_url, c)
    emulator = dataverse("mvp")
    env = app_env(emulator)
    host = local_host(env)
    if before == "failed":
        _reject(emulator, 10, "Plug-in rejected score 10")
    assert post(host, lead(c, readiness_score=10, updated_at=T1)).status_code == 202
    wait_statuses(database_url, {c: before})

    _reject(emulator, 77, "Plug-in rejected score 77")
    assert post(host, lead(c, readiness_score=77, updated_at=T3)).status_code == 202

    row = wait_statuses(database_url, {c: "failed"})[c]
    wait_for(
        lambda: "score 77" in (sync_rows(database_url, [c])[c]["last_error"] or ""), what="the newer version's reason"
    )
    _handled(azurite, env)
    row = sync_rows(database_url, [c])[c]
    assert row["status"] == "failed" and "Plug-in rejected score 77" in row["last_error"]
    assert attempts(database_url, c)[-1]["outcome"] == "failed"
    shown = lead_status(host, c)
    assert shown["status"] == "failed" and "score 77" in shown["last_error"]


def test_a_lead_left_in_error_whose_message_was_lost_is_swept(app_env, dataverse, local_host, azurite, own_database):
    c = 8620
    emulator = dataverse("mvp")
    env = app_env(
        emulator, DATABASE_URL=own_database, STUCK_LEAD_AFTER_SECONDS="1", D365_METADATA_FAILURE_TTL_SECONDS="1"
    )
    host = local_host(env)
    emulator.set_faults(every={"status": 503})
    assert post(host, lead(c)).status_code == 202
    wait_statuses(own_database, {c: "error"}, timeout=30)

    # the message is lost (its last delivery could not record anything), and Dataverse comes back
    plain_queue(env, env["LEAD_QUEUE_NAME"]).clear_messages()
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"]) == 0
    emulator.clear_faults()
    time.sleep(1.5)  # older than STUCK_LEAD_AFTER_SECONDS

    settings = Settings.from_env(env)
    container = Container(settings)
    try:
        swept = requeue_stuck_leads(
            store=container.store, queues=container.queues, age_seconds=settings.stuck_after_seconds
        )
    finally:
        container.store.close()

    assert swept == 1, "the lead in error with no message is sent again"
    wait_statuses(own_database, {c: "synced"}, timeout=30)
    assert [r["hnt_companyid"] for r in emulator.leads()] == [c]
    assert lead_status(host, c)["last_error"] is None


def test_the_sweeper_does_not_resend_a_lead_waiting_behind_a_long_queue(app_env, dataverse, own_database):
    env = app_env(dataverse("mvp"), DATABASE_URL=own_database)  # no host: the queue only grows
    container = Container(Settings.from_env(env))
    store, queues = container.store, container.queues
    queues.ensure()
    lost, front, behind = 8630, 8631, 8632

    def accept(company_id: int, *, send: bool) -> None:
        message = LeadMessage(lead=lead(company_id), correlation_id=f"c{company_id}", received_at=datetime.now(UTC))
        store.record_queued([message])
        if send:
            queues.send([message.to_wire()])

    try:
        accept(lost, send=False)  # recorded, its message never sent
        time.sleep(1.2)  # queue insertion times have whole-second precision
        accept(front, send=True)  # the front of a long queue
        time.sleep(1.2)
        accept(behind, send=True)  # waiting behind it
        time.sleep(1.2)  # every row is older than the stuck age

        swept = requeue_stuck_leads(store=store, queues=queues, age_seconds=1)

        waiting = [
            LeadRef.from_wire(m.content.encode()).company_id
            for m in plain_queue(env, env["LEAD_QUEUE_NAME"]).peek_messages(max_messages=32)
        ]
        assert waiting.count(behind) == 1, f"a lead only waiting in the queue is not sent again: {waiting}"
        assert waiting.count(lost) == 1, f"a lead with no message is sent again: {waiting}"
        # The front lead's row was written just before its message: it is re-sent (harmlessly) only
        # when the two fall on either side of a whole second, the precision of queue insertion times.
        assert waiting.count(front) in (1, 2), waiting
        assert swept == len(waiting) - 2
        assert requeue_stuck_leads(store=store, queues=queues, age_seconds=1) == 0, "a second sweep sends nothing"
    finally:
        store.close()
