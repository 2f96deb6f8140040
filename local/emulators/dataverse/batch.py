"""`POST $batch` (docs/dataverse.md 7.1): multipart/mixed with CRLF lines, change sets, Content-ID references.

Every inner request is answered by the same handler as a top-level request (validation, keys, etags, reject
rules). A change set runs inside one store transaction: the first failing request rolls the set back, and
the set is answered by that one failed response (OData's rule; how Dataverse lays it out is [UNCONFIRMED]).
Without `Prefer: odata.continue-on-error` processing stops at the first failed request or change set and the
batch answers with that failure's status, the parts so far and the failed one; with it the batch answers 200
with every part. Injected faults and service protection apply to the `$batch` HTTP request as a whole.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

from local.emulators.dataverse.errors import QUERY_ERROR, ODataError, payload_error
from local.emulators.dataverse.store import LeadStore

MAX_REQUESTS = 1000
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_BARE_LF = re.compile(rb"(?<!\r)\n")
_JSON_TYPE = "application/json; odata.metadata=minimal"


@dataclass(frozen=True)
class Operation:
    method: str
    url: str
    headers: Message
    body: bytes
    content_id: str | None = None


@dataclass(frozen=True)
class ChangeSet:
    operations: list[Operation] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """One inner response: what `handle` answered, as status, headers and a JSON payload (or None)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    payload: dict | None


@dataclass(frozen=True)
class Result:
    status: int
    content_type: str
    body: bytes
    operations: int


# handle(method, url relative to the API root, headers, body) -> Answer
Handler = Callable[[str, str, Message, bytes], Answer]


def parse(content_type: str, body: bytes) -> list[Operation | ChangeSet]:
    """Split a `$batch` body into operations and change sets. Raises ODataError 400 for a body that is not
    multipart/mixed with a boundary, has a bare LF line ending, nests batches, puts GET in a change set,
    or holds more than MAX_REQUESTS requests."""
    boundary = _boundary(content_type)
    if _BARE_LF.search(body) or not body.endswith(b"\r\n"):
        raise payload_error("System.ArgumentException: Stream was not readable.")
    items: list[Operation | ChangeSet] = []
    count = 0
    for headers, content in _parts(body, boundary):
        part_type = (headers.get("Content-Type") or "").strip()
        if part_type.lower().startswith("multipart/mixed"):
            change_set = ChangeSet([_operation(h, c) for h, c in _parts(content + b"\r\n", _boundary(part_type))])
            for operation in change_set.operations:
                if operation.method == "GET":
                    raise ODataError(400, QUERY_ERROR, "GET requests are not allowed within a change set.")
            count += len(change_set.operations)
            items.append(change_set)
        else:
            items.append(_operation(headers, content))
            count += 1
        if count > MAX_REQUESTS:
            raise ODataError(400, QUERY_ERROR, f"The batch holds more than {MAX_REQUESTS} requests.")
    return items


def execute(items: list[Operation | ChangeSet], handle: Handler, store: LeadStore, *, continue_on_error: bool,
            base: str) -> Result:
    """Run the parsed batch in order and build the multipart answer."""
    parts: list[bytes] = []
    status = 200
    executed = 0
    for item in items:
        if isinstance(item, ChangeSet):
            part, failure, ran = _run_change_set(item, handle, store, base)
        else:
            answer = _run(item, handle, {}, base)
            part, failure, ran = _http_part(answer, None, store.new_id), answer if answer.status >= 400 else None, 1
        parts.append(part)
        executed += ran
        if failure is not None and not continue_on_error:
            status = failure.status
            break
    boundary = f"batchresponse_{store.new_id()}"
    return Result(status, f"multipart/mixed; boundary={boundary}", _multipart(boundary, parts), executed)


def _run_change_set(change_set: ChangeSet, handle: Handler, store: LeadStore, base: str
                    ) -> tuple[bytes, Answer | None, int]:
    references: dict[str, str] = {}
    answered: list[tuple[Operation, Answer]] = []
    try:
        with store.transaction():
            for operation in change_set.operations:
                answer = _run(operation, handle, references, base)
                if answer.status >= 400:
                    raise _ChangeSetFailed(operation, answer)
                answered.append((operation, answer))
                entity_id = dict(answer.headers).get("OData-EntityId")
                if operation.content_id and entity_id:
                    references["$" + operation.content_id] = entity_id
    except _ChangeSetFailed as failed:
        return _http_part(failed.answer, failed.operation.content_id, store.new_id), failed.answer, len(answered) + 1
    boundary = f"changesetresponse_{store.new_id()}"
    inner = _multipart(boundary, [_http_part(answer, operation.content_id, store.new_id)
                                  for operation, answer in answered])
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode() + inner, None, len(answered)


