"""The multipart bodies of the Web API's `$batch` (docs/dataverse.md 7.1): a batch of independent
requests written out, and the batch's answer read back into one response per request.

Pure: no I/O, no Dataverse semantics. Lines end in CRLF, as Dataverse requires (a bare LF fails
the whole batch with "Stream was not readable"). Change sets are not written (each request here
stands alone), but a change set in an answer is read as its responses, in order.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_REQUESTS = 1000  # per batch, docs/dataverse.md 7.1
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_CRLF = b"\r\n"


@dataclass(frozen=True)
class BatchRequest:
    method: str
    url: str  # absolute, or an absolute path under the API root
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class BatchResponse:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def build(requests: Sequence[BatchRequest], *, boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type, body) of a `$batch` carrying `requests` in order, each its own part.
    Raises ValueError for no requests, more than MAX_REQUESTS, or a line break in a header."""
    if not requests:
        raise ValueError("a batch needs at least one request")
    if len(requests) > MAX_REQUESTS:
        raise ValueError(f"a batch holds at most {MAX_REQUESTS} requests, got {len(requests)}")
    boundary = boundary or f"batch_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for number, request in enumerate(requests, start=1):
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {number}",
            "",
            f"{request.method} {request.url} HTTP/1.1",
            *(f"{name}: {_header_value(value)}" for name, value in request.headers.items()),
            "",
        ]
        chunks.append(_CRLF.join(line.encode("utf-8") for line in lines) + _CRLF)
        chunks.append((request.body or b"") + _CRLF)
    chunks.append(f"--{boundary}--".encode() + _CRLF)
    return f"multipart/mixed; boundary={boundary}", b"".join(chunks)


def parse(content_type: str, body: bytes) -> list[BatchResponse]:
    """The responses of a `$batch` answer, in order (a change set's responses in place).
    Raises ValueError when the answer is not multipart/mixed with a boundary, or a part is not
    an HTTP response."""
    boundary = _boundary(content_type)
    if _CRLF not in body:  # tolerate an answer written with bare LFs
        body = body.replace(b"\n", _CRLF)
    responses: list[BatchResponse] = []
    for headers, content in _parts(body, boundary):
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            responses.extend(parse(part_type, content + _CRLF))
        else:
            responses.append(_response(content))
    return responses


def _boundary(content_type: str) -> str:
    match = _BOUNDARY.search(content_type or "")
    if match is None or not content_type.strip().lower().startswith("multipart/mixed"):
        raise ValueError(f"not a multipart/mixed answer with a boundary: {content_type!r}")
    return match.group(1).strip()


def _parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    pieces = (_CRLF + body).split(_CRLF + b"--" + boundary.encode())
    if len(pieces) < 2:
        raise ValueError("the multipart answer holds no part")
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        _, _, part = piece.partition(_CRLF)  # the rest of the delimiter line
        head, _, content = part.partition(_CRLF + _CRLF)
        parts.append((_headers(head), content))
    return parts


def _response(content: bytes) -> BatchResponse:
    status_line, _, rest = content.partition(_CRLF)
    fields = status_line.decode("utf-8", "replace").split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"a batch part is not an HTTP response: {status_line[:80]!r}")
    if rest.startswith(_CRLF):
        head, body = b"", rest[len(_CRLF) :]
    else:
        head, _, body = rest.partition(_CRLF + _CRLF)
    return BatchResponse(int(fields[1]), _headers(head), body.strip())


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value cannot hold a line break")
    return value
