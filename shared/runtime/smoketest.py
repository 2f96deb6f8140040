"""`python -m shared.runtime.smoketest` (`make smoketest`): can the push reach this Dataverse org and write its leads?

Checks the D365_* settings, gets a token, calls WhoAmI, reads the lead metadata and prints every
mapped column: present or missing in the org, its type, and for choices the Hunter labels that
have no option. Exits 0 only when the push can work; otherwise prints one line per problem.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from d365.auth import build_token_provider
from d365.client import DataverseClient
from d365.config import DataverseConfig
from d365.errors import D365Error
from d365.mapping import FIELD_RULES, ChoiceOverrides, ChoiceOverridesError, load_choice_overrides, resolve_choice
from d365.metadata import LeadSchema
from shared.runtime.dataverse_settings import dataverse_from_env
from shared.runtime.env import SettingsError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def main(env: Mapping[str, str] = os.environ, out: TextIO = sys.stdout) -> int:
    """Run every check in order, stopping at the first that fails; returns the exit code."""

    def say(line: str) -> None:
        print(line, file=out)

    try:
        config = dataverse_from_env(env)
    except SettingsError as exc:
        for problem in exc.problems:
            say(f"FAIL settings: {problem}")
        return EXIT_CONFIG
    say(f"ok   settings: {config.api_base} ({config.auth_mode.value})")
    try:
        overrides = load_choice_overrides(config.choice_overrides_file) if config.choice_overrides_file else {}
    except ChoiceOverridesError as exc:
        say(f"FAIL settings: {exc}")
        return EXIT_CONFIG

    tokens = build_token_provider(config)
    client = DataverseClient(
        config.url,
        tokens,
        api_version=config.api_version,
        timeout=config.timeout_seconds,
        inline_retry_after=config.inline_retry_after_seconds,
    )
    step = "token"
    try:
        tokens.get_token()
        say("ok   token")
        step = "WhoAmI"
        me = client.whoami()
        say(f"ok   WhoAmI: user {me.get('UserId')} in organization {me.get('OrganizationId')}")
        step = "lead metadata"
        schema = client.read_lead_schema()
        say(f"ok   lead metadata: {len(schema.columns)} columns")
    except D365Error as exc:
        say(f"FAIL {step}: {' '.join(str(exc).split())}")  # one line, whatever the library wrote
        return EXIT_FAILED
    finally:
        client.close()

    say("")
    for line in column_report(schema, overrides):
        say(line)
    say("")
    missing = [name for name in required_columns(config) if not schema.has(name)]
    if missing:
        say(f"FAIL columns: the org's lead table lacks required column(s): {', '.join(missing)}")
        return EXIT_FAILED
    say("ok   the push can work")
    return EXIT_OK


def required_columns(config: DataverseConfig) -> tuple[str, ...]:
    """The table's required columns, then the configured alternate key and match columns."""
    names = [rule.column for rule in FIELD_RULES if rule.required]
    names += [config.alternate_key] if config.alternate_key else []
    names += config.match_columns
    return tuple(dict.fromkeys(names))


def column_report(schema: LeadSchema, overrides: ChoiceOverrides) -> list[str]:
    """A fixed-width table: column, present/missing, the org's type, choice labels without an option."""
    rows = [("column", "in org", "type", "notes")]
    for rule in FIELD_RULES:
        column = schema.get(rule.column)
        if column is None:
            rows.append((rule.column, "MISSING", "-", f"expected {rule.expected_type}; not sent"))
            continue
        note = ""
        if column.attribute_type == "Picklist":
            unmatched = [
                label
                for label in rule.known_values
                if resolve_choice(column, label, overrides.get(rule.column, {})) is None
            ]
            note = f"no option for: {', '.join(unmatched)}" if unmatched else ""
        rows.append((rule.column, "present", column.attribute_type, note))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, [*widths, 0], strict=True)).rstrip() for row in rows
    ]


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    sys.exit(main())
