from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.intake import (
    DeliveryConflict,
    IntakeError,
    Problem,
    SignatureError,
    body_digest,
    delivery_id,
    sign,
    verify_signature,
)

SECRET = "hunter-shared-secret"
BODY = b'{"company_id": 86, "domain": "uppoint.com.tr"}'
NOW = 1_764_151_200.0
TOLERANCE = 300
MISMATCH = Problem("X-Hunter-Signature", "does not match the body")
MALFORMED = Problem("X-Hunter-Signature", "must be sha256=<64 hex digits>")
NOT_SECONDS = Problem("X-Hunter-Timestamp", "must be unix seconds")


def verify(body: bytes, headers: dict[str, str], *, now: float = NOW) -> None:
    verify_signature(body, headers, secret=SECRET, tolerance_seconds=TOLERANCE, now=now)


def refusal(body: bytes, headers: dict[str, str], *, now: float = NOW) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify(body, headers, now=now)
    assert caught.value.status == 401
    return caught.value


def test_sign_is_hmac_sha256_of_the_body_or_of_timestamp_dot_body() -> None:
    plain = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    stamped = hmac.new(SECRET.encode(), b"1764151200." + BODY, hashlib.sha256).hexdigest()

    assert sign(BODY, SECRET) == {"X-Hunter-Signature": f"sha256={plain}"}
    assert sign(BODY, SECRET, 1_764_151_200) == {
        "X-Hunter-Signature": f"sha256={stamped}",
        "X-Hunter-Timestamp": "1764151200",
    }


@pytest.mark.parametrize(
    "headers",
    [
        sign(BODY, SECRET),
        sign(BODY, SECRET, int(NOW)),
        sign(BODY, SECRET, int(NOW) - TOLERANCE),
        sign(BODY, SECRET, int(NOW) + TOLERANCE),
        {name.lower(): value for name, value in sign(BODY, SECRET, int(NOW)).items()},
        {name.upper(): f" sha256={value[7:].upper()} " for name, value in sign(BODY, SECRET).items()},
    ],
    ids=["plain", "stamped", "oldest", "newest", "lower-case names", "upper-case hex, padded"],
)
def test_right_signature_passes(headers: dict[str, str]) -> None:
    verify(BODY, headers)


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (BODY, {}, Problem("X-Hunter-Signature", "is missing")),
        (BODY, sign(BODY, "another secret"), MISMATCH),
        (BODY + b" ", sign(BODY, SECRET), MISMATCH),
        (BODY.replace(b"86", b"87"), sign(BODY, SECRET, int(NOW)), MISMATCH),
        # the timestamp is signed too: replaying a body under a fresh timestamp fails
        (BODY, {**sign(BODY, SECRET, int(NOW) - 3600), "X-Hunter-Timestamp": str(int(NOW))}, MISMATCH),
        # a timestamp added to a body signed without one
        (BODY, {**sign(BODY, SECRET), "X-Hunter-Timestamp": str(int(NOW))}, MISMATCH),
        (BODY, {"X-Hunter-Signature": "sha1=" + "0" * 40}, MALFORMED),
        (BODY, {"X-Hunter-Signature": "sha256=" + "0" * 63}, MALFORMED),
        (BODY, {"X-Hunter-Signature": "sha256=" + "g" * 64}, MALFORMED),
        (BODY, {"X-Hunter-Signature": ""}, MALFORMED),
        (BODY, {**sign(BODY, SECRET), "X-Hunter-Timestamp": "soon"}, NOT_SECONDS),
        (BODY, {**sign(BODY, SECRET), "X-Hunter-Timestamp": "-5"}, NOT_SECONDS),
        (BODY, sign(BODY, SECRET, int(NOW) - TOLERANCE - 1), Problem("X-Hunter-Timestamp", "is older than 300 seconds")),
        (BODY, sign(BODY, SECRET, int(NOW) + TOLERANCE + 1),
         Problem("X-Hunter-Timestamp", "is more than 300 seconds in the future")),
    ],
    ids=[
        "missing", "wrong secret", "tampered body", "tampered stamped body", "re-stamped", "stamp added",
        "other algorithm", "short digest", "not hex", "empty", "timestamp not a number", "negative timestamp",
        "stale", "future",
    ],
)
def test_bad_signature_is_refused(body: bytes, headers: dict[str, str], problem: Problem) -> None:
    error = refusal(body, headers)

    assert error.problems == (problem,)
    assert error.response_body() == {
        "error": "Unauthorized",
        "problems": [{"field": problem.field, "reason": problem.reason}],
    }


def test_signature_error_is_an_intake_error_so_one_handler_serves_both() -> None:
    assert issubclass(SignatureError, IntakeError)


def test_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify_signature(BODY, sign(BODY, "x"), secret="", tolerance_seconds=TOLERANCE, now=NOW)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"X-Hunter-Delivery": "3f2b6c1e-0d8a-4a52-9d0e-1c2b3a4d5e6f"}, "3f2b6c1e-0d8a-4a52-9d0e-1c2b3a4d5e6f"),
        ({"x-hunter-delivery": " abc 123 "}, "abc 123"),
        ({"X-HUNTER-DELIVERY": "d" * 128}, "d" * 128),
    ],
)
def test_delivery_id(headers: dict[str, str], expected: str | None) -> None:
    assert delivery_id(headers) == expected


@pytest.mark.parametrize("value", ["", "   ", "d" * 129, "tab\there", "caf\u00e9", "nul\x00"])
def test_bad_delivery_id_is_400(value: str) -> None:
    with pytest.raises(IntakeError) as caught:
        delivery_id({"X-Hunter-Delivery": value})

    assert caught.value.status == 400
    assert caught.value.problems == (
        Problem("X-Hunter-Delivery", "must be 1 to 128 printable ASCII characters"),
    )


def test_body_digest_is_the_hex_sha256_of_the_raw_body() -> None:
    assert body_digest(BODY) == hashlib.sha256(BODY).hexdigest()
    assert body_digest(BODY) != body_digest(BODY + b" ")


def test_delivery_conflict_is_a_409_naming_the_header_and_the_different_body() -> None:
    conflict = DeliveryConflict()

    assert isinstance(conflict, IntakeError)
    assert conflict.status == 409
    [problem] = conflict.problems
    assert problem.field == "X-Hunter-Delivery"
    assert "different body" in problem.reason
    assert conflict.response_body()["error"] == "Conflict"
