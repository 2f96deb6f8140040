"""LEAD_QUEUE_NAME is checked at start-up, so its poison queue is a valid Storage queue name too."""
from __future__ import annotations

import re

import pytest

from shared.runtime.settings import Settings, SettingsError

# Azure Storage: 3-63 characters, lower-case letters, digits and single inner hyphens.
STORAGE_QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
BASE_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/leadpush",
    "D365_URL": "https://contoso.crm.dynamics.com",
    "HUNTER_WEBHOOK_SECRET": "s",
}


def settings_with(queue_name: str) -> Settings:
    return Settings.from_env({**BASE_ENV, "LEAD_QUEUE_NAME": queue_name})


@pytest.mark.parametrize("name", ["abc", "lead-push", "a" * 56, "l-" * 27 + "ab"], ids=["3", "default", "56", "56 hyphenated"])
def test_names_up_to_56_characters_are_accepted_and_their_poison_queue_is_valid(name: str) -> None:
    settings = settings_with(name)

    assert settings.lead_queue_name == name
    assert STORAGE_QUEUE_NAME.fullmatch(settings.poison_queue_name)


@pytest.mark.parametrize(
    "name",
    ["a" * 57, "a" * 58, "a" * 63, "ab", "Lead-push", "lead--push", "-lead", "lead-", "lead_push"],
    ids=["57", "58", "63", "2", "upper case", "double hyphen", "leading hyphen", "trailing hyphen", "underscore"],
)
def test_other_names_stop_start_up_naming_the_setting(name: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings_with(name)

    assert "LEAD_QUEUE_NAME must be 3-56" in str(refused.value)
