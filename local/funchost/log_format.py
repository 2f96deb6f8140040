"""One log line per record on stderr: time, level, logger name, message, then any `extra` fields."""
from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class ExtraFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={value!r}" for key, value in vars(record).items() if key not in _STANDARD)
        if not extras:
            return line
        first, newline, rest = line.partition("\n")  # keep a traceback below the extras
        return f"{first} {extras}{newline}{rest}"


def configure_logging(level: int = logging.INFO) -> None:
    """Send every logger's records at `level` and above to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtraFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The storage SDK logs every HTTP request at INFO; the real host does not show those either.
    logging.getLogger("azure").setLevel(logging.WARNING)
