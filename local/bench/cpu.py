"""CPU time used by the processes of a run, from /proc (Linux), to show where a run's time went."""
from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat fields after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def process_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU seconds of `pid` (and of its children it has reaped)."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICKS


def postgres_seconds() -> float:
    """CPU seconds of every PostgreSQL process on this machine: the postmaster's reaped backends
    (one per closed connection) and those still running. Zero when none is visible."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            # Backends rename themselves "postgres: ..."; the postmaster keeps its command line.
            postmaster = not (entry / "cmdline").read_text().startswith("postgres:")
            total += process_seconds(int(entry.name), with_children=postmaster)
        except (OSError, ValueError):  # gone while we looked
            continue
    return total
