"""Recording a written (or already written) lead as synced."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from shared.model.errors import StoreUnavailable
from shared.model.ports import SyncStore
from shared.model.sync import Attempt, Synced

logger = logging.getLogger(__name__)


class UnrecordedWrite(StoreUnavailable):
    """The lead was written, and PostgreSQL could not record it: like a write whose answer was lost,
    it must never end the lead `failed` (the record holds the version)."""


def finish_synced(
    store: SyncStore,
    company_id: int,
    token: str,
    attempt: Attempt,
    *,
    version: datetime,
    etag: str | None,
    fingerprint: str | None,
    warnings: Sequence[str],
    synced: Synced | None = None,
) -> None:
    """Raises UnrecordedWrite when PostgreSQL cannot be reached."""
    try:
        recorded = store.finish_synced(
            company_id,
            token,
            attempt,
            version=version,
            etag=etag,
            fingerprint=fingerprint,
            warnings=warnings,
            synced=synced,
        )
    except StoreUnavailable as exc:
        raise UnrecordedWrite(str(exc)) from exc
    if not recorded:
        # The write was sent within the lease; the lead's next holder re-decides from the store
        # (and meets a 412 if our write changed the record's version).
        logger.warning(
            "lease_lost company_id=%s: the lead's lease ended before its outcome was recorded",
            company_id,
            extra={"company_id": company_id},
        )
