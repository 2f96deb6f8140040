"""The push decision table: `LeadPusher` + `LeadWriter` + `SchemaCache` over the in-memory fakes
(held to the real adapters by tests/contract), one row per decision - claim, skip, unchanged, match,
write, classify, record. Each row sets up a world, pushes one delivery, and checks the action, the
outcome, the lead's status, its audit rows and the Dataverse requests the push sent."""
from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from d365.errors import D365AuthenticationError
from d365.metadata import LeadSchema
from shared.writes.lead_writer import deterministic_lead_id
from shared.model.messages import LeadMessage, LeadRef
from shared.model.outcomes import Outcome
from shared.model.pause import PauseReason
from shared.usecases.push import Action, PushResult
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse, Write
from tests.fakes.faults import Fault, throttled, unavailable
from tests.fakes.leads import accepted, hunter_lead, ref
from tests.fakes.store import FakeLeadStore
from tests.fakes.wiring import LEASE_SECONDS, build_pusher, throttle_gate

C = 86            # the company pushed
OTHER = 999       # another Hunter company
EMAIL = f"it@company{C}.example"


class World:
    """One worker's pusher over a fresh store and Dataverse, on a fake clock."""

    def __init__(self, *, warm: bool = True, schema_loader: Callable[[FakeDataverse], LeadSchema] | None = None,
                 max_retries: int = 0, closed_leads: str = "leave", deleted_leads: str = "leave"):
        self.clock = FakeClock()
        self.store = FakeLeadStore(self.clock)
        self.throttle = throttle_gate(self.store, self.clock)
        self.dv = FakeDataverse(self.clock, throttle=self.throttle, max_retries=max_retries)
        loader = (lambda: schema_loader(self.dv)) if schema_loader else None
        self.pusher, self.schema = build_pusher(store=self.store, dataverse=self.dv, clock=self.clock,
                                                throttle=self.throttle, schema_loader=loader,
                                                closed_leads=closed_leads, deleted_leads=deleted_leads)
        self.hand_ids: list[str] = []
        if warm:
            self.schema.get()

    def accept(self, minutes: int = 0, company: int = C, **fields: Any) -> LeadRef:
        message = accepted(company, minutes, **fields)
        self.store.record_queued([message])
        return ref(company, minutes)

    def push(self, delivery: LeadRef | LeadMessage, dequeue_count: int = 1) -> PushResult:
        return self.pusher.push(delivery, dequeue_count=dequeue_count)

    def synced(self, minutes: int = 0, **fields: Any) -> str:
        """The lead at this version pushed and synced; its Dataverse id."""
        result = self.push(self.accept(minutes, **fields))
        assert result.outcome in ("created", "updated"), result
        return result.d365_lead_id or ""

    def record(self, lead_id: str) -> dict:
        return self.dv.records[lead_id]

    def hand_made(self, lead_id: str | None = None, **values: Any) -> str:
        """A record made by hand in the CRM with this company's address."""
        self.hand_ids.append(self.dv.add_record({"subject": "by hand", "lastname": "Someone", "emailaddress1": EMAIL,
                                   "companyname": "typed by hand", **values}, lead_id=lead_id))
        return self.hand_ids[-1]


@dataclass(frozen=True)
class Row:
    given: Callable[[World], LeadRef | LeadMessage]
    action: Action
    outcome: str
    status: str | None
    attempts: list[str]                       # outcomes of the lead's audit rows, oldest first
    requests: dict[str, int] = field(default_factory=dict)   # Dataverse requests sent by this push
    dequeue_count: int = 1
    warm: bool = True
    schema_loader: Callable[[FakeDataverse], LeadSchema] | None = None
    then: Callable[[World, PushResult], None] | None = None
    closed_leads: str = "leave"
    deleted_leads: str = "leave"


# --- given ---------------------------------------------------------------------------------------------


def leased_elsewhere(w: World) -> LeadRef:
    delivery = w.accept()
    w.store.claim(C, lease_seconds=LEASE_SECONDS)
    return delivery


