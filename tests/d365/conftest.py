"""Fixtures for the Dataverse tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def msi(identity, monkeypatch: pytest.MonkeyPatch):
    """The managed-identity emulator, as App Service announces it to azure-identity."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    return identity
