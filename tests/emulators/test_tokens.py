from __future__ import annotations

import time

import pytest

from local.emulators import tokens


def test_minted_token_verifies_for_its_audience_ignoring_a_trailing_slash() -> None:
    token, expires_on = tokens.mint("https://org.crm.dynamics.com", subject="s", app_id="a", ttl_seconds=60)

    claims = tokens.verify(token, "https://org.crm.dynamics.com/")

    assert claims["aud"] == "https://org.crm.dynamics.com"
    assert (claims["sub"], claims["appid"], claims["exp"]) == ("s", "a", expires_on)
    assert expires_on - 60 <= time.time() <= expires_on


@pytest.mark.parametrize(
    ("mutate", "audience", "ttl", "message"),
    [
        (lambda t: t, "https://other.crm.dynamics.com", 60, "audience"),
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "https://org.crm.dynamics.com", 60, "signature"),
        (lambda t: t, "https://org.crm.dynamics.com", -1, "expired"),
        (lambda t: "not-a-jwt", "https://org.crm.dynamics.com", 60, "three"),
    ],
    ids=["wrong-audience", "bad-signature", "expired", "malformed"],
)
def test_verify_rejects(mutate, audience: str, ttl: int, message: str) -> None:
    token, _ = tokens.mint("https://org.crm.dynamics.com", subject="s", app_id="a", ttl_seconds=ttl)

    with pytest.raises(tokens.TokenError, match=message):
        tokens.verify(mutate(token), audience)


def test_a_token_signed_with_another_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULATOR_TOKEN_KEY", "someone-else")
    token, _ = tokens.mint("aud", subject="s", app_id="a", ttl_seconds=60)
    monkeypatch.delenv("EMULATOR_TOKEN_KEY")

    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify(token, "aud")