def crashed_holder(w: World) -> LeadRef:
    delivery = w.accept()
    w.store.claim(C, lease_seconds=LEASE_SECONDS)
    w.clock.advance(LEASE_SECONDS + 1)
    return delivery


def older_after_newer_synced(w: World) -> LeadRef:
    w.synced(5)
    return w.accept(0)


def same_version_again(w: World) -> LeadRef:
    w.synced(0)
    return ref(C, 0)


def newest_failed_finally(w: World) -> LeadRef:
    delivery = w.accept(0)
    w.dv.fail_next(Fault(400, "0x80040203", "Invalid argument."))
    assert w.push(delivery).outcome == "failed"
    return delivery


def older_after_newest_failed(w: World) -> LeadRef:
    older = w.accept(0)
    newer = w.accept(1)
    w.dv.fail_next(Fault(400, "0x80040203", "Invalid argument."))
    assert w.push(newer).outcome == "failed"
    return older


def throttled_everywhere(w: World) -> LeadRef:
    w.store.publish_throttle(w.clock.now() + timedelta(seconds=60))
    return w.accept()


def same_payload_newer_version(w: World) -> LeadRef:
    w.synced(0, infrastructure_summary="same")
    return w.accept(1, infrastructure_summary="same")


def stored_id_updated(w: World) -> LeadRef:
    w.synced(0)
    return w.accept(1, provider="Google")


def stored_id_deleted(w: World) -> LeadRef:
    w.dv.delete(w.synced(0))
    return w.accept(1, provider="Google")


def hand_made_record(w: World) -> LeadRef:
    w.hand_made()
    return w.accept()


def two_hand_made_records(w: World) -> LeadRef:
    w.hand_made(lead_id="ffffffff-ffff-4fff-bfff-ffffffffffff", companyname="older")
    w.clock.advance(2)
    w.hand_made(lead_id="00000000-0000-4000-8000-000000000000", companyname="newer")
    return w.accept()


def other_companys_stamped_record(w: World) -> LeadRef:
    w.hand_made(hnt_companyid=OTHER)
    return w.accept()


def other_companys_deterministic_id(w: World) -> LeadRef:
    w.hand_made(lead_id=deterministic_lead_id(OTHER))
    return w.accept()


def record_held_by_other_company_in_store(w: World) -> LeadRef:
    held = w.hand_made()
    w.accept(company=OTHER)
    token = w.store.claim(OTHER, lease_seconds=LEASE_SECONDS).token
    assert token and w.store.reserve_lead_id(OTHER, token, held)
    return w.accept()


def only_other_companies_records(w: World) -> LeadRef:
    w.hand_made(hnt_companyid=OTHER)
    w.hand_made(lead_id=deterministic_lead_id(OTHER + 1))
    return w.accept()


def our_record_unknown_to_the_store(w: World) -> LeadRef:
    # Our own create whose answer was lost: it holds older contact data the lookup does not find.
    w.dv.add_record({"subject": "Hunter: old", "lastname": "x", "emailaddress1": "old@old.example",
                     "hnt_companyid": C}, lead_id=deterministic_lead_id(C))
    return w.accept()


def rep_edited(*columns: str) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        w.dv.edit(w.synced(0), dict.fromkeys(columns, "typed by a rep"))
        return w.accept(1, provider="Google")

    return given


def rep_cleared(column: str) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        w.dv.edit(w.synced(0), {column: None})
        return w.accept(1, provider="Google")

    return given


def rep_edited_then_two_versions(w: World) -> LeadRef:
    w.dv.edit(w.synced(0), {"subject": "typed by a rep"})
    assert w.push(w.accept(1, provider="Google")).outcome == "updated"
    return w.accept(2, provider="Microsoft")


def closed_by_rep(action: str) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        getattr(w.dv, action)(w.synced(0))
        return w.accept(1, provider="Google")

    return given


def deleted_between_read_and_write(w: World) -> LeadRef:
    lead_id = w.synced(0)
    w.dv.edit(lead_id, {"subject": "typed by a rep"})
    read = w.dv.get_lead

    def read_then_delete(*args: Any, **kwargs: Any) -> dict:
        record = read(*args, **kwargs)
        w.dv.delete(lead_id)
        return record

    w.dv.get_lead = read_then_delete  # type: ignore[method-assign]
    return w.accept(1, provider="Google")


