"""`make run` stops what it started, whatever stops it.

`python -m local.run` runs in a process group of its own, as make's child does in a terminal; the
signal goes to the whole group, as Ctrl-C, `timeout`, a closing terminal or a supervisor send it,
and then again while the clean-up runs (GNU make forwards SIGTERM to its child once more).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from local import services
from local.run import DEFAULT_PORTS, STORAGE_SETTINGS

RUNNING = "lead push is running"
STARTING = "azurite ready at"  # the first stand-in is up, the others are still to come
STOPPED_WITHIN_SECONDS = 90.0
# Settings that would make `make run` use something from outside rather than start it.
_OUTSIDE = (*STORAGE_SETTINGS, "DATABASE_URL", "D365_URL", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "D365_AUTH_MODE",
            "FUNCHOST_INSTANCES")


@dataclass
class Run:
    popen: subprocess.Popen[str]
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)
    seen: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        with self.seen:
            if not self.seen.wait_for(lambda: any(text in line for line in self.lines) or self.popen.poll() is not None,
                                      timeout):
                pytest.fail(f"no {text!r} after {timeout:g} s:\n{self.output}")
        assert self.popen.poll() is None, f"`make run` exited before {text!r}:\n{self.output}"

    @property
    def output(self) -> str:
        return "".join(self.lines[-60:])

    def sessions(self) -> set[int]:
        """The sessions of the children: each child runs in one of its own."""
        return {p.sid for p in services.process_table() if p.ppid == self.popen.pid}


@pytest.fixture
def make_run(database_url: str) -> Iterator[Run]:
    ports = {name: services.free_port() for name in DEFAULT_PORTS}
    env = {name: value for name, value in os.environ.items() if name not in _OUTSIDE}
    # An outside database of the test's own: `make run` would otherwise drop and recreate `leadpush`.
    env |= {name: str(number) for name, number in ports.items()} | {"DATABASE_URL": database_url}
    popen = subprocess.Popen([sys.executable, "-m", "local.run"], cwd=services.REPO, env=env, text=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    run = Run(popen, ports)

    def read() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            with run.seen:
                run.lines.append(line)
                run.seen.notify_all()
        with run.seen:
            run.seen.notify_all()

    threading.Thread(target=read, daemon=True).start()
    try:
        yield run
    finally:
        if popen.poll() is None:  # the test failed half-way: leave nothing behind
            for pgid in {*run.sessions(), popen.pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            popen.wait()


def _signal_until_exit(run: Run, signum: int, sessions: set[int]) -> int:
    """Send `signum` to the group, then again and again while the clean-up runs; the exit status.
    `sessions` gains those of children seen meanwhile (one whose start was under way)."""
    deadline = time.monotonic() + STOPPED_WITHIN_SECONDS
    os.killpg(run.popen.pid, signum)
    while run.popen.poll() is None and time.monotonic() < deadline:
        sessions |= run.sessions()
        time.sleep(0.1)
        try:
            os.killpg(run.popen.pid, signum)
        except ProcessLookupError:
            break
    try:
        return run.popen.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"`make run` still running {STOPPED_WITHIN_SECONDS:g} s after {signal.Signals(signum).name}:\n"
                    f"{run.output}")


def _left_running(sessions: set[int]) -> list[services.ProcessInfo]:
    return [p for p in services.process_table() if p.sid in sessions and p.state != "Z"]


@pytest.mark.parametrize(("signum", "when", "status"), [
    (signal.SIGTERM, RUNNING, 128 + signal.SIGTERM),
    (signal.SIGINT, RUNNING, 0),
    (signal.SIGHUP, STARTING, 128 + signal.SIGHUP),
])
def test_a_signal_to_the_group_stops_everything_make_run_started(make_run, signum, when, status):
    # given
    make_run.wait_for(when)
    sessions = make_run.sessions()
    assert sessions, f"no child process running:\n{make_run.output}"

    # when
    returncode = _signal_until_exit(make_run, signum, sessions)

    # then
    assert returncode == status, make_run.output
    assert _left_running(sessions) == []
    assert [name for name, number in make_run.ports.items() if services.port_in_use(number)] == []
    assert "stopped everything it started" in make_run.output
