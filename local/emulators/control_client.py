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

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "stats")

    def set_faults(self, **faults: Any) -> Any:
        """Configure injected failures (see local/emulators/dataverse/faults.py); returns the plan."""
        return self.control("POST", "faults", json=faults)

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")

    def close(self) -> None:
        self.http.close()
        self.process.stop()
