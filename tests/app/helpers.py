"""Small helpers for the app's integration tests: waiting, signing, reading PostgreSQL."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import psycopg2
import psycopg2.extras
import requests

from shared.intake import sign

COMPANY_86 = {
    "company_id": 86, "domain": "uppoint.com.tr", "canonical_name": "uppoint",
    "readiness_score": 90, "m365_fit_score": 90, "priority_score": 3,
    "segment": "Existing", "provider": "M365", "tenant_size": "medium",
    "contact_emails": ["it@uppoint.com.tr"], "infrastructure_summary": "Country: IE; ...",
    "source": "Manual", "processing_status": "Idle", "referral_id": None, "referral_type": None,
    "priority_category": "High", "priority_label": "P1", "technical_heat": "Hot",
    "commercial_segment": "Mid-Market", "commercial_heat": "Warm",
    "updated_at": "2026-11-26T10:00:00Z",
}


def lead(company_id: int, **fields: Any) -> dict[str, Any]:
    """A valid Hunter lead for `company_id`, based on the PoC's company 86."""
    return {**COMPANY_86, "company_id": company_id, "domain": f"company{company_id}.example",
            "canonical_name": f"company{company_id}", "contact_emails": [f"it@company{company_id}.example"],
            **fields}


def post_leads(host_url: str, body: Any, *, secret: str, headers: dict[str, str] | None = None) -> requests.Response:
    raw = json.dumps(body).encode()
    return requests.post(f"{host_url}/api/leads", data=raw, timeout=30,
                         headers={"Content-Type": "application/json", **sign(raw, secret), **(headers or {})})


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sync_rows(database_url: str, company_ids: list[int] | None = None) -> dict[int, dict]:
    with psycopg2.connect(database_url) as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        try:
            if company_ids is None:
                cur.execute("SELECT * FROM lead_sync")
            else:
                cur.execute("SELECT * FROM lead_sync WHERE company_id = ANY(%s)", (company_ids,))
        except psycopg2.errors.UndefinedTable:
            return {}
        return {row["company_id"]: row for row in cur.fetchall()}


def attempts(database_url: str, company_id: int) -> list[dict]:
    with psycopg2.connect(database_url) as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT * FROM sync_attempt WHERE company_id = %s ORDER BY id", (company_id,))
        return cur.fetchall()


def forget(database_url: str, company_id: int) -> None:
    """Drop the lead's sync state, as for a deployment that never saw it."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('lead_sync')")
        if cur.fetchone()[0]:
            cur.execute("DELETE FROM lead_sync WHERE company_id = %s", (company_id,))


def queue_length(azurite, name: str) -> int:
    client = azurite.queue_client(name)
    try:
        return client.get_queue_properties().approximate_message_count
    except Exception:  # the queue does not exist yet
        return 0
