"""What a fake port call may meet: the hook every fake calls at the start of each port call, and
the faults it can answer with.

A hook is `step(kind) -> Fault | None`, `kind` naming the call (`store.claim`, `queue.send`,
`dataverse.update_lead`, ...). The simulation's scheduler is such a hook: it may switch worker,
move the clock, crash the caller (by raising), or answer a fault. Contract and decision tests use
no hook, or a script.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """An error answer (`status`, `code`, `message`, `retry_after` for a 429), or a lost connection:
    `drop="before"` (nothing happened) or `drop="after_commit"` (it happened, the answer was lost)."""

    status: int | None = None
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    drop: str | None = None

    def __post_init__(self) -> None:
        if self.drop not in (None, "before", "after_commit"):
            raise ValueError(f"drop must be 'before' or 'after_commit', got {self.drop!r}")
        if (self.status is None) == (self.drop is None):
            raise ValueError("a fault is either an error status or a drop")


DROP_BEFORE = Fault(drop="before")
COMMIT_THEN_DROP = Fault(drop="after_commit")

Step = Callable[[str], "Fault | None"]


def no_step(kind: str) -> Fault | None:
    return None


def throttled(retry_after: float = 1.0) -> Fault:
    """Dataverse's service protection answer (docs/dataverse.md 6), as the emulator gives it."""
    return Fault(429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                 retry_after=retry_after)


def unavailable(status: int = 503) -> Fault:
    return Fault(status, "", "The service is temporarily unavailable.")


# --- org-level answers: the configuration is broken for every lead (shared/usecases/failure_scope.py) ---


def privilege_missing(privilege: str = "prvWriteLead") -> Fault:
    """The application user's security role lacks a privilege (docs/dataverse.md 11.6)."""
    return Fault(403, "0x80040220", f"Principal user (Id=00000000-0000-0000-0000-00000000a001, type=8) is missing "
                                    f"{privilege} privilege on OTC=4 for entity 'lead'.")


def not_a_member() -> Fault:
    """No application user for the app's identity in this environment."""
    return Fault(403, "0x80072560", "The user is not a member of the organization.")


def admin_mode() -> Fault:
    """The environment is in administration mode: only admins may sign in."""
    return Fault(403, "0x80040220", "User does not have required privileges (or role membership) to access the org "
                                    "when it is in Admin Only mode.")
