"""`make run`: lead push on this machine, with local stand-ins for everything in Azure.

Starts Azurite (queue), PostgreSQL (database `leadpush`), the Dataverse and managed-identity
emulators and the local Functions host, prints curl commands to try it, and on Ctrl-C stops what
it started, in reverse order. A stand-in is skipped when its setting is already in the
environment (AzureWebJobsStorage or its identity-based AzureWebJobsStorage__accountName /
__queueServiceUri, DATABASE_URL, D365_URL, IDENTITY_ENDPOINT); every app setting
can be overridden that way. Ports: AZURITE_PORT (10001), FUNCHOST_PORT (7071),
DATAVERSE_EMULATOR_PORT (7072), IDENTITY_EMULATOR_PORT (7073).

Whatever stops it stops what it started: SIGINT (Ctrl-C), SIGTERM (`timeout`, a process supervisor,
and GNU make, which forwards it to its child after the group got it too) and SIGHUP (a closing
terminal). The first of them ends the wait; any later one is ignored, so it cannot cut the clean-up
short. The clean-up then stops every child process still running, also one whose start the signal
interrupted.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from local import services
from shared.intake.signature import sign

log = logging.getLogger("local.run")

DATABASE_NAME = "leadpush"
LOCAL_WEBHOOK_SECRET = "local-webhook-secret"
LOCAL_IDENTITY_HEADER = "local-identity-header"
SAMPLE_LEAD = Path(__file__).with_name("sample_lead.json")
# Any of these names the storage to use (as the Functions host reads AzureWebJobsStorage).
STORAGE_SETTINGS = ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__queueServiceUri")
DEFAULT_PORTS = {
    "AZURITE_PORT": 10001,
    "FUNCHOST_PORT": 7071,
    "DATAVERSE_EMULATOR_PORT": 7072,
    "IDENTITY_EMULATOR_PORT": 7073,
}


class Stack:
    """What `make run` started, stopped in reverse order."""

    def __init__(self) -> None:
        self.stoppers: list[tuple[str, Callable[[], None]]] = []
        self.processes: list[services.ManagedProcess] = []

    def add(self, process: services.ManagedProcess) -> services.ManagedProcess:
        self.processes.append(process)
        self.stoppers.append((process.name, process.stop))
        return process

    def stop(self) -> None:
        for name, stop in reversed(self.stoppers):
            log.info("stopping %s", name)
            try:
                stop()
            except Exception:
                log.exception("could not stop %s", name)

    def exited(self) -> services.ManagedProcess | None:
        return next((p for p in self.processes if not p.running()), None)


def port(name: str) -> int:
    """The port setting `name`. Raises services.ServiceError if it is taken."""
    number = int(os.environ.get(name, DEFAULT_PORTS[name]))
    if services.port_in_use(number):
        raise services.ServiceError(f"port {number} is in use: stop what holds it or set {name}")
    return number


def start(stack: Stack) -> tuple[dict[str, str], str]:
    """Start every stand-in not configured from outside; return the app's environment and the
    host's URL. Raises services.ServiceError."""
    env = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "LEAD_QUEUE_NAME": "lead-push",
        "CRM_OUTCOME_SCHEDULE": os.environ.get("CRM_OUTCOME_SCHEDULE", "0 */5 * * * *"),
        "HUNTER_WEBHOOK_SECRET": LOCAL_WEBHOOK_SECRET,
    }
    if not any(os.environ.get(name) for name in STORAGE_SETTINGS):
        process, env["AzureWebJobsStorage"] = services.start_azurite(port("AZURITE_PORT"))
        stack.add(process)
    if not os.environ.get("DATABASE_URL"):
        server = services.resolve_postgres()
        if server.owned:
            stack.stoppers.append(("postgresql (throwaway)", server.close))
        if not os.environ.get("D365_URL"):
            # The emulator starts empty; sync state left from an earlier run would name records it
            # no longer has (and an unchanged lead would never be sent again), so start afresh too.
            services.drop_database(server.url, DATABASE_NAME)
        env["DATABASE_URL"] = services.create_database(server.url, DATABASE_NAME)
        log.info("database %s", env["DATABASE_URL"])
    if not os.environ.get("D365_URL"):
        env["D365_URL"] = stack.add(services.start_dataverse_emulator(port("DATAVERSE_EMULATOR_PORT"))).url
    managed_identity = os.environ.get("D365_AUTH_MODE", "managed_identity") == "managed_identity"
    if managed_identity and not os.environ.get("IDENTITY_ENDPOINT"):
        process = services.start_identity_emulator(port("IDENTITY_EMULATOR_PORT"), identity_header=LOCAL_IDENTITY_HEADER)
        env |= {"IDENTITY_ENDPOINT": stack.add(process).url, "IDENTITY_HEADER": LOCAL_IDENTITY_HEADER}
    env |= os.environ
    services.migrate_database(env)
    hosts = [stack.add(services.start_funchost(port("FUNCHOST_PORT"), env=env, echo=True))]
    # Further hosts compete for the same queue, as scaled-out instances do; HTTP goes to the first.
    for n in range(1, instance_count()):
        hosts.append(stack.add(services.start_funchost(0, env=env, echo=True, name=f"funchost-{n + 1}")))
    return env, hosts[0].url


def instance_count() -> int:
    value = os.environ.get("FUNCHOST_INSTANCES", "1")
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"FUNCHOST_INSTANCES must be a positive whole number, got {value!r}")
    return int(value)


def instructions(env: dict[str, str], host_url: str) -> str:
    headers = sign(SAMPLE_LEAD.read_bytes(), env["HUNTER_WEBHOOK_SECRET"])
    header_args = " ".join(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items())
    api = f"{host_url}/api"
    lines = [
        "",
        "lead push is running. Post the sample lead (company 86), signed with the local secret:",
        f"  curl -i -X POST {api}/leads -H 'Content-Type: application/json' {header_args} "
        f"--data-binary @{shlex.quote(str(SAMPLE_LEAD))}",
        "Its sync state:",
        f"  curl -s {api}/leads/86",
    ]
    if not os.environ.get("D365_URL"):
        lines += ["What the Dataverse emulator holds:", f"  curl -s {env['D365_URL']}/_emulator/leads"]
    lines += ["Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    signals = services.StopSignals()
    signals.install()
    stack = Stack()
    try:
        env, host_url = start(stack)
        print(instructions(env, host_url), flush=True)
        while (exited := stack.exited()) is None:
            time.sleep(0.5)
        log.error("%s exited with %s; log: %s", exited.name, exited.popen.returncode, exited.log_path)
        return 1
    except KeyboardInterrupt:
        first = signals.received[0] if signals.received else signal.SIGINT
        return 0 if first == signal.SIGINT else 128 + first
    except services.ServiceError as exc:
        log.error("%s", exc)
        return 1
    finally:
        signals.cleaning_up()
        stack.stop()
        # A child whose start the signal interrupted is in no stack yet.
        services.stop_children()
        if signals.received:
            names = ", ".join(signal.Signals(n).name for n in signals.received)
            log.info("stopped everything it started (signals received: %s)", names)
        signals.ignore()


if __name__ == "__main__":
    sys.exit(main())
