"""A lead mapped to Dataverse columns with the cached schema, its problems logged once."""

from __future__ import annotations

import logging
import threading
from typing import Any

from d365.mapping import ChoiceOverrides, MappedLead, map_lead
from d365.schema_cache import SchemaCache
from shared.model.messages import LeadMessage

logger = logging.getLogger(__name__)


class LeadMapper:
    def __init__(self, schema: SchemaCache, choice_overrides: ChoiceOverrides | None) -> None:
        self.schema = schema
        self._overrides = choice_overrides
        self._reported_missing: set[str] = set()
        self._reported_lock = threading.Lock()

    def map(self, lead: LeadMessage, context: dict[str, Any]) -> MappedLead:
        """Raises what reading the schema raises (D365Error), and ValueError/TypeError/KeyError
        for a lead that cannot be mapped."""
        mapped = map_lead(lead.lead, self.schema.get(), choice_overrides=self._overrides)
        with self._reported_lock:
            new = [c for c in mapped.missing_columns if c not in self._reported_missing]
            self._reported_missing.update(new)
        for column in new:
            logger.warning(
                "d365_column_missing column=%s: the org has no such column; it is not sent",
                column,
                extra={"column": column},
            )
        for warning in mapped.warnings:
            logger.warning(
                "d365_mapping_warning company_id=%s column=%s: %s",
                lead.company_id,
                warning.column,
                warning.reason,
                extra={**context, "column": warning.column},
            )
        return mapped


def warning_texts(mapped: MappedLead) -> list[str]:
    return [f"{w.column}: {w.reason}" for w in mapped.warnings]
