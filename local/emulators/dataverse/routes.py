"""Every Web API route: the bulk-write additions (bound actions on `leads`, `$batch`, `sdkmessagefilters`)
answered here, everything else by WebApi."""
from __future__ import annotations

import json
from email.message import Message

from local.emulators.dataverse import batch, bulk, messagefilters
from local.emulators.dataverse.errors import ODataError, payload_error
from local.emulators.dataverse.store import LeadStore
from local.emulators.dataverse.webapi import DOP_HINT, ENTITY_SET, Reply, Request, WebApi, error_reply

_HEADERS = (("OData-Version", "4.0"), ("x-ms-dop-hint", DOP_HINT))
_ACTION_PATH = ENTITY_SET + "/" + bulk.ACTION_PREFIX
_ANNOTATION_PREFERENCES = ('odata.include-annotations="*"', "odata.include-annotations=*",
                           "microsoft.powerapps.cds.errordetails.")


class Api:
    def __init__(self, web_api: WebApi, store: LeadStore, bulk_support: bulk.BulkSupport) -> None:
        self.web_api = web_api
        self.store = store
        self.bulk_support = bulk_support

    @property
    def base(self) -> str:
        return self.web_api.base

    def handle(self, request: Request) -> Reply:
        try:
            if request.path == "$batch":
                return self._batch(request)
            if request.path.startswith(_ACTION_PATH):
                return self._bulk(request, request.path[len(_ACTION_PATH):])
            if request.path == messagefilters.ENTITY_SET:
                return self._message_filters(request)
        except ODataError as error:
            return error_reply(error)
        return self.web_api.handle(request)

    def _bulk(self, request: Request, action: str) -> Reply:
        if action not in bulk.ACTIONS:
            raise ODataError(404, "0x8006088a", f"Resource not found for the segment '{bulk.ACTION_PREFIX}{action}'.")
        if request.method != "POST":
            raise ODataError(405, "0x0", f"The requested resource does not support http method '{request.method}'.")
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body.strip() else None
        except ValueError as exc:
            raise payload_error(f"Microsoft.OData.ODataException: The request body is not valid JSON: {exc}") from exc
        try:
            outcome = bulk.run(action, body, self.store, self.bulk_support)
        except bulk.TargetError as failure:
            prefer = (request.header("Prefer") or "").replace(" ", "").lower()
            details = any(p.lower().replace(" ", "") in prefer for p in _ANNOTATION_PREFERENCES)
            return Reply(failure.error.status, failure.body(details), _HEADERS, operations=failure.index + 1)
        if outcome.ids is None:
            return Reply(204, None, _HEADERS, operations=outcome.count)
        payload = {"@odata.context": f"{self.base}/$metadata#Microsoft.Dynamics.CRM.{action}Response",
                   "Ids": outcome.ids}
        return Reply(200, payload, _HEADERS, operations=outcome.count)

    def _batch(self, request: Request) -> Reply:
        if request.method != "POST":
            raise ODataError(405, "0x0", f"The requested resource does not support http method '{request.method}'.")
        items = batch.parse(request.header("Content-Type") or "", request.body)
        prefer = (request.header("Prefer") or "").replace(" ", "").lower()

        def handle(method: str, relative: str, headers: Message, body: bytes) -> batch.Answer:
            path, query = batch.split_target(relative)
            reply = self.handle(Request(method, path, query, headers, body, request.claims))
            return batch.Answer(reply.status, reply.headers, reply.payload)

        result = batch.execute(items, handle, self.store, continue_on_error="odata.continue-on-error" in prefer,
                               base=self.base)
        headers = (("OData-Version", "4.0"), ("x-ms-dop-hint", DOP_HINT), ("Content-Type", result.content_type))
        return Reply(result.status, None, headers, body=result.body, operations=result.operations)

    def _message_filters(self, request: Request) -> Reply:
        if request.method != "GET":
            raise ODataError(405, "0x0", f"The requested resource does not support http method '{request.method}'.")
        payload = messagefilters.query(request.query, base=self.base, bulk_supported=self.bulk_support.supported)
        return Reply(200, payload, _HEADERS)
