"""The push's side of the pipeline's pause: waiting while another push probes, lifting the pause
when a probe passes, settling one that proved nothing, and not letting a remembered failure
outlive its fix."""

from __future__ import annotations

import logging
import random
from typing import Any

from d365.errors import D365Error
from d365.schema_cache import SchemaCache
from shared.model.errors import StoreUnavailable
from shared.model.outcomes import WRITTEN, Outcome
from shared.model.ports import LeadTable, SyncStore
from shared.model.sync import Claim
from shared.usecases.failure_scope import pause_reason
from shared.usecases.push.result import Action, PushResult
from shared.usecases.push.synced import UnrecordedWrite

logger = logging.getLogger(__name__)


def lift_pause(store: SyncStore, context: dict[str, Any], *, written: bool) -> None:
    """In a probing push (`context["probing"]`, set by `PauseRules.begin`), Dataverse took the probe's
    request: a write, or its own refusal of the lead. The pause is lifted before that outcome is
    recorded (docs/found-by-simulation.md #5): once the lead is recorded, no delivery of it sends a
    request again, so a pause left open then (a lost answer, a dead worker) would have no lead left
    to lift it. Raises UnrecordedWrite when the store cannot be reached after a write (the lead
    stays unsynced, and the next probe writes it again), StoreUnavailable otherwise."""
    if not context.get("probing"):
        return
    try:
        reason = store.close_pause()
    except StoreUnavailable as exc:
        if written:
            raise UnrecordedWrite(str(exc)) from exc
        raise
    context["probing"] = False  # lifted once; what follows in this push is ordinary work
    logger.warning("pipeline_resumed reason=%s: the probe passed", reason, extra={**context, "pause_reason": reason})


class PauseRules:
    def __init__(
        self, store: SyncStore, schema: SchemaCache, probe_seconds: float, rng: random.Random, *, client: LeadTable
    ) -> None:
        self._store = store
        self._schema = schema
        self._probe_seconds = probe_seconds
        self._rng = rng
        self._client = client

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

    def begin(self, claim: Claim, context: dict[str, Any]) -> None:
        """Before a claimed push: mark a probe in its context (logged with each event, read by
        `lift_pause`), and forget a remembered failure that was fixed."""
        context["probing"] = claim.probing
        self.forget_fixed_failure(claim)

    def forget_fixed_failure(self, claim: Claim) -> None:
        """A remembered org-level metadata failure must not outlive its fix: the probe reads the
        metadata afresh, and so does every push once the pause is lifted."""
        remembered = self._schema.remembered_failure
        if remembered is not None and (claim.probing or (claim.paused_reason is None and pause_reason(remembered))):
            self._schema.forget_failure()

    def lift(self, context: dict[str, Any]) -> None:
        """After the probe's own write landed (`lift_pause`)."""
        lift_pause(self._store, context, written=True)

    def settle_probe(self, claim: Claim, result: PushResult, context: dict[str, Any]) -> None:
        """After a probe: lifted if it passed (`lift_pause`), still paused if it met the failure again.
        A probe whose lead needed no request (unchanged, left alone in the CRM) asks Dataverse who it
        is, a harmless request through the same token, application user and org: were it the last
        lead waiting, the pause would otherwise never lift. Anything else proved nothing: the next
        claim probes."""
        passed = result.outcome in WRITTEN or result.refused_by_dataverse
        if not claim.probing or passed or result.outcome is Outcome.PAUSED:
            return
        if result.outcome in (Outcome.UNCHANGED, Outcome.SKIPPED):
            self._probe_by_request(context)
        else:
            self._store.probe_again()

    def _probe_by_request(self, context: dict[str, Any]) -> None:
        try:
            self._client.whoami()
        except D365Error as exc:
            reason = pause_reason(exc)
            if reason is None:
                self._store.probe_again()
            else:
                self._store.open_pause(reason, str(exc), probe_seconds=self._probe_seconds)
            return
        lift_pause(self._store, context, written=False)
