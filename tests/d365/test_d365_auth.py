"""Token providers against the local managed-identity and Entra authority emulators."""
from __future__ import annotations

import logging

import pytest
import requests

from d365.auth import ClientSecretTokenProvider, ManagedIdentityTokenProvider, build_token_provider
from d365.client import DataverseClient
from d365.config import DataverseConfig
from d365.errors import D365AuthenticationError
from local.services import free_port


def _issued(url: str, *, verify: str | bool = True) -> int:
    return requests.get(f"{url}/_emulator/stats", timeout=5, verify=verify).json()["tokens_issued"]


@pytest.fixture
def entra(authority, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(authority.ca_bundle))
    return authority


def _identity_root(identity) -> str:
    return identity.endpoint.rsplit("/msi/token", 1)[0]


def _secret_provider(entra, url: str, **overrides: str) -> ClientSecretTokenProvider:
    options = {
        "tenant_id": entra.tenant_id, "client_id": entra.client_id, "client_secret": entra.client_secret,
        "authority_host": entra.host, **overrides,
    }
    return ClientSecretTokenProvider(f"{url}/.default", timeout=5, **options)


def test_managed_identity_token_is_accepted_and_cached(dataverse, msi, caplog: pytest.LogCaptureFixture) -> None:
    emulator = dataverse()
    tokens = ManagedIdentityTokenProvider(f"{emulator.url}/.default")
    before = _issued(_identity_root(msi))

    with caplog.at_level(logging.INFO, logger="d365.auth"):
        first = tokens.get_token()
    assert tokens.get_token() == first
    assert _issued(_identity_root(msi)) == before + 1
    assert DataverseClient(emulator.url, tokens).whoami()["UserId"]

    [record] = [r for r in caplog.records if r.getMessage().startswith("d365_token_acquired")]
    assert record.expires_in > 3000 and first not in caplog.text

    tokens.invalidate()
    assert tokens.get_token() != first
    assert _issued(_identity_root(msi)) == before + 2


def test_user_assigned_identity_sends_its_client_id(dataverse, msi) -> None:
    emulator = dataverse()
    client_id = "0b8e5a3c-1111-4222-8333-444455556666"
    ManagedIdentityTokenProvider(f"{emulator.url}/.default", client_id=client_id).get_token()
    stats = requests.get(f"{_identity_root(msi)}/_emulator/stats", timeout=5).json()
    assert stats["last_client_id"] == client_id


def test_managed_identity_refused_is_permanent(dataverse, identity, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "wrong-header")
    with pytest.raises(D365AuthenticationError) as raised:
        ManagedIdentityTokenProvider(f"{dataverse().url}/.default").get_token()
    assert not raised.value.transient


def test_client_secret_token_is_accepted_and_cached(dataverse, entra) -> None:
    emulator = dataverse()
    tokens = _secret_provider(entra, emulator.url)
    before = _issued(entra.host, verify=str(entra.ca_bundle))

    first = tokens.get_token()
    assert tokens.get_token() == first
    assert DataverseClient(emulator.url, tokens).whoami()["UserId"]
    assert _issued(entra.host, verify=str(entra.ca_bundle)) == before + 1


def test_client_secret_invalidate_asks_the_authority_again(dataverse, entra) -> None:
    tokens = _secret_provider(entra, dataverse().url)
    before = _issued(entra.host, verify=str(entra.ca_bundle))
    tokens.get_token()
    tokens.invalidate()
    tokens.get_token()
    assert _issued(entra.host, verify=str(entra.ca_bundle)) == before + 2


def test_bad_client_secret_is_permanent_and_not_echoed(dataverse, entra) -> None:
    tokens = _secret_provider(entra, dataverse().url, client_secret="not-the-secret-123")
    with pytest.raises(D365AuthenticationError) as raised:
        tokens.get_token()
    assert not raised.value.transient
    assert raised.value.code == "invalid_client"
    assert "not-the-secret-123" not in str(raised.value)


def test_unreachable_authority_is_transient(entra) -> None:
    tokens = _secret_provider(entra, "https://org.example", authority_host=f"https://127.0.0.1:{free_port()}")
    with pytest.raises(D365AuthenticationError) as raised:
        tokens.get_token()
    assert raised.value.transient


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"D365_URL": "https://org.crm.dynamics.com"}, ManagedIdentityTokenProvider),
        (
            {"D365_URL": "https://org.crm.dynamics.com", "D365_AUTH_MODE": "client_secret", "D365_TENANT_ID": "t",
             "D365_CLIENT_ID": "c", "D365_CLIENT_SECRET": "s"},
            ClientSecretTokenProvider,
        ),
    ],
)
def test_build_token_provider_follows_auth_mode(env: dict, kind: type) -> None:
    assert type(build_token_provider(DataverseConfig.from_env(env))) is kind
