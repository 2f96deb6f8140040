"""AzureWebJobsStorage in each form the Functions host accepts, read the way the host reads it."""
from __future__ import annotations

import pytest

from local.funchost import app_settings
from shared.runtime.settings import Settings, SettingsError
from shared.runtime.storage_settings import storage_from_env
from shared.storage.config import ConnectionStringStorage, ManagedIdentityStorage

AZURITE = "UseDevelopmentStorage=true"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AzureWebJobsStorage": AZURITE}, ConnectionStringStorage(AZURITE)),
        (
            {"AzureWebJobsStorage__accountName": "leadpushstore"},
            ManagedIdentityStorage("https://leadpushstore.queue.core.windows.net"),
        ),
        (
            {"AzureWebJobsStorage__accountName": "leadpushstore", "AzureWebJobsStorage__credential": "managedidentity",
             "AzureWebJobsStorage__clientId": CLIENT_ID},
            ManagedIdentityStorage("https://leadpushstore.queue.core.windows.net", client_id=CLIENT_ID),
        ),
        (
            {"AzureWebJobsStorage__queueServiceUri": "https://127.0.0.1:10001/devstoreaccount1/",
             "AzureWebJobsStorage__credential": "ManagedIdentity"},
            ManagedIdentityStorage("https://127.0.0.1:10001/devstoreaccount1"),
        ),
        # the explicit URI wins over the account name; a connection string wins over both
        (
            {"AzureWebJobsStorage__queueServiceUri": "https://q.example.net",
             "AzureWebJobsStorage__accountName": "x1x"},
            ManagedIdentityStorage("https://q.example.net"),
        ),
        (
            {"AzureWebJobsStorage": AZURITE, "AzureWebJobsStorage__accountName": "leadpushstore"},
            ConnectionStringStorage(AZURITE),
        ),
    ],
)
def test_each_accepted_form(env, expected):
    assert storage_from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "AzureWebJobsStorage is missing: .*AzureWebJobsStorage__accountName .*__queueServiceUri"),
        ({"AzureWebJobsStorage": "  "}, "AzureWebJobsStorage is missing"),
        ({"AzureWebJobsStorage__accountName": "Lead_Push"}, "__accountName must be 3-24 lower-case letters and digits"),
        ({"AzureWebJobsStorage__queueServiceUri": "http://127.0.0.1:10001/devstoreaccount1"}, "must be an https URL"),
        ({"AzureWebJobsStorage__accountName": "leadpushstore", "AzureWebJobsStorage__credential": "azurecli"},
         "__credential must be managedidentity"),
        ({"AzureWebJobsStorage__accountName": "leadpushstore", "AzureWebJobsStorage__clientSecret": "s"},
         "__clientSecret is not supported"),
    ],
)
def test_each_problem_is_named(env, problem):
    with pytest.raises(SettingsError, match=problem):
        storage_from_env(env)


def test_settings_read_the_identity_based_form():
    settings = Settings.from_env({
        "AzureWebJobsStorage__accountName": "leadpushstore",
        "AzureWebJobsStorage__clientId": CLIENT_ID,
        "DATABASE_URL": "postgresql://leadpush-identity@db.postgres.database.azure.com/leadpush",
        "DATABASE_AUTH": "managed_identity",
        "D365_URL": "https://org.crm.dynamics.com",
        "HUNTER_ALLOW_UNSIGNED": "true",
    })
    assert settings.storage == ManagedIdentityStorage("https://leadpushstore.queue.core.windows.net", CLIENT_ID)


def test_a_connection_string_is_never_shown():
    assert "AccountKey" not in repr(ConnectionStringStorage("AccountName=a;AccountKey=c2VjcmV0"))


def test_the_local_host_resolves_a_binding_connection_as_the_host_does():
    env = {"MyStorage__queueServiceUri": "https://q.example.net/acct", "MyStorage__clientId": CLIENT_ID}
    assert app_settings.storage("MyStorage", env) == ManagedIdentityStorage("https://q.example.net/acct", CLIENT_ID)
    assert app_settings.storage(None, {"AzureWebJobsStorage": AZURITE}) == ConnectionStringStorage(AZURITE)
    with pytest.raises(app_settings.AppSettingError, match="MyStorage__accountName"):
        app_settings.storage("MyStorage", {})