class _ChangeSetFailed(Exception):
    def __init__(self, operation: Operation, answer: Answer) -> None:
        super().__init__(answer.status)
        self.operation = operation
        self.answer = answer


def _run(operation: Operation, handle: Handler, references: dict[str, str], base: str) -> Answer:
    url = operation.url
    if url.startswith("$"):
        name = re.match(r"\$[A-Za-z0-9_.-]+", url)
        reference = name.group() if name else url
        if reference not in references:
            error = ODataError(400, QUERY_ERROR, f"Content-ID Reference: '{reference}' does not exist in the batch "
                                                 "context.")
            return Answer(error.status, (("OData-Version", "4.0"),), error.body())
        url = references[reference] + url[len(reference):]
    relative = _relative(url, base)
    if relative is None:
        error = ODataError(404, "0x8006088a", f"Resource not found for the segment '{url}'.")
        return Answer(error.status, (("OData-Version", "4.0"),), error.body())
    if relative.split("?", 1)[0] == "$batch":
        error = ODataError(400, QUERY_ERROR, "A batch request cannot contain another batch request.")
        return Answer(error.status, (("OData-Version", "4.0"),), error.body())
    return handle(operation.method, relative, operation.headers, operation.body)


def _relative(url: str, base: str) -> str | None:
    """`url` (absolute, absolute path or relative to the service root) as a path relative to the API root,
    with its query; None when it lies outside the API."""
    api_path = urlsplit(base).path.rstrip("/")
    split = urlsplit(url)
    path = split.path
    if split.scheme or path.startswith("/"):
        if not path.startswith(api_path + "/"):
            return None
        path = path[len(api_path) + 1 :]
    return path + ("?" + split.query if split.query else "")


def split_target(relative: str) -> tuple[str, dict[str, str]]:
    """A relative URL as (URL-decoded path, query parameters)."""
    path, _, query = relative.partition("?")
    return unquote(path), dict(parse_qsl(query, keep_blank_values=True))


def _boundary(content_type: str) -> str:
    match = _BOUNDARY.search(content_type or "")
    if not content_type.strip().lower().startswith("multipart/mixed") or match is None:
        raise payload_error("Microsoft.OData.ODataException: The content type of a batch request must be "
                            "'multipart/mixed' with a boundary parameter.")
    return match.group(1).strip()


def _parts(body: bytes, boundary: str) -> list[tuple[Message, bytes]]:
    delimiter = b"\r\n--" + boundary.encode()
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 2 or not any(piece.startswith(b"--") for piece in pieces[1:]):
        raise payload_error("Microsoft.OData.ODataException: The batch body has no closing boundary.")
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        _, _, part = piece.partition(b"\r\n")  # transport padding and the delimiter line's CRLF
        head, _, content = part.partition(b"\r\n\r\n")
        parts.append((_headers(head), content))
    return parts


def _headers(block: bytes) -> Message:
    headers = Message()
    for line in block.decode("utf-8").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip()] = value.strip()
    return headers


def _operation(headers: Message, content: bytes) -> Operation:
    if (headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/http":
        raise payload_error("Microsoft.OData.ODataException: A batch part must have the content type "
                            "'application/http'.")
    request_line, _, rest = content.partition(b"\r\n")
    fields = request_line.decode("utf-8").split()
    if len(fields) < 2:
        raise payload_error(f"Microsoft.OData.ODataException: Invalid request line '{request_line.decode()}'.")
    if rest.startswith(b"\r\n"):
        head, body = b"", rest[2:]
    else:
        head, _, body = rest.partition(b"\r\n\r\n")
    return Operation(fields[0].upper(), fields[1], _headers(head), body, headers.get("Content-ID"))


def _http_part(answer: Answer, content_id: str | None, new_id: Callable[[], str]) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {answer.status} {_phrase(answer.status)}"]
    headers = [(name, value) for name, value in answer.headers if name.lower() != "x-ms-dop-hint"]
    entity_id = dict(headers).get("OData-EntityId")
    if entity_id is not None:
        lines.append(f"Location: {entity_id}")
    if answer.status >= 400:
        lines.append(f"REQ_ID: {new_id()}")
    if answer.payload is not None:
        lines.append(f"Content-Type: {_JSON_TYPE}")
    lines += [f"{name}: {value}" for name, value in headers]
    body = json.dumps(answer.payload) if answer.payload is not None else ""
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    delimiter = f"--{boundary}\r\n".encode()
    return b"".join(delimiter + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
