"""A client for a running Dataverse emulator's control API (`/_emulator/...`), for tests and benchmarks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from local.services import ManagedProcess


@dataclass
class EmulatorControl:
    url: str
    process: ManagedProcess
    http: requests.Session = field(default_factory=requests.Session)

    def control(self, method: str, path: str, json: Any = None) -> Any:
        """Call `/_emulator/<path>`; the decoded JSON answer, None when empty.
        Raises requests.HTTPError for an error answer."""
        response = self.http.request(method, f"{self.url}/_emulator/{path}", json=json, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self) -> None:
        """Forget every record, count, fault and rule; restore the profile's schema."""
        self.control("POST", "reset")

    def leads(self) -> list[dict[str, Any]]:
        """Every lead record the emulator holds."""
        return self.control("GET", "leads")["value"]

    def create_lead(self, **values: Any) -> dict[str, Any]:
        """Store a record as a salesperson would make it in the CRM (a new random id); returns it."""
        return self.control("POST", "leads", json=values)

    def lead(self, lead_id: str) -> dict[str, Any]:
        """One lead record as the emulator holds it. Raises requests.HTTPError (404) when missing."""
        return self.control("GET", f"leads/{lead_id}")

    # A person in the CRM (local/emulators/dataverse/people.py): each returns the record written and
    # bumps its version and modifiedon; a Dataverse refusal raises requests.HTTPError with its status.

    def edit_lead(self, lead_id: str, **values: Any) -> dict[str, Any]:
        """Change columns as a person does in a form; `ownerid=<guid>` assigns the lead."""
        return self.control("PATCH", f"leads/{lead_id}", json=values)

    def qualify_lead(self, lead_id: str) -> dict[str, Any]:
        """statecode 1 Qualified, statuscode 3 Qualified (an open lead only)."""
        return self.control("POST", f"leads/{lead_id}/qualify")

    def disqualify_lead(self, lead_id: str, status: int = 4) -> dict[str, Any]:
        """statecode 2 Disqualified with `status` 4 Lost, 5 Cannot Contact, 6 No Longer Interested or 7 Canceled."""
        return self.control("POST", f"leads/{lead_id}/disqualify", json={"status": status})

    def reopen_lead(self, lead_id: str) -> dict[str, Any]:
        """statecode 0 Open, statuscode 1 New."""
        return self.control("POST", f"leads/{lead_id}/reopen")

    def merge_lead(self, subordinate_id: str, *, into: str) -> dict[str, Any]:
        """Merge `subordinate_id` into the master `into`; returns {"subordinate": ..., "master": ...}."""
        return self.control("POST", f"leads/{subordinate_id}/merge", json={"into": into})

    def delete_lead(self, lead_id: str) -> None:
        self.control("DELETE", f"leads/{lead_id}")

    def set_max_page_size(self, size: int) -> None:
        """The server's largest page of a query (5000 as in Dataverse; lower it to exercise paging)."""
        self.control("POST", "paging", json={"max_page_size": size})

    def set_unknown_property_form(self, code: str) -> None:
        """Answer an unknown body property with "0x80048d19" (newer live, the default) or "0x0" (documented)."""
        self.control("POST", "errors", json={"unknown_property": code})

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "stats")

    def set_faults(self, **faults: Any) -> Any:
        """Configure injected failures (see local/emulators/dataverse/faults.py); returns the plan."""
        return self.control("POST", "faults", json=faults)

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")

    def set_bulk_support(self, supported: bool) -> None:
        """Answer as an org with (True) or without (False) the bulk messages for lead."""
        self.control("POST", "bulk", json={"supported": supported})

    def set_protection(self, **limits: Any) -> Any:
        """Enforce service protection limits (see local/emulators/dataverse/protection.py Limits, e.g.
        requests_per_window=600, window_seconds=30, max_concurrent=8); unnamed limits are off. Returns them."""
        return self.control("POST", "protection", json=limits)

    def clear_protection(self) -> None:
        self.control("DELETE", "protection")

    def close(self) -> None:
        self.http.close()
        self.process.stop()
