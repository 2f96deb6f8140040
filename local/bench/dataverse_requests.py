"""(d) Dataverse requests per lead, counted by the emulator: new, changed and unchanged leads,
with the default e-mail/website lookup and with an alternate key."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from local.bench import leads
from local.bench.report import Figure, Section
from local.bench.stack import Stack
from local.emulators.control_client import EmulatorControl
from shared.runtime.container import Container
from shared.model.messages import LeadMessage

ALTERNATE_KEY = "hnt_companyid"
OVERHEAD_KINDS = ("metadata", "whoami")
# (phase, the lead sent for a company id, aim without / with an alternate key)
PHASES: tuple[tuple[str, Callable[[int], dict[str, Any]], int, int], ...] = (
    ("new lead", leads.lead, 2, 1),
    ("changed lead", leads.changed, 1, 1),
    ("unchanged re-send", leads.changed, 0, 0),
)


def run(stack: Stack, *, count: int) -> Section:
    """Pushes `count` leads through each phase, in this process, for each configuration."""
    figures: list[Figure] = []
    for label, alternate_key in (("lookup", None), ("alternate key", ALTERNATE_KEY)):
        emulator = stack.dataverse("mvp", alternate_key=alternate_key)
        env = stack.app_env(emulator, **({"D365_ALTERNATE_KEY": alternate_key} if alternate_key else {}))
        ids = stack.company_ids(count)
        overhead: dict[str, int] = dict.fromkeys(OVERHEAD_KINDS, 0)
        with stack.container(env) as container:
            for phase, make_lead, aim_lookup, aim_key in PHASES:
                by_kind = _requests_by_kind(emulator, container, [make_lead(cid) for cid in ids])
                for kind in OVERHEAD_KINDS:
                    overhead[kind] += by_kind.pop(kind)
                per_lead = sum(by_kind.values()) / count
                aim = aim_key if alternate_key else aim_lookup
                kinds = ", ".join(f"{kind} {n / count:g}" for kind, n in by_kind.items() if n)
                figures.append(Figure(f"{label}: {phase}", f"{per_lead:g}" + (f" ({kinds})" if kinds else ""),
                                      f"<= {aim}", per_lead <= aim))
        figures.append(Figure(f"{label}: metadata / whoami, {len(PHASES) * count} pushes",
                              f"{overhead['metadata']} / {overhead['whoami']}"))
    return Section("d", f"Dataverse requests per lead ({count} leads per phase, in process)", tuple(figures))


def _requests_by_kind(emulator: EmulatorControl, container: Container, batch: list[dict[str, Any]]) -> dict[str, int]:
    before = emulator.stats()["by_kind"]
    received_at = datetime.now(timezone.utc)
    for lead in batch:
        container.pusher.push(LeadMessage(lead=lead, correlation_id="bench", received_at=received_at),
                              dequeue_count=1)
    return {kind: n - before.get(kind, 0) for kind, n in emulator.stats()["by_kind"].items()}
