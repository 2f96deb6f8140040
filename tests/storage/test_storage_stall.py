"""When storage stalls (Azurite stopped with SIGSTOP: connections are accepted, nothing is answered),
the lead queue gives up within its bounds and the webhook answers 503, so Hunter retries later."""
from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from local import services
from shared.intake import sign
from shared.model.errors import QueueUnavailable
from shared.storage.queue import LeadQueues
from tests.app.helpers import lead, post_leads
from tests.conftest import WEBHOOK_SECRET

# Far above the bounds (about 25 s), far below what the SDK's default retries took (minutes per message).
GIVES_UP_WITHIN_SECONDS = 90.0


@dataclass
class StallableAzurite:
    process: services.ManagedProcess
    connection_string: str

    def stall(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def azurite_to_stall() -> Iterator[StallableAzurite]:
    process, connection_string = services.start_azurite()
    azurite = StallableAzurite(process, connection_string)
    try:
        yield azurite
    finally:
        azurite.resume()
        process.stop()


def _outcome(call, timeout: float) -> BaseException | object:
    """What `call()` returned or raised, failing the test if it is still running after `timeout`."""
    box: list[Exception | object] = []

    def run() -> None:
        try:
            box.append(call())
        except Exception as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"still waiting for storage after {timeout:g} s")
    return box[0]


def _post(host_url: str, body: dict) -> requests.Response:
    raw = json.dumps(body).encode()
    return requests.post(f"{host_url}/api/leads", data=raw, timeout=GIVES_UP_WITHIN_SECONDS,
                         headers={"Content-Type": "application/json", **sign(raw, WEBHOOK_SECRET)})


def test_sending_a_batch_gives_up_when_storage_stalls(azurite_to_stall):
    # given
    queues = LeadQueues(azurite_to_stall.connection_string, "stalled")
    queues.ensure()
    texts = [f"message {n}" for n in range(100)]
    # when
    azurite_to_stall.stall()
    outcome = _outcome(lambda: queues.send(texts), GIVES_UP_WITHIN_SECONDS)
    # then
    assert isinstance(outcome, QueueUnavailable)


def test_the_webhook_answers_503_while_storage_stalls_and_202_after(azurite_to_stall, app_env, dataverse, local_host):
    # given
    host = local_host(app_env(dataverse("mvp"), AzureWebJobsStorage=azurite_to_stall.connection_string))
    assert post_leads(host.url, {"leads": [lead(970_001)]}, secret=WEBHOOK_SECRET).status_code == 202
    batch = {"leads": [lead(970_100 + n) for n in range(100)]}
    # when
    azurite_to_stall.stall()
    outcome = _outcome(lambda: _post(host.url, batch), GIVES_UP_WITHIN_SECONDS)
    azurite_to_stall.resume()
    # then
    assert not isinstance(outcome, BaseException), outcome
    assert (outcome.status_code, outcome.headers.get("Retry-After")) == (503, "10")
    assert post_leads(host.url, batch, secret=WEBHOOK_SECRET).status_code == 202
