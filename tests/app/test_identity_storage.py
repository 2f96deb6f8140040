"""Storage without keys: the app and the local host reach the queues with a managed identity's token.

Azurite runs over HTTPS (a throwaway certificate) with `--oauth basic`, which accepts bearer tokens
whose issuer is Entra's, whose audience is Storage and which have not expired. The app gets no
connection string, only `AzureWebJobsStorage__queueServiceUri` and `__credential=managedidentity`,
so every queue call (the webhook's send, the trigger's receive and delete) carries a token that
azure-identity's ManagedIdentityCredential got from the identity emulator.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.storage.queue import QueueClient

from local import services
from local.emulators import identity, tokens
from local.emulators.authority import CertFiles, write_certificates
from tests.app.helpers import COMPANY_86, forget, post_leads, queue_length, sync_rows, wait_for
from tests.conftest import APP_SETTINGS, WEBHOOK_SECRET, Azurite
from tests.entra_postgres import ROLE, TokenPasswords, admin, start_tls_postgres


class _StaticToken:
    """One emulator-minted Storage token, whatever is asked."""

    def __init__(self, *, ttl_seconds: int) -> None:
        self._token, self._expires_on = tokens.mint(
            "https://storage.azure.com", subject="test", app_id="test", ttl_seconds=ttl_seconds
        )

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self._token, self._expires_on)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return write_certificates(tmp_path_factory.mktemp("azurite-tls"))


@pytest.fixture(scope="module")
def oauth_azurite(certs: CertFiles) -> Iterator[Azurite]:
    process, connection_string = services.start_azurite(tls=(certs.cert, certs.key), oauth=True)
    yield Azurite(connection_string=connection_string, port=process.port, process=process)
    process.stop()


def test_company_86_syncs_with_storage_reached_by_managed_identity(
    app_env, dataverse, local_host, database_url, oauth_azurite, certs, monkeypatch
):
    # given: no connection string, only the queue service URL and a managed identity
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca_bundle))
    queue_service_uri = services.azurite_queue_url(oauth_azurite.port, scheme="https")
    emulator = dataverse("mvp")
    env = app_env(
        emulator,
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__queueServiceUri=queue_service_uri,
        AzureWebJobsStorage__credential="managedidentity",
        REQUESTS_CA_BUNDLE=str(certs.ca_bundle),
    )
    host = local_host(env)
    forget(database_url, 86)
    # and Azurite checks tokens: an expired one is refused
    with pytest.raises(HttpResponseError, match="expired"):
        QueueClient(queue_service_uri, env["LEAD_QUEUE_NAME"], credential=_StaticToken(ttl_seconds=-60)).create_queue()

    # when
    response = post_leads(host.url, COMPANY_86, secret=WEBHOOK_SECRET)

    # then
    assert response.status_code == 202, response.text
    wait_for(lambda: sync_rows(database_url, [86]).get(86, {}).get("status") == "synced", what="company 86 synced")
    row = sync_rows(database_url, [86])[86]
    records = emulator.leads()
    assert len(records) == 1
    assert str(row["d365_lead_id"]) == records[0]["leadid"]
    assert records[0]["companyname"] == "uppoint"
    assert queue_length(oauth_azurite, env["LEAD_QUEUE_NAME"]) == 0
    assert queue_length(oauth_azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    log = host.log_path.read_text()
    assert "AccountKey=" not in log and "Bearer " not in log


def test_the_host_names_every_accepted_form_when_storage_is_not_configured(app_env, local_host):
    # given
    env = app_env(AzureWebJobsStorage=None)

    # when / then
    with pytest.raises(services.ServiceError) as failure:
        local_host(env)
    message = str(failure.value)
    assert "AzureWebJobsStorage__accountName" in message and "AzureWebJobsStorage__queueServiceUri" in message


@pytest.fixture(scope="module")
def entra_postgres() -> Iterator[services.PostgresServer]:
    server = start_tls_postgres()
    yield server
    server.close()


def test_company_86_syncs_with_storage_database_and_dataverse_all_on_managed_identity(
    app_env, dataverse, local_host, oauth_azurite, certs, entra_postgres, monkeypatch
):
    # given: storage, PostgreSQL and Dataverse all reached with the managed identity's tokens; the
    # database lets the identity's role in only over TLS with its current token
    header = secrets.token_hex(8)
    passwords = TokenPasswords(entra_postgres.url)
    idp = identity.serve("127.0.0.1", 0, identity_header=header, on_issue=passwords)
    try:
        database = f"leadpush_mi_{secrets.token_hex(4)}"
        admin(entra_postgres.url, f'CREATE DATABASE "{database}" OWNER {ROLE}')
        emulator = dataverse("mvp")
        env = app_env(
            emulator,
            AzureWebJobsStorage=None,
            AzureWebJobsStorage__queueServiceUri=services.azurite_queue_url(oauth_azurite.port, scheme="https"),
            AzureWebJobsStorage__credential="managedidentity",
            DATABASE_URL=f"postgresql://{ROLE}@127.0.0.1:{entra_postgres.cluster.port}/{database}",
            DATABASE_AUTH="managed_identity",
            IDENTITY_ENDPOINT=idp.token_url,
            IDENTITY_HEADER=header,
            REQUESTS_CA_BUNDLE=str(certs.ca_bundle),
        )
        base = {name: value for name, value in os.environ.items() if name not in APP_SETTINGS}
        services.migrate_database({**base, **env})
        host = local_host(env)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca_bundle))

        # when
        response = post_leads(host.url, COMPANY_86, secret=WEBHOOK_SECRET)

        # then
        assert response.status_code == 202, response.text
        state_url = services.with_database(entra_postgres.url, database)
        wait_for(lambda: sync_rows(state_url, [86]).get(86, {}).get("status") == "synced", what="company 86 synced")
        assert str(sync_rows(state_url, [86])[86]["d365_lead_id"]) == emulator.leads()[0]["leadid"]
        sessions, as_role_over_tls = admin(
            entra_postgres.url,
            "SELECT count(*), bool_and(a.usename = %s AND s.ssl) FROM pg_stat_activity a"
            " JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'lead-push' AND a.datname = %s",
            ROLE,
            database,
        )
        assert sessions >= 1 and as_role_over_tls
        assert len(passwords.tokens) >= 2  # one for the migration, one for the host
        assert queue_length(oauth_azurite, env["LEAD_QUEUE_NAME"]) == 0
        assert not any("AccountKey" in value for value in env.values())
        assert "password" not in psycopg2.extensions.parse_dsn(env["DATABASE_URL"])
    finally:
        idp.shutdown()
