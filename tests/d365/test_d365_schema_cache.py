from __future__ import annotations

import threading
import time

import pytest

from d365.auth import ManagedIdentityTokenProvider
from d365.client import DataverseClient
from d365.errors import D365APIError, D365ConnectionError, D365RateLimitError
from d365.metadata import LeadSchema
from d365.schema_cache import SchemaCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Returns a new schema per call, or raises what it is told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None

    def __call__(self) -> LeadSchema:
        self.calls += 1
        if self.fail:
            raise self.fail
        return LeadSchema(columns={})


def test_loads_once_per_ttl() -> None:
    clock, loader = Clock(), Loader()
    cache = SchemaCache(loader, ttl_seconds=60, clock=clock)

    first = cache.get()
    clock.now += 59
    assert cache.get() is first and cache.loads == 1
    clock.now += 1
    assert cache.get() is not first and cache.loads == 2


def test_invalidate_forces_reload() -> None:
    cache = SchemaCache(Loader(), ttl_seconds=3600, clock=Clock())
    first = cache.get()
    cache.invalidate()
    assert cache.get() is not first and cache.loads == 2


def test_failed_refresh_keeps_the_old_schema_and_backs_off() -> None:
    clock, loader = Clock(), Loader()
    cache = SchemaCache(loader, ttl_seconds=3600, clock=clock)
    first = cache.get()
    loader.fail = D365ConnectionError("down")
    cache.invalidate()

    assert cache.get() is first
    assert cache.get() is first
    assert loader.calls == 2  # the second get() did not call a failing Dataverse again
    loader.fail = None
    clock.now += 61
    assert cache.get() is not first


def test_failure_without_a_schema_raises() -> None:
    loader = Loader()
    loader.fail = D365ConnectionError("down")
    cache = SchemaCache(loader, ttl_seconds=60, clock=Clock())
    with pytest.raises(D365ConnectionError):
        cache.get()
    assert cache.loads == 0


def test_single_flight_across_threads() -> None:
    def slow() -> LeadSchema:
        time.sleep(0.05)
        return LeadSchema(columns={})

    cache = SchemaCache(slow, ttl_seconds=60)
    results: list[LeadSchema] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.loads == 1
    assert len({id(schema) for schema in results}) == 1


def test_a_failure_is_remembered_for_the_failure_ttl() -> None:
    clock, loader = Clock(), Loader()
    loader.fail = D365APIError("privilege missing", status=403, code="0x80040220", request_id="req-1")
    cache = SchemaCache(loader, ttl_seconds=3600, failure_ttl_seconds=30, clock=clock)

    with pytest.raises(D365APIError):
        cache.get()
    clock.now += 29
    with pytest.raises(D365APIError) as raised:
        cache.get()
    assert loader.calls == 1  # remembered, not asked again
    assert (raised.value.status, raised.value.code, raised.value.request_id) == (403, "0x80040220", "req-1")
    assert not raised.value.transient

    loader.fail = None
    clock.now += 1
    assert cache.get() is not None and loader.calls == 2 and cache.loads == 1


def test_a_remembered_failure_outlasts_invalidate() -> None:
    clock, loader = Clock(), Loader()
    loader.fail = D365ConnectionError("down")
    cache = SchemaCache(loader, ttl_seconds=3600, failure_ttl_seconds=30, clock=clock)
    with pytest.raises(D365ConnectionError):
        cache.get()
    cache.invalidate()
    with pytest.raises(D365ConnectionError) as raised:
        cache.get()
    assert raised.value.transient and loader.calls == 1


def test_a_429_is_remembered_for_its_retry_after_and_says_what_is_left() -> None:
    clock, loader = Clock(), Loader()
    loader.fail = D365RateLimitError("slow down", retry_after=80, status=429)
    cache = SchemaCache(loader, ttl_seconds=3600, failure_ttl_seconds=30, clock=clock)
    with pytest.raises(D365RateLimitError):
        cache.get()

    clock.now += 50
    with pytest.raises(D365RateLimitError) as raised:
        cache.get()
    assert raised.value.retry_after == 30 and loader.calls == 1

    clock.now += 30
    loader.fail = None
    cache.get()
    assert loader.calls == 2


def test_a_metadata_outage_costs_one_round_of_requests_per_window(dataverse, msi) -> None:
    emulator = dataverse()
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), max_retries=0)
    clock = Clock()
    cache = SchemaCache(client.read_lead_schema, ttl_seconds=3600, failure_ttl_seconds=30, clock=clock)
    emulator.set_faults(script=[{"status": 503}] * 10)

    for _ in range(50):  # fifty pushes on a cold instance during the outage
        with pytest.raises(D365APIError) as raised:
            cache.get()
        assert raised.value.status == 503 and raised.value.transient
    assert emulator.stats()["requests"] == 1  # the first metadata request failed; nothing since

    clock.now += 30  # the window has passed and so has the outage
    emulator.clear_faults()
    assert cache.get().has("subject")
    assert emulator.stats()["requests"] == 1 + 4
