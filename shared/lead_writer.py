"""Finds the Dataverse record for a Hunter lead, and writes it, never creating a second one.

Matching, in order: (1) the record id stored for the company; (2) the alternate key, when one is
configured; (3) a lookup of existing leads by the configured columns (email, then website);
(4) a create with an id derived from the company id, sent as `PATCH` + `If-None-Match: *`, so a
create whose answer was lost is found, not repeated, on the next attempt. Never a bare `POST`.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from d365.client import DataverseClient
from d365.errors import D365DuplicateError, D365NotFoundError

logger = logging.getLogger(__name__)

# Fixed forever: changing it would make every lead look new to Dataverse.
LEAD_ID_NAMESPACE = uuid.UUID("7c1f6a4e-2b1d-5c8e-9f3a-48d0e6b1a2c4")


def deterministic_lead_id(company_id: int) -> str:
    return str(uuid.uuid5(LEAD_ID_NAMESPACE, f"hunter-company:{company_id}"))


@dataclass(frozen=True)
class WriteResult:
    lead_id: str
    created: bool
    requests: int


class LeadWriter:
    def __init__(self, client: DataverseClient, *, alternate_key: str | None, match_columns: Sequence[str]) -> None:
        self._client = client
        self._alternate_key = alternate_key
        self._match_columns = tuple(match_columns)

    def write(self, company_id: int, payload: Mapping[str, Any], *, known_id: str | None) -> WriteResult:
        """Upsert the lead. Raises d365.errors.D365Error subclasses for the caller to classify."""
        requests = 0
        if known_id:
            try:
                self._client.update_lead(known_id, payload)
                return WriteResult(known_id, created=False, requests=1)
            except D365NotFoundError:
                logger.warning("d365_lead_missing company_id=%s d365_lead_id=%s: recreating", company_id, known_id,
                               extra={"company_id": company_id, "d365_lead_id": known_id})
                return self._create(company_id, payload, requests=1)

        key_value = payload.get(self._alternate_key) if self._alternate_key else None
        if key_value is not None:
            body = {k: v for k, v in payload.items() if k != self._alternate_key}
            lead_id = self._client.upsert_lead_by_key({self._alternate_key: key_value}, body)
            return WriteResult(lead_id, created=False, requests=1)

        matches = [(column, payload[column]) for column in self._match_columns if payload.get(column)]
        if matches:
            requests += 1
            found = self._pick(self._client.find_leads(matches), matches, deterministic_lead_id(company_id))
            if found:
                try:
                    self._client.update_lead(found, payload)
                    return WriteResult(found, created=False, requests=requests + 1)
                except D365NotFoundError:  # deleted between the lookup and the write
                    requests += 1
        return self._create(company_id, payload, requests=requests)

    def _create(self, company_id: int, payload: Mapping[str, Any], *, requests: int) -> WriteResult:
        lead_id = deterministic_lead_id(company_id)
        try:
            self._client.create_lead(lead_id, payload)
            logger.info("d365_lead_created company_id=%s d365_lead_id=%s", company_id, lead_id,
                        extra={"company_id": company_id, "d365_lead_id": lead_id})
            return WriteResult(lead_id, created=True, requests=requests + 1)
        except D365DuplicateError as duplicate:
            # Our own earlier create whose answer was lost; or a unique key held by another record,
            # in which case the update below finds nothing and the duplicate error stands.
            try:
                self._client.update_lead(lead_id, payload)
            except D365NotFoundError:
                raise duplicate from None
            return WriteResult(lead_id, created=False, requests=requests + 2)

    def _pick(self, found: Sequence[Mapping[str, Any]], matches: Sequence[tuple[str, Any]], own_id: str) -> str | None:
        """Our own record first; else the one matching the first configured column."""
        ids = [str(record["leadid"]) for record in found]
        if own_id in ids:
            return own_id
        for column, value in matches:
            for record in found:
                if str(record.get(column) or "").casefold() == str(value).casefold():
                    return str(record["leadid"])
        return ids[0] if ids else None
