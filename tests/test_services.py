"""local.services against the real things: Azurite, PostgreSQL, child processes."""
from __future__ import annotations

import base64
import secrets
import sys

import psycopg2
import pytest
from azure.storage.queue import QueueClient

from local import services


def test_azurite_round_trips_a_base64_message(azurite):
    # given
    name = f"services-{secrets.token_hex(4)}"
    queue = azurite.queue_client(name)
    queue.create_queue()
    body = '{"lead": "ünïcode"}'
    # when
    queue.send_message(body)
    # then
    raw = QueueClient.from_connection_string(azurite.connection_string, name)
    assert raw.peek_messages()[0].content == base64.b64encode(body.encode()).decode()
    assert [m.content for m in queue.receive_messages(max_messages=32)] == [body]
    queue.delete_queue()


def test_stopped_azurite_frees_its_port():
    process, connection_string = services.start_azurite()
    assert services.port_in_use(process.port)
    assert f"QueueEndpoint=http://127.0.0.1:{process.port}/devstoreaccount1;" in connection_string

    process.stop()

    assert not process.running()
    assert not services.port_in_use(process.port)


def test_start_process_reports_the_ready_url_and_logs_output():
    script = "import sys, time; print('warming up'); print('ready http://127.0.0.1:1234/x', flush=True); time.sleep(60)"
    process = services.start_process([sys.executable, "-c", script], name="fake", ready=r"^ready (?P<url>\S+)", timeout=10)
    try:
        assert process.url == "http://127.0.0.1:1234/x"
        assert process.port == 1234
        assert "warming up" in process.log_path.read_text()
    finally:
        process.stop()
    assert not process.running()


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("import sys; print('boom', file=sys.stderr); sys.exit(3)", "exited with 3"),
        ("import time; time.sleep(60)", "not ready after 0.5 s"),
    ],
)
def test_start_process_fails_with_the_log_tail(script, reason):
    with pytest.raises(services.ServiceError) as error:
        services.start_process([sys.executable, "-c", script], name="broken", ready="^ready", timeout=0.5)
    assert reason in str(error.value)


def test_start_process_stops_a_process_that_ignores_sigterm():
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    process = services.start_process([sys.executable, "-c", script], name="stubborn", ready="^ready", timeout=10)
    process.stop(grace=0.2)
    assert process.popen.returncode == -9


def test_throwaway_postgres_keeps_data_and_port_across_restart():
    server = services.start_throwaway_postgres()
    try:
        url = services.create_database(server.url, "kept")
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE t (n int); INSERT INTO t VALUES (42)")
        connection.close()

        server.stop()
        assert not services.postgres_answers(server.url)
        server.start()

        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT n FROM t")
            assert cursor.fetchall() == [(42,)]
        connection.close()
    finally:
        root = server.cluster.root
        server.close()
    assert not root.exists()


def test_create_database_is_idempotent_and_drop_ends_open_sessions(postgres_server):
    name = "leadpush_services_test"
    url = services.create_database(postgres_server.url, name)
    assert services.create_database(postgres_server.url, name) == url
    open_session = psycopg2.connect(url)

    services.drop_database(postgres_server.url, name)

    assert not services.postgres_answers(url)
    open_session.close()


def test_database_url_fixture_is_its_own_database(database_url, postgres_server):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
    connection.close()
    assert name.startswith("leadpush_test_")
    assert database_url == postgres_server.database_url(name)


def test_authority_emulator_takes_a_secret_that_looks_like_an_option(tmp_path):
    process = services.start_authority_emulator(tmp_path, tenant_id="t", client_id="c", client_secret="-secret")
    try:
        assert process.url.startswith("https://127.0.0.1:")
        assert (tmp_path / "ca-bundle.pem").is_file()
    finally:
        process.stop()
