"""Run one invocation of a user function: sync or async, bounded by functionTimeout, counted.

Every trigger goes through `Invoker.invoke`, so shutdown can wait for all in-flight invocations
(and, through `busy()`, for the HTTP responses that carry their results).

As the Python worker does, an invocation fails when a function without a `$return` binding (a queue
or timer function) returns a value. An invocation that runs past functionTimeout fails at once and
`on_timeout` is called, which restarts the worker in the CLI (see `local_host`); a thread cannot be
killed, so without a restart the function runs on, and its FunctionTimeoutError says when it ended.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from local.funchost.app_loader import FunctionSpec
from local.funchost.telemetry import traced

logger = logging.getLogger(__name__)


class FunctionTimeoutError(Exception):
    """The invocation ran past host.json functionTimeout; `finished` is set once its thread has ended."""

    def __init__(self, message: str, finished: threading.Event) -> None:
        super().__init__(message)
        self.finished = finished


class Invoker:
    def __init__(
        self, *, function_timeout: float | None, on_timeout: Callable[[FunctionSpec], None] | None = None
    ) -> None:
        self._function_timeout = function_timeout
        self._on_timeout = on_timeout
        self._in_flight = 0
        self._idle = threading.Condition()

    def invoke(self, spec: FunctionSpec, argument: Any, *, reason: str) -> Any:
        """Call the function with its trigger argument and return its result.

        Raises whatever the function raises, RuntimeError for a value returned without a `$return`
        binding, or FunctionTimeoutError (after calling `on_timeout`, if that returns).
        """
        with self.busy():
            started = time.monotonic()
            outcome = "Failed"
            timed_out = False
            try:
                kwargs = {spec.trigger.name: argument}
                result = traced(spec, argument, lambda: _returned(spec, self._call(spec, kwargs)))
                outcome = "Succeeded"
                return result
            except FunctionTimeoutError:
                timed_out = True
                raise
            finally:
                logger.info(
                    "Executed 'Functions.%s' (%s, Reason=%s, Duration=%dms)",
                    spec.name, outcome, reason, (time.monotonic() - started) * 1000,
                    extra={"function": spec.name, "outcome": outcome},
                )
                if timed_out and self._on_timeout is not None:
                    self._on_timeout(spec)

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

    def in_flight(self) -> int:
        with self._idle:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation runs; False when some still run after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        if self._function_timeout is None:
            return _run(spec, kwargs)
        box: dict[str, Any] = {}
        finished = threading.Event()

        def target() -> None:
            try:
                box["result"] = _run(spec, kwargs)
            except BaseException as exc:  # handed back to the waiting thread
                box["error"] = exc
            finally:
                finished.set()

        # In the caller's context, so the function runs inside the invocation's span (OpenTelemetry
        # keeps the current span in a context variable).
        thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=f"fn-{spec.name}",
                                  daemon=True)
        thread.start()
        thread.join(self._function_timeout)
        if thread.is_alive():
            logger.error("Timeout value of %s exceeded by function 'Functions.%s'. Initiating cancellation.",
                         _timespan(self._function_timeout), spec.name, extra={"function": spec.name})
            raise FunctionTimeoutError(
                f"function {spec.name!r} ran past functionTimeout ({self._function_timeout:g}s)", finished
            )
        if "error" in box:
            raise box["error"]
        return box.get("result")


def _returned(spec: FunctionSpec, result: Any) -> Any:
    if result is not None and not spec.has_return:
        raise RuntimeError(f"function {spec.name!r} without a $return binding returned a non-None value")
    return result


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _run(spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(spec.user_function):
        return asyncio.run(spec.user_function(**kwargs))
    return spec.user_function(**kwargs)
