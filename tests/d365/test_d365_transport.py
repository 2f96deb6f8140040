"""The transport seam's values and its requests-based transport (d365/transport.py)."""
from __future__ import annotations

import socket

import pytest

from d365.transport import Headers, Request, RequestsTransport, Response, TransportError, pooled_session


def test_headers_are_looked_up_ignoring_case() -> None:
    headers = Headers([("Retry-After", "2"), ("x-ms-dop-hint", "4")])
    assert headers["retry-after"] == headers.get("RETRY-AFTER") == "2"
    assert headers.get("X-MS-DOP-HINT") == "4" and headers.get("ETag") is None
    assert list(headers) == ["Retry-After", "x-ms-dop-hint"] and len(headers) == 2


def test_a_response_decodes_its_content_or_hands_over_a_payload() -> None:
    decoded = Response(200, Headers(), b'{"value": [1]}')
    assert decoded.json() == {"value": [1]}

    payload = {"value": [{"leadid": "x"}]}
    handed = Response(200, Headers(), payload=payload)
    assert handed.json() is payload  # no round trip
    assert handed.content == b'{"value": [{"leadid": "x"}]}'  # encoded when read

    with pytest.raises(ValueError):
        Response(204, Headers(), b"").json()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_is_a_transport_error_naming_no_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api/data/v9.2/leads?$filter=emailaddress1 eq 'it@c1.example'"
    transport = RequestsTransport(pooled_session(url))
    with pytest.raises(TransportError) as dropped:
        transport.send(Request("GET", url, {"Accept": "application/json"}, None, "find_leads"), (1.0, 1.0))
    assert str(dropped.value) == "ConnectionError"
    transport.close()