def known_closed(w: World) -> LeadRef:
    w.dv.qualify(w.synced(0))
    assert w.push(w.accept(1, provider="Google")).outcome == "skipped"
    return w.accept(2, provider="Microsoft")


def merged_into_free_master(w: World) -> LeadRef:
    w.hand_ids.append(w.dv.add_record({"subject": "the rep's lead", "lastname": "Master", "companyname": "kept"}))
    w.dv.merge(w.synced(0), into=w.hand_ids[0])
    return w.accept(1, provider="Google")


def merged_into_other_company(w: World) -> LeadRef:
    other = w.push(w.accept(0, company=OTHER)).d365_lead_id
    assert other
    w.hand_ids.append(other)
    w.dv.merge(w.synced(0), into=other)
    return w.accept(1, provider="Google")


def edited_in_the_crm(w: World) -> LeadRef:
    w.dv.edit(w.synced(0), {"jobtitle": "CTO"})
    return w.accept(1, provider="Google")


def fault(f: Fault, kind: str | None = None, *, cold: bool = False) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        w.dv.fail_next(f, kind=kind)
        return w.accept()

    return given


def refused_twice(f: Fault) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        w.dv.fail_next(f, times=2)
        return w.accept()

    return given


def paused_with_probe_in(seconds: float) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        w.store.open_pause(PauseReason.PRIVILEGE, "missing prvCreateLead", probe_seconds=seconds)
        return w.accept()

    return given


def probe_fails_again(w: World) -> LeadRef:
    w.store.open_pause(PauseReason.PRIVILEGE, "missing prvCreateLead", probe_seconds=0)
    w.dv.fail_next(Fault(403, "0x80040220", "Principal user is missing prvReadLead privilege"), kind="find_leads")
    return w.accept()


def probe_on_a_synced_lead(w: World) -> LeadRef:
    w.synced(0)
    w.store.open_pause(PauseReason.PRIVILEGE, "missing prvCreateLead", probe_seconds=0)
    return ref(C, 0)


def probe_on_a_synced_lead_refused(w: World) -> LeadRef:
    given = probe_on_a_synced_lead(w)
    w.dv.fail_next(Fault(403, "0x80072560", "The user is not a member of the organization."), kind="whoami")
    return given


def token_fails(error: Exception) -> Callable[[World], LeadRef]:
    def given(w: World) -> LeadRef:
        w.dv.tokens.failures.append(error)
        return w.accept()

    return given


def column_removed_after_schema_read(w: World) -> LeadRef:
    w.dv.remove_column("hnt_provider")
    return w.accept()


def lease_lost_during_write(w: World) -> LeadRef:
    def take_over(write: Write) -> None:
        w.dv.on_write = None
        w.clock.advance(LEASE_SECONDS + 1)  # (no push writes this late: see the simulation) the lease ends
        assert w.store.claim(C, lease_seconds=LEASE_SECONDS).token  # and another worker takes the lead

    w.dv.on_write = take_over
    return w.accept()


def broken_metadata(dv: FakeDataverse) -> LeadSchema:
    """Metadata the mapping cannot use: a max length that is not a number."""
    schema = dv.read_lead_schema()
    column = dataclasses.replace(schema.columns["companyname"], max_length="100")  # type: ignore[arg-type]
    return LeadSchema(columns={**schema.columns, "companyname": column})


# --- then ----------------------------------------------------------------------------------------------


def delay_between(low: float, high: float) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        assert low <= result.delay_seconds <= high

    return then


def holds(lead_id: Callable[[World], str], **values: Any) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        expected = lead_id(w)
        assert result.d365_lead_id == expected
        assert w.store.rows[C].d365_lead_id == expected
        record = w.record(expected)
        assert record["hnt_companyid"] == C and record["companyname"] == f"company{C}"
        for column, value in values.items():
            assert record.get(column) == value, column
        if w.store.rows[C].status == "synced":
            assert w.store.rows[C].d365_etag == f'W/"{record["versionnumber"]}"'

    return then


