"""The push's side of the pipeline's pause: waiting while another push probes, settling a probe,
and not letting a remembered failure outlive its fix."""

from __future__ import annotations

import logging
import random
from typing import Any

from d365.schema_cache import SchemaCache
from shared.model.outcomes import WRITTEN, Outcome
from shared.model.ports import SyncStore
from shared.model.sync import Claim
from shared.usecases.failure_scope import pause_reason
from shared.usecases.push.result import Action, PushResult

logger = logging.getLogger(__name__)


class PauseRules:
    def __init__(self, store: SyncStore, schema: SchemaCache, probe_seconds: float, rng: random.Random) -> None:
        self._store = store
        self._schema = schema
        self._probe_seconds = probe_seconds
        self._rng = rng

    def wait(self, claim: Claim, context: dict[str, Any]) -> PushResult:
        """Another push probes: this lead waits, its message back soon after the next probe."""
        delay = (claim.probe_in_seconds or self._probe_seconds) * self._rng.uniform(1.0, 1.2)
        logger.info(
            "d365_push_paused company_id=%s reason=%s: the pipeline is paused; again in %.0f s",
            context["company_id"],
            claim.paused_reason,
            delay,
            extra={**context, "pause_reason": claim.paused_reason},
        )
        return PushResult(Action.DEFER, Outcome.PAUSED, claim.paused_reason, delay_seconds=delay)

    def forget_fixed_failure(self, claim: Claim) -> None:
        """A remembered org-level metadata failure must not outlive its fix: the probe reads the
        metadata afresh, and so does every push once the pause is lifted."""
        remembered = self._schema.remembered_failure
        if remembered is not None and (claim.probing or (claim.paused_reason is None and pause_reason(remembered))):
            self._schema.forget_failure()

    def settle_probe(self, result: PushResult, context: dict[str, Any]) -> None:
        """The probe passed when Dataverse took a request (a write, or its own refusal of this lead);
        it failed when it paused again; otherwise it proved nothing and the next claim probes."""
        if result.outcome in WRITTEN or result.refused_by_dataverse:
            reason = self._store.close_pause()
            logger.warning(
                "pipeline_resumed reason=%s: the probe passed", reason, extra={**context, "pause_reason": reason}
            )
        elif result.outcome is not Outcome.PAUSED:
            self._store.probe_again()
