"""The Function App's settings in infra/app/api.bicep are exactly enough for `Settings.from_env`, in their
secretless forms: identity-based host storage, an Entra token for PostgreSQL, a Key Vault reference for the
webhook secret, Application Insights signed by the identity."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.runtime.settings import DatabaseAuth, Settings, SettingsError
from shared.storage.config import ManagedIdentityStorage
from tests.infra.bicep_model import ROOT, expression, load

# What main.bicep passes in, as Azure would fill it.
SAMPLE_PARAMS = {
    "name": "func-leadpush-abc123",
    "identityId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-lp",
    "identityClientId": "6f1c1a52-0000-4000-8000-00000000c1d0",
    "identityName": "id-leadpush-abc123",
    "storageAccountName": "stabc123",
    "postgresHost": "psql-abc123.postgres.database.azure.com",
    "postgresPort": 6432,
    "databaseName": "leadpush",
    "webhookSecretUri": "https://kv-abc123.vault.azure.net/secrets/hunter-webhook-secret",
    "dataverseUrl": "https://contoso.crm.dynamics.com",
}


def bicep_app_settings() -> dict[str, str]:
    api = load("app/api.bicep", SAMPLE_PARAMS)
    (settings_resource,) = api.of_type("Microsoft.Web/sites/config").values()
    assert settings_resource["name"] == "appsettings"
    return api.resolve(settings_resource["properties"])


def test_settings_read_the_bicep_app_settings_and_nothing_else():
    env = bicep_app_settings()

    settings = Settings.from_env(env)

    assert settings.storage == ManagedIdentityStorage(
        "https://stabc123.queue.core.windows.net", client_id=SAMPLE_PARAMS["identityClientId"]
    )
    assert settings.database_auth is DatabaseAuth.MANAGED_IDENTITY
    assert settings.dataverse.url == "https://contoso.crm.dynamics.com"
    assert settings.dataverse.managed_identity_client_id == SAMPLE_PARAMS["identityClientId"]
    assert settings.hunter_allow_unsigned is False


def test_each_required_setting_is_one_the_bicep_sets():
    env = bicep_app_settings()

    required = []
    for name in env:
        try:
            Settings.from_env({key: value for key, value in env.items() if key != name})
        except SettingsError:
            required.append(name)

    # Dropping any of these breaks start-up; this also proves the test above could fail.
    assert {"AzureWebJobsStorage__accountName", "DATABASE_URL", "D365_URL", "HUNTER_WEBHOOK_SECRET"} <= set(required)


def test_host_storage_is_identity_based():
    env = bicep_app_settings()

    assert "AzureWebJobsStorage" not in env
    assert env["AzureWebJobsStorage__credential"] == "managedidentity"
    assert env["AzureWebJobsStorage__clientId"] == SAMPLE_PARAMS["identityClientId"]
    assert env["AzureWebJobsStorage__accountName"] == SAMPLE_PARAMS["storageAccountName"]


def test_database_url_has_no_password_and_goes_through_pgbouncer_with_tls():
    url = urlsplit(bicep_app_settings()["DATABASE_URL"])

    assert (url.username, url.password, url.hostname, url.port) == (
        SAMPLE_PARAMS["identityName"],
        None,
        SAMPLE_PARAMS["postgresHost"],
        6432,
    )
    assert parse_qs(url.query) == {"sslmode": ["require"]}
    main = load("main.bicep")
    assert expression(main.modules["api"]["config"]["params"]["postgresPort"]) == "postgres.outputs.appPort"


def test_pgbouncer_port_only_where_the_tier_has_pgbouncer():
    postgres = load("app/postgres.bicep")

    assert postgres.tree["outputs"]["appPort"]["value"] == {
        "operator": {
            "type": "conditional",
            "operands": {"condition": "pgBouncerEnabled", "true_value": 6432, "false_value": 5432},
        }
    }


def test_webhook_secret_is_a_key_vault_reference_resolved_by_the_identity():
    api = load("app/api.bicep", SAMPLE_PARAMS)
    (site,) = api.of_type("Microsoft.Web/sites").values()

    assert bicep_app_settings()["HUNTER_WEBHOOK_SECRET"] == (
        f"@Microsoft.KeyVault(SecretUri={SAMPLE_PARAMS['webhookSecretUri']})"
    )
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    assert expression(load("main.bicep").modules["api"]["config"]["params"]["webhookSecretUri"]) == (
        "keyVault.outputs.webhookSecretUri"
    )


def test_telemetry_goes_to_application_insights_signed_by_the_identity():
    env = bicep_app_settings()

    assert env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        f"ClientId={SAMPLE_PARAMS['identityClientId']};Authorization=AAD"
    )
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "<applicationInsights.properties.ConnectionString>"
    assert env["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"


def test_dataverse_signs_in_with_the_same_identity():
    env = bicep_app_settings()

    assert (env["D365_AUTH_MODE"], env["D365_MANAGED_IDENTITY_CLIENT_ID"]) == (
        "managed_identity",
        SAMPLE_PARAMS["identityClientId"],
    )
    assert not {name for name in env if name in ("D365_CLIENT_SECRET", "D365_CLIENT_ID", "D365_TENANT_ID")}


def test_flex_consumption_app_runs_python_311_as_the_user_assigned_identity():
    api = load("app/api.bicep", SAMPLE_PARAMS)
    (site,) = api.of_type("Microsoft.Web/sites").values()
    (plan,) = api.of_type("Microsoft.Web/serverfarms").values()
    config = site["properties"]["functionAppConfig"]

    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert config["scaleAndConcurrency"] == {
        "maximumInstanceCount": "maximumInstanceCount",
        "instanceMemoryMB": "instanceMemoryMB",
    }
    # Flex Consumption refuses these two as app settings.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} & set(bicep_app_settings())


@pytest.mark.parametrize("param", ["dataverseUrl", "maximumInstanceCount", "instanceMemoryMB"])
def test_deployment_parameters(param):
    main = load("main.bicep")

    assert param in main.tree["parameters"]
    assert main.modules["api"]["config"]["params"][param] == param


def test_worker_threads_match_the_messages_host_json_hands_each_instance():
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]

    assert int(bicep_app_settings()["PYTHON_THREADPOOL_THREAD_COUNT"]) == (
        queues["batchSize"] + queues["newBatchThreshold"]
    )


def test_every_app_setting_a_binding_names_is_set():
    """A `%NAME%` in a trigger that the host cannot resolve stops the function from loading."""
    import re
    from pathlib import Path

    named = set()
    for path in (Path(__file__).resolve().parents[2] / "blueprints").glob("*.py"):
        named |= set(re.findall(r'"%([A-Za-z0-9_]+)%"', path.read_text()))
    assert named, "no binding names an app setting: the check checks nothing"
    assert named <= set(bicep_app_settings()), named - set(bicep_app_settings())