def own_id(w: World) -> str:
    return deterministic_lead_id(C)


def hand_made_id(w: World) -> str:
    return w.hand_ids[0]


def older_hand_made_id(w: World) -> str:
    return "ffffffff-ffff-4fff-bfff-ffffffffffff"


def untouched_others(then: Callable[[World, PushResult], None]) -> Callable[[World, PushResult], None]:
    def check(w: World, result: PushResult) -> None:
        then(w, result)
        others = [r for i, r in w.dv.records.items() if i != result.d365_lead_id]
        assert others and all(r["companyname"] == "typed by hand" for r in others)

    return check


def reason(*words: str, http_status: int | None = None) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        row = w.store.rows[C]
        last = w.store.attempts_of(C)[-1]
        for word in words:
            assert word in (row.last_error or ""), (word, row.last_error)
            assert word in (last.error or ""), (word, last.error)
        assert last.http_status == http_status
        if http_status is not None:
            assert last.service_request_id

    return then


def schema_reloads(w: World, result: PushResult) -> None:
    before = w.dv.calls["read_lead_schema"]
    w.schema.get()
    assert w.dv.calls["read_lead_schema"] == before + 4


def retried_without_the_column(w: World, result: PushResult) -> None:
    schema_reloads(w, result)
    again = w.push(ref(C, 0), dequeue_count=2)
    assert again.outcome == "created"
    assert "hnt_provider" not in w.record(deterministic_lead_id(C))
    assert w.store.rows[C].status == "synced"


def throttle_published(w: World, result: PushResult) -> None:
    assert result.delay_seconds == 30
    assert w.store.throttle_marks()["dataverse"] == w.clock.now() + timedelta(seconds=30)
    assert w.store.attempts_of(C)[-1].http_status == 429


def final_failure_kept(w: World, result: PushResult) -> None:
    row = w.store.rows[C]
    assert row.last_error and "HTTP 400" in row.last_error
    assert row.failed_version == row.queued_version


def people_kept(**values: Any) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        record = w.record(own_id(w))
        for column, value in values.items():
            assert record.get(column) == value, (column, record.get(column))
        taken = {c for c, v in values.items() if not c.startswith("hnt_") and v != f"Hunter: company{C}.example"}
        assert taken <= set(w.store.rows[C].people_columns), w.store.rows[C].people_columns

    return then


def left_alone(state: str, **values: Any) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        record = w.record(own_id(w))
        for column, value in values.items():
            assert record.get(column) == value, (column, record.get(column))
        assert w.store.rows[C].crm_state == state
        assert w.store.lead_state(C)["last_error"] is None

    return then


def deleted_left_alone(w: World, result: PushResult) -> None:
    assert w.dv.records == {} and w.store.rows[C].crm_state == "deleted"


def followed_master(w: World, result: PushResult) -> None:
    master = w.hand_ids[0]
    assert result.d365_lead_id == master and w.store.rows[C].d365_lead_id == master
    record = w.record(master)
    assert record["hnt_provider"] == "Google" and record["companyname"] == "kept" and record["subject"] == "the rep's lead"


def merged_left_alone(w: World, result: PushResult) -> None:
    row, other = w.store.rows[C], w.hand_ids[0]
    assert (row.crm_state, row.crm_merged_into, row.d365_lead_id) == ("merged", other, own_id(w))
    assert w.record(other)["hnt_companyid"] == OTHER


def paused(reason: PauseReason) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        assert w.store.paused is not None and w.store.paused.reason == reason
        assert 30 <= result.delay_seconds <= 36
        row = w.store.rows[C]
        assert row.failed_version is None and row.attempts == 0

    return then


def paused_again(reason: PauseReason) -> Callable[[World, PushResult], None]:
    def then(w: World, result: PushResult) -> None:
        assert w.store.paused is not None and w.store.paused.reason == reason
        assert w.store.paused.probe_at > w.clock.now()

    return then


def pause_lifted(w: World, result: PushResult) -> None:
    assert w.store.paused is None


def failed_version_set(w: World, result: PushResult) -> None:
    assert w.store.rows[C].failed_version == w.store.rows[C].queued_version


