"""The smoke test against the emulators: exit codes and what it prints. Most cases call `main()`
in-process (quick); a few run `python -m shared.runtime.smoketest` as an operator would."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runtime.smoketest import main
from local.services import free_port

REPO = Path(__file__).resolve().parents[2]


def _run_module(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("D365_", "IDENTITY_", "REQUESTS_CA_BUNDLE"))}
    return subprocess.run(
        [sys.executable, "-m", "shared.runtime.smoketest"], cwd=REPO, env={**base, **env}, capture_output=True, text=True,
        timeout=60,
    )


def _run(env: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(env, out), out.getvalue()


@pytest.fixture
def msi(identity, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    return identity


def _secret_env(url: str, authority, secret: str) -> dict[str, str]:
    return {
        "D365_URL": url, "D365_AUTH_MODE": "client_secret", "D365_TENANT_ID": authority.tenant_id,
        "D365_CLIENT_ID": authority.client_id, "D365_CLIENT_SECRET": secret,
        "D365_AUTHORITY_HOST": authority.host, "REQUESTS_CA_BUNDLE": str(authority.ca_bundle),
    }


def test_module_passes_for_a_good_org(dataverse, identity) -> None:
    emulator = dataverse("full", "hnt_domain")
    result = _run_module({
        "D365_URL": emulator.url, "D365_ALTERNATE_KEY": "hnt_domain",
        "IDENTITY_ENDPOINT": identity.endpoint, "IDENTITY_HEADER": identity.header,
    })

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   WhoAmI" in result.stdout and result.stdout.rstrip().endswith("ok   the push can work")
    assert "MISSING" not in result.stdout and "no option for" not in result.stdout
    assert result.stderr == ""


def test_module_passes_for_an_org_without_hunter_columns(dataverse, identity) -> None:
    emulator = dataverse("bare")
    result = _run_module({"D365_URL": emulator.url, "IDENTITY_ENDPOINT": identity.endpoint,
                          "IDENTITY_HEADER": identity.header})

    assert result.returncode == 0, result.stdout
    assert "MISSING" in result.stdout  # the hnt_* columns, reported, not sent


def test_module_fails_for_an_org_without_core_columns(dataverse, identity) -> None:
    emulator = dataverse("bare")
    emulator.control("DELETE", "schema/columns/subject")
    result = _run_module({"D365_URL": emulator.url, "IDENTITY_ENDPOINT": identity.endpoint,
                          "IDENTITY_HEADER": identity.header})

    assert result.returncode == 1
    assert "FAIL columns: the org's lead table lacks required column(s): subject" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_module_fails_for_a_bad_secret_without_printing_it(dataverse, authority) -> None:
    secret = "wrong-secret-do-not-print"
    result = _run_module(_secret_env(dataverse("mvp").url, authority, secret))

    assert result.returncode == 1
    assert "FAIL token: " in result.stdout and "invalid_client" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_mvp_org_passes_and_lists_missing_post_mvp_columns(dataverse, msi) -> None:
    code, out = _run({"D365_URL": dataverse("mvp").url})

    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("hnt_")}
    assert "MISSING" in lines["hnt_prioritycategory"] and "present" in lines["hnt_segment"]
    assert all(line == line.rstrip() for line in out.splitlines())


def test_choice_labels_without_an_option_are_reported(dataverse, msi) -> None:
    emulator = dataverse("mvp")
    emulator.control("DELETE", "schema/columns/hnt_source")
    emulator.control("POST", "schema/columns", json={
        "logical_name": "hnt_source", "attribute_type": "Picklist",
        "options": [{"value": 1, "label": "Manual"}, {"value": 2, "label": "API"}],
    })
    code, out = _run({"D365_URL": emulator.url})

    assert code == 0, out
    [line] = [line for line in out.splitlines() if line.startswith("hnt_source ")]
    assert line.endswith("no option for: Import, Crawler")


def test_choice_overrides_cover_missing_labels(dataverse, msi, tmp_path: Path) -> None:
    emulator = dataverse("mvp")
    emulator.control("DELETE", "schema/columns/hnt_source")
    emulator.control("POST", "schema/columns", json={
        "logical_name": "hnt_source", "attribute_type": "Picklist",
        "options": [{"value": 1, "label": "Manual"}, {"value": 2, "label": "Other"}],
    })
    overrides = tmp_path / "overrides.json"
    overrides.write_text('{"hnt_source": {"Import": "Other", "API": 2, "Crawler": "Other"}}')
    code, out = _run({"D365_URL": emulator.url, "D365_CHOICE_OVERRIDES_FILE": str(overrides)})

    assert code == 0, out
    assert "no option for" not in out


def test_bad_choice_overrides_file_is_a_settings_error(dataverse, msi, tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.json"
    overrides.write_text('{"hnt_domain": {}}')
    code, out = _run({"D365_URL": dataverse("mvp").url, "D365_CHOICE_OVERRIDES_FILE": str(overrides)})
    assert code == 2 and "FAIL settings: " in out and "not a mapped choice column" in out


def test_missing_match_column_fails(dataverse, msi) -> None:
    code, out = _run({"D365_URL": dataverse("mvp").url, "D365_MATCH_COLUMNS": "emailaddress1,hnt_nosuch"})
    assert code == 1 and "lacks required column(s): hnt_nosuch" in out


def test_good_client_secret_passes(dataverse, authority, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(authority.ca_bundle))
    code, out = _run(_secret_env(dataverse("mvp").url, authority, authority.client_secret))
    assert code == 0, out
    assert authority.client_secret not in out


def test_missing_settings_exit_2_naming_each() -> None:
    code, out = _run({"D365_AUTH_MODE": "client_secret"})

    assert code == 2
    assert "FAIL settings: D365_URL is missing" in out
    assert "FAIL settings: D365_CLIENT_SECRET is required" in out


def test_unreachable_dataverse_fails_with_one_line(msi) -> None:
    code, out = _run({"D365_URL": f"http://127.0.0.1:{free_port()}", "D365_TIMEOUT_SECONDS": "2"})
    assert code == 1
    assert out.splitlines()[-1] == "FAIL WhoAmI: whoami: ConnectionError"
