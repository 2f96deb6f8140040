"""The I/O seam under `DataverseClient`: a request value, a response value, and the transport that
sends the one and answers the other.

```
Transport.send(request, timeout) -> Response      raises TransportError
├── RequestsTransport      a pooled requests.Session: the app's
└── (tests)                a transport answering in-process, with scripted faults
```

A transport makes one attempt: retries, tokens, throttling and the meaning of a status are the
policy's (`d365.policy`). A connection refused, dropped or timed out is a `TransportError` whose
message names the error type only: a URL (and the contact addresses its query holds) never reaches
a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests
import requests.adapters
import requests.utils

POOL_SIZE = 32  # >= host.json batchSize + newBatchThreshold: one kept connection per worker
_DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_UNSET: Any = object()


class TransportError(Exception):
    """The request got no answer: refused, dropped or timed out. It may have reached Dataverse."""


@dataclass(frozen=True)
class Request:
    """One attempt's request. `kind` labels the client call (`update_lead`, ...) for telemetry and
    tests; `attempt` counts the attempts of that call (0 for the first)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    kind: str = ""
    attempt: int = 0


class Headers(Mapping[str, str]):
    """Response headers, looked up ignoring case (a repeated name keeps its last value)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = {name.lower(): (name, value) for name, value in items}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class Response:
    """One answer. An in-process transport may hand over the JSON payload it would have encoded:
    `json()` then answers that payload without a round trip, and `content` encodes it only when read."""

    __slots__ = ("_content", "_payload", "earlier_attempt_unanswered", "headers", "status")

    def __init__(self, status: int, headers: Headers, content: bytes = b"", *, payload: Any = _UNSET) -> None:
        self.status = status
        self.headers = headers
        self._content = content
        self._payload = payload
        # Set by the policy: an earlier attempt of the same call was sent and got no answer, so a
        # write may have landed then ($batch callers read it per part).
        self.earlier_attempt_unanswered = False

    @property
    def content(self) -> bytes:
        if self._payload is not _UNSET and not self._content:
            self._content = json.dumps(self._payload).encode("utf-8")
        return self._content

    def json(self) -> Any:
        """The decoded body. Raises ValueError when it is not JSON."""
        if self._payload is not _UNSET:
            return self._payload
        return json.loads(self._content)


class Transport(Protocol):
    def send(self, request: Request, timeout: tuple[float, float]) -> Response:
        """One attempt within `timeout` (connect, read seconds). Raises TransportError."""
        ...

    def close(self) -> None: ...


class RequestsTransport:
    def __init__(self, session: requests.Session) -> None:
        self._session = session

    @classmethod
    def pooled(cls, api_url: str) -> RequestsTransport:
        return cls(pooled_session(api_url))

    def send(self, request: Request, timeout: tuple[float, float]) -> Response:
        try:
            answer = self._session.request(
                request.method, request.url, data=request.body, headers=dict(request.headers), timeout=timeout
            )
        except _DROPPED as exc:
            # The type only: requests' own text carries the URL.
            raise TransportError(type(exc).__name__) from exc
        return Response(answer.status_code, Headers(answer.headers.items()), answer.content)

    def close(self) -> None:
        self._session.close()


def pooled_session(api_url: str) -> requests.Session:
    """A session that keeps a connection per host worker (requests keeps 10), and reads the
    environment's proxy and CA settings once, here: requests otherwise scans os.environ on every
    request, a quarter of a lead's Dataverse time in a profile."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies = requests.utils.get_environ_proxies(api_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session
