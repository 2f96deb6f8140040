"""Keep secrets and contact data out of logs.

`redact(text)` masks, in free text: URL credentials (e.g. PostgreSQL URLs' passwords),
`key=value` / `"key": "value"` secrets (client_secret, password, AccountKey, SharedAccessKey, sig,
tokens), a function key in a `?code=` query, bearer tokens, JWT-looking strings, `sha256=<hex>`
signatures and e-mail addresses.
`RedactingFilter` applies it to every log record; attach it to the *handlers* (a logger's own
filters do not see records propagated from child loggers).
"""

from __future__ import annotations

import logging
import re

__all__ = ["mask_email", "redact", "RedactingFilter"]

MASK = "<redacted>"

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]*@")
_SECRET_PAIR = re.compile(
    r"(?i)\b(client_secret|password|passwd|pwd|accountkey|sharedaccesskey|sig|secret"
    r"|access_token|refresh_token|id_token|api_key|apikey|x-functions-key)"
    r"(\"?\s*[=:]\s*\"?)([^\s\"';&,]+)"
)
_FUNCTION_KEY_PARAM = re.compile(r"([?&]code=)[^&\s#]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SIGNATURE = re.compile(r"(?i)\b(sha256=)[0-9a-f]{16,}")
# Not right after a "/", so a URL's user name ("postgresql://postgres@host") is not an address.
_EMAIL = re.compile(
    r"(?<![/A-Za-z0-9.!#$%&'*+=?^_`{|}~-])"
    r"[A-Za-z0-9!#$%&'*+=?^_`{|}~-][A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRIBUTES = frozenset(
    [*vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)), "message", "asctime"]
)


def mask_email(address: str) -> str:
    """'it@uppoint.com.tr' -> 'i*@u******.com.tr': first letters kept, the rest hidden.

    The domain's labels are masked except the last one, and the one before it when it is a short
    second-level suffix (com.tr, co.uk): enough to recognise an address, not to read it.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return _mask_word(address)
    labels = domain.split(".")
    kept = 2 if len(labels) >= 3 and len(labels[-2]) <= 3 else 1
    masked = [_mask_word(label) for label in labels[:-kept]] + labels[-kept:]
    return f"{_mask_word(local)}@{'.'.join(masked)}"


def redact(text: str) -> str:
    """`text` with credentials, tokens, signatures and e-mail addresses masked."""
    text = _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
    text = _SECRET_PAIR.sub(rf"\1\2{MASK}", text)
    text = _FUNCTION_KEY_PARAM.sub(rf"\1{MASK}", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    text = _JWT.sub(MASK, text)
    text = _SIGNATURE.sub(rf"\1{MASK}", text)
    return _EMAIL.sub(lambda match: mask_email(match.group()), text)


class RedactingFilter(logging.Filter):
    """Redacts the formatted message, the traceback and string `extra` values of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # mismatched %-args: keep both, redacted, rather than fail
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


def _mask_word(word: str) -> str:
    return word[:1] + "*" * max(1, len(word) - 1)
