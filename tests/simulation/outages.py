"""Outages for the simulation (issue 17): for a window of simulated time the configuration of
Dataverse is broken, or PostgreSQL is unreachable, then it is fixed.

- A configuration outage answers an org-level failure to every Dataverse request of its scope
  (every request, only the writes, or only the metadata reads), or refuses the app's credential
  (the token provider raises `D365AuthenticationError(transient=False)`, no request is sent).
- A database outage makes every store call raise `StoreUnavailable` before it reaches the
  database, for longer than a message's deliveries last (five, 10 s apart and doubling: about
  150 s), so an outage that used them up would poison every lead in flight.

A seed draws its outages from a random of its own, so a seed without one plays exactly the
schedule it played before outages existed. An outage starts at a chosen chaos action and lasts
its seconds of simulated time, into the calm phase if it is still on.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from d365.errors import D365AuthenticationError
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeTokens
from tests.fakes.faults import Fault, admin_mode, not_a_member, privilege_missing

DATABASE = "database down"
TOKEN_REFUSED = "token refused"
DATABASE_DOWN = Fault(drop="before", message='connection to server at "10.0.0.4", port 5432 failed: refused')
TOKEN_REFUSAL = "invalid_client: AADSTS7000222: The provided client secret keys for app 'lead push' are expired."
# Configuration outages: the answer, and the request kinds it is given to (None: every request).
WRITES = frozenset({"create_lead", "update_lead", "upsert_lead", "upsert_multiple", "batch"})
ANSWERS: dict[str, tuple[Fault, frozenset[str] | None]] = {
    "privilege removed on writes": (privilege_missing("prvWriteLead"), WRITES),
    "privilege removed on metadata": (privilege_missing("prvReadEntity"), frozenset({"read_lead_schema"})),
    "no application user": (not_a_member(), None),
    "org in administration mode": (admin_mode(), None),
}
KINDS = (DATABASE, TOKEN_REFUSED, *ANSWERS)
OUTAGE_SHARE = 0.3           # of the seeds, those with an outage
SECOND_OUTAGE_SHARE = 0.2    # of those, the ones with a second (they may overlap)
DATABASE_SECONDS = (200.0, 900.0)
CONFIGURATION_SECONDS = (30.0, 600.0)


@dataclass(frozen=True)
class OutagePlan:
    kind: str
    start_action: int   # the chaos action it starts at
    seconds: float

    @property
    def text(self) -> str:
        return f"{self.kind} for {self.seconds:.0f} s from chaos action {self.start_action}"


def draw_outages(seed: int, chaos_actions: int) -> list[OutagePlan]:
    rng = random.Random(f"outages {seed}")
    if rng.random() >= OUTAGE_SHARE:
        return []
    plans = []
    for _ in range(2 if rng.random() < SECOND_OUTAGE_SHARE else 1):
        kind = rng.choice(KINDS)
        # One in four from the start: the workers' metadata caches are still cold then.
        start = 0 if rng.random() < 0.25 else rng.randrange(chaos_actions)
        seconds = rng.uniform(*(DATABASE_SECONDS if kind == DATABASE else CONFIGURATION_SECONDS))
        plans.append(OutagePlan(kind, start, seconds))
    return plans


@dataclass
class Window:
    plan: OutagePlan
    start: float
    end: float


class Outages:
    """The seed's outages on the simulation's clock: which are on, and what they answer. `met`
    counts, by kind, the calls an outage answered."""

    def __init__(self, plans: list[OutagePlan], clock: FakeClock) -> None:
        self.plans = plans
        self._clock = clock
        self.windows: list[Window] = []
        self.met: Counter[str] = Counter()

    def begin(self, action: int) -> list[Window]:
        """Start the outages due at this chaos action; the ones started."""
        now = self._clock()
        started = [Window(p, now, now + p.seconds) for p in self.plans if p.start_action == action]
        self.windows.extend(started)
        return started

    def on(self, kind: str) -> bool:
        now = self._clock()
        return any(w.plan.kind == kind and w.start <= now < w.end for w in self.windows)

    def ongoing(self) -> bool:
        """Whether an outage is on now, or has yet to start."""
        now = self._clock()
        return len(self.windows) < len(self.plans) or any(now < w.end for w in self.windows)

    def seconds_left(self) -> float:
        now = self._clock()
        return max((w.end - now for w in self.windows), default=0.0)

    def fault(self, call: str) -> tuple[str, Fault] | None:
        """The outage that answers this port call (`store.claim`, `dataverse.create_lead`, ...), and its answer."""
        if call.startswith("store.") and self.on(DATABASE):
            return self._met(DATABASE, DATABASE_DOWN)
        if call.startswith("dataverse."):
            request = call.removeprefix("dataverse.")
            for kind, (answer, scope) in ANSWERS.items():
                if (scope is None or request in scope) and self.on(kind):
                    return self._met(kind, answer)
        return None

    def token_refusal(self) -> D365AuthenticationError | None:
        if not self.on(TOKEN_REFUSED):
            return None
        self.met[TOKEN_REFUSED] += 1
        return D365AuthenticationError(TOKEN_REFUSAL, transient=False)

    def caused(self, error: str | None) -> str | None:
        """The outage whose answer this recorded error is (by its text), if any."""
        if not error:
            return None
        answers = [(DATABASE, DATABASE_DOWN), *((kind, answer) for kind, (answer, _) in ANSWERS.items())]
        for kind, answer in answers:
            if answer.message in error and any(w.plan.kind == kind for w in self.windows):
                return kind
        return TOKEN_REFUSED if TOKEN_REFUSAL in error else None

    def _met(self, kind: str, answer: Fault) -> tuple[str, Fault]:
        self.met[kind] += 1
        return kind, answer


class OutageTokens(FakeTokens):
    """The app's credential, refused while a token outage is on (`refused` is told of each refusal)."""

    def __init__(self, outages: Outages, refused: Callable[[], None]) -> None:
        super().__init__()
        self._outages = outages
        self._refused = refused

    def get_token(self) -> str:
        refusal = self._outages.token_refusal()
        if refusal is not None:
            self._refused()
            raise refusal
        return super().get_token()
