"""(a) Import time of `function_app` next to its third-party dependencies alone, in fresh interpreters.

Measured with bytecode caches (kept in a temporary PYTHONPYCACHEPREFIX, so nothing is written into
the checkout), and again without a cache for the app's own modules, as a process started with
PYTHONDONTWRITEBYTECODE=1, or from a read-only package shipped without __pycache__, imports them.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Mapping

from local.bench.report import Figure, Section, median
from local.services import REPO

# The third-party modules the app imports (its own import lines name them), nothing of the app.
DEPENDENCIES = (
    "azure.functions", "azure.identity", "azure.storage.queue", "azure.core.pipeline.transport", "msal",
    "requests", "psycopg2", "psycopg2.extras", "opentelemetry.trace", "opentelemetry.metrics",
    "opentelemetry.trace.propagation.tracecontext",
)
AIM_RATIO = 1.3
# Settings only have to pass validation: nothing is reached while importing.
APP_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/leadpush",
    "D365_URL": "http://127.0.0.1:9",
    "HUNTER_WEBHOOK_SECRET": "bench",
}
_TIMED = "import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def run(*, runs: int) -> Section:
    deps = ", ".join(DEPENDENCIES)
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | APP_ENV
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        cached = base | {"PYTHONPYCACHEPREFIX": cache}
        uncached = base | {"PYTHONDONTWRITEBYTECODE": "1"}
        for modules in (deps, "function_app"):  # fills the cache; not counted
            _python(_TIMED.format(modules=modules), env=cached)
        times: dict[str, list[float]] = {"deps": [], "app": [], "app uncached": []}
        for _ in range(runs):  # interleaved, so a slow moment of the machine hits all three
            times["deps"].append(_timed(deps, cached))
            times["app"].append(_timed("function_app", cached))
            times["app uncached"].append(_timed("function_app", uncached))
        notes = _extra_modules(deps, cached)
    dep_ms, app_ms, raw_ms = (median(times[k]) * 1000 for k in ("deps", "app", "app uncached"))
    ratio = app_ms / dep_ms
    return Section("a", f"import time, median of {runs} fresh interpreters", (
        Figure("dependencies alone", f"{dep_ms:.0f} ms"),
        Figure("function_app", f"{app_ms:.0f} ms"),
        Figure("function_app / dependencies", f"{ratio:.2f}x", f"<= {AIM_RATIO}x", ratio <= AIM_RATIO),
        Figure("function_app, app modules not cached", f"{raw_ms:.0f} ms ({raw_ms / dep_ms:.2f}x)"),
    ), (notes,))


def _python(code: str, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args, "-c", code], cwd=REPO, env=dict(env),
                          capture_output=True, text=True, check=True)


def _timed(modules: str, env: Mapping[str, str]) -> float:
    return float(_python(_TIMED.format(modules=modules), env=env).stdout)


def _self_times(code: str, env: Mapping[str, str]) -> dict[str, int]:
    """Module -> its own import time in µs, from `python -X importtime`."""
    lines = _python(code, "-X", "importtime", env=env).stderr.splitlines()
    return {m.group(4): int(m.group(1)) for m in map(_IMPORTTIME.match, lines) if m}


def _extra_modules(deps: str, env: Mapping[str, str]) -> str:
    """What function_app imports beyond its dependencies, largest first (one -X importtime run)."""
    dependencies = _self_times(f"import {deps}", env)
    extra = {name: us for name, us in _self_times("import function_app", env).items() if name not in dependencies}
    top = sorted(extra.items(), key=lambda item: -item[1])[:6]
    return (f"beyond the dependencies: {len(extra)} modules, {sum(extra.values()) / 1000:.0f} ms self time "
            f"(one -X importtime run, cached); largest: " + ", ".join(f"{n} {us / 1000:.1f} ms" for n, us in top))
