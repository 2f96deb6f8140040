"""Fixtures of the issue 8 tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from local import services
from shared.postgres.migrate import migrate


@pytest.fixture
def own_database(postgres_server) -> Iterator[str]:
    """A migrated database for this test alone: the sweeper claims every stuck lead it can see,
    and the session database holds other tests' leftovers."""
    name = f"leadpush_failures_{secrets.token_hex(4)}"
    url = services.create_database(postgres_server.url, name)
    migrate(url)
    yield url
    services.drop_database(postgres_server.url, name)
