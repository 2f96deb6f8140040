"""A sales rep working the leads in the CRM while the push runs (issue 16), and what the push owes them.

On a fraction of seeds a rep joins the schedule as a job of the scheduler: before each action it hands
the turn back (`person.act`), so its actions fall anywhere between two port calls of the workers, the
webhook, the sweeper or the outcome reader. It edits the columns people own (subject, companyname,
websiteurl, emailaddress1; one edit in four clears one), qualifies, disqualifies, reopens and deletes
leads, and merges a company's lead into another record: the hand-made one, one it types for the
purpose, or another company's lead. The outcome reader (`read_crm_outcomes`) runs from time to time
as a job too, with the faults of the other jobs.

Invariants, at each write the app makes:
- (a) a value the rep gave a column is never changed by the app, once the app remembers writing that
  column to that record (before that, the first write of a record it adopts or re-creates after a
  lost answer takes every column, by design); nor, for the company whose lead was merged into it,
  any column people own on the master;
- (b) a qualified or disqualified record (a merged subordinate too) gets no write (D365_CLOSED_LEADS=leave);
- (c) no record is created for a company whose record the rep deleted while the store held it
  (D365_DELETED_LEADS=leave);
- (d) no record is written for two companies (simulation.py), and after every step no two leads
  hold one record in the store.
At the end, after the outcome reader has run until it reopens nothing (and the push has settled
again):
- (e) each lead's CRM state in the store is its record's: the record's state and status code; "merged"
  (naming the master) for a lead left on a record merged away; the master's state for a lead
  that followed its merge; a lead whose record the rep deleted may say "deleted" or what it said
  before (the reader cannot see a deletion; only a write meets the 404).
A company the rep closed, deleted or merged away is checked at the end with this in mind: its
record may hold an older version; when open, it holds the newest (writes resume after a reopen).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from d365.errors import D365Error
from local.emulators.dataverse.errors import ODataError
from shared.model.crm import STATE_BY_CODE
from shared.model.errors import TransientError
from shared.usecases.crm_outcomes import LEASE_SECONDS as READER_LEASE_SECONDS
from shared.usecases.crm_outcomes import read_crm_outcomes
from tests.fakes.dataverse import Write
from tests.simulation.scheduler import Job

if TYPE_CHECKING:
    from tests.fakes.store import Row
    from tests.simulation.simulation import Simulation

PEOPLE_COLUMNS = ("subject", "companyname", "websiteurl", "emailaddress1")
CLOSED_CODES = (1, 2)
P_REP = 0.4                # the share of seeds with a sales rep
READER_PAGE_SIZE = 2       # small, so the reader follows @odata.nextLink
ACTIONS = (("edit", 4.0), ("qualify", 1.5), ("disqualify", 1.5), ("reopen", 1.5), ("delete", 0.7), ("merge", 1.5))


@dataclass
class Guard:
    """A value people gave a record's column, and whose writes may not change it (None: anyone's)."""

    value: Any
    companies: set[int] | None = None


@dataclass
class SalesRep:
    sim: Simulation
    rng: random.Random
    actions: int
    acting: bool = False
    done: Counter[str] = field(default_factory=Counter)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)        # each record as last written
    guards: dict[tuple[str, str], Guard] = field(default_factory=dict)
    typed: dict[tuple[str, str], Any] = field(default_factory=dict)      # the rep's last value, per record and column
    typed_for: dict[int, set[str]] = field(default_factory=dict)         # company -> columns typed on its records
    deleted: dict[int, str] = field(default_factory=dict)                # company -> its record the rep deleted
    gone: set[str] = field(default_factory=set)                          # every record the rep deleted
    masters: dict[str, set[int]] = field(default_factory=dict)           # master -> companies merged into it
    touched: set[int] = field(default_factory=set)                       # companies the rep closed, deleted, merged
    made: list[str] = field(default_factory=list)                        # records the rep typed
    sequence: int = 0                                                    # people's writes so far
    changed_at: dict[str, int] = field(default_factory=dict)             # record -> its last people's write
    last_call: dict[Job, str] = field(default_factory=dict)              # each job's last port call
    read_at: dict[Job, int] = field(default_factory=dict)                # a job's last In read, in `sequence`

    @classmethod
    def draw(cls, sim: Simulation) -> SalesRep | None:
        """The rep of this seed, or None (from a random of its own: a seed without a rep plays as before)."""
        rng = random.Random(f"sales rep {sim.seed}")
        if rng.random() >= P_REP:
            return None
        return cls(sim, rng, actions=rng.randint(2, 12))

    # --- the rep's job ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.sim.scheduler.start(Job("sales rep", self._work))

    def _work(self) -> None:
        for _ in range(self.actions):
            for _ in range(self.rng.randint(1, 25)):  # the rep's actions spread over the schedule
                self.sim.scheduler.step("person.think")
            self.acting = True
            try:
                self._act()
            except ODataError as refused:  # the CRM refused the action (e.g. a lead closed meanwhile)
                self.sim._log(f"sales rep refused: {refused}")
            finally:
                self.acting = False

    def _act(self) -> None:
        action = _weighted(self.rng, ACTIONS)
        records = self.sim.dataverse.records
        live = sorted(i for i, r in records.items() if not r.get("merged"))
        companies = [i for i in live if records[i].get("hnt_companyid") is not None]
        if action == "edit" and live:
            self._edit(self.rng.choice(companies or live))
        elif action == "qualify" and (open_ := [i for i in live if records[i].get("statecode") == 0]):
            self._closing(action, self.rng.choice(open_))
        elif action == "disqualify" and (open_ := [i for i in live if records[i].get("statecode") == 0]):
            self._closing(action, self.rng.choice(open_))
        elif action == "reopen" and (closed := [i for i in live if records[i].get("statecode") in CLOSED_CODES]):
            self._closing(action, self.rng.choice(closed))
        elif action == "delete" and live:
            self._delete(self.rng.choice(companies or live))
        elif action == "merge" and companies:
            self._merge(self.rng.choice(companies), live)

    def _edit(self, lead_id: str) -> None:
        column = self.rng.choice(PEOPLE_COLUMNS)
        n = sum(self.done.values())
        value = None if self.rng.random() < 0.25 else (
            f"rep{n}@sales.example" if column == "emailaddress1" else f"typed by the rep ({n})")
        self.sim.dataverse.edit(lead_id, {column: value})
        self.done["edit"] += 1
        if value is None:
            self.done["clear"] += 1
        self.sim._log(f"sales rep sets {column} of {lead_id[:8]} to {value!r}")
        self.typed[(lead_id, column)] = value
        for company in self._companies_of(lead_id):
            self.typed_for.setdefault(company, set()).add(column)
        guard = self.guards.get((lead_id, column))
        if self._remembered(lead_id, column):
            self.guards[(lead_id, column)] = Guard(value)
        elif guard is not None:
            guard.value = value

    def _closing(self, action: str, lead_id: str) -> None:
        dataverse = self.sim.dataverse
        if action == "qualify":
            dataverse.qualify(lead_id)
        elif action == "disqualify":
            dataverse.disqualify(lead_id, status=self.rng.choice([4, 5, 6, 7]))
        else:
            dataverse.reopen(lead_id)
        self.done[action] += 1
        self._touch(lead_id)
        self.sim._log(f"sales rep {action}s {lead_id[:8]}")

    def _delete(self, lead_id: str) -> None:
        holder = self._holder(lead_id)
        self._touch(lead_id)
        self.sim.dataverse.delete(lead_id)
        self.seen.pop(lead_id, None)
        self.gone.add(lead_id)
        self.done["delete"] += 1
        if holder is not None:
            self.deleted[holder] = lead_id
        self.sim._log(f"sales rep deletes {lead_id[:8]} (held by {holder})")

    def _merge(self, subordinate: str, live: list[str]) -> None:
        records = self.sim.dataverse.records
        others = [i for i in live if i != subordinate]
        if not others or self.rng.random() < 0.3:
            master = self.sim.dataverse.add_record({"subject": "a duplicate typed by the rep", "lastname": "Rep",
                                                    "companyname": "Typed Ltd"})
            self.made.append(master)
        else:
            master = self.rng.choice(others)
        company = records[subordinate].get("hnt_companyid")
        self.sim.dataverse.merge(subordinate, into=master)
        self.done["merge"] += 1
        self._touch(subordinate)
        if isinstance(company, int):
            self.masters.setdefault(master, set()).add(company)
            for column in PEOPLE_COLUMNS:  # the master's columns are the people's for the lead that follows
                guard = self.guards.setdefault((master, column), Guard(records[master].get(column), set()))
                guard.value = records[master].get(column)
                if guard.companies is not None:
                    guard.companies.add(company)
        self.sim._log(f"sales rep merges {subordinate[:8]} (company {company}) into {master[:8]}")

    def _touch(self, lead_id: str) -> None:
        self.touched.update(self._companies_of(lead_id))

    def _companies_of(self, lead_id: str) -> set[int]:
        record = self.sim.dataverse.records.get(lead_id, {})
        return {c for c in (record.get("hnt_companyid"), self._holder(lead_id)) if isinstance(c, int)}

    def people_may_own(self, company: int) -> set[str] | None:
        """The columns the store may say people took over for the company (None: any, after a merge)."""
        if any(company in companies for companies in self.masters.values()):
            return None
        return self.typed_for.get(company, set())

    def _holder(self, lead_id: str) -> int | None:
        return next((c for c, row in self.sim.store.rows.items() if row.d365_lead_id == lead_id), None)

    def _remembered(self, lead_id: str, column: str) -> bool:
        """Whether the store remembers writing `column` to the record (so a change there is a person's)."""
        return any(row.d365_lead_id == lead_id and column in (row.written_values or {})
                   for row in self.sim.store.rows.values())

    # --- the outcome reader's job ---------------------------------------------------------------------

    def start_reader(self) -> None:
        self.sim.scheduler.start(Job("outcome reader", self._read))

    def _read(self) -> None:
        client = self.sim.dataverse.connect(rng=random.Random(self.rng.random()))
        try:
            read = read_crm_outcomes(dataverse=client, store=self.sim.store, queues=self.sim.queues,
                                     page_size=READER_PAGE_SIZE)
        except (D365Error, TransientError) as exc:
            self.sim._log(f"outcome reader failed: {type(exc).__name__}")
            return
        self.done["read"] += 1
        self.sim._log(f"outcome reader: {read}")

    # --- invariants at each write ---------------------------------------------------------------------

    def on_call(self, job: Job, kind: str) -> None:
        """Each port call a job makes (before it is made)."""
        self.last_call[job] = kind
        if kind == "dataverse.find_leads_in_any":
            self.read_at[job] = self.sequence

    def on_write(self, write: Write, job: Job | None) -> None:
        """Every write that lands: a person's is remembered, the app's is checked."""
        before = self.seen.get(write.lead_id)
        self.seen[write.lead_id] = dict(write.values)
        if self.acting or job is None:  # the rep, or the test's own hand (the hand-made record, an edit)
            self.changed_at[write.lead_id] = self.sequence = self.sequence + 1
            return
        call = self.last_call.get(job, "")
        if call == "dataverse.upsert_multiple" and self.changed_at.get(write.lead_id, 0) > self.read_at.get(job, 0):
            # README "The window": UpsertMultiple cannot carry If-Match; a change between the batch's
            # In read and its write is not seen. Accepted there, counted here.
            self.done["in the UpsertMultiple window"] += 1
            return
        job_name = f"{job.name} ({call.removeprefix('dataverse.')})"
        lead, company = write.lead_id, write.values.get("hnt_companyid")
        if before is not None and before.get("statecode") in CLOSED_CODES:
            self.sim.violations.append(f"{job_name} wrote record {lead} of company {company}, "
                                       f"closed in the CRM (statecode {before.get('statecode')})")
        if write.created and company in self.deleted:
            self.sim.violations.append(f"{job_name} created record {lead} for company {company}, whose record "
                                       f"{self.deleted[company]} the rep deleted")
        for column in PEOPLE_COLUMNS:
            guard = self.guards.get((lead, column))
            if guard is None or (guard.companies is not None and company not in guard.companies):
                continue
            if before is not None and write.values.get(column) != guard.value:
                self.sim.violations.append(f"{job_name} changed {column} of record {lead} from the rep's "
                                           f"{guard.value!r} to {write.values.get(column)!r} (company {company})")

    def kept(self, record: dict[str, Any], column: str, company: int) -> bool:
        """Whether the record's column may hold a person's value rather than Hunter's: the rep's last
        value there, or a master's column (people's for the company that followed its merge)."""
        lead_id = record["leadid"]
        guard = self.guards.get((lead_id, column))
        master = guard is not None and guard.companies is not None and company in guard.companies
        return master or ((lead_id, column) in self.typed and record.get(column) == self.typed[(lead_id, column)])

    def check_step(self) -> None:
        held = [row.d365_lead_id for row in self.sim.store.rows.values() if row.d365_lead_id]
        for lead_id, count in Counter(held).items():
            if count > 1:
                self.sim.violations.append(f"{count} leads hold record {lead_id} in the store")

    # --- the end -----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Read the outcomes until nothing is reopened, the push settling after each read."""
        for _ in range(5):
            read = read_crm_outcomes(dataverse=self.sim.dataverse, store=self.sim.store,
                                     queues=self.sim.queues, page_size=READER_PAGE_SIZE)
            if not read.read:  # a crashed reader's lease: wait it out
                self.sim.clock.advance(READER_LEASE_SECONDS + 1)
                continue
            self.sim._log(f"outcome reader at the end: {read}")
            if not read.reopened:
                return
            self.sim._settle()
        self.sim.violations.append("the outcome reader still reopened leads after five reads")

    def worked(self, company: int, row: Row) -> bool:
        """Whether people closed, deleted or merged the company's record (so it may hold an older version)."""
        record = self.sim.dataverse.records.get(row.d365_lead_id or "")
        closed = record is None or record.get("statecode") != 0 or record.get("merged")
        return company in self.touched or bool(row.d365_lead_id and closed)

    def check_company(self, company: int, row: Row, newest: int, version_of: Any) -> None:
        """The end of a company the rep closed, deleted or merged (its row synced or failed)."""
        records, where = self.sim.dataverse.records, f"company {company}"
        stamped = [i for i, r in records.items() if r.get("hnt_companyid") == company and not r.get("merged")]
        if len(stamped) > 1:
            self.sim.violations.append(f"{where}: {len(stamped)} records not merged away: {stamped}")
        if row.status != "synced":
            return
        record = records.get(row.d365_lead_id or "")
        if record is None:
            if row.d365_lead_id not in self.gone:
                self.sim.violations.append(f"{where}: synced to {row.d365_lead_id}, which does not exist")
        elif record.get("statecode") == 0 and not record.get("merged"):
            followed = company in self.masters.get(row.d365_lead_id or "", set())
            version = version_of(record)
            if version != newest and not (followed and (version is None or version < newest)):
                self.sim.violations.append(f"{where}: synced, its open record {row.d365_lead_id} holds version "
                                           f"{version}, not {newest}")
            elif version == newest:
                self.sim._check_hunters_name(company, record)

    def check_outcomes(self) -> None:
        """(e): the store's CRM state of each lead is its record's."""
        records = self.sim.dataverse.records
        for company, row in self.sim.store.rows.items():
            record = records.get(row.d365_lead_id or "")
            where = f"company {company}: the store says {row.crm_state}/{row.crm_status_code}"
            if record is None:
                if row.d365_lead_id and row.d365_lead_id not in self.gone and row.status == "synced":
                    self.sim.violations.append(f"{where}, for record {row.d365_lead_id} that never was deleted")
                continue
            if record.get("merged"):
                if row.crm_state != "merged" or not row.crm_merged_into:
                    self.sim.violations.append(f"{where}, its record {row.d365_lead_id} was merged into "
                                               f"{record.get('_masterid_value')}")
                continue
            state = str(STATE_BY_CODE[record["statecode"]])
            if (row.crm_state, row.crm_status_code) != (state, record.get("statuscode")):
                self.sim.violations.append(f"{where}, its record {row.d365_lead_id} is {state}/"
                                           f"{record.get('statuscode')}")

    def summary(self) -> str:
        return f"rep({self.actions} actions: {dict(self.done)})"


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    draw = rng.random() * sum(weight for _, weight in choices)
    for name, weight in choices:
        draw -= weight
        if draw < 0:
            return name
    return choices[-1][0]
