"""Token providers against the local managed-identity and Entra authority emulators."""
from __future__ import annotations

import logging
import uuid

import pytest
import requests

from d365.auth import ClientSecretTokenProvider, ManagedIdentityTokenProvider, build_token_provider
from d365.client import DataverseClient
from d365.config import DataverseConfig
from shared.runtime.dataverse_settings import dataverse_from_env
from shared.runtime.env import SettingsError
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
    assert type(build_token_provider(dataverse_from_env(env))) is kind


# --- transient or permanent: the endpoints' failures, injected into the real emulators -----------


@pytest.fixture
def msi_faults(msi):
    """`msi_faults(*steps)`: the managed-identity emulator answers the next token requests with these."""
    root = _identity_root(msi)

    def inject(*steps: dict) -> None:
        requests.post(f"{root}/_emulator/faults", json={"script": list(steps)}, timeout=5).raise_for_status()

    yield inject
    requests.delete(f"{root}/_emulator/faults", timeout=5)


@pytest.fixture
def entra_faults(entra):
    verify = str(entra.ca_bundle)

    def inject(*steps: dict) -> None:
        requests.post(
            f"{entra.host}/_emulator/faults", json={"script": list(steps)}, timeout=5, verify=verify
        ).raise_for_status()

    yield inject
    requests.delete(f"{entra.host}/_emulator/faults", timeout=5, verify=verify)


def _token_requests(url: str, *, verify: str | bool = True) -> int:
    return requests.get(f"{url}/_emulator/stats", timeout=5, verify=verify).json()["token_requests"]


def test_managed_identity_500_twice_then_the_token_comes(dataverse, msi, msi_faults) -> None:
    emulator = dataverse()
    msi_faults({"status": 500}, {"status": 500})
    before = _token_requests(_identity_root(msi))

    tokens = ManagedIdentityTokenProvider(f"{emulator.url}/.default")
    assert DataverseClient(emulator.url, tokens).whoami()["UserId"]
    assert _token_requests(_identity_root(msi)) == before + 3  # retried by azure-core, within our bound


@pytest.mark.parametrize(
    "step",
    [
        {"status": 500},
        {"status": 503, "message": "The service is briefly unavailable."},
        {"status": 429},
        {"status": 502, "raw": "<html><body>502 Bad Gateway</body></html>"},  # not JSON
    ],
)
def test_managed_identity_failing_beyond_its_retries_is_transient(dataverse, msi, msi_faults, step: dict) -> None:
    msi_faults(*[step] * 3)
    before = _token_requests(_identity_root(msi))
    with pytest.raises(D365AuthenticationError) as raised:
        ManagedIdentityTokenProvider(f"{dataverse().url}/.default").get_token()
    assert raised.value.transient
    assert _token_requests(_identity_root(msi)) == before + 3  # bounded: one try and two retries


def test_managed_identity_timing_out_is_transient(dataverse, msi, msi_faults) -> None:
    msi_faults(*[{"status": 503, "delay_ms": 1500}] * 3)
    with pytest.raises(D365AuthenticationError) as raised:
        ManagedIdentityTokenProvider(f"{dataverse().url}/.default", timeout=0.5).get_token()
    assert raised.value.transient and raised.value.unreachable


def test_managed_identity_refusing_the_identity_is_permanent(dataverse, msi, msi_faults) -> None:
    msi_faults({"status": 400, "message": "No managed identity found for specified ClientId."})
    with pytest.raises(D365AuthenticationError) as raised:
        ManagedIdentityTokenProvider(f"{dataverse().url}/.default", client_id=str(uuid.uuid4())).get_token()
    assert not raised.value.transient


@pytest.mark.parametrize(
    "step",
    [
        {"status": 503, "error": "temporarily_unavailable"},
        {"status": 500, "error": "server_error", "description": "AADSTS50000: There was an error issuing a token."},
        {"status": 429, "error": "invalid_request", "description": "AADSTS90055: Too many requests.", "retry_after": 2},
        {"status": 502, "raw": "<html>Bad Gateway</html>"},
    ],
)
def test_entra_unavailable_or_throttling_is_transient(dataverse, entra, entra_faults, step: dict) -> None:
    entra_faults(step)
    with pytest.raises(D365AuthenticationError) as raised:
        _secret_provider(entra, dataverse().url).get_token()
    assert raised.value.transient


@pytest.mark.parametrize(
    ("step", "code"),
    [
        ({"status": 401, "error": "invalid_client", "description": "AADSTS7000222: The client secret keys are expired."},
         "invalid_client"),
        ({"status": 400, "error": "unauthorized_client",
          "description": "AADSTS700016: Application with identifier 'x' was not found in the directory 'y'."},
         "unauthorized_client"),
        ({"status": 401, "error": "invalid_request", "description": "AADSTS7000215: Invalid client secret provided."},
         "invalid_request"),
    ],
)
def test_entra_refusing_the_credential_is_permanent(dataverse, entra, entra_faults, step: dict, code: str) -> None:
    entra_faults(step)
    with pytest.raises(D365AuthenticationError) as raised:
        _secret_provider(entra, dataverse().url).get_token()
    assert not raised.value.transient and raised.value.code == code


def test_entra_transient_then_the_token(dataverse, entra, entra_faults) -> None:
    emulator = dataverse()
    entra_faults({"status": 503, "error": "temporarily_unavailable"})
    with pytest.raises(D365AuthenticationError) as raised:
        _secret_provider(entra, emulator.url).get_token()
    assert raised.value.transient
    assert DataverseClient(emulator.url, _secret_provider(entra, emulator.url)).whoami()["UserId"]


def test_metadata_failure_ttl_setting() -> None:
    base = {"D365_URL": "https://org.crm.dynamics.com"}
    assert dataverse_from_env(base).metadata_failure_ttl_seconds == 30
    assert dataverse_from_env({**base, "D365_METADATA_FAILURE_TTL_SECONDS": "5"}).metadata_failure_ttl_seconds == 5
    with pytest.raises(SettingsError, match="D365_METADATA_FAILURE_TTL_SECONDS"):
        dataverse_from_env({**base, "D365_METADATA_FAILURE_TTL_SECONDS": "soon"})
