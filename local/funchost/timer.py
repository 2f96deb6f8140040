"""Run one timer-triggered function on its NCRONTAB schedule (UTC), one invocation at a time.

`run_on_startup` invokes it once when the host starts. When an invocation outlasts the next
occurrence, that occurrence runs as soon as the invocation ends, with `past_due=True`; further
missed occurrences are skipped.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from azure.functions.timer import TimerRequest

from local.funchost.app_loader import FunctionSpec
from local.funchost.invoker import Invoker
from local.funchost.ncrontab import Schedule

logger = logging.getLogger(__name__)


class TimerRunner:
    def __init__(self, spec: FunctionSpec, *, schedule: Schedule, invoker: Invoker) -> None:
        self._spec = spec
        self._schedule = schedule
        self._invoker = invoker
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a running invocation; False if it is still running."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        if self._spec.trigger.run_on_startup:
            self._fire(past_due=False)
        due = self._schedule.next_after(_now())
        while not self._stopping.wait(max(0.0, (due - _now()).total_seconds())):
            self._fire(past_due=False)
            due = self._schedule.next_after(due)
            if due <= _now():
                self._fire(past_due=True)
                due = self._schedule.next_after(_now())

    def _fire(self, *, past_due: bool) -> None:
        try:
            self._invoker.invoke(
                self._spec, TimerRequest(past_due=past_due), reason=f"Timer fired at {_now().isoformat()}"
            )
        except Exception:
            logger.exception("timer function %s failed", self._spec.name, extra={"function": self._spec.name})


def _now() -> datetime:
    return datetime.now(timezone.utc)
