"""Parts of the local Functions host that need no storage: NCRONTAB, routes, host.json, the invoker."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest
from azure.functions.decorators.http import HttpTrigger

from local.funchost.app_loader import FunctionSpec
from local.funchost.host_config import HostConfigError, QueuesConfig, load_host_config, parse_timespan
from local.funchost.invoker import FunctionTimeoutError, Invoker
from local.funchost.ncrontab import Schedule, ScheduleError
from local.funchost.routes import MethodNotAllowed, compile_route, match_route


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * * *", utc(2026, 1, 1, 10, 0, 0, 500), utc(2026, 1, 1, 10, 0, 1)),
        ("*/15 * * * * *", utc(2026, 1, 1, 10, 0, 14), utc(2026, 1, 1, 10, 0, 15)),
        ("0 */5 * * * *", utc(2026, 1, 1, 10, 0, 0), utc(2026, 1, 1, 10, 5, 0)),
        ("0 30 9 * * 1-5", utc(2026, 1, 2, 10, 0, 0), utc(2026, 1, 5, 9, 30, 0)),  # Fri -> Mon
        ("0 0 0 1 1,7 *", utc(2026, 1, 1, 0, 0, 0), utc(2026, 7, 1, 0, 0, 0)),
        ("10-12 0 0 * * *", utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 11)),
        ("5/20 * * * * *", utc(2026, 1, 1, 0, 0, 25), utc(2026, 1, 1, 0, 0, 45)),
        ("59 59 23 31 12 *", utc(2026, 12, 31, 23, 59, 59), utc(2027, 12, 31, 23, 59, 59)),
        ("0 0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29)),
        ("0 0 0 13 * 5", utc(2026, 1, 1), utc(2026, 2, 13)),  # day AND weekday: the next Friday 13th
    ],
)
def test_schedule_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(after) == expected


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "60 * * * * *", "* * * 0 * *", "*/0 * * * * *", "a * * * * *", "5-1 * * * * *", "0 0 0 31 2 *"],
)
def test_schedule_rejects(expression: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(expression).next_after(utc(2026, 1, 1))


ROUTES = [
    compile_route("leads/{company_id:int}", ["GET", "POST"], "by_int"),
    compile_route("leads/export", ["GET"], "export"),
    compile_route("leads/{company_id}/notes/{note?}", None, "notes"),
    compile_route("files/{*rest}", ["GET"], "files"),
]


@pytest.mark.parametrize(
    ("path", "method", "target", "params"),
    [
        ("leads/42", "GET", "by_int", {"company_id": "42"}),
        ("/LEADS/42/", "post", "by_int", {"company_id": "42"}),
        ("leads/export", "GET", "export", {}),
        ("leads/acme/notes", "DELETE", "notes", {"company_id": "acme"}),
        ("leads/a%20b/notes/7", "PUT", "notes", {"company_id": "a b", "note": "7"}),
        ("files/a/b/c.txt", "GET", "files", {"rest": "a/b/c.txt"}),
    ],
)
def test_route_matches(path: str, method: str, target: str, params: dict[str, str]) -> None:
    found = match_route(ROUTES, path, method)
    assert found is not None
    assert (found.target, found.route_params) == (target, params)


@pytest.mark.parametrize("path", ["leads/abc", "leads", "other/1"])
def test_route_misses(path: str) -> None:
    assert match_route(ROUTES, path, "GET") is None


def test_route_with_other_methods_only_is_method_not_allowed() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        match_route(ROUTES, "leads/42", "DELETE")
    assert caught.value.allowed == ["GET", "POST"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("00:00:01", 1.0), ("00:01:00", 60.0), ("01:00:00.5", 3600.5), ("2.00:00:00", 172800.0)]
)
def test_parse_timespan(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


def test_host_json_defaults_follow_batch_size(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"queues": {"batchSize": 10}}}))
    config = load_host_config(tmp_path)
    assert config.route_prefix == "api"
    assert config.queues == QueuesConfig(batch_size=10, new_batch_threshold=5)
    assert config.function_timeout is None


@pytest.mark.parametrize(
    "queues", [{"batchSize": 33}, {"messageEncoding": "utf8"}, {"maxDequeueCount": 0}, {"visibilityTimeout": "10s"}]
)
def test_host_json_rejects(tmp_path: Path, queues: dict[str, object]) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": queues}}))
    with pytest.raises(HostConfigError):
        load_host_config(tmp_path)


def _spec(user_function: Callable[..., object], *, has_return: bool = True) -> FunctionSpec:
    """An HTTP function (it has a $return binding, its response), or with has_return=False one like a
    queue or timer function."""
    return FunctionSpec(name=user_function.__name__, trigger=HttpTrigger(name="req"), user_function=user_function,
                        has_return=has_return)


def test_invoker_runs_sync_and_async_functions() -> None:
    def double(req: int) -> int:
        return req * 2

    async def triple(req: int) -> int:
        return req * 3

    invoker = Invoker(function_timeout=5.0)
    assert invoker.invoke(_spec(double), 2, reason="test") == 4
    assert Invoker(function_timeout=None).invoke(_spec(triple), 2, reason="test") == 6


def test_invoker_raises_the_function_error_and_enforces_function_timeout() -> None:
    def fail(req: object) -> None:
        raise KeyError("boom")

    def hang(req: threading.Event) -> None:
        req.wait(5)

    timed_out: list[str] = []
    invoker = Invoker(function_timeout=0.2, on_timeout=lambda spec: timed_out.append(spec.name))
    with pytest.raises(KeyError):
        invoker.invoke(_spec(fail), None, reason="test")
    release = threading.Event()
    with pytest.raises(FunctionTimeoutError) as error:
        invoker.invoke(_spec(hang), release, reason="test")
    assert timed_out == ["hang"]
    assert not error.value.finished.is_set()
    release.set()
    assert error.value.finished.wait(5)
    assert invoker.wait_idle(0.1)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_invoker_fails_a_function_without_return_binding_that_returns_a_value(asynchronous: bool) -> None:
    def returns(req: object) -> str:
        return "a value"

    async def returns_async(req: object) -> str:
        return "a value"

    spec = _spec(returns_async if asynchronous else returns, has_return=False)
    for invoker in (Invoker(function_timeout=5.0), Invoker(function_timeout=None)):
        with pytest.raises(RuntimeError, match="without a \\$return binding returned a non-None value"):
            invoker.invoke(spec, None, reason="test")
    assert Invoker(function_timeout=5.0).invoke(_spec(lambda req: None, has_return=False), None, reason="t") is None
