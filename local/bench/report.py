"""Figures, each next to its aim, printed as one table per section."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Figure:
    """One measured value; `met` is None for a figure shown for context, without an aim."""

    name: str
    value: str
    aim: str = ""
    met: bool | None = None


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    figures: tuple[Figure, ...]
    notes: tuple[str, ...] = ()


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "NOT MET")


def render(section: Section) -> str:
    rows = [("figure", "value", "aim", "")] + [(f.name, f.value, f.aim, verdict(f.met)) for f in section.figures]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    line = "  ".join("-" * w for w in widths).rstrip()
    out = [f"({section.key}) {section.title}", line]
    for i, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            out.append(line)
    out.append(line)
    out += [f"  {note}" for note in section.notes]
    return "\n".join(out)


def render_summary(sections: Sequence[Section]) -> str:
    judged = [(s.key, f) for s in sections for f in s.figures if f.met is not None]
    missed = [(key, f) for key, f in judged if not f.met]
    out = [f"summary: {len(judged) - len(missed)} of {len(judged)} aims met"]
    out += [f"  not met ({key}) {f.name}: {f.value} (aim {f.aim})" for key, f in missed]
    out.append("aim met" if not missed else "aim not met")
    return "\n".join(out)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
