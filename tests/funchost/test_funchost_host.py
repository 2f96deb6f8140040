"""The local Functions host as a subprocess serving tests/funchost/sample_app against real Azurite.

The sample app's host.json: visibilityTimeout 1 s, maxDequeueCount 3, maxPollingInterval 1 s,
functionTimeout 5 s. The hosts here hold a received message for 2 s (FUNCHOST_MESSAGE_LEASE_SECONDS)
and renew that while its function runs.
"""
from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from local.funchost import LocalHost

REPO = Path(__file__).resolve().parents[2]
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
MAX_DEQUEUE_COUNT = 3  # sample_app/host.json
LEASE_SECONDS = 2


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def storage(azurite) -> str:
    """The session's Azurite (tests/conftest.py); these tests' queue names are their own."""
    return azurite.connection_string


@dataclass(frozen=True)
class RunningHost:
    url: str
    record_dir: Path
    stderr_path: Path

    def records(self, function: str) -> list[dict]:
        path = self.record_dir / f"{function}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def received(self, function: str, body: str) -> list[dict]:
        return [r for r in self.records(function) if r["body"] == body]


def start_host(env: dict[str, str], tmp: Path, port: int = 0) -> tuple[subprocess.Popen[str], Path]:
    stderr_path = tmp / "host.stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.funchost", "--app-dir", str(SAMPLE_APP), "--port", str(port)],
            cwd=REPO, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    return process, stderr_path


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def read_ready(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if readable else ""
    assert line.startswith("ready "), f"no ready line (exit code {process.poll()})"
    return line.split()[1]


@pytest.fixture(scope="module")
def host_env(storage: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": storage,
        "SampleStorage": storage,
        "ECHO_QUEUE": "echo-in",
        "HANG_QUEUE": "hangs-unused",
        "BYSTANDER_QUEUE": "bystander-unused",
        "FUNCHOST_MESSAGE_LEASE_SECONDS": str(LEASE_SECONDS),
        "RECORD_DIR": str(tmp_path_factory.mktemp("records")),
    }


@pytest.fixture(scope="module")
def host(host_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    process, stderr_path = start_host(host_env, tmp_path_factory.mktemp("host"))
    try:
        url = read_ready(process)
        yield RunningHost(url=url, record_dir=Path(host_env["RECORD_DIR"]), stderr_path=stderr_path)
    finally:
        stop(process)


def queue(storage: str, name: str) -> QueueClient:
    """A raw client: bodies go on the wire exactly as given."""
    return QueueClient.from_connection_string(storage, name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def peek_all(client: QueueClient) -> list[str]:
    """Bodies of the visible messages; none when the queue does not exist."""
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


# --- HTTP -----------------------------------------------------------------------------------------


def test_http_route_params_query_body_and_response(host: RunningHost) -> None:
    response = requests.post(
        f"{host.url}/api/items/42?q=1", data=b"payload", headers={"X-Test": "hello"}, timeout=10
    )
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "method": "POST", "route_params": {"item_id": "42"}, "params": {"q": "1"}, "body": "payload", "x_test": "hello",
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/items/7", 200),
        ("GET", "/api/items/abc", 404),  # the :int constraint does not match
        ("GET", "/api/nothing-here", 404),
        ("DELETE", "/api/items/7", 405),
        ("GET", "/api/slow", 200),  # async def
        ("GET", "/admin/host/status", 200),
    ],
)
def test_http_status(host: RunningHost, method: str, path: str, status: int) -> None:
    assert requests.request(method, host.url + path, timeout=10).status_code == status


def test_http_exception_is_500_without_traceback(host: RunningHost) -> None:
    response = requests.get(f"{host.url}/api/boom", timeout=10)
    assert response.status_code == 500
    assert "secret detail" not in response.text and "Traceback" not in response.text
    assert "secret detail that must not leak" in wait_for(
        lambda: "RuntimeError" in host.stderr_path.read_text() and host.stderr_path.read_text()
    )


# --- queues -----------------------------------------------------------------------------------------


def test_base64_message_reaches_function_once(host: RunningHost, storage: str) -> None:
    text = f"hello {uuid.uuid4()}"
    queue(storage, "echo-in").send_message(b64(text))

    records = wait_for(lambda: host.received("echo", text))

    assert records[0]["dequeue_count"] == 1 and records[0]["has_pop_receipt"]
    wait_for(lambda: not peek_all(queue(storage, "echo-in")))  # deleted after success


def test_failing_function_sends_message_to_poison_after_max_dequeue_count(host: RunningHost, storage: str) -> None:
    text = f"doomed {uuid.uuid4()}"
    queue(storage, "always-fails").send_message(b64(text))

    wait_for(lambda: b64(text) in peek_all(queue(storage, "always-fails-poison")))

    counts = [r["dequeue_count"] for r in host.received("always_fails", text)]
    assert counts == list(range(1, MAX_DEQUEUE_COUNT + 1))
    assert not peek_all(queue(storage, "always-fails"))


def test_function_that_delays_its_own_message_is_redelivered(host: RunningHost, storage: str) -> None:
    text = f"throttled {uuid.uuid4()}"
    queue(storage, "self-delay").send_message(b64(text))

    records = wait_for(lambda: len(host.received("self_delay", text)) >= 2 and host.received("self_delay", text))

    assert [r["dequeue_count"] for r in records] == [1, 2]
    wait_for(lambda: not peek_all(queue(storage, "self-delay")))
    assert not peek_all(queue(storage, "self-delay-poison"))


def test_non_base64_message_ends_in_poison_without_reaching_function(host: RunningHost, storage: str) -> None:
    raw = f"not base64 {uuid.uuid4()} !!"
    queue(storage, "echo-in").send_message(raw)

    wait_for(lambda: raw in peek_all(queue(storage, "echo-in-poison")))

    assert not host.received("echo", raw)


def test_a_function_running_past_its_lease_keeps_its_message_and_runs_once(host: RunningHost, storage: str) -> None:
    text = f"long {uuid.uuid4()}"
    queue(storage, "outlives-lease").send_message(b64(text))

    wait_for(lambda: host.received("outlives_lease", text))
    wait_for(lambda: not peek_all(queue(storage, "outlives-lease")) and not _invisible(storage, "outlives-lease"))

    assert [r["dequeue_count"] for r in host.received("outlives_lease", text)] == [1]


def test_a_queue_function_that_returns_a_value_fails_as_in_the_worker(host: RunningHost, storage: str) -> None:
    text = f"returns {uuid.uuid4()}"
    queue(storage, "returns-value").send_message(b64(text))

    wait_for(lambda: b64(text) in peek_all(queue(storage, "returns-value-poison")))

    assert [r["dequeue_count"] for r in host.received("returns_value", text)] == list(range(1, MAX_DEQUEUE_COUNT + 1))
    assert "without a $return binding returned a non-None value" in host.stderr_path.read_text()


def test_a_function_timeout_restarts_the_worker_and_fails_every_invocation_in_flight(
    host_env: dict[str, str], storage: str, tmp_path: Path
) -> None:
    # given: a host of its own (it restarts), with one function hanging and another running beside it
    names = {"HANG_QUEUE": f"hangs-{uuid.uuid4().hex[:8]}", "BYSTANDER_QUEUE": f"bystander-{uuid.uuid4().hex[:8]}"}
    process, stderr_path = start_host({**host_env, **names}, tmp_path)
    records = RunningHost(url="", record_dir=Path(host_env["RECORD_DIR"]), stderr_path=stderr_path)
    try:
        url = read_ready(process)
        hang, beside = f"hang {uuid.uuid4()}", f"beside {uuid.uuid4()}"
        queue(storage, names["HANG_QUEUE"]).send_message(b64(hang))
        first = wait_for(lambda: records.received("hangs", hang), timeout=30)[0]
        queue(storage, names["BYSTANDER_QUEUE"]).send_message(b64(beside))

        # when: the hanging one runs past functionTimeout (5 s)
        try:
            again = {function: wait_for(lambda f=function, t=text: _delivery(records, f, t, 2), timeout=45)
                     for function, text in (("hangs", hang), ("bystander", beside))}
        except AssertionError:
            pytest.fail(f"not delivered again: {records.records('hangs')} {records.records('bystander')}\n"
                        f"{stderr_path.read_text()[-3000:]}")

        # then: both came back once the worker was gone, and neither first run went on
        assert {r["worker"] for r in again.values()} == {again["hangs"]["worker"]} != {first["worker"]}
        assert _delivery(records, "bystander", beside, 1)["worker"] == first["worker"]
        finished_first = [r for f, t in (("hangs", hang), ("bystander", beside)) for r in records.received(f, t)
                          if r["event"] == "finish" and r["dequeue_count"] == 1]
        assert finished_first == []
        assert "A function timeout has occurred. Restarting the worker process" in records.stderr_path.read_text()
        assert process.poll() is None
        assert requests.get(f"{url}/api/items/3", timeout=10).status_code == 200
    finally:
        stop(process)


def _delivery(host: RunningHost, function: str, body: str, dequeue_count: int) -> dict | None:
    return next((r for r in host.received(function, body)
                 if r["dequeue_count"] == dequeue_count and r["event"] == "start"), None)


def _invisible(storage: str, name: str) -> int:
    return queue(storage, name).get_queue_properties().approximate_message_count or 0


# --- timer and lifecycle ------------------------------------------------------------------------------


def test_timer_fires(host: RunningHost) -> None:
    ticks = wait_for(lambda: host.records("tick"), timeout=5)
    assert ticks[0]["past_due"] is False


def test_sigterm_lets_inflight_request_finish_and_exits_zero(host_env: dict[str, str], tmp_path: Path) -> None:
    process, _ = start_host(host_env, tmp_path)
    try:
        url = read_ready(process)
        result: dict[str, requests.Response] = {}
        request = threading.Thread(target=lambda: result.update(r=requests.get(f"{url}/api/slow", timeout=10)))
        request.start()
        time.sleep(0.3)

        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=15) == 0
        request.join(timeout=5)
        assert result["r"].status_code == 200 and result["r"].text == "slept"
    finally:
        stop(process)


