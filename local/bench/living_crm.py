"""(j) A CRM where people work, and an outage's pause: what they cost.

- Dataverse requests per changed lead when people edited 10% of the records between two Hunter
  versions: single writes (aim <= 1.2) and bulk (aim <= 1.05).
- The outcome reader: requests and time to read 10,000 leads changed in the CRM (aim <= 5 requests
  at 5,000-row pages).
- The pause check on the hot path: the claim statement with the pause in it against the claim as it
  was before the pause existed (aim: at most 0.1 ms more per push at p50).
"""
from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from d365.bulk import BulkTarget
from local.bench import leads
from local.bench.report import Figure, Section
from local.bench.stack import Stack
from local.emulators.control_client import EmulatorControl
from shared.model.messages import LeadMessage
from shared.postgres.queries import Q
from shared.usecases.crm_outcomes import read_crm_outcomes

EDITED_SHARE = 10  # one lead in ten edited by a person between the two versions
# The claim statement as it was before the pipeline's pause existed: the baseline of the pause's cost.
CLAIM_WITHOUT_PAUSE = """
WITH current AS (
    SELECT lease_until FROM lead_sync WHERE company_id = %(company_id)s
), claimed AS (
    UPDATE lead_sync SET
        status = CASE WHEN synced_version >= queued_version OR failed_version >= queued_version THEN status
                      ELSE 'processing' END,
        lease_token = %(token)s,
        lease_until = now() + make_interval(secs => %(lease_seconds)s),
        last_attempt_at = now(),
        updated_at = now()
    WHERE company_id = %(company_id)s AND (lease_until IS NULL OR lease_until <= now())
    RETURNING message, queued_version, d365_lead_id, d365_etag, synced_version, synced_fingerprint,
              failed_version, attempts
)
SELECT EXISTS (SELECT 1 FROM current) AS known,
       EXISTS (SELECT 1 FROM claimed) AS claimed,
       GREATEST((SELECT lease_until FROM current), now()) - now() AS leased_for,
       GREATEST((SELECT throttled_until FROM dataverse_throttle WHERE scope = 'dataverse'), now())
           - now() AS throttled_for,
       claimed.message, claimed.queued_version, claimed.d365_lead_id::text AS d365_lead_id, claimed.d365_etag,
       claimed.synced_version, claimed.synced_fingerprint, claimed.failed_version, claimed.attempts
FROM (SELECT 1) one LEFT JOIN claimed ON true
"""


def run(stack: Stack, *, count: int, changed_in_crm: int, claims: int) -> Section:
    figures = [
        *_edited_share(stack, count, bulk=False),
        *_edited_share(stack, count, bulk=True),
        *_outcome_reader(stack, changed_in_crm),
        *_pause_check(stack, claims),
    ]
    return Section("j", f"A CRM where people work ({count} leads, {100 // EDITED_SHARE}% edited), and the pause",
                   tuple(figures))


def _edited_share(stack: Stack, count: int, *, bulk: bool) -> list[Figure]:
    emulator = stack.dataverse("mvp")
    env = stack.app_env(emulator, D365_BULK_SIZE="100" if bulk else "1")
    ids = list(stack.company_ids(count))
    with stack.container(env) as container:
        _push_each(container, [leads.lead(c) for c in ids])
        records = {r["hnt_companyid"]: r["leadid"] for r in emulator.leads()}
        for company_id in ids[::EDITED_SHARE]:
            emulator.edit_lead(records[company_id], subject="typed by a rep")
        before = _data_requests(emulator)
        if bulk:  # a backlog: every changed version recorded, then the pushes take them in batches
            container.store.record_queued([_message(leads.changed(c)) for c in ids])
        _push_each(container, [leads.changed(c) for c in ids])
        per_lead = (_data_requests(emulator) - before) / count
    kept = sum(1 for r in emulator.leads() if r.get("subject") == "typed by a rep")
    mode, aim = ("bulk", 1.05) if bulk else ("single writes", 1.2)
    return [
        Figure(f"{mode}: requests per changed lead", f"{per_lead:.3f}", f"<= {aim}", per_lead <= aim),
        Figure(f"{mode}: people's values kept", f"{kept} of {len(ids[::EDITED_SHARE])}", "all",
               kept == len(ids[::EDITED_SHARE])),
    ]


def _outcome_reader(stack: Stack, changed: int) -> list[Figure]:
    emulator = stack.dataverse("mvp")
    env = stack.app_env(emulator)
    with stack.container(env) as container:
        client = container.dataverse
        for start in range(0, changed, 1000):
            targets = [leads.lead(1_000_000_000 + i) for i in range(start, min(changed, start + 1000))]
            client.upsert_multiple(_targets(targets))
        container.store.release_outcome_reader("00000000-0000-4000-8000-000000000000")
        sent_before = client.requests_sent
        started = time.perf_counter()
        read = read_crm_outcomes(dataverse=client, store=container.store, queues=container.queues)
        elapsed = time.perf_counter() - started
        requests = client.requests_sent - sent_before
    return [
        Figure(f"outcome reader: requests for {changed:,} changed leads", f"{requests} ({read.pages} pages)",
               "<= 5", requests <= 5),
        Figure(f"outcome reader: time for {changed:,} changed leads", f"{elapsed:.1f} s"),
    ]


def _pause_check(stack: Stack, claims: int) -> list[Figure]:
    emulator = stack.dataverse("mvp")
    env = stack.app_env(emulator)
    with stack.container(env) as container:
        store = container.store
        company_id = stack.company_ids(1)[0]
        store.record_queued([_message(leads.lead(company_id))])
        params = {"company_id": company_id, "lease_seconds": 0.001, "probe_seconds": 30}
        with_pause, without = [], []
        pairs = ((Q["claim"], with_pause), (CLAIM_WITHOUT_PAUSE, without))
        for n in range(claims):  # alternated, each first in turn, so the machine's noise falls on both alike
            for statement, into in pairs if n % 2 else pairs[::-1]:
                started = time.perf_counter()
                store._run(statement, {**params, "token": str(uuid.uuid4())}, fetch="one")
                into.append((time.perf_counter() - started) * 1000)
    cost = statistics.median(with_pause) - statistics.median(without)
    return [Figure("pause check on the hot path, per push (p50 of the claim, with - without)",
                   f"{cost:+.3f} ms ({statistics.median(without):.3f} -> {statistics.median(with_pause):.3f})",
                   "<= 0.1 ms", cost <= 0.1)]


def _push_each(container: Any, batch: list[dict[str, Any]]) -> None:
    for lead in batch:
        container.pusher.push(_message(lead), dequeue_count=1)


def _message(lead: dict[str, Any]) -> LeadMessage:
    return LeadMessage(lead=lead, correlation_id="bench", received_at=datetime.now(timezone.utc))


def _data_requests(emulator: EmulatorControl) -> int:
    return sum(n for kind, n in emulator.stats()["by_kind"].items() if kind not in ("metadata", "whoami"))


def _targets(batch: list[dict[str, Any]]) -> list[BulkTarget]:
    return [BulkTarget(lead_id=str(uuid.uuid4()), payload={"subject": f"lead {x['company_id']}",
                                                             "hnt_companyid": x["company_id"]}) for x in batch]
