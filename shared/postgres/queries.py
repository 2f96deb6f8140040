"""Every statement the app runs, by name, loaded once from `queries.sql`."""

from __future__ import annotations

import re
from pathlib import Path

_HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = _HERE / "migrations"


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", path.read_text(), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        queries[name.strip()] = body.strip().rstrip(";")
    return queries


Q = load_queries(_HERE / "queries.sql")
