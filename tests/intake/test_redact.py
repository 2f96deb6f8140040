from __future__ import annotations

import logging

import pytest

from shared.observability.redact import RedactingFilter, mask_email, redact

HEX = "0123456789abcdef" * 4
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl-_x"


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("it@uppoint.com.tr", "i*@u******.com.tr"),
        ("john.smith@example.com", "j*********@e******.com"),
        ("o'brien@mail.example.co.uk", "o******@m***.e******.co.uk"),
        ("a@b.io", "a*@b*.io"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lead it@uppoint.com.tr queued", "lead i*@u******.com.tr queued"),
        ("Authorization: Bearer abc.DEF-123_x", "Authorization: Bearer <redacted>"),
        (f"token {JWT} expired", "token <redacted> expired"),
        (f"X-Hunter-Signature: sha256={HEX}", "X-Hunter-Signature: sha256=<redacted>"),
        ("client_secret=s3cr3t&grant_type=client_credentials", "client_secret=<redacted>&grant_type=client_credentials"),
        ('{"client_secret": "s3cr3t", "client_id": "abc"}', '{"client_secret": "<redacted>", "client_id": "abc"}'),
        ("password=hunter2 host=db", "password=<redacted> host=db"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=bG9uZ2tleQ==;EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=<redacted>;EndpointSuffix=core.windows.net",
        ),
        (
            "connect postgresql://leadpush:p%40ss@db.internal:5432/leadpush failed",
            "connect postgresql://leadpush:<redacted>@db.internal:5432/leadpush failed",
        ),
        ("postgres://u:pw@localhost/db", "postgres://u:<redacted>@localhost/db"),
        ("GET /api/leads/86?code=abcDEF123== 200", "GET /api/leads/86?code=<redacted> 200"),
        # what must survive: ids, Dataverse error codes, URLs without credentials
        (
            "lead 86 error code: 0x80040217 at https://org.crm.dynamics.com/api/data/v9.2/leads",
            "lead 86 error code: 0x80040217 at https://org.crm.dynamics.com/api/data/v9.2/leads",
        ),
        ("postgresql://postgres@127.0.0.1:5432/leadpush", "postgresql://postgres@127.0.0.1:5432/leadpush"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


def test_filter_redacts_message_args_extra_and_traceback() -> None:
    # given a logger writing through a handler that carries the filter
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.intake.redact")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        # when
        try:
            raise RuntimeError("bad password=hunter2 for it@uppoint.com.tr")
        except RuntimeError:
            logger.exception(
                "lead.rejected %s via %s",
                "it@uppoint.com.tr",
                f"sha256={HEX}",
                extra={"contact": "it@uppoint.com.tr", "company_id": 86},
            )
        logger.info("mismatched %s %s", "it@uppoint.com.tr")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True

    # then
    rejected, mismatched = records
    assert rejected.getMessage() == "lead.rejected i*@u******.com.tr via sha256=<redacted>"
    assert rejected.contact == "i*@u******.com.tr"
    assert rejected.company_id == 86
    assert "hunter2" not in rejected.exc_text and "it@uppoint" not in rejected.exc_text
    assert "password=<redacted>" in logging.Formatter().format(rejected)
    assert "it@uppoint" not in mismatched.getMessage()
