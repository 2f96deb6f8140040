"""A deterministic simulation of the push protocol (issue 9): one seed, one schedule.

Actors, all on the fakes of tests/fakes and one fake clock:
- Hunter posts versions of a few companies' leads to the webhook (`accept_leads`), in any order,
  and posts again what was not answered (a transient failure, a crashed webhook);
- worker processes, each with its own `LeadPusher`, writer, schema cache and throttle gate, take
  one message at a time off the queue and run `handle_delivery` as the Functions runtime does
  (maxDequeueCount 5 then the poison queue, visibilityTimeout after a failure, a stale pop receipt
  tolerated); a crashed process loses its work in flight and restarts empty;
- the sweeper (`requeue_stuck_leads`) runs from time to time;
- on some seeds a sales rep works the leads in the CRM, and the outcome reader runs from time to time
  (tests/simulation/people.py, which states their invariants).

Phase one is chaos: at every port call the scheduler may switch job, move the clock (a little, or
past a lease), crash the caller, or answer a fault (429, 503, a dropped connection before or after
the write committed, a lost PostgreSQL or queue answer). In some seeds an outage (issue 17,
tests/simulation/outages.py) breaks Dataverse's configuration or PostgreSQL for minutes of
simulated time, then ends. Phase two is calm: no more faults, the clock moves only to the next due
message or sweep (or to the end of an outage still on), until everything has settled.

Invariants, while it runs: no Dataverse write lands after its writer's lease ended (or without
one), no write puts an older version over a newer one, no record changes company; a message goes
to the poison queue only when Dataverse refused its lead itself, or when deliveries that met no
outage used it up; no attempt is counted against a lead by a delivery that met an outage, and
while paused no lead is marked failed but one Dataverse refused. At the end: one record per company
holding its newest accepted version when the store says synced, and only then (and Hunter's newest
company name, unless a person changed it); failed only with a reason and a poison message, and only
when Dataverse refused its newest version (or chaos used up a message's deliveries); nothing left
queued, processing or in error; the pause closed; people took over only the columns a person changed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import d365.deadline
import shared.usecases.push.pusher
from d365.throttle import ThrottleGate
from shared.model.errors import TransientError
from shared.model.messages import LeadRef, MalformedMessage
from shared.model.outcomes import Outcome
from shared.usecases.accept import accept_leads
from shared.usecases.delivery import Delivery, RetryLater, backoff_seconds, handle_delivery
from shared.usecases.push import Action, LeadPusher, PushResult
from shared.usecases.sweep import requeue_stuck_leads
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse, Write
from tests.fakes.faults import COMMIT_THEN_DROP, DROP_BEFORE, Fault, throttled, unavailable
from tests.fakes.leads import hunter_lead
from tests.fakes.queues import Dequeued, FakeLeadQueues
from tests.fakes.store import FakeLeadStore
from tests.fakes.wiring import LEASE_SECONDS, MAX_DEQUEUE_COUNT, build_pusher, throttle_gate
from tests.simulation.outages import DATABASE, OutagePlan, Outages, OutageTokens, draw_outages
from tests.simulation.people import SalesRep
from tests.simulation.scheduler import Crash, Job, Scheduler

MESSAGE_LEASE_SECONDS = 330.0      # the runtime hides a message it runs for functionTimeout + 30 s
VISIBILITY_TIMEOUT_SECONDS = 10.0  # host.json: a failed message comes back after this
STUCK_AFTER_SECONDS = 900
SHARED_EMAIL = "info@msp.example"
REJECTED = "Rejected"              # a provider the org's rule refuses: that version can never be written
REFUSAL_CODE = "0x80040265"        # the rule's answer: Dataverse refuses that lead itself
_VERSION = re.compile(r"^version (\d+)$")
# Dataverse's concurrency limit (docs/dataverse.md 6): the client cuts this process's concurrency and shares the cut.
TOO_MANY_AT_ONCE = Fault(429, "0x80072326", "Number of concurrent requests exceeded the limit of 52.", retry_after=1)


class SimulationFailed(AssertionError):
    pass


@dataclass
class Worker:
    """One worker process: its own pusher, schema cache and throttle gate, one message at a time."""

    index: int
    pusher: LeadPusher | None = None
    busy: bool = False
    restarts: int = 0


@dataclass
class Post:
    """One version Hunter posts (and posts again until the webhook answers 202)."""

    company_id: int
    minutes: int
    lead: dict[str, Any]


@dataclass
class Request:
    """One webhook call: its delivery id (the same when Hunter posts it again) and its leads."""

    delivery_id: str
    posts: list[Post]

    @property
    def label(self) -> str:
        return "+".join(f"{p.company_id}@{p.minutes}" for p in self.posts)

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(json.dumps([p.lead for p in self.posts], sort_keys=True).encode()).hexdigest()


@dataclass
class Plan:
    """The workload and fault rates of one seed, drawn from it."""

    companies: list[int]
    workers: int
    posts: list[Post]
    requests: list[Request]
    chaos_actions: int
    hand_made: bool
    dataverse_retries: int
    p_store_fault: float
    p_dataverse_fault: float
    p_queue_fault: float
    p_crash: float
    p_latency: float
    p_jump: float
    bulk_size: int
    bulk_supported: bool
    column_removed: bool
    outages: list[OutagePlan] = field(default_factory=list)

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        companies = [101 + i for i in range(rng.randint(1, 4))]
        shared = {c for c in companies if rng.random() < 0.5}  # an MSP's info@ on several customers
        posts = []
        for company in companies:
            for minutes in rng.sample(range(10), rng.randint(1, 3)):
                fields: dict[str, Any] = {}
                if company in shared:
                    fields["contact_emails"] = [SHARED_EMAIL]
                if rng.random() < 0.1:
                    fields["provider"] = REJECTED
                # Hunter renames the company in each version: a column people own until they change it
                posts.append(Post(company, minutes, hunter_lead(company, minutes, canonical_name=_name(company, minutes),
                                                                **fields)))
        rng.shuffle(posts)
        requests, rest = [], list(posts)
        while rest:  # Hunter sends one to three leads per call
            size = rng.randint(1, 3)
            requests.append(Request(f"delivery-{len(requests)}", rest[:size]))
            rest = rest[size:]
        return cls(companies=companies, workers=rng.randint(1, 4), posts=posts, requests=requests,
                   chaos_actions=rng.randint(30, 150), hand_made=rng.random() < 0.3,
                   dataverse_retries=rng.choice([0, 0, 1, 2]),
                   # one schedule in five is a bad day: Dataverse drops or refuses two requests in five
                   p_store_fault=rng.choice([0.0, 0.02, 0.05]),
                   p_dataverse_fault=rng.choice([0.0, 0.05, 0.15, 0.4, 0.4]),
                   p_queue_fault=rng.choice([0.0, 0.02, 0.05]), p_crash=rng.choice([0.0, 0.01, 0.03]),
                   p_latency=rng.choice([0.1, 0.3]), p_jump=rng.choice([0.0, 0.01, 0.03]),
                   bulk_size=rng.choice([1, 1, 2, 3, 4]), bulk_supported=rng.random() < 0.5,
                   column_removed=rng.random() < 0.1)


@dataclass
class Event:
    at: float
    text: str


@dataclass
class Simulation:
    seed: int
    rng: random.Random = field(init=False)
    events: list[Event] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    trail_length: int = 60  # events shown when it fails; 0 for all

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.plan = Plan.draw(self.rng)
        self.plan.outages = draw_outages(self.seed, self.plan.chaos_actions)
        self.clock = FakeClock()
        self.outages = Outages(self.plan.outages, self.clock)
        self.started = self.clock()
        self.scheduler = Scheduler()
        step = self.scheduler.step
        self.store = FakeLeadStore(self.clock, step=step)
        self.store.on_claim = self._on_claim
        self.queues = FakeLeadQueues(self.clock, step=step)
        self.dataverse = FakeDataverse(self.clock, max_retries=self.plan.dataverse_retries, step=step,
                                       retry_fault=self._retry_fault, seed=self.seed,
                                       tokens=OutageTokens(self.outages, self._token_refused))
        self.dataverse.add_rule("hnt_provider", REJECTED, status=400, code=REFUSAL_CODE,
                                message="Plug-in rejected the record: provider")
        self.dataverse.on_write = self._on_write
        self.dataverse.bulk_supported = self.plan.bulk_supported
        self.workers = [Worker(i) for i in range(self.plan.workers)]
        self.pending: list[Request] = list(self.plan.requests)
        self.newest: dict[int, int] = {}
        for post in self.plan.posts:
            self.newest[post.company_id] = max(self.newest.get(post.company_id, -1), post.minutes)
        self.record_versions: dict[str, int] = {}
        self.record_company: dict[str, int] = {}
        self.chaos = True
        self.next_sweep = self.clock() + STUCK_AFTER_SECONDS
        # Invariants of the outages: the message ids a delivery that met an outage counted against,
        # by outage; the companies a message of which used up its deliveries; the audit rows checked.
        self.outage_counted: dict[str, str] = {}
        self.used_up: set[int] = set()
        self.audited = 0
        self.pauses_opened: list[str] = []
        self.people = SalesRep.draw(self)  # a sales rep working the leads in the CRM, on some seeds
        if self.plan.hand_made:
            self.hand_made_id = self.dataverse.add_record({"subject": "typed by hand", "lastname": "Someone",
                                                           "emailaddress1": SHARED_EMAIL.upper()})

    # --- running ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Raises SimulationFailed naming the seed and what broke."""
        self.scheduler.decide = self._decide
        self.scheduler.keep_turn = lambda job, kind: self.rng.random() < 0.5
        try:
            if self.people is not None:
                self.people.start()
            for action in range(self.plan.chaos_actions):
                self._begin_outages(action)
                self._chaos_action()
                if self.people is not None:
                    self.people.check_step()
            self.chaos = False
            self._settle()
            if self.people is not None:
                self.people.finish()
            self._check_end()
        finally:
            self.scheduler.abort()
        if self.violations:
            raise SimulationFailed(self.report(events=self.trail_length))

    def report(self, *, events: int = 60) -> str:
        """What broke, the plan, and the last `events` events (all with events=0)."""
        trail = "\n".join(f"  t+{e.at:9.2f}s {e.text}" for e in self.events[-events:])
        return (f"simulation seed {self.seed} broke an invariant "
                f"(replay: SIM_SEED={self.seed} pytest tests/simulation -k replay):\n"
                + "\n".join(f"- {v}" for v in self.violations[:20])
                + f"\nplan: {self._plan_text()}\nlast events:\n{trail}")

    def _plan_text(self) -> str:
        p = self.plan
        return (f"companies={p.companies} workers={p.workers} calls={[r.label for r in p.requests]} "
                f"rejected={[(q.company_id, q.minutes) for q in p.posts if q.lead['provider'] == REJECTED]} "
                f"hand_made={p.hand_made} retries={p.dataverse_retries} bulk={p.bulk_size}"
                f"{'' if p.bulk_supported else ' ($batch)'} faults(store={p.p_store_fault}, "
                f"dataverse={p.p_dataverse_fault}, queue={p.p_queue_fault}, crash={p.p_crash})"
                + "".join(f" outage({o.text})" for o in p.outages)
                + (f" {self.people.summary()}" if self.people is not None else ""))

    def _log(self, text: str) -> None:
        self.events.append(Event(self.clock() - self.started, text))

    def _chaos_action(self) -> None:
        running = self.scheduler.running
        idle = [w for w in self.workers if not w.busy]
        choices: list[tuple[float, str]] = [(6.0 * len(running), "resume"), (1.0, "advance")]
        if idle and self.queues.main.visible():
            choices.append((3.0, "deliver"))
        if self.pending:
            choices.append((1.5, "post"))
        if self.clock() >= self.next_sweep:
            choices.append((1.0, "sweep"))
        if self.dataverse.records:
            choices.append((0.3, "edit"))
        if self.plan.column_removed and "hnt_provider" in self.dataverse.schema.columns:
            choices.append((0.1, "remove column"))
        if self.people is not None and not any(job.name == "outcome reader" for job in running):
            choices.append((0.15, "read outcomes"))
        action = _weighted(self.rng, choices)
        if action == "resume":
            self._resume(self.rng.choice(running))
        elif action == "advance":
            self.clock.advance(self.rng.choice([0.5, 2.0, 10.0, 60.0, 150.0]) * self.rng.random())
        elif action == "deliver":
            self._start_delivery(self.rng.choice(idle))
        elif action == "post":
            self._start_post(self.pending.pop(self.rng.randrange(len(self.pending))))
        elif action == "edit":  # someone edits the lead in the CRM: its row version changes
            lead_id = self.rng.choice(sorted(self.dataverse.records))
            self.dataverse.edit(lead_id, {"jobtitle": f"edited at {self.clock() - self.started:.0f}"})
            self._log(f"CRM user edits {lead_id[:8]}")
        elif action == "remove column":  # an admin deletes a column the app writes
            self.dataverse.remove_column("hnt_provider")
            self._log("CRM admin removes column hnt_provider")
        elif action == "read outcomes" and self.people is not None:
            self.people.start_reader()
        else:
            self._start_sweep()

    def _settle(self) -> None:
        """No more faults (an outage still on goes on to its end): run until every message is handled
        and the sweeper finds nothing."""
        for _ in range(20_000):
            running = self.scheduler.running
            idle = [w for w in self.workers if not w.busy]
            if running:
                self._resume(self.rng.choice(running))
            elif self.pending and not self.outages.on(DATABASE):
                self._start_post(self.pending.pop(0))
            elif idle and self.queues.main.visible():
                self._start_delivery(self.rng.choice(idle))
            elif self.queues.main.messages:
                due = min(m.visible_at for m in self.queues.main.messages.values())
                self.clock.advance(max(0.0, (due - self.clock.now()).total_seconds()) + 0.001)
            elif self.outages.ongoing():  # Hunter's posts wait for the webhook to answer again
                self.clock.advance(self.outages.seconds_left() + 0.001)
            elif any(row.status in ("queued", "processing", "error") for row in self.store.rows.values()):
                self.clock.advance(STUCK_AFTER_SECONDS + LEASE_SECONDS + 1)
                self._start_sweep()
            else:
                return
        self.violations.append("did not settle: still busy after 20,000 calm steps")

    # --- jobs ----------------------------------------------------------------------------------------------

    def _resume(self, job: Job) -> None:
        paused_before = self.store.paused is not None
        self.scheduler.resume(job)
        self._check_attempts(job, paused=paused_before or self.store.paused is not None)
        if self.store.paused is not None and not paused_before:
            self.pauses_opened.append(self.store.paused.reason)
            self._log(f"{job.name} opened the pause: {self.store.paused.reason}")
        if not job.finished:
            return
        if job.worker is not None:
            job.worker.busy = False
        if job.crashed:
            self._log(f"{job.name} crashed")
            if job.worker is not None:
                job.worker.pusher = None  # the process restarts with nothing in memory
                job.worker.restarts += 1
        if job.error is not None:
            self.violations.append(f"{job.name} raised {type(job.error).__name__}: {job.error}")

    def _start_delivery(self, worker: Worker) -> None:
        worker.busy = True
        if worker.pusher is None:
            worker.pusher = self._pusher(worker)
        pusher = worker.pusher
        job = Job(f"worker {worker.index}", lambda: self._deliver(pusher), worker=worker)
        self.scheduler.start(job)

    def _pusher(self, worker: Worker) -> LeadPusher:
        throttle: ThrottleGate = throttle_gate(self.store, self.clock, random.Random(self.rng.random()))
        # A process's own client (its locks and caches), over the one Dataverse every worker shares.
        dataverse = self.dataverse.connect(rng=random.Random(self.rng.random()))
        pusher, _ = build_pusher(store=self.store, dataverse=dataverse, clock=self.clock,
                                 throttle=throttle, rng=random.Random(self.rng.random()), bulk_size=self.plan.bulk_size)
        return pusher

    def _deliver(self, pusher: LeadPusher) -> None:
        """One message, as the Functions runtime runs the queue trigger (local/funchost/queue_listener.py)."""
        taken = self.queues.receive(max_messages=1, visibility_timeout=MESSAGE_LEASE_SECONDS)
        if not taken:
            return
        message = taken[0]
        self._log(f"{self._job_name()} took {_describe(message)}")
        if message.dequeue_count > MAX_DEQUEUE_COUNT:
            self._to_poison(message)
            return
        delivery = Delivery(message.text.encode(), message.id, message.pop_receipt, message.dequeue_count)
        try:
            result = handle_delivery(delivery, pusher=pusher, queues=self.queues, store=self.store,
                                     backoff_base_seconds=VISIBILITY_TIMEOUT_SECONDS,
                                     max_dequeue_count=MAX_DEQUEUE_COUNT)
        except RetryLater as retry:
            self._log(f"{self._job_name()} retry later: {retry}")
            outage = self.outages.caused(str(retry))
            if outage is not None:
                self.outage_counted.setdefault(message.id, outage)
            if message.dequeue_count >= MAX_DEQUEUE_COUNT:
                self._to_poison(message)
            else:
                self._runtime(lambda: self.queues.update_visibility(message.id, message.pop_receipt,
                                                                    VISIBILITY_TIMEOUT_SECONDS))
            return
        except Exception as exc:  # noqa: BLE001 - nothing but RetryLater may leave handle_delivery
            self.violations.append(f"handle_delivery raised {type(exc).__name__}: {exc}")
            return
        self._log(f"{self._job_name()} {result.action.value} {result.outcome} {result.reason or ''}")
        if result.action is Action.POISON:
            self._check_refused(message, result)
        self._runtime(lambda: self.queues.delete(message.id, message.pop_receipt))

    def _check_refused(self, message: Dequeued, result: PushResult) -> None:
        """(a) A lead the push sends to the poison queue is one Dataverse refused itself (or the message
        of a version that failed before, which was checked when it failed)."""
        refused = result.refused_by_dataverse and REFUSAL_CODE in (result.reason or "")
        if not (refused or result.outcome is Outcome.SKIPPED):
            self.violations.append(f"{_describe(message)} went to the poison queue, but Dataverse did not refuse "
                                   f"the lead itself: {result.outcome} ({result.reason})")

    def _to_poison(self, message: Dequeued) -> None:
        """(a) The runtime's move of a message that used up its deliveries: never an outage's doing."""
        self._log(f"runtime moves {_describe(message)} to the poison queue")
        outage = self.outage_counted.get(message.id)
        if outage is not None:
            self.violations.append(f"{_describe(message)} used up its deliveries, one of them counted against it "
                                   f"by the outage ({outage})")
        with suppress(MalformedMessage):
            self.used_up.add(LeadRef.from_wire(message.text.encode()).company_id)

        def move() -> None:
            self.queues.send_to_poison(message.text)
            self.queues.delete(message.id, message.pop_receipt)

        self._runtime(move)

    def _runtime(self, action: Any) -> None:
        """The runtime's own storage calls: a failure is logged there, and the message's visibility decides."""
        with suppress(TransientError):
            action()

    def _start_post(self, request: Request) -> None:
        self.scheduler.start(Job(f"webhook {request.label}", lambda: self._post(request)))

    def _post(self, request: Request) -> None:
        try:
            answer = accept_leads([p.lead for p in request.posts], store=self.store,
                                  queues=self.queues, received_at=self.clock.now(),
                                  delivery_id=request.delivery_id, body_sha256=request.body_sha256)
        except TransientError as exc:
            self._log(f"webhook 503 for {request.label}: {exc}; Hunter posts it again")
            self.pending.append(request)
            return
        except Crash:
            self.pending.append(request)  # no answer: Hunter posts it again
            raise
        self._log(f"webhook 202 for {request.label}{' (a duplicate)' if answer['duplicate_delivery'] else ''}")

    def _start_sweep(self) -> None:
        self.next_sweep = self.clock() + STUCK_AFTER_SECONDS
        self.scheduler.start(Job("sweeper", self._sweep))

    def _sweep(self) -> None:
        try:
            count = requeue_stuck_leads(store=self.store, queues=self.queues,
                                        age_seconds=STUCK_AFTER_SECONDS)
        except TransientError:
            return
        if count:
            self._log(f"sweeper sent {count} lead(s) again")

    def _job_name(self) -> str:
        job = self.scheduler.current()
        return job.name if job else "main"

    # --- the scheduler's choices at each port call ------------------------------------------------------

    def _decide(self, job: Job, kind: str) -> Fault | None:
        if self.people is not None:
            self.people.on_call(job, kind)
        if kind.startswith("person."):  # the sales rep's turns meet no fault
            return None
        fault = self._chaos_fault(job, kind) if self.chaos else None
        return self._outage_fault(job, kind) or fault

    def _chaos_fault(self, job: Job, kind: str) -> Fault | None:
        plan, rng = self.plan, self.rng
        if rng.random() < plan.p_latency:
            self.clock.advance(rng.expovariate(2.0))
        if rng.random() < plan.p_jump:
            self.clock.advance(rng.uniform(20, 200))  # a long pause: leases and visibility may end
        if rng.random() < plan.p_crash:
            self._log(f"{job.name} crashes before {kind}")
            raise Crash()
        fault = self._fault(kind)
        if fault is not None:
            self._log(f"{job.name}: {kind} meets {_fault_text(fault)}")
        return fault

    def _outage_fault(self, job: Job | None, kind: str) -> Fault | None:
        if kind.startswith("dataverse.") and d365.deadline.expired():
            return None  # the request is not sent: the client stops it at its deadline (EmulatorTransport.send)
        met = self.outages.fault(kind)
        if met is None:
            return None
        outage, fault = met
        self._log(f"{job.name if job else 'main'}: {kind} meets the outage ({outage})")
        return fault

    def _token_refused(self) -> None:
        self._log(f"{self._job_name()}: the token is refused")

    def _begin_outages(self, action: int) -> None:
        for window in self.outages.begin(action):
            self._log(f"outage begins: {window.plan.kind}, for {window.plan.seconds:.0f} s")

    def _fault(self, kind: str) -> Fault | None:
        plan, rng = self.plan, self.rng
        if kind.startswith("store."):
            if rng.random() < plan.p_store_fault:
                return rng.choice([DROP_BEFORE, COMMIT_THEN_DROP])
        elif kind.startswith("dataverse."):
            return self._dataverse_fault(kind)
        elif (kind.startswith("queue.") and kind not in ("queue.receive", "queue.oldest_waiting")
              and rng.random() < plan.p_queue_fault):
            return rng.choice([DROP_BEFORE, COMMIT_THEN_DROP])
        return None

    def _dataverse_fault(self, kind: str) -> Fault | None:
        if not self.chaos or self.rng.random() >= self.plan.p_dataverse_fault:
            return None
        return self.rng.choice([throttled(1), throttled(2), throttled(30), TOO_MANY_AT_ONCE, unavailable(503),
                                DROP_BEFORE, COMMIT_THEN_DROP])

    def _retry_fault(self, kind: str) -> Fault | None:
        fault = self._dataverse_fault(f"dataverse.{kind}")
        return self._outage_fault(self.scheduler.current(), f"dataverse.{kind}") or fault

    # --- invariants while it runs ------------------------------------------------------------------------

    def _on_claim(self, company_id: int, token: str) -> None:
        job = self.scheduler.current()
        if job is not None:
            job.tokens[company_id] = token

    def _on_write(self, write: Write) -> None:
        company = write.values.get("hnt_companyid")
        job = self.scheduler.current()
        version = _version_of(write.values)
        self._log(f"{job.name if job else 'main'} wrote {write.kind} {write.lead_id[:8]} company={company} "
                  f"v={version}")
        if self.people is not None:
            self.people.on_write(write, job)
            if self.people.acting:
                return
        if job is None:
            return  # a hand edit by the test itself
        token = job.tokens.get(company) if isinstance(company, int) else None
        if token is None:
            self.violations.append(f"{job.name} wrote record {write.lead_id} for company {company} without a lease")
        elif not self.store.lease_valid(company, token):
            row = self.store.rows.get(company)
            holder = "its token still holds it" if row and row.lease_token == token else "another token holds it"
            self.violations.append(
                f"{job.name} wrote company {company}'s record {write.lead_id} at {self.clock.now()} after its lease "
                f"ended (lease until {row.lease_until if row else None}; {holder})")
        previous = self.record_versions.get(write.lead_id)
        if previous is not None and version is not None and version < previous:
            self.violations.append(f"{job.name} wrote version {version} of company {company} over version "
                                   f"{previous} in record {write.lead_id}")
        if version is not None:
            self.record_versions[write.lead_id] = version
        owner = self.record_company.setdefault(write.lead_id, company) if company is not None else None
        if owner is not None and company is not None and owner != company:
            self.violations.append(f"record {write.lead_id} of company {owner} was written for company {company}")

    def _check_attempts(self, job: Job, *, paused: bool) -> None:
        """(c) No attempt is counted against a lead because of an outage, and while the pipeline is
        paused no lead is marked failed unless Dataverse refused it (or chaos used up its deliveries)."""
        audit = self.store.audit
        for row in audit[self.audited:]:
            attempt = row.attempt
            if attempt.outcome not in ("error", "failed"):
                continue
            where = f"{job.name}: company {row.company_id}'s attempt ended {attempt.outcome} ({attempt.error})"
            outage = self.outages.caused(attempt.error)
            if outage is not None:
                self.violations.append(f"{where}: the outage ({outage}) counted against the lead")
            elif (paused and attempt.outcome == "failed" and attempt.failure_class == "permanent"
                  and attempt.error_code != REFUSAL_CODE):
                self.violations.append(f"{where} while the pipeline was paused")
        self.audited = len(audit)

    # --- invariants at the end -----------------------------------------------------------------------------

    def _check_end(self) -> None:
        poisoned = self._poisoned_companies()
        records = self.dataverse.records
        refused = {(p.company_id, p.minutes) for p in self.plan.posts if p.lead["provider"] == REJECTED}
        if self.store.paused is not None:
            self.violations.append(f"the pipeline is still paused at the end ({self.store.paused.reason}: "
                                   f"{self.store.paused.detail})")
        for company in self.plan.companies:
            row = self.store.rows.get(company)
            newest = self.newest[company]
            mine = [r for r in records.values() if r.get("hnt_companyid") == company]
            where = f"company {company}"
            if row is None:
                self.violations.append(f"{where}: accepted but unknown to the store")
                continue
            if _minutes(row.queued_version) != newest:
                self.violations.append(f"{where}: the store's newest version is {_minutes(row.queued_version)}, "
                                       f"Hunter's newest accepted is {newest}")
            if row.lease_until is not None and row.lease_until > self.clock.now():
                self.violations.append(f"{where}: still leased at the end")
            allowed = self.people.people_may_own(company) if self.people is not None else set()
            if allowed is not None and set(row.people_columns) - allowed:
                self.violations.append(f"{where}: the store says people took over {sorted(row.people_columns)}, "
                                       f"but no person changed {sorted(set(row.people_columns) - allowed)}")
            if self.people is not None and self.people.worked(company, row) and row.status in ("synced", "failed"):
                self.people.check_company(company, row, newest, _version_of)
                if row.status == "failed" and (not row.last_error or company not in poisoned):
                    self.violations.append(f"{where}: failed ({row.last_error}), and no message of it is poisoned")
                if row.status == "failed" and (company, newest) not in refused and company not in self.used_up:
                    self.violations.append(f"{where}: failed ({row.last_error}), but Dataverse did not refuse its "
                                           f"newest version {newest}, and no message of it used up its deliveries")
                continue
            if len(mine) > 1:
                self.violations.append(f"{where}: {len(mine)} Dataverse records")
            holds_newest = len(mine) == 1 and _version_of(mine[0]) == newest
            if row.status == "synced":
                if not holds_newest:
                    self.violations.append(f"{where}: synced, but its record holds version "
                                           f"{_version_of(mine[0]) if mine else None}, not {newest}")
                elif row.d365_lead_id != mine[0]["leadid"]:
                    self.violations.append(f"{where}: synced to {row.d365_lead_id}, its record is {mine[0]['leadid']}")
                else:
                    self._check_hunters_name(company, mine[0])
            elif row.status == "failed":
                if not row.last_error:
                    self.violations.append(f"{where}: failed without a reason")
                if company not in poisoned:
                    self.violations.append(f"{where}: failed, but no message of it is in the poison queue")
                if holds_newest:
                    self.violations.append(f"{where}: failed ({row.last_error}), but its record holds the newest "
                                           f"version {newest}")
                if (company, newest) not in refused and company not in self.used_up:
                    self.violations.append(f"{where}: failed ({row.last_error}), but Dataverse did not refuse its "
                                           f"newest version {newest}, and no message of it used up its deliveries")
            else:
                self.violations.append(f"{where}: left {row.status} ({row.last_error})")
        if self.plan.hand_made:
            owner = records[self.hand_made_id].get("hnt_companyid") if self.hand_made_id in records else None
            sharing = {p.company_id for p in self.plan.posts if p.lead["contact_emails"] == [SHARED_EMAIL]}
            if owner is not None and owner not in sharing and self.hand_made_id not in self._masters():
                self.violations.append(f"the hand-made record was adopted by company {owner}, which does not share "
                                       "its address")

        if self.people is not None:
            self.people.check_outcomes()

    def _check_hunters_name(self, company: int, record: dict[str, Any]) -> None:
        """A column people own, which nobody but the app changed, holds Hunter's newest value."""
        if self.people is not None and self.people.kept(record, "companyname", company):
            return
        wanted = _name(company, self.newest[company])
        if record.get("companyname") != wanted:
            self.violations.append(f"company {company}: its record's companyname is {record.get('companyname')!r}, "
                                   f"not Hunter's newest {wanted!r}, and no person changed it")

    def _masters(self) -> set[str]:
        return set(self.people.masters) if self.people is not None else set()

    def _poisoned_companies(self) -> set[int]:
        companies = set()
        for text in self.queues.poison_texts():
            with suppress(MalformedMessage):
                companies.add(LeadRef.from_wire(text.encode()).company_id)
        return companies


