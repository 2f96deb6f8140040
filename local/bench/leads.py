"""Synthetic Hunter leads, based on the sample lead (company 86), and their signed webhook posts."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import requests

from shared.intake import sign
from shared.model.messages import LeadMessage

# The webhook answers within its storage clients' bounded retries (about 25 s) or says 503.
POST_TIMEOUT_SECONDS = 60
POST_ATTEMPTS = 6
DEFAULT_RETRY_AFTER_SECONDS = 10.0
SAMPLE = json.loads((Path(__file__).resolve().parent.parent / "sample_lead.json").read_text())


def lead(company_id: int, **fields: Any) -> dict[str, Any]:
    """A valid lead for `company_id` with its own domain and e-mail address."""
    return {**SAMPLE, "company_id": company_id, "domain": f"company{company_id}.example",
            "canonical_name": f"company{company_id}", "contact_emails": [f"it@company{company_id}.example"],
            **fields}


def changed(company_id: int) -> dict[str, Any]:
    """`lead(company_id)` with a different score and a later `updated_at`."""
    return lead(company_id, readiness_score=SAMPLE["readiness_score"] - 1, updated_at="2026-11-27T10:00:00Z")


def wire(leads: Iterable[dict[str, Any]]) -> list[str]:
    """Queue messages, as the webhook would send them."""
    now = datetime.now(timezone.utc)
    return [LeadMessage(lead=x, correlation_id="bench", received_at=now).to_wire() for x in leads]


def post(session: requests.Session, host_url: str, leads: list[dict[str, Any]], *, secret: str,
         timeout: float = POST_TIMEOUT_SECONDS) -> int:
    """POST the leads to the webhook, signed; a 503 is posted again after its Retry-After, as Hunter does.
    Returns how many 503s it took. Raises requests.HTTPError for any other answer than 202, or a 503 after
    POST_ATTEMPTS posts."""
    body = json.dumps({"leads": leads}).encode()
    for unavailable in range(POST_ATTEMPTS):
        response = session.post(f"{host_url}/api/leads", data=body, timeout=timeout,
                                headers={"Content-Type": "application/json", **sign(body, secret)})
        if response.status_code == 202:
            return unavailable
        if response.status_code != 503:
            break
        time.sleep(float(response.headers.get("Retry-After") or DEFAULT_RETRY_AFTER_SECONDS))
    raise requests.HTTPError(f"webhook answered {response.status_code}: {response.text[:200]}")
