"""The Web API answered in-process: a request in, a reply out, parsed and answered as the server
does, for a caller without a socket (the tests' fake Dataverse). Bearer auth, service protection and
the fault plan are the server's and are left out: an in-process caller scripts its own faults."""
from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from local.emulators.dataverse.batch import split_target
from local.emulators.dataverse.bulk import BulkSupport
from local.emulators.dataverse.errors import resource_not_found
from local.emulators.dataverse.queryoptions import PageLimit
from local.emulators.dataverse.routes import Api
from local.emulators.dataverse.store import LeadStore
from local.emulators.dataverse.webapi import API_PATH, Reply, Request, WebApi, error_reply

_API_PREFIX = API_PATH + "/"


class Headers(dict[str, str]):
    """Request headers looked up ignoring case, as the server's are."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__((name.lower(), value) for name, value in headers.items())

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class InProcessApi:
    """`page_limit`: the server's largest page (Dataverse's 5000 unless lowered); a person's actions
    on the same store are `people.py`'s."""

    def __init__(self, store: LeadStore, base_url: str, bulk_support: BulkSupport,
                 page_limit: PageLimit | None = None) -> None:
        self.store = store
        self.bulk_support = bulk_support
        self.page_limit = page_limit or PageLimit()
        self.api = Api(WebApi(store, base_url, self.page_limit), store, bulk_support)

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The reply to `method url` (absolute, or a path from the host) with these headers and body."""
        split = urlsplit(url)
        if not split.path.startswith(_API_PREFIX):
            return error_reply(resource_not_found(split.path))
        path, query = split_target(split.path[len(_API_PREFIX):] + ("?" + split.query if split.query else ""))
        return self.api.handle(Request(method, path, query, Headers(headers), body))
