"""What a push's log events say about the lead beside its ids: its Hunter segment and score band,
for conversion by segment and score in the portal (never contact data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCORE_BANDS = ((80, "80-100"), (60, "60-79"), (40, "40-59"), (0, "0-39"))


def lead_dimensions(lead: Mapping[str, Any]) -> dict[str, str]:
    score = lead.get("readiness_score")
    band = next((name for floor, name in SCORE_BANDS if isinstance(score, int) and score >= floor), "unknown")
    segment = lead.get("segment")
    return {"segment": segment if isinstance(segment, str) and segment else "unknown", "score_band": band}
