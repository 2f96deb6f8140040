"""The Azure CLI as the postprovision hook uses it: JSON in and out, ARM calls retried while the server is busy.

A PostgreSQL Flexible Server runs one change at a time and refuses another meanwhile (409, `ServerBusy`), and
`az rest` returns as soon as Azure accepts a change, long before it is done. So every ARM call here is retried
on 409/`ServerBusy` (and 429/5xx) with capped, jittered back-off, and `wait_until` polls a resource until it
reaches the state a step needs. Both stop at an absolute budget, then raise `AzError`.

Errors: `AzError` (the CLI exited non-zero: `.status` and `.code` parsed from what it wrote to stderr, e.g.
`ERROR: Conflict({"error":{"code":"ServerBusy",...}})`), `AzTimeout` (a subclass: the budget ran out).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

ARM = "https://management.azure.com"
BUDGET_SECONDS = 20 * 60
FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 60.0
POLL_SECONDS = 10.0
# The server is busy with another change (PostgreSQL answers ServerBusy / ServerIsBusy, others use the rest).
BUSY_CODES = {"ServerBusy", "ServerIsBusy", "OperationInProgress", "AnotherOperationInProgress", "Conflict"}
RETRIED_STATUSES = {409, 429, 500, 502, 503, 504}
_PHRASES = {status.phrase.lower(): status.value for status in HTTPStatus}
_STATUS_PREFIX = re.compile(r"ERROR:\s*([A-Za-z][A-Za-z -]*?)\(")
_CODE = re.compile(r'"code"\s*:\s*"([^"]+)"|\(([A-Za-z]+)\)|Code:\s*([A-Za-z]+)')


class AzError(Exception):
    """`az` failed. `status` (HTTP) and `code` (ARM error code) are None when the output did not say."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def busy(self) -> bool:
        return self.code in BUSY_CODES or self.status in RETRIED_STATUSES

    @property
    def not_found(self) -> bool:
        return self.status == 404 or self.code in {"ResourceNotFound", "NotFound"}


class AzTimeout(AzError):
    """A retried call or a wait did not succeed within the budget."""


def parse_error(args: list[str], stderr: str) -> AzError:
    """The CLI's own error output as an AzError (the message keeps the CLI's first line)."""
    status = None
    match = _STATUS_PREFIX.search(stderr)
    if match:
        status = _PHRASES.get(match.group(1).strip().lower())
    code = next((next(g for g in m.groups() if g) for m in _CODE.finditer(stderr)), None)
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "no output")
    return AzError(f"az {' '.join(args[:3])} failed: {first}", status=status, code=code)


class Az:
    """Runs `az`. `sleep`, `clock` and `jitter` are injectable so a test can move time without waiting."""

    def __init__(
        self,
        *,
        executable: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        budget_seconds: float = BUDGET_SECONDS,
        log: Callable[[str], None] = print,
    ) -> None:
        self._executable = executable
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._budget = budget_seconds
        self._log = log

    def run(self, *args: str) -> str:
        """stdout of one `az` call. Raises AzError."""
        # On Windows `az` is az.cmd: only shutil.which finds it through PATHEXT.
        executable = self._executable or shutil.which("az")
        if executable is None:
            raise AzError("the Azure CLI (az) is not on PATH: install it and `az login`")
        done = subprocess.run([executable, *args], text=True, capture_output=True)
        if done.returncode != 0:
            raise parse_error(list(args), done.stderr)
        return done.stdout.strip()

    def json(self, *args: str) -> Any:
        out = self.run(*args, "-o", "json")
        return json.loads(out) if out else None

    def arm(
        self, method: str, resource_id: str, api_version: str, body: dict | None = None, *, busy_retry: bool = True
    ) -> Any:
        """One ARM request through `az rest`, retried while the resource is busy (unless `busy_retry` is off:
        where a 409 means something else, e.g. a soft-deleted Key Vault secret). The body goes through a file,
        so no value shows on a command line, and because on Windows az.cmd passes its arguments through
        cmd.exe, which mangles JSON quotes."""
        url = f"{ARM}{resource_id}?api-version={api_version}"
        if not busy_retry:
            return self._rest(method, url, body)
        what = f"{method.upper()} {resource_id.rsplit('/providers/', 1)[-1]}"
        return self.retrying(what, lambda: self._rest(method, url, body))

    def _rest(self, method: str, url: str, body: dict | None) -> Any:
        if body is None:
            out = self.run("rest", "--method", method, "--url", url)
            return json.loads(out) if out else None
        handle, path = tempfile.mkstemp(suffix=".json")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(body, file)
            out = self.run("rest", "--method", method, "--url", url, "--body", f"@{path}")
        finally:
            os.unlink(path)
        return json.loads(out) if out else None

    def retrying(self, what: str, call: Callable[[], Any]) -> Any:
        """`call()` until it does not fail busy: capped exponential back-off with jitter, within the budget."""
        deadline = self._clock() + self._budget
        delay = FIRST_DELAY_SECONDS
        while True:
            try:
                return call()
            except AzError as exc:
                if not exc.busy:
                    raise
                if self._clock() + delay > deadline:
                    message = f"{what}: still busy after {self._budget:.0f} s: {exc}"
                    raise AzTimeout(message, status=exc.status, code=exc.code) from exc
                wait = delay * (0.5 + self._jitter() / 2)
                self._log(f"postprovision: {what}: server busy ({exc.code or exc.status}), retrying in {wait:.0f} s")
                self._sleep(wait)
                delay = min(delay * 2, MAX_DELAY_SECONDS)

    def wait_until(self, what: str, probe: Callable[[], bool]) -> None:
        """Poll `probe()` every POLL_SECONDS until it is true. Raises AzTimeout after the budget."""
        deadline = self._clock() + self._budget
        while not probe():
            if self._clock() + POLL_SECONDS > deadline:
                raise AzTimeout(f"{what}: not done after {self._budget:.0f} s")
            self._sleep(POLL_SECONDS)
