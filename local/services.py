"""Start and stop the local services lead push needs: Azurite, PostgreSQL and our own tools.

Shared by `make run` (`local.run`), the test fixtures (`tests/conftest.py`) and the benchmark.
Every child process runs in its own session, so a Ctrl-C in the terminal reaches only the
caller, which then stops its children in order. Child output goes to `.local/logs/`, never to a
pipe nobody reads.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".local" / "logs"
AZURITE_QUEUE = REPO / "node_modules" / ".bin" / "azurite-queue"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key; not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_START_TIMEOUT = 30.0
_STOP_GRACE = 5.0
FUNCHOST_STOP_GRACE = 12.0


class ServiceError(Exception):
    """A local service could not be started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ManagedProcess:
    """A child process that printed its ready line; `stop()` ends it and its children."""

    def __init__(self, name: str, popen: subprocess.Popen[str], match: re.Match[str], log_path: Path,
                 *, stop_grace: float = _STOP_GRACE) -> None:
        self.name = name
        self.popen = popen
        self.match = match
        self.log_path = log_path
        self.stop_grace = stop_grace

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        """The ready line's `url` group, else the whole match."""
        return self.match.groupdict().get("url") or self.match.group(0)

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        if port is None:
            raise ServiceError(f"{self.name}: no port in {self.url!r}")
        return port

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, *, grace: float | None = None) -> None:
        """SIGTERM to the process group, SIGKILL if it is still there after `grace` seconds (default:
        the process's own `stop_grace`)."""
        _terminate(self.popen, self.name, self.stop_grace if grace is None else grace)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.popen.pid}, url={self.url!r})"


def start_process(
    cmd: Sequence[str],
    *,
    ready: str | re.Pattern[str],
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = DEFAULT_START_TIMEOUT,
    echo: bool = False,
) -> ManagedProcess:
    """Start `cmd` and wait until a stdout line matches `ready`.

    stdout and stderr (merged) are copied to `.local/logs/<name>-<pid>-<n>.log` for the life of
    the process, and to our stdout as well with `echo`. Raises ServiceError (with the log's
    tail) if the process exits or stays silent past `timeout` seconds; the process is stopped
    first.
    """
    name = name or Path(cmd[0]).name
    pattern = re.compile(ready) if isinstance(ready, str) else ready
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    log_file = open(log_path, "a", buffering=1, encoding="utf-8")
    popen = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        start_new_session=True,
    )
    found: list[re.Match[str]] = []
    is_ready = threading.Event()
    threading.Thread(
        target=_drain, args=(popen.stdout, log_file, pattern, found, is_ready, f"[{name}] " if echo else None),
        name=f"drain-{name}",
        daemon=True,
    ).start()

    deadline = time.monotonic() + timeout
    try:
        while not is_ready.wait(0.05):
            if popen.poll() is not None or time.monotonic() > deadline:
                reason = f"exited with {popen.returncode}" if popen.poll() is not None else f"not ready after {timeout:g} s"
                raise ServiceError(f"{name} {reason}: {' '.join(cmd)}\n--- {log_path} ---\n{tail(log_path)}")
    except BaseException:  # not ready, or Ctrl-C while waiting: leave nothing running
        _terminate(popen, name, _STOP_GRACE)
        raise
    process = ManagedProcess(name, popen, found[0], log_path)
    log.info("%s ready at %s (pid %s, log %s)", name, process.url, popen.pid, log_path)
    return process


def _drain(
    stream: IO[str],
    log_file: IO[str],
    pattern: re.Pattern[str],
    found: list[re.Match[str]],
    is_ready: threading.Event,
    echo_prefix: str | None,
) -> None:
    with log_file:
        for line in stream:
            log_file.write(line)
            if echo_prefix is not None:
                try:
                    sys.stdout.write(echo_prefix + line)
                except (OSError, ValueError):  # the terminal went away: keep draining into the log
                    echo_prefix = None
            if not found:
                match = pattern.search(line)
                if match:
                    found.append(match)
                    is_ready.set()


