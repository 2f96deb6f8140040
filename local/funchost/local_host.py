"""The local Functions host as an object: load the app, serve HTTP, poll queues, run timers.

    host = LocalHost(app_dir, port=0).start()
    ...  # host.url is e.g. "http://127.0.0.1:54321"
    host.stop()

App settings come from os.environ, as the app itself reads them. Logging is left to the caller
(the CLI configures it; see `log_format`).

A function that runs past host.json functionTimeout: in Azure the host fails that invocation and
restarts the Python worker, which fails every other invocation the worker was running (each uses up
a delivery) and stops the timed-out code. Here host and worker are one process, so `restart_worker`
(the CLI's re-executes the process, keeping the HTTP socket so callers wait rather than fail) ends
every invocation in flight: their queue messages come back when their 60 s lease lapses, with their
dequeue count spent, and HTTP calls in flight lose their connection (Azure answers them 500). An
in-process host (no `restart_worker`) cannot stop the thread: the timed-out message stays leased
until that thread returns, and only then is handled as failed.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from azure.core.exceptions import AzureError

from local.funchost.app_loader import AppLoadError, FunctionSpec, load_functions
from local.funchost.app_settings import AppSettingError, resolve, storage
from local.funchost.host_config import HostConfig, HostConfigError, load_host_config
from local.funchost.http_server import build_http_server
from local.funchost.invoker import Invoker
from local.funchost.ncrontab import Schedule, ScheduleError
from local.funchost.queue_listener import QueueListener
from local.funchost.routes import RouteTemplateError
from local.funchost.telemetry import configure_worker_telemetry
from local.funchost.timer import TimerRunner

logger = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT_SECONDS = 10.0


class HostStartError(Exception):
    """The host could not start: the app, host.json, an app setting, a binding or storage is at fault."""


class LocalHost:
    def __init__(
        self,
        app_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        listen_fd: int | None = None,
        restart_worker: Callable[[], None] | None = None,
    ) -> None:
        """`listen_fd`: an HTTP socket already listening (a restarted worker's); `restart_worker`: what
        to do when a function times out (see the module's docstring)."""
        self._app_dir = Path(app_dir).resolve()
        self._host = host
        self._port = port
        self._listen_fd = listen_fd
        self._restart_worker = restart_worker
        self._server: ThreadingHTTPServer | None = None
        self._invoker: Invoker | None = None
        self._listeners: list[QueueListener] = []
        self._timers: list[TimerRunner] = []

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the host is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def listening_fd(self) -> int:
        """The HTTP server's listening socket, for a restarted worker to take over."""
        if self._server is None:
            raise RuntimeError("the host is not started")
        return self._server.socket.fileno()

    def start(self) -> "LocalHost":
        """Load the app and start every trigger; returns self. Raises HostStartError."""
        try:
            config = load_host_config(self._app_dir)
            configure_worker_telemetry(os.environ)  # as the Python worker does, before it loads the app
            specs = load_functions(self._app_dir)
            invoker = self._invoker = Invoker(function_timeout=config.function_timeout, on_timeout=self._timed_out)
            listeners = [_listener(spec, config, invoker) for spec in specs if spec.trigger.type == "queueTrigger"]
            timers = [
                TimerRunner(spec, schedule=Schedule.parse(resolve(spec.trigger.schedule, os.environ)), invoker=invoker)
                for spec in specs
                if spec.trigger.type == "timerTrigger"
            ]
            self._server = build_http_server(
                specs, invoker=invoker, route_prefix=config.route_prefix, host=self._host, port=self._port,
                listen_fd=self._listen_fd,
            )
        except (HostConfigError, AppLoadError, AppSettingError, ScheduleError, RouteTemplateError, OSError, ValueError) as exc:
            raise HostStartError(str(exc)) from exc
        threading.Thread(target=self._server.serve_forever, name="http", daemon=True).start()
        try:
            for listener in listeners:
                listener.start()
                self._listeners.append(listener)
        except AzureError as exc:
            self.stop()
            raise HostStartError(f"queue {listener.queue_name}: storage is unreachable: {exc}") from exc
        for timer in timers:
            timer.start()
            self._timers.append(timer)
        logger.info("host started: %d function(s) at %s", len(specs), self.url)
        return self

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SECONDS) -> None:
        """Stop taking work, then wait up to `timeout` seconds for running invocations."""
        deadline = time.monotonic() + timeout
        logger.info("stopping: %d invocation(s) in flight", self._invoker.in_flight() if self._invoker else 0)
        for runner in [*self._listeners, *self._timers]:
            runner.request_stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        drained = all([runner.join(max(0.0, deadline - time.monotonic())) for runner in [*self._listeners, *self._timers]])
        if self._invoker is not None:
            drained = self._invoker.wait_idle(max(0.0, deadline - time.monotonic())) and drained
        if not drained:
            logger.warning("stopped with invocations still running after %.0fs; where each thread is:", timeout)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


    def _timed_out(self, spec: FunctionSpec) -> None:
        if self._restart_worker is None:
            logger.error("A function timeout has occurred in an in-process host, which cannot restart its worker: "
                         "'Functions.%s' runs on, and its message stays leased until it returns", spec.name)
            return
        in_flight = self._invoker.in_flight() if self._invoker is not None else 0
        logger.error("A function timeout has occurred. Restarting the worker process: %d invocation(s) in flight "
                     "fail", in_flight, extra={"function": spec.name})
        self._restart_worker()


def _listener(spec: FunctionSpec, config: HostConfig, invoker: Invoker) -> QueueListener:
    return QueueListener(
        spec,
        queue_name=resolve(spec.trigger.queue_name, os.environ),
        storage=storage(spec.trigger.connection, os.environ),
        config=config.queues,
        invoker=invoker,
    )