def _weighted(rng: random.Random, choices: list[tuple[float, str]]) -> str:
    total = sum(weight for weight, _ in choices)
    draw = rng.random() * total
    for weight, name in choices:
        draw -= weight
        if draw < 0:
            return name
    return choices[-1][1]


def _name(company: int, minutes: int) -> str:
    return f"company{company} v{minutes}"


def _version_of(values: Any) -> int | None:
    match = _VERSION.match(str(values.get("hnt_infrasummary") or ""))
    return int(match.group(1)) if match else None


def _minutes(version: Any) -> int:
    from tests.fakes.leads import T0

    return int((version - T0) / timedelta(minutes=1))


def _describe(message: Dequeued) -> str:
    try:
        ref = LeadRef.from_wire(message.text.encode())
        return f"message {ref.company_id}@{_minutes(ref.version)} (dequeue {message.dequeue_count})"
    except MalformedMessage:
        return f"message {message.id[:8]} (dequeue {message.dequeue_count})"


def _fault_text(fault: Fault) -> str:
    if fault.drop:
        return "a drop " + ("before it was sent" if fault.drop == "before" else "after it committed")
    return f"HTTP {fault.status}" + (f" retry-after {fault.retry_after:g}" if fault.retry_after else "")


@contextmanager
def simulated_time(clock_of: Any) -> Iterator[None]:
    """The push's deadline on the simulation's clock (the pusher does not pass it one), the
    delivery back-off jitter seeded, and logging off while schedules run."""
    original = shared.usecases.push.pusher.deadline
    shared.usecases.push.pusher.deadline = lambda seconds, **_: d365.deadline.deadline(seconds, clock=clock_of())
    previous_level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        shared.usecases.push.pusher.deadline = original
        logging.disable(previous_level)


def run_seed(seed: int, *, trail_length: int = 60) -> Simulation:
    """One schedule. Raises SimulationFailed."""
    backoff_seconds.__kwdefaults__["rng"].seed(seed)  # type: ignore[index]
    simulation = Simulation(seed, trail_length=trail_length)
    with simulated_time(lambda: simulation.clock):
        simulation.run()
    return simulation
