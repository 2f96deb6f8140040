"""The emulators as processes, and real azure-identity / msal clients getting tokens Dataverse accepts."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

from local.emulators.dataverse import DataverseServer
from local.emulators.identity import SYSTEM_ASSIGNED_CLIENT_ID

ROOT = Path(__file__).resolve().parents[2]
IDENTITY_HEADER = "local-identity-secret"
TENANT, CLIENT, SECRET = "11111111-2222-3333-4444-555555555555", "app-client-id", "app-secret"


class Process:
    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.popen.stdout.readline()
        if not line.startswith("ready "):
            self.popen.kill()
            raise AssertionError(f"no ready line: {line!r} {self.popen.stderr.read()}")
        self.ready_line = line
        self.url = line.split()[1]
        self.ca_bundle: Path | None = None

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=5)
        finally:
            self.popen.stdout.close()
            self.popen.stderr.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()


def _whoami(server: DataverseServer, token: str) -> requests.Response:
    return requests.get(f"{server.api_url}/WhoAmI", headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_dataverse_process_prints_one_ready_line_and_stops_on_sigterm(processes: list[Process]) -> None:
    process = Process("local.emulators.dataverse", "--host", "127.0.0.1", "--port", "0", "--profile", "full",
                      "--alternate-key", "hnt_domain", "--max-page-size", "7")
    processes.append(process)

    assert process.ready_line.rstrip("\n").startswith("ready http://127.0.0.1:")
    keys = requests.get(f"{process.url}/_emulator/schema", timeout=5).json()["keys"]
    assert keys == [{"name": "hnt_domain_key", "columns": ["hnt_domain"], "status": "Active"}]
    assert requests.get(f"{process.url}/_emulator/paging", timeout=5).json() == {"max_page_size": 7}
    assert process.stop() == 0


@pytest.mark.parametrize(("options", "named"), [(["--profile", "bare", "--alternate-key", "hnt_domain"], "hnt_domain"),
                                               (["--max-page-size", "5001"], "page size")])
def test_dataverse_process_refuses_a_bad_option(options: list[str], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local.emulators.dataverse", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )

    assert result.returncode == 2 and named in result.stderr and result.stdout == ""


@pytest.fixture(scope="module")
def identity_process() -> Iterator[Process]:
    process = Process("local.emulators.identity", "--port", "0", "--identity-header", IDENTITY_HEADER)
    yield process
    assert process.stop() == 0


@pytest.fixture
def identity(identity_process: Process, monkeypatch: pytest.MonkeyPatch) -> Process:
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity_process.url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    return identity_process


def _identity_stats(identity: Process) -> dict:
    return requests.get(identity.url.replace("/msi/token", "/_emulator/stats"), timeout=5).json()


@pytest.mark.parametrize("client_id", [None, "c0ffee00-0000-4000-8000-000000000001"])
def test_managed_identity_credential_gets_a_token_dataverse_accepts(
    identity: Process, dataverse_server: DataverseServer, client_id: str | None
) -> None:
    assert identity.ready_line == f"ready {identity.url}\n" and identity.url.endswith("/msi/token")
    issued_before = _identity_stats(identity)["tokens_issued"]
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()

    token = credential.get_token(f"{dataverse_server.resource}/.default")

    assert _whoami(dataverse_server, token.token).status_code == 200
    stats = _identity_stats(identity)
    assert stats["tokens_issued"] == issued_before + 1
    assert stats["last_client_id"] == (client_id or SYSTEM_ASSIGNED_CLIENT_ID)


def test_managed_identity_with_the_wrong_header_fails(identity: Process, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")

    issued_before = _identity_stats(identity)["tokens_issued"]

    with pytest.raises((ClientAuthenticationError, CredentialUnavailableError)):
        ManagedIdentityCredential().get_token("https://org.crm.dynamics.com/.default")

    assert _identity_stats(identity)["tokens_issued"] == issued_before


def test_identity_endpoint_errors_carry_status_code_and_message(identity: Process) -> None:
    response = requests.get(identity.url, params={"api-version": "2019-08-01", "resource": "r"}, timeout=5)

    assert response.status_code == 400
    assert set(response.json()) == {"statusCode", "message"}


@pytest.fixture(scope="module")
def authority_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    cert_dir = tmp_path_factory.mktemp("authority-certs")
    process = Process("local.emulators.authority", "--port", "0", "--cert-dir", str(cert_dir), "--tenant-id", TENANT,
                      "--client-id", CLIENT, "--client-secret", SECRET)
    process.ca_bundle = cert_dir / "ca-bundle.pem"
    yield process
    assert process.stop() == 0


@pytest.fixture
def authority(authority_process: Process, monkeypatch: pytest.MonkeyPatch) -> Process:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(authority_process.ca_bundle))
    return authority_process


def _tokens_issued(authority: Process) -> int:
    return requests.get(f"{authority.url}/_emulator/stats", timeout=5).json()["tokens_issued"]


def test_msal_client_credentials_get_a_token_dataverse_accepts(
    authority: Process, dataverse_server: DataverseServer
) -> None:
    assert authority.ready_line == f"ready {authority.url}\n" and authority.url.startswith("https://127.0.0.1:")
    issued_before = _tokens_issued(authority)
    app = msal.ConfidentialClientApplication(
        CLIENT, client_credential=SECRET, authority=f"{authority.url}/{TENANT}", instance_discovery=False
    )

    first = app.acquire_token_for_client(scopes=[f"{dataverse_server.resource}/.default"])
    second = app.acquire_token_for_client(scopes=[f"{dataverse_server.resource}/.default"])

    assert "access_token" in first, first
    assert first["token_type"] == "Bearer" and first["expires_in"] > 3000
    assert second["access_token"] == first["access_token"]
    assert _whoami(dataverse_server, first["access_token"]).status_code == 200
    assert _tokens_issued(authority) == issued_before + 1


@pytest.mark.parametrize(
    ("secret", "scope", "error"),
    [("wrong", "https://org/.default", "invalid_client"), (SECRET, "https://org/user_impersonation", "invalid_scope")],
)
def test_msal_errors(authority: Process, secret: str, scope: str, error: str) -> None:
    app = msal.ConfidentialClientApplication(
        CLIENT, client_credential=secret, authority=f"{authority.url}/{TENANT}", instance_discovery=False
    )

    assert app.acquire_token_for_client(scopes=[scope])["error"] == error
