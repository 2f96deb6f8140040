"""Logging for the app: stable event names first in each message, context in `extra`, secrets masked.

Application Insights keeps each record's message and, through the worker, its `extra` fields as
custom dimensions; a query such as `traces | where message startswith "d365_push_failed"` finds events.
"""

from __future__ import annotations

import logging
import os

from shared.observability.redact import RedactingFilter

_NOISY = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "msal", "urllib3")


def configure_logging() -> None:
    """Idempotent. Under the Functions host the worker's handlers are on the root logger already."""
    root = logging.getLogger()
    if not root.handlers:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(console)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