def _terminate(popen: subprocess.Popen[str], name: str, grace: float) -> None:
    if popen.poll() is None:
        _signal_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) ignored SIGTERM; killing it", name, popen.pid)
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait()
    # Stragglers left in the group (a wrapper's children) go too.
    _signal_group(popen.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class ProcessInfo:
    """One line of the process table: a process, its parent, process group and session."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int


def process_table() -> list[ProcessInfo]:
    """Every process this user can see, read from /proc; empty where there is no /proc."""
    table = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2:].split()
        table.append(ProcessInfo(int(stat.parent.name), fields[0], int(fields[1]), int(fields[2]), int(fields[3])))
    return table


def stop_children(*, grace: float = _STOP_GRACE) -> list[int]:
    """End every child of this process still running, each with its process group; returns their
    pids. The safety net of a clean-up: a child whose start a signal interrupted has no owner yet."""
    me = os.getpid()
    children = [p for p in process_table() if p.ppid == me and p.state != "Z"]
    for child in children:
        log.warning("stopping child process %s left running", child.pid)
        _signal_child(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        while _reap(child.pid) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_child(child, signal.SIGKILL)
        _reap(child.pid, block=True)
    return [child.pid for child in children]


def _signal_child(child: ProcessInfo, sig: signal.Signals) -> None:
    if child.pgid == child.pid:
        _signal_group(child.pid, sig)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, sig)


def _reap(pid: int, *, block: bool = False) -> int | None:
    """The child's wait status once it has exited (None while it runs); -1 if already reaped elsewhere."""
    try:
        reaped, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return -1
    return status if reaped else None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """The first stop signal interrupts the main thread (KeyboardInterrupt); later ones, and any
    once the clean-up has begun, are counted and ignored, so that none cuts the clean-up short.

    SIGINT is Ctrl-C; SIGTERM comes from `timeout`, a process supervisor and GNU make (which forwards
    it to its child after the whole group got it); SIGHUP from a closing terminal.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._cleaning_up = False

    def install(self) -> None:
        # Set explicitly: a shell starting us in the background hands down SIGINT ignored.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def cleaning_up(self) -> None:
        """From now on no signal interrupts."""
        self._cleaning_up = True

    def ignore(self) -> None:
        """Ignore them until exit: the interpreter's shutdown puts back the default handlers
        (which end the process) but leaves ignored signals ignored."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if len(self.received) == 1 and not self._cleaning_up:
            raise KeyboardInterrupt


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


# --- our own tools (emulators, the local Functions host) ---------------------------------------

_READY = r"^ready (?P<url>\S+)"


def start_module(
    module: str,
    *args: str,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    echo: bool = False,
) -> ManagedProcess:
    """Run `python -m module args` with this interpreter and wait for its `ready <url>` line.

    Raises ServiceError if it exits or is not ready within `timeout` seconds.
    """
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONUNBUFFERED"] = "1"
    return start_process(
        [sys.executable, "-m", module, *args],
        name=name or module.rsplit(".", 1)[-1],
        env=child_env,
        ready=_READY,
        timeout=timeout,
        echo=echo,
    )


def start_dataverse_emulator(
    port: int = 0, *, profile: str = "mvp", alternate_key: str | None = None
) -> ManagedProcess:
    """The Dataverse emulator; its `url` is the D365_URL to use. Raises ServiceError."""
    args = ["--host", "127.0.0.1", "--port", str(port), "--profile", profile]
    if alternate_key:
        args += ["--alternate-key", alternate_key]
    return start_module("local.emulators.dataverse", *args, name="dataverse")


def start_identity_emulator(port: int = 0, *, identity_header: str) -> ManagedProcess:
    """The managed-identity endpoint; its `url` is the IDENTITY_ENDPOINT to use. Raises ServiceError."""
    return start_module(
        "local.emulators.identity",
        "--host", "127.0.0.1", "--port", str(port), f"--identity-header={identity_header}",
        name="identity",
    )


def start_authority_emulator(
    cert_dir: Path, *, tenant_id: str, client_id: str, client_secret: str, port: int = 0
) -> ManagedProcess:
    """The Entra authority over TLS; its `url` is the D365_AUTHORITY_HOST to use and
    `cert_dir/ca-bundle.pem` the REQUESTS_CA_BUNDLE. Raises ServiceError."""
    return start_module(
        "local.emulators.authority",
        "--host", "127.0.0.1", "--port", str(port), f"--cert-dir={cert_dir}",
        # `--name=value`: a secret may begin with "-".
        f"--tenant-id={tenant_id}", f"--client-id={client_id}", f"--client-secret={client_secret}",
        name="authority",
    )


def start_funchost(
    port: int, *, env: Mapping[str, str], timeout: float = 60.0, echo: bool = False, name: str = "funchost"
) -> ManagedProcess:
    """The local Functions host serving this repository's function_app.py with `env` as its
    whole environment (port 0: a free one). Raises ServiceError."""
    process = start_module(
        "local.funchost", "--app-dir", str(REPO), "--host", "127.0.0.1", "--port", str(port or free_port()),
        name=name, env=env, timeout=timeout, echo=echo,
    )
    # Longer than the host's own wait for running invocations, after which it logs where they are.
    process.stop_grace = FUNCHOST_STOP_GRACE
    return process


def migrate_database(env: Mapping[str, str]) -> None:
    """`python -m shared.postgres.migrate` with `env`, as deployment runs it. Raises ServiceError."""
    result = subprocess.run([sys.executable, "-m", "shared.postgres.migrate"], cwd=REPO, env=dict(env),
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ServiceError(f"migrations failed: {result.stderr.strip() or result.stdout.strip()}")
    log.info(result.stdout.strip())


# --- Azurite ---------------------------------------------------------------------------------


def azurite_connection_string(port: int, *, scheme: str = "http") -> str:
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"QueueEndpoint={azurite_queue_url(port, scheme=scheme)};"
    )


def azurite_queue_url(port: int, *, scheme: str = "http") -> str:
    """The queue service URL of the emulator's account (an `AzureWebJobsStorage__queueServiceUri`)."""
    return f"{scheme}://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


def start_azurite(
    port: int = 0,
    *,
    timeout: float = DEFAULT_START_TIMEOUT,
    tls: tuple[Path, Path] | None = None,
    oauth: bool = False,
) -> tuple[ManagedProcess, str]:
    """Start Azurite's queue service on 127.0.0.1 (port 0: any free one) with in-memory storage.

    `tls=(cert_pem, key_pem)` serves HTTPS; `oauth` (which needs `tls`) also accepts bearer tokens,
    checking their issuer, audience and lifetime but not their signature (`--oauth basic`).
    Returns the process and the storage connection string. Raises ServiceError if Azurite is not
    installed (`make setup`) or does not start.
    """
    if not AZURITE_QUEUE.exists():
        raise ServiceError(f"{AZURITE_QUEUE} is missing: run `make setup` (npm ci)")
    if oauth and tls is None:
        raise ServiceError("Azurite accepts bearer tokens only over HTTPS: pass tls=(cert, key)")
    extra = ["--cert", str(tls[0]), "--key", str(tls[1])] if tls else []
    process = start_process(
        [
            str(AZURITE_QUEUE),
            "--queueHost", "127.0.0.1",
            "--queuePort", str(port),
            "--inMemoryPersistence",
            "--silent",
            "--disableTelemetry",
            # azure-storage-queue sends a newer API version than Azurite 3.35 knows; see README.
            "--skipApiVersionCheck",
            *extra,
            *(["--oauth", "basic"] if oauth else []),
        ],
        name="azurite",
        ready=r"successfully listens on (?P<url>https?://\S+)",
        timeout=timeout,
    )
    return process, azurite_connection_string(process.port, scheme="https" if tls else "http")


# --- PostgreSQL -------------------------------------------------------------------------------


class PostgresServer:
    """A PostgreSQL server at `url` (a server-level URL: its database is only used to connect).

    `stop()`, `start()` and `close()` act only on a throwaway cluster this module created; for
    a server found running they do nothing.
    """

    def __init__(self, url: str, *, cluster: ThrowawayCluster | None = None) -> None:
        self.url = url
        self.cluster = cluster

    @property
    def owned(self) -> bool:
        return self.cluster is not None

    def database_url(self, name: str) -> str:
        return with_database(self.url, name)

    def stop(self) -> None:
        """Stop a throwaway server, keeping its data and port for `start()`."""
        if self.cluster:
            self.cluster.stop()

    def start(self) -> None:
        """Start a stopped throwaway server again. Raises ServiceError if it does not come up."""
        if self.cluster:
            self.cluster.start()

    def close(self) -> None:
        """Stop a throwaway server and delete its data."""
        if self.cluster:
            self.cluster.remove()

    def __repr__(self) -> str:
        return f"PostgresServer({self.url!r}, owned={self.owned})"


@dataclass(frozen=True)
class ThrowawayCluster:
    """A PostgreSQL cluster in `root` (data in root/data, socket in root), listening on 127.0.0.1:port."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgresql.log"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin_dir / tool), *args]
        # initdb and postgres refuse to run as root.
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise ServiceError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}\n"
                f"--- {self.log_path} ---\n{tail(self.log_path)}"
            )


def resolve_postgres() -> PostgresServer:
    """The PostgreSQL to use: $DATABASE_URL if set, else 127.0.0.1:5432 if it answers, else a
    throwaway cluster (call `close()` when done).

    Raises ServiceError if none of these is possible.
    """
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return PostgresServer(url)
    if postgres_answers(LOCAL_POSTGRES_URL):
        return PostgresServer(LOCAL_POSTGRES_URL)
    log.info("no PostgreSQL on 127.0.0.1:5432; starting a throwaway cluster")
    return start_throwaway_postgres()


def start_throwaway_postgres() -> PostgresServer:
    """Initialise and start a new cluster in a temporary directory, on a free port.

    Raises ServiceError if PostgreSQL's binaries are not installed or the cluster fails to start.
    """
    bin_dir = _postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="leadpush-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = ThrowawayCluster(bin_dir=bin_dir, root=root, port=free_port())
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.remove()
        raise
    return PostgresServer(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", cluster=cluster)


def _postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServiceError("PostgreSQL is not installed (no initdb): apt-get install postgresql, or set DATABASE_URL")


def _major_version(initdb: str) -> int:
    version = Path(initdb).parent.parent.name
    return int(version) if version.isdigit() else 0


def postgres_answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except psycopg2.Error:
        return False


def with_database(url: str, name: str) -> str:
    """`url` with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def create_database(server_url: str, name: str) -> str:
    """Create database `name` unless it exists; returns its URL. Raises psycopg2.Error."""
    connection = psycopg2.connect(server_url, connect_timeout=5)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name})
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` if it exists, ending its sessions first. Raises psycopg2.Error."""
    connection = psycopg2.connect(server_url, connect_timeout=5)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %(name)s AND pid <> pg_backend_pid()",
                {"name": name},
            )
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    finally:
        connection.close()


# --- PgBouncer --------------------------------------------------------------------------------

PGBOUNCER_BIN = "pgbouncer"
DEFAULT_PGBOUNCER_POOL_SIZE = 8


class PgBouncer:
    """A PgBouncer in front of one PostgreSQL server; `url` is a server-level URL through it
    (`database_url(name)` for a database), `admin_url` its admin console (`SHOW POOLS` ...)."""

    def __init__(self, process: ManagedProcess, upstream_url: str, root: Path, *, port: int, pool_mode: str,
                 default_pool_size: int) -> None:
        self.process = process
        self.root = root
        self.port = port
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        parts = urlsplit(upstream_url)
        user = f"{parts.username}@" if parts.username else ""
        self.url = urlunsplit((parts.scheme, f"{user}127.0.0.1:{port}", parts.path or "/postgres", "", ""))
        self.admin_url = with_database(self.url, "pgbouncer")

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def database_url(self, name: str) -> str:
        return with_database(self.url, name)

    def running(self) -> bool:
        return self.process.running()

    def stop(self) -> None:
        """Stop PgBouncer and delete its configuration."""
        try:
            self.process.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"PgBouncer({self.url!r}, pool_mode={self.pool_mode!r}, default_pool_size={self.default_pool_size})"


def start_pgbouncer(
    upstream_url: str,
    *,
    pool_mode: str = "transaction",
    default_pool_size: int = DEFAULT_PGBOUNCER_POOL_SIZE,
    port: int = 0,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> PgBouncer:
    """PgBouncer on 127.0.0.1 (port 0: a free one) pooling every database of `upstream_url`'s server,
    as Azure's built-in one does: trust for clients, `pool_mode` (transaction by default, where a
    session's state does not survive its transaction) and `default_pool_size` server connections per
    database and user. Raises ServiceError if PgBouncer is not installed (apt-get install pgbouncer)
    or does not start."""
    binary = shutil.which(PGBOUNCER_BIN) or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if binary is None:
        raise ServiceError("PgBouncer is not installed: apt-get install pgbouncer")
    upstream = urlsplit(upstream_url)
    port = port or free_port()
    root = Path(tempfile.mkdtemp(prefix="leadpush-pgbouncer-"))
    user, password = upstream.username or "postgres", upstream.password or ""
    (root / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    (root / "pgbouncer.ini").write_text("\n".join([
        "[databases]",
        f"* = host={upstream.hostname or '127.0.0.1'} port={upstream.port or 5432}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {root / 'userlist.txt'}",
        f"pool_mode = {pool_mode}",
        f"default_pool_size = {default_pool_size}",
        "max_client_conn = 900",  # the soft limit on open files here is 1,024
        "server_reset_query =",
        "server_login_retry = 1",
        f"admin_users = {user}",
        f"stats_users = {user}",
        "",
    ]))
    cmd = [binary, str(root / "pgbouncer.ini")]
    # PgBouncer refuses to run as root; its files must be readable by the user it runs as.
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        for path in root.iterdir():
            shutil.chown(path, "postgres", "postgres")
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    try:
        process = start_process(cmd, name="pgbouncer", ready=rf"listening on 127\.0\.0\.1:{port}\b", timeout=timeout)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PgBouncer(process, upstream_url, root, port=port, pool_mode=pool_mode,
                     default_pool_size=default_pool_size)
