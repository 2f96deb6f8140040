"""`python -m local.funchost --app-dir DIR [--host 127.0.0.1] [--port 7071]`.

Prints `ready http://HOST:PORT` on stdout once HTTP and the queue listeners run; logs go to
stderr. SIGINT/SIGTERM stop polling, let running invocations finish (bounded) and exit 0.
Exits 1, with the reason on stderr, when the app or its configuration cannot be loaded.

A function that runs past functionTimeout restarts the worker, as in Azure: the process executes
itself again (same pid, same port; the listening socket is handed over with `--listen-fd`, so HTTP
callers wait meanwhile) and prints its `ready` line again. Every invocation in flight ends with it.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import NoReturn
from urllib.parse import urlsplit

from local.funchost.local_host import HostStartError, LocalHost
from local.funchost.log_format import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.funchost", description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", required=True, help="directory holding function_app.py and host.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)  # a restarted worker's HTTP socket
    args = parser.parse_args(argv)

    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    host = LocalHost(args.app_dir, host=args.host, port=args.port, listen_fd=args.listen_fd,
                     restart_worker=lambda: _restart(host, args))
    try:
        host.start()
    except HostStartError as exc:
        print(f"funchost: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"ready {host.url}", flush=True)
    stop.wait()
    host.stop()
    return 0


def _restart(host: LocalHost, args: argparse.Namespace) -> NoReturn:
    """Execute this host again in this process, handing over the listening HTTP socket."""
    fd = host.listening_fd()
    os.set_inheritable(fd, True)
    port = urlsplit(host.url).port or args.port
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "local.funchost", "--app-dir", args.app_dir, "--host", args.host,
                              "--port", str(port), "--listen-fd", str(fd)])


if __name__ == "__main__":
    sys.exit(main())
