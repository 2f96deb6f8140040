"""Replay from the poison queue: the admin endpoint and the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared.model.messages import LeadMessage
from shared.postgres.store import LeadStore
from tests.app.helpers import lead, queue_length, sync_rows, wait_for

REPO = Path(__file__).resolve().parents[2]


def _poison(env, company_id: int) -> None:
    """A lead accepted at the webhook whose message is in the poison queue, as the runtime leaves it
    (wire text, already base64)."""
    message = LeadMessage(lead=lead(company_id), correlation_id="r", received_at=datetime.now(timezone.utc))
    store = LeadStore(env["DATABASE_URL"], pool_max=1)
    store.record_queued([message])
    store.close()
    wire = message.to_wire()
    poison = QueueClient.from_connection_string(env["AzureWebJobsStorage"], env["LEAD_QUEUE_NAME"] + "-poison")
    try:
        poison.create_queue()
    except ResourceExistsError:
        pass
    poison.send_message(wire)


def test_admin_endpoint_replays_one_company_and_the_lead_syncs(app_env, dataverse, local_host, azurite, database_url):
    env = app_env(dataverse("mvp"))
    host = local_host(env)
    _poison(env, 6001)
    _poison(env, 6002)

    response = requests.post(f"{host.url}/api/manage/replay", json={"company_id": 6001}, timeout=30)

    assert response.status_code == 200 and response.json() == {"replayed": 1}
    wait_for(lambda: sync_rows(database_url, [6001]).get(6001, {}).get("status") == "synced", what="6001 synced")
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 1  # 6002 stays


def test_cli_replays_everything(app_env, dataverse, azurite):
    env = app_env(dataverse("mvp"))
    _poison(env, 6003)
    _poison(env, 6004)

    result = subprocess.run([sys.executable, "-m", "shared.runtime.replay"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "replayed 2 message(s)" in result.stdout
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"]) == 2
