"""The push use case: one queue message -> the company's newest lead written to Dataverse (or
nothing to do) -> its recorded outcome.

Safe to run any number of times, on any number of workers: the lead is leased in PostgreSQL for
the push, a write never starts after the lease's deadline, the newest stored version is the one
written, an unchanged payload costs no request, and every write is conditional. Whatever fails is
classified and recorded here; `push` raises only `StoreUnavailable` when PostgreSQL cannot even
claim the lead.

- `decision`: what to do with a claimed lead, before and after mapping (pure, table-tested)
- `pusher`: the claim, the single write and its outcome
- `batch`: other due leads written in the same bulk request
- `recorder`: how a failure is recorded, for the own lead and for a batch's others
"""

from shared.usecases.push.pusher import LeadPusher, UnrecordedWrite, push_deadline_seconds
from shared.usecases.push.result import Action, PushResult

__all__ = ["Action", "LeadPusher", "PushResult", "UnrecordedWrite", "push_deadline_seconds"]
