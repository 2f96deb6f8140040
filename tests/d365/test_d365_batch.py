"""The $batch multipart writer and reader, without a server."""

from __future__ import annotations

import pytest

from d365.batch import MAX_REQUESTS, BatchRequest, build, parse


def test_build_writes_one_part_per_request_with_crlf_lines() -> None:
    content_type, body = build(
        [
            BatchRequest(
                "PATCH", "https://org/api/data/v9.2/leads(1)", {"Content-Type": "application/json"}, b'{"a":1}'
            ),
            BatchRequest("GET", "https://org/api/data/v9.2/WhoAmI"),
        ],
        boundary="batch_x",
    )
    assert content_type == "multipart/mixed; boundary=batch_x"
    assert b"\n" not in body.replace(b"\r\n", b"")  # no bare LF anywhere
    assert body.endswith(b"--batch_x--\r\n")
    assert body.count(b"--batch_x\r\nContent-Type: application/http\r\n") == 2
    assert b'PATCH https://org/api/data/v9.2/leads(1) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"a":1}' in body


@pytest.mark.parametrize("count", [0, MAX_REQUESTS + 1])
def test_build_refuses_empty_and_oversized_batches(count: int) -> None:
    with pytest.raises(ValueError):
        build([BatchRequest("GET", "https://org/api/data/v9.2/WhoAmI")] * count)


def test_build_refuses_a_header_that_would_inject_lines() -> None:
    with pytest.raises(ValueError):
        build([BatchRequest("GET", "https://org/x", {"If-Match": 'W/"1"\r\nX-Evil: 1'})])


_ANSWER = (
    b"--batchresponse_1\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json; odata.metadata=minimal\r\n"
    b'ETag: W/"5"\r\n'
    b"\r\n"
    b'{"leadid":"a"}\r\n'
    b"--batchresponse_1\r\n"
    b"Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    b"\r\n"
    b"--changesetresponse_2\r\n"
    b"Content-Type: application/http\r\n"
    b"Content-ID: 1\r\n"
    b"\r\n"
    b"HTTP/1.1 204 No Content\r\n"
    b"OData-Version: 4.0\r\n"
    b"\r\n"
    b"\r\n"
    b"--changesetresponse_2--\r\n"
    b"--batchresponse_1\r\n"
    b"Content-Type: application/http\r\n"
    b"\r\n"
    b"HTTP/1.1 400 Bad Request\r\n"
    b"REQ_ID: 5f0e\r\n"
    b"Content-Type: application/json; odata.metadata=minimal\r\n"
    b"\r\n"
    b'{"error":{"code":"0x80044331","message":"too long"}}\r\n'
    b"--batchresponse_1--\r\n"
)


def test_parse_reads_each_response_in_order_change_sets_in_place() -> None:
    responses = parse("multipart/mixed; boundary=batchresponse_1", _ANSWER)
    assert [r.status for r in responses] == [201, 204, 400]
    assert responses[0].header("ETag") == 'W/"5"' and responses[0].body == b'{"leadid":"a"}'
    assert responses[1].body == b""
    assert responses[2].header("req_id") == "5f0e" and b"0x80044331" in responses[2].body


def test_parse_tolerates_bare_lf() -> None:
    responses = parse("multipart/mixed; boundary=batchresponse_1", _ANSWER.replace(b"\r\n", b"\n"))
    assert [r.status for r in responses] == [201, 204, 400]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/mixed", _ANSWER),
        ("multipart/mixed; boundary=other", _ANSWER),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/http\r\n\r\nnot http\r\n--b--\r\n"),
    ],
)
def test_parse_refuses_what_is_not_a_batch_answer(content_type: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        parse(content_type, body)
