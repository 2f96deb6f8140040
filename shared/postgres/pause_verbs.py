"""The store's verbs of the pipeline's pause (`shared.model.pause`)."""

from __future__ import annotations

from typing import Any

from shared.model.pause import Pause


class PauseVerbs:
    def _execute(self, name: str, params: dict[str, Any] | None = None, *, fetch: str | None = None) -> Any:
        raise NotImplementedError

    def open_pause(self, reason: str, detail: str, *, probe_seconds: float) -> bool:
        """Pause the pipeline (or keep it paused, with this reason); the next probe in `probe_seconds`.
        True when this call opened it."""
        row = self._execute(
            "open_pause", {"reason": reason, "detail": detail, "probe_seconds": probe_seconds}, fetch="one"
        )
        return bool(row["opened"])

    def close_pause(self) -> str | None:
        """Lift the pause; the reason it had, or None when there was none."""
        row = self._execute("close_pause", fetch="one")
        return row["reason"] if row else None

    def probe_again(self) -> None:
        """The probe proved nothing: let the next claim probe at once."""
        self._execute("probe_again")

    def pause(self) -> Pause | None:
        row = self._execute("pause", fetch="one")
        return Pause(row["reason"], row["detail"], row["opened_at"]) if row else None