def nothing_recorded(w: World, result: PushResult) -> None:
    assert w.store.lead_state(C) is None and w.store.audit == []


def still_held_by_the_other(w: World, result: PushResult) -> None:
    assert w.store.rows[C].lease_token is not None
    assert len(w.dv.records) == 1


# --- the table -----------------------------------------------------------------------------------------

CREATED_NEW = {"find_leads": 1, "create_lead": 1}

ROWS: dict[str, Row] = {
    # claim
    "claim: unknown lead -> poison": Row(
        lambda w: ref(C), Action.POISON, "failed", None, [], then=nothing_recorded),
    "claim: leased by another worker -> looked at again within 10 s (a batch holds its leads briefly)": Row(
        leased_elsewhere, Action.DEFER, "leased", "processing", [], then=delay_between(10, 12)),
    "claim: a crashed holder's expired lease is taken over": Row(
        crashed_holder, Action.DONE, "created", "synced", ["created"], CREATED_NEW, then=holds(own_id)),
    "claim: a v1 message records its lead, then writes it": Row(
        lambda w: accepted(C, 0), Action.DONE, "created", "synced", ["created"], CREATED_NEW, then=holds(own_id)),
    # skip
    "skip: an older delivery after a newer version synced": Row(
        older_after_newer_synced, Action.DONE, "skipped", "synced", ["created", "skipped"]),
    "skip: the synced version delivered again -> unchanged": Row(
        same_version_again, Action.DONE, "unchanged", "synced", ["created", "unchanged"]),
    "skip: the failed version's own message again -> stays failed, the message to poison": Row(
        newest_failed_finally, Action.POISON, "skipped", "failed", ["failed", "skipped"], then=final_failure_kept),
    "skip: an older message after the newest version failed -> stays failed with its reason": Row(
        older_after_newest_failed, Action.DONE, "skipped", "failed", ["failed", "skipped"], then=final_failure_kept),
    "skip: Dataverse throttles every worker longer than the inline wait -> deferred": Row(
        throttled_everywhere, Action.DEFER, "deferred", "queued", ["deferred"], then=delay_between(59, 60)),
    # unchanged
    "unchanged: a newer version with the same payload costs no request": Row(
        same_payload_newer_version, Action.DONE, "unchanged", "synced", ["created", "unchanged"]),
    # match
    "match: the stored id is updated at its etag": Row(
        stored_id_updated, Action.DONE, "updated", "synced", ["created", "updated"], {"update_lead": 1},
        then=holds(own_id, hnt_provider="Google")),
    "match: a stored id that answers 404, deleted leads recreated -> lookup -> create": Row(
        stored_id_deleted, Action.DONE, "created", "synced", ["created", "created"],
        {"update_lead": 1, "find_leads": 1, "create_lead": 1}, deleted_leads="recreate",
        then=holds(own_id, hnt_provider="Google")),
    # a CRM where people work (the record synced once, a person acted, then Hunter sent a newer version)
    "people: a rep's subject and company name stay, Hunter's columns take the new version": Row(
        rep_edited("subject", "companyname"), Action.DONE, "updated", "synced", ["created", "updated"],
        {"update_lead": 2, "get_lead": 1},
        then=people_kept(subject="typed by a rep", companyname="typed by a rep", hnt_provider="Google")),
    "people: a value a rep cleared stays cleared": Row(
        rep_cleared("websiteurl"), Action.DONE, "updated", "synced", ["created", "updated"],
        {"update_lead": 2, "get_lead": 1}, then=people_kept(websiteurl=None, hnt_provider="Google")),
    "people: a column a rep took over is not sent again, at one request": Row(
        rep_edited_then_two_versions, Action.DONE, "updated", "synced", ["created", "updated", "updated"],
        {"update_lead": 1}, then=people_kept(subject="typed by a rep", hnt_provider="Microsoft")),
    "closed: qualified in the CRM -> left alone, not an error": Row(
        closed_by_rep("qualify"), Action.DONE, "skipped", "synced", ["created", "skipped"],
        {"update_lead": 1, "get_lead": 1}, then=left_alone("qualified", hnt_provider="M365")),
    "closed: disqualified in the CRM, Hunter's columns only -> they are written": Row(
        closed_by_rep("disqualify"), Action.DONE, "updated", "synced", ["created", "updated"],
        {"update_lead": 2, "get_lead": 1}, closed_leads="update_hunter_columns",
        then=people_kept(hnt_provider="Google", subject=f"Hunter: company{C}.example")),
    "closed: known to be closed -> left alone without a request": Row(
        known_closed, Action.DONE, "skipped", "synced", ["created", "skipped", "skipped"], {},
        then=left_alone("qualified", hnt_provider="M365")),
    "deleted: deleted between the read and the write -> treated as deleted, not failed": Row(
        deleted_between_read_and_write, Action.DONE, "skipped", "synced", ["created", "skipped"],
        {"update_lead": 2, "get_lead": 1}, then=deleted_left_alone),
    "deleted: deleted in the CRM -> not created again": Row(
        stored_id_deleted, Action.DONE, "skipped", "synced", ["created", "skipped"], {"update_lead": 1},
        then=deleted_left_alone),
    "merged: merged into a record nobody holds -> Hunter's columns go to the master, the lead follows it": Row(
        merged_into_free_master, Action.DONE, "updated", "synced", ["created", "updated"],
        {"update_lead": 2, "get_lead": 2}, then=followed_master),
    "merged: merged into another company's record -> left alone, naming it": Row(
        merged_into_other_company, Action.DONE, "skipped", "synced", ["created", "skipped"],
        {"update_lead": 1, "get_lead": 1}, then=merged_left_alone),
    "match: a hand-made record with our address is adopted": Row(
        hand_made_record, Action.DONE, "updated", "synced", ["updated"], {"find_leads": 1, "update_lead": 1},
        then=holds(hand_made_id, subject=f"Hunter: company{C}.example")),
    "match: of two hand-made records the oldest is adopted (stable order)": Row(
        two_hand_made_records, Action.DONE, "updated", "synced", ["updated"], {"find_leads": 1, "update_lead": 1},
        then=holds(older_hand_made_id)),
    "match: another company's stamped record is never adopted": Row(
        other_companys_stamped_record, Action.DONE, "created", "synced", ["created"], CREATED_NEW,
        then=untouched_others(holds(own_id))),
    "match: a record with another company's deterministic id is never adopted": Row(
        other_companys_deterministic_id, Action.DONE, "created", "synced", ["created"], CREATED_NEW,
        then=untouched_others(holds(own_id))),
    "match: a record another company holds in the store is never adopted": Row(
        record_held_by_other_company_in_store, Action.DONE, "created", "synced", ["created"], CREATED_NEW,
        then=untouched_others(holds(own_id))),
    "match: no fallback to the first record found -> a create": Row(
        only_other_companies_records, Action.DONE, "created", "synced", ["created"], CREATED_NEW,
        then=untouched_others(holds(own_id))),
    # write
    "write: a new lead is created with its company's deterministic id": Row(
        lambda w: w.accept(), Action.DONE, "created", "synced", ["created"], CREATED_NEW,
        then=holds(own_id, hnt_infrasummary="version 0")),
    "write: 412 on create (our record, answer lost) -> read (people may have closed or merged it) -> update": Row(
        our_record_unknown_to_the_store, Action.DONE, "updated", "synced", ["updated"],
        {"find_leads": 1, "create_lead": 1, "get_lead": 1, "update_lead": 1}, then=holds(own_id, emailaddress1=EMAIL)),
    "write: 412 on the etag update (edited in the CRM) -> etag read again -> update": Row(
        edited_in_the_crm, Action.DONE, "updated", "synced", ["created", "updated"],
        {"update_lead": 2, "get_lead": 1}, then=holds(own_id, hnt_provider="Google", jobtitle="CTO")),
    # classify
    "classify: 429 -> deferred for its Retry-After, throttle published": Row(
        fault(throttled(30)), Action.DEFER, "deferred", "queued", ["deferred"], {"find_leads": 1},
        then=throttle_published),
    "classify: 503 -> error with its reason": Row(
        fault(unavailable(503)), Action.RETRY, "error", "error", ["error"], {"find_leads": 1},
        then=reason("HTTP 503", http_status=503)),
    "classify: 503 on the last delivery -> failed": Row(
        fault(unavailable(503)), Action.RETRY, "failed", "failed", ["failed"], {"find_leads": 1}, dequeue_count=5,
        then=failed_version_set),
    "classify: 400 -> failed and poison": Row(
        fault(Fault(400, "0x80040203", "Invalid argument.")), Action.POISON, "failed", "failed", ["failed"],
        {"find_leads": 1}, then=reason("HTTP 400", "Invalid argument", http_status=400)),
    "classify: 403 to this record alone -> failed and poison": Row(
        fault(Fault(403, "0x80048306", "Principal with id 1 does not have WriteAccess right(s) for record"),
              "create_lead"),
        Action.POISON, "failed", "failed", ["failed"], CREATED_NEW, then=reason("WriteAccess", http_status=403)),
    "classify: a privilege missing (403) -> the pipeline pauses, the lead waits": Row(
        fault(Fault(403, "0x80040220", "Principal user is missing prvCreateLead privilege"), "create_lead"),
        Action.DEFER, "paused", "queued", ["paused"], CREATED_NEW, then=paused(PauseReason.PRIVILEGE)),
    "classify: no application user (403) -> the pipeline pauses": Row(
        fault(Fault(403, "0x80072560", "The user is not a member of the organization."), "find_leads"),
        Action.DEFER, "paused", "queued", ["paused"], {"find_leads": 1},
        then=paused(PauseReason.APPLICATION_USER)),
    "classify: the org in administration mode -> the pipeline pauses": Row(
        fault(Fault(403, "0x80040220", "User does not have required privileges (or role membership) to access the "
                                       "org when it is in Admin Only mode."), "find_leads"),
        Action.DEFER, "paused", "queued", ["paused"], {"find_leads": 1},
        then=paused(PauseReason.ORG_UNAVAILABLE)),
    "classify: a 401 a fresh token does not cure -> the pipeline pauses": Row(
        refused_twice(Fault(401, "", "")), Action.DEFER, "paused", "queued", ["paused"], {"find_leads": 2},
        then=paused(PauseReason.CREDENTIALS)),
    # the pause
    "paused: another push probes -> the lead waits for the next probe, nothing counted": Row(
        paused_with_probe_in(20), Action.DEFER, "paused", "queued", [], {}, then=delay_between(20, 24)),
    "paused: the probe is due -> this push probes, writes, and the pause lifts": Row(
        paused_with_probe_in(0), Action.DONE, "created", "synced", ["created"], CREATED_NEW, then=pause_lifted),
    "paused: the probe meets the failure again -> still paused, next probe later": Row(
        probe_fails_again, Action.DEFER, "paused", "queued", ["paused"], {"find_leads": 1},
        then=paused(PauseReason.PRIVILEGE)),
    "paused: the probe's lead needs no request -> it asks WhoAmI, and the pause lifts": Row(
        probe_on_a_synced_lead, Action.DONE, "unchanged", "synced", ["created", "unchanged"], {"whoami": 1},
        then=pause_lifted),
    "paused: the probe's lead needs no request and WhoAmI is refused -> still paused, next probe later": Row(
        probe_on_a_synced_lead_refused, Action.DONE, "unchanged", "synced", ["created", "unchanged"], {"whoami": 1},
        then=paused_again(PauseReason.APPLICATION_USER)),
    "classify: unknown column (0x0) -> schema invalidated, error": Row(
        fault(Fault(400, "0x0", "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
                                "Invalid property 'hnt_provider' was found in entity 'Microsoft.Dynamics.CRM.lead'."),
              "create_lead"),
        Action.RETRY, "error", "error", ["error"], CREATED_NEW, then=schema_reloads),
    "classify: unknown column (0x80048d19, column removed) -> schema invalidated, error, then written": Row(
        column_removed_after_schema_read, Action.RETRY, "error", "error", ["error"], CREATED_NEW,
        then=retried_without_the_column),
    "classify: token endpoint unavailable (transient) -> error": Row(
        token_fails(D365AuthenticationError("managed identity endpoint answered 500", unreachable=True)),
        Action.RETRY, "error", "error", ["error"], then=reason("managed identity")),
    "classify: credential refused -> the pipeline pauses": Row(
        token_fails(D365AuthenticationError("invalid_client: AADSTS7000215", transient=False)),
        Action.DEFER, "paused", "queued", ["paused"], then=paused(PauseReason.CREDENTIALS)),
    "classify: metadata refused (403) on a cold cache -> the pipeline pauses": Row(
        fault(Fault(403, "0x80040220", "missing prvReadEntity privilege"), "read_lead_schema"), Action.DEFER,
        "paused", "queued", ["paused"], {"read_lead_schema": 1}, warm=False, then=paused(PauseReason.PRIVILEGE)),
    "classify: metadata unavailable (503) on a cold cache -> error": Row(
        fault(unavailable(503), "read_lead_schema"), Action.RETRY, "error", "error", ["error"],
        {"read_lead_schema": 1}, warm=False, then=reason("HTTP 503", http_status=503)),
    "classify: metadata throttled on a cold cache -> deferred": Row(
        fault(throttled(20), "read_lead_schema"), Action.DEFER, "deferred", "queued", ["deferred"],
        {"read_lead_schema": 1}, warm=False, then=delay_between(20, 20)),
    "classify: mapping fails -> failed and poison": Row(
        lambda w: w.accept(), Action.POISON, "failed", "failed", ["failed"], {"read_lead_schema": 4}, warm=False,
        schema_loader=broken_metadata, then=reason("cannot map the lead: TypeError")),
    "classify: an unexpected exception -> error": Row(
        token_fails(RuntimeError("boom")), Action.RETRY, "error", "error", ["error"],
        then=reason("unexpected RuntimeError: boom")),
    # record
    "record: a lease lost before the outcome is recorded -> done, the new holder decides": Row(
        lease_lost_during_write, Action.DONE, "created", "processing", [], CREATED_NEW,
        then=still_held_by_the_other),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_push_decision(name: str) -> None:
    row = ROWS[name]
    world = World(warm=row.warm, schema_loader=row.schema_loader, closed_leads=row.closed_leads,
                  deleted_leads=row.deleted_leads)
    delivery = row.given(world)
    sent_before = Counter(world.dv.calls)

    result = world.push(delivery, dequeue_count=row.dequeue_count)

    assert (result.action, result.outcome) == (row.action, row.outcome), result
    state = world.store.lead_state(C)
    assert (state["status"] if state else None) == row.status
    assert [a.outcome for a in world.store.attempts_of(C)] == row.attempts
    sent = Counter(world.dv.calls)
    sent.subtract(sent_before)
    assert {kind: n for kind, n in sent.items() if n} == row.requests
    if row.status in ("synced", "queued", "error", "failed"):
        assert world.store.rows[C].lease_token is None
    if row.status in ("error", "failed"):
        assert world.store.rows[C].last_error
    if row.attempts and row.attempts[-1] in ("error", "failed"):
        last = world.store.attempts_of(C)[-1]
        assert last.failure_class == ("permanent" if row.action is Action.POISON else "transient")
        assert last.correlation_id == f"c{C}-v0" and last.dequeue_count == row.dequeue_count
    if row.outcome in ("created", "updated") and world.store.attempts_of(C):
        assert world.store.attempts_of(C)[-1].dataverse_requests == sum(row.requests.values())
    if row.then is not None:
        row.then(world, result)


def test_the_table_covers_every_outcome() -> None:
    outcomes = {row.outcome for row in ROWS.values()}
    assert outcomes == set(Outcome)


def test_the_lead_used_by_the_table_maps_every_mvp_column() -> None:
    world = World()
    world.synced(0)
    record = world.record(deterministic_lead_id(C))
    assert record["hnt_infrasummary"] == hunter_lead(C)["infrastructure_summary"]
    assert record["hnt_segment"] == 100000000 and record["emailaddress1"] == EMAIL