def test_import_failure_exits_1_with_reason(host_env: dict[str, str], tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RECORD_DIR"}
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "w") as stderr:
        completed = subprocess.run(
            [sys.executable, "-m", "local.funchost", "--app-dir", str(SAMPLE_APP), "--port", "0"],
            cwd=REPO, env={**env, "AzureWebJobsStorage": host_env["AzureWebJobsStorage"]},
            stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=30,
        )
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "KeyError: 'RECORD_DIR'" in stderr_path.read_text()



def test_local_host_runs_in_process(host_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in host_env.items():
        monkeypatch.setenv(name, value)
    local_host = LocalHost(SAMPLE_APP).start()
    try:
        response = requests.get(f"{local_host.url}/api/items/5", params={"q": "x"}, timeout=10)
        assert response.json()["route_params"] == {"item_id": "5"}
    finally:
        local_host.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{local_host.url}/api/items/5", timeout=2)


def test_in_process_a_timed_out_message_comes_back_only_after_its_first_run_ended(
    host_env: dict[str, str], storage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # given: an in-process host, which cannot restart its worker
    name = f"hangs-{uuid.uuid4().hex[:8]}"
    for key, value in {**host_env, "HANG_QUEUE": name}.items():
        monkeypatch.setenv(key, value)
    records = RunningHost(url="", record_dir=Path(host_env["RECORD_DIR"]), stderr_path=Path(os.devnull))
    local_host = LocalHost(SAMPLE_APP).start()
    try:
        text = f"hang {uuid.uuid4()}"
        queue(storage, name).send_message(b64(text))
        wait_for(lambda: _delivery(records, "hangs", text, 1))
        wait_for(lambda: "exceeded by function 'Functions.hangs'" in caplog.text, timeout=15)

        # when: the first run goes on for longer than the lease and the visibilityTimeout, then ends
        time.sleep(3 * LEASE_SECONDS)
        (Path(host_env["RECORD_DIR"]) / f"release-{text}").touch()

        # then: the second delivery started after the first run had finished
        second = wait_for(lambda: _delivery(records, "hangs", text, 2), timeout=30)
        finished = next(r for r in records.received("hangs", text) if r["event"] == "finish")
        assert finished["dequeue_count"] == 1
        assert finished["at"] <= second["at"]
    finally:
        local_host.stop()
