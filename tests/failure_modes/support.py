"""Verbs shared by the issue 8 tests: a host per test, waiting on lead rows, reading the status API."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from azure.storage.queue import QueueClient

from tests.app.helpers import forget, post_leads, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET


def post(host, body: Any, **kwargs: Any) -> requests.Response:
    return post_leads(host.url, body, secret=WEBHOOK_SECRET, **kwargs)


def fresh(database_url: str, *company_ids: int) -> None:
    """Forget these companies' rows: the session database is shared by every test."""
    for company_id in company_ids:
        forget(database_url, company_id)


def wait_statuses(database_url: str, wanted: dict[int, str], *, timeout: float = 60.0) -> dict[int, dict]:
    """Wait until every company's row has its wanted status; returns the rows."""

    def reached() -> dict[int, dict] | None:
        rows = sync_rows(database_url, sorted(wanted))
        if len(rows) == len(wanted) and all(rows[c]["status"] == s for c, s in wanted.items()):
            return rows
        return None

    def seen() -> str:
        rows = sync_rows(database_url, sorted(wanted))
        return str({c: rows.get(c, {}).get("status") for c in sorted(wanted)})[:400]

    try:
        return wait_for(reached, timeout=timeout, interval=0.2, what="lead statuses")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: wanted {str(wanted)[:200]}, have {seen()}") from None


def lead_status(host, company_id: int) -> dict:
    response = requests.get(f"{host.url}/api/leads/{company_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def plain_queue(env: dict[str, str], name: str) -> QueueClient:
    """A client that sends text as given: the app's wire text is base64 already."""
    return QueueClient.from_connection_string(env["AzureWebJobsStorage"], name)


def identity_control(identity) -> str:
    parts = urlsplit(identity.endpoint)
    return f"{parts.scheme}://{parts.netloc}/_emulator"


def metadata_requests(emulator) -> int:
    return emulator.stats()["by_kind"].get("metadata", 0)
