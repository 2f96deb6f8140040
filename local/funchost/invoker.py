"""Run one invocation of a user function: sync or async, bounded by functionTimeout, counted.

Every trigger goes through `Invoker.invoke`, so shutdown can wait for all in-flight invocations
(and, through `busy()`, for the HTTP responses that carry their results).
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from local.funchost.app_loader import FunctionSpec
from local.funchost.telemetry import traced

logger = logging.getLogger(__name__)


class FunctionTimeoutError(Exception):
    """The invocation ran past host.json functionTimeout."""


class Invoker:
    def __init__(self, *, function_timeout: float | None) -> None:
        self._function_timeout = function_timeout
        self._in_flight = 0
        self._idle = threading.Condition()

    def invoke(self, spec: FunctionSpec, argument: Any, *, reason: str) -> Any:
        """Call the function with its trigger argument and return its result.

        Raises whatever the function raises, or FunctionTimeoutError. On a timeout the function's
        thread is abandoned (a thread cannot be killed); the real host would restart the worker.
        """
        with self.busy():
            started = time.monotonic()
            outcome = "Failed"
            try:
                result = traced(spec, argument, lambda: self._call(spec, {spec.trigger.name: argument}))
                outcome = "Succeeded"
                return result
            finally:
                logger.info(
                    "Executed 'Functions.%s' (%s, Reason=%s, Duration=%dms)",
                    spec.name, outcome, reason, (time.monotonic() - started) * 1000,
                    extra={"function": spec.name, "outcome": outcome},
                )

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count the enclosed work as in flight, e.g. an HTTP exchange around its invocation."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation runs; False when some still run after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        if self._function_timeout is None:
            return _run(spec, kwargs)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = _run(spec, kwargs)
            except BaseException as exc:  # handed back to the waiting thread
                box["error"] = exc

        # In the caller's context, so the function runs inside the invocation's span (OpenTelemetry
        # keeps the current span in a context variable).
        thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=f"fn-{spec.name}",
                                  daemon=True)
        thread.start()
        thread.join(self._function_timeout)
        if thread.is_alive():
            raise FunctionTimeoutError(
                f"function {spec.name!r} ran past functionTimeout ({self._function_timeout:g}s)"
            )
        if "error" in box:
            raise box["error"]
        return box.get("result")


def _run(spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(spec.user_function):
        return asyncio.run(spec.user_function(**kwargs))
    return spec.user_function(**kwargs)
