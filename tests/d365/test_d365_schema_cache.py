from __future__ import annotations

import threading
import time

import pytest

from d365.errors import D365ConnectionError
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
