"""A Key Vault reference App Service could not resolve arrives as its own text: it is never a secret.

For the webhook secret the app starts, /api/health answers 503 naming the setting, and the webhook refuses
every call with 503, signed with the reference's text or not. Any other setting the app needs stops start-up
with a problem naming it.
"""
from __future__ import annotations

import json
import secrets

import pytest
import requests

from shared.intake import sign
from shared.runtime.settings import Settings, SettingsError
from tests.app.helpers import lead, post_leads, queue_length, sync_rows
from tests.conftest import WEBHOOK_SECRET

REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-leadpush.vault.azure.net/secrets/hunter-webhook-secret)"
SPELLINGS = [REFERENCE, "  @microsoft.keyvault(VaultName=kv-leadpush;SecretName=hunter-webhook-secret)\n"]


@pytest.fixture(params=SPELLINGS, ids=["as App Service passes it", "lower case, padded"])
def host(request, app_env, dataverse, local_host):
    return local_host(app_env(dataverse("mvp"), HUNTER_WEBHOOK_SECRET=request.param))


def test_health_answers_503_naming_the_setting(host):
    response = requests.get(f"{host.url}/api/health", timeout=30)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["settings"] == "unresolved"
    assert body["unresolved_settings"] == ["HUNTER_WEBHOOK_SECRET"]
    assert (body["checks"]["database"], body["checks"]["queue"]) == ("ok", "ok")  # only the setting is wrong
    assert "vault.azure.net" not in response.text and "KeyVault" not in response.text


@pytest.mark.parametrize("signed_with", ["the reference's text", "nothing"])
def test_the_webhook_authenticates_nothing_with_it_and_queues_nothing(host, azurite, database_url, signed_with):
    company = 9_000_000 + secrets.randbelow(1_000_000)
    raw = json.dumps(lead(company)).encode()
    signature = sign(raw, host.env["HUNTER_WEBHOOK_SECRET"]) if signed_with != "nothing" else {}

    response = requests.post(
        f"{host.url}/api/leads", data=raw, timeout=30, headers={"Content-Type": "application/json", **signature}
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert response.json()["problems"] == [
        {"field": "HUNTER_WEBHOOK_SECRET", "reason": "unresolved Key Vault reference; retry later"}
    ]
    assert sync_rows(database_url, [company]) == {}
    assert queue_length(azurite, host.env["LEAD_QUEUE_NAME"]) == 0


def test_allowing_unsigned_calls_does_not_open_the_webhook_while_the_secret_is_unresolved(
    app_env, dataverse, local_host, database_url
):
    host = local_host(app_env(dataverse("mvp"), HUNTER_WEBHOOK_SECRET=REFERENCE, HUNTER_ALLOW_UNSIGNED="true"))
    company = 9_000_000 + secrets.randbelow(1_000_000)

    response = requests.post(
        f"{host.url}/api/leads", data=json.dumps(lead(company)), timeout=30,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 503
    assert sync_rows(database_url, [company]) == {}


def test_once_the_reference_resolves_the_same_app_accepts_signed_calls(app_env, dataverse, local_host):
    """The control: with the secret's value (as after a restart that resolved it) health is ok and a lead
    signed with it is accepted."""
    host = local_host(app_env(dataverse("mvp"), HUNTER_WEBHOOK_SECRET=WEBHOOK_SECRET))
    company = 9_000_000 + secrets.randbelow(1_000_000)

    health = requests.get(f"{host.url}/api/health", timeout=30)
    response = post_leads(host.url, lead(company), secret=WEBHOOK_SECRET)

    assert (health.status_code, health.json()["checks"]["settings"]) == (200, "ok")
    assert "unresolved_settings" not in health.json()
    assert response.status_code == 202, response.text


# --- settings the app cannot start without --------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "overrides"),
    [
        ("DATABASE_URL", {}),
        ("D365_CLIENT_SECRET", {"D365_AUTH_MODE": "client_secret", "D365_TENANT_ID": "t", "D365_CLIENT_ID": "c"}),
        ("AzureWebJobsStorage", {}),
    ],
)
def test_any_other_required_setting_with_an_unresolved_reference_stops_start_up_naming_it(setting, overrides):
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "DATABASE_URL": "postgresql://leadpush@127.0.0.1:5432/leadpush",
        "D365_URL": "https://contoso.crm4.dynamics.com",
        "HUNTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **overrides,
        setting: f"@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/{setting.lower()})",
    }

    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)

    reasons = [problem for problem in error.value.problems if "unresolved Key Vault reference" in problem]
    assert [reason.split(" ", 1)[0] for reason in reasons] == [setting]
    assert "vault.azure.net" not in str(error.value)


def test_an_unresolved_reference_the_app_does_not_read_is_no_concern_of_it():
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "DATABASE_URL": "postgresql://leadpush@127.0.0.1:5432/leadpush",
        "D365_URL": "https://contoso.crm4.dynamics.com",
        "HUNTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SOME_OTHER_TEAMS_SECRET": REFERENCE,
    }

    assert Settings.from_env(env).unresolved_settings == ()
