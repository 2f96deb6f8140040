"""The Dataverse Web API routes under `/api/data/v9.2/`: WhoAmI, leads CRUD/upsert/query, metadata."""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote

from local.emulators.dataverse import metadata
from local.emulators.dataverse.errors import (
    ENTITY_TYPE,
    QUERY_ERROR,
    UNEXPECTED,
    ODataError,
    payload_error,
    resource_not_found,
    unknown_property,
)
from local.emulators.dataverse.odata_filter import parse_filter
from local.emulators.dataverse.ordering import Ordering, annotate
from local.emulators.dataverse.payload import EDM_TYPES, parse_values
from local.emulators.dataverse.queryoptions import (
    COLLECTION_OPTIONS,
    ENTITY_OPTIONS,
    MAX_PAGE_SIZE,
    PageLimit,
    Preferences,
    check_options,
    decode_skiptoken,
    encode_skiptoken,
    next_link,
    parse_count,
    parse_orderby,
    parse_prefer,
    parse_top,
)
from local.emulators.dataverse.schema import PRIMARY_KEY, AttributeType, Schema
from local.emulators.dataverse.store import LeadStore, etag
from local.emulators.dataverse.urlkeys import KeySegment, parse_guid, parse_key_segment

logger = logging.getLogger(__name__)

API_PATH = "/api/data/v9.2"
ENTITY_SET = "leads"
DOP_HINT = "4"
BUSINESS_UNIT_ID = "1d5a0000-0000-4000-8000-00000000b001"
ORGANIZATION_ID = "1d5a0000-0000-4000-8000-00000000c001"
_ODATA_HEADERS = (("OData-Version", "4.0"), ("x-ms-dop-hint", DOP_HINT))
ODATA_CONTENT_TYPE = "application/json; odata.metadata=minimal"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # URL-decoded, relative to API_PATH, without the leading slash
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    claims: Mapping[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None or value.strip().lower() == "null" else value.strip()

    @property
    def wants_representation(self) -> bool:
        return "return=representation" in (self.header("Prefer") or "").replace(" ", "")

    @property
    def preferences(self) -> Preferences:
        return parse_prefer(self.header("Prefer"))


@dataclass(frozen=True)
class Reply:
    status: int
    payload: dict | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # a non-JSON answer ($batch), its Content-Type among `headers`
    operations: int = 1  # records written or inner requests run, for service protection's execution time


def request_id_headers(request_id: str | None = None) -> tuple[tuple[str, str], ...]:
    """A new id per response (a uuid4 unless given), under both names Dataverse uses: the one support asks for."""
    request_id = request_id or str(uuid.uuid4())
    return (("x-ms-service-request-id", request_id), ("REQ_ID", request_id))


def reply_headers(reply: Reply, request_id: str | None = None) -> list[tuple[str, str]]:
    """The headers a reply is sent with: its own, the request id, and the JSON content type when it has a payload."""
    headers = [*reply.headers, *request_id_headers(request_id)]
    if reply.body is None and reply.payload is not None:
        headers.append(("Content-Type", ODATA_CONTENT_TYPE))
    return headers


def reply_body(reply: Reply) -> bytes:
    if reply.body is not None:
        return reply.body
    return b"" if reply.payload is None else json.dumps(reply.payload).encode()


def error_reply(error: ODataError, *headers: tuple[str, str]) -> Reply:
    return Reply(error.status, error.body(), _ODATA_HEADERS + headers)


def kind_of(method: str, path: str) -> str:
    """The request kind counted in the emulator's stats."""
    if path == ENTITY_SET and method in ("GET", "POST"):
        return f"{method} leads"
    if path.startswith(ENTITY_SET + "(") and method in ("GET", "PATCH", "DELETE"):
        return f"{method} lead"
    if path.startswith("EntityDefinitions"):
        return "metadata"
    if path in ("WhoAmI", "WhoAmI()"):
        return "whoami"
    if path == "$batch" and method == "POST":
        return "POST $batch"
    if path.startswith(ENTITY_SET + "/Microsoft.Dynamics.CRM.") and method == "POST":
        return "POST " + path.rsplit(".", 1)[1]
    if path == "sdkmessagefilters" and method == "GET":
        return "GET sdkmessagefilters"
    return "other"


class WebApi:
    """`page_limit`: the server's largest page (Dataverse's 5000 unless lowered)."""

    def __init__(self, store: LeadStore, base_url: str, page_limit: PageLimit | None = None) -> None:
        self.store = store
        self.base = base_url + API_PATH
        self.page_limit = page_limit or PageLimit()

    def handle(self, request: Request) -> Reply:
        try:
            return self._route(request)
        except ODataError as error:
            return error_reply(error)
        except Exception:  # an emulator bug answers 500 and is logged, never a dropped connection
            logger.exception("dataverse emulator failed on %s %s", request.method, request.path)
            return error_reply(ODataError(500, UNEXPECTED, "An unexpected error occurred."))

    def _route(self, request: Request) -> Reply:
        path, method = request.path, request.method
        if path in ("WhoAmI", "WhoAmI()"):
            if method != "GET":
                raise ODataError(404, "", f"No HTTP resource was found that matches the request URI '{self.base}/WhoAmI'.")
            return self._whoami(request)
        if path == "$batch" or path.startswith(ENTITY_SET + "/Microsoft.Dynamics.CRM."):
            raise ODataError(501, QUERY_ERROR, f"'{path}' is not implemented by the local Dataverse emulator.")
        if path == ENTITY_SET:
            if method == "GET":
                return self._query(request)
            if method == "POST":
                return self._create(request)
            raise _method_not_allowed(method)
        if path.startswith(ENTITY_SET + "(") and path.endswith(")"):
            check_options(request.query, ENTITY_OPTIONS)
            segment = parse_key_segment(path[len(ENTITY_SET) + 1 : -1])
            if method == "GET":
                return self._get(request, segment)
            if method == "PATCH":
                return self._upsert(request, segment)
            if method == "DELETE":
                self.store.delete(segment)
                return Reply(204, None, _ODATA_HEADERS)
            raise _method_not_allowed(method)
        if path.startswith("EntityDefinitions"):
            if method != "GET":
                raise _method_not_allowed(method)
            body = metadata.read(path, request.query, base=self.base, schema=self.store.schema)
            return Reply(200, body, _ODATA_HEADERS)
        raise resource_not_found(path.split("/")[0].split("(")[0])

    def _whoami(self, request: Request) -> Reply:
        caller = str(request.claims.get("appid") or request.claims.get("sub") or "")
        body = {
            "@odata.context": f"{self.base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": BUSINESS_UNIT_ID,
            "UserId": str(uuid.uuid5(uuid.NAMESPACE_OID, caller)),
            "OrganizationId": ORGANIZATION_ID,
        }
        return Reply(200, body, _ODATA_HEADERS)

    # -- leads -----------------------------------------------------------------------------------

    def _select(self, request: Request) -> list[str] | None:
        text = request.query.get("$select")
        if "$expand" in request.query:  # the emulated lead has no navigation properties
            raise unknown_property(request.query["$expand"].split(",")[0].split("(")[0].strip())
        if text is None:
            return None
        names = [name.strip() for name in text.split(",") if name.strip()]
        columns = self.store.schema.properties
        for name in names:
            if name not in columns:
                raise unknown_property(name)
        return names

    def _render(self, record: dict, select: list[str] | None, preferences: Preferences) -> dict:
        names = select if select is not None else list(self.store.schema.properties)
        item: dict[str, Any] = {"@odata.etag": etag(record)}
        for name in names:
            item[name] = record.get(name)
        item[PRIMARY_KEY] = record[PRIMARY_KEY]
        return annotate(item, self.store.schema, preferences.includes)

    def _context(self, select: list[str] | None, suffix: str = "") -> str:
        columns = f"({','.join(select)})" if select else ""
        return f"{self.base}/$metadata#{ENTITY_SET}{columns}{suffix}"

    def _values(self, request: Request, *, creating: bool) -> dict[str, Any]:
        try:
            body = _json(request.body)
        except ValueError as exc:
            raise payload_error(f"Microsoft.OData.ODataException: The request body is not valid JSON: {exc}") from exc
        values = parse_values(self.store.schema, body, creating=creating)
        if values.get(PRIMARY_KEY) is not None:
            lead_id = parse_guid(values[PRIMARY_KEY])
            if lead_id is None:
                raise payload_error(f"Microsoft.OData.ODataException: Cannot convert the literal "
                                    f"'{values[PRIMARY_KEY]}' to the expected type 'Edm.Guid'.")
            values[PRIMARY_KEY] = lead_id
        return values

    def _create(self, request: Request) -> Reply:
        check_options(request.query, ENTITY_OPTIONS)
        select = self._select(request)
        record = self.store.create(self._values(request, creating=True))
        preferences = request.preferences
        if preferences.representation:
            body = {"@odata.context": self._context(select, "/$entity"), **self._render(record, select, preferences)}
            return Reply(201, body, _ODATA_HEADERS + _applied(preferences, "return=representation"))
        entity_id = f"{self.base}/{ENTITY_SET}({record[PRIMARY_KEY]})"
        return Reply(204, None, _ODATA_HEADERS + (("OData-EntityId", entity_id),))

    def _upsert(self, request: Request, segment: KeySegment) -> Reply:
        select = self._select(request)
        values = self._values(request, creating=False)
        record, created = self.store.upsert(
            segment, values, if_match=request.header("If-Match"), if_none_match=request.header("If-None-Match")
        )
        preferences = request.preferences
        if preferences.representation:
            body = {"@odata.context": self._context(select, "/$entity"), **self._render(record, select, preferences)}
            headers = (("ETag", etag(record)),) + _applied(preferences, "return=representation")
            return Reply(201 if created else 200, body, _ODATA_HEADERS + headers)
        entity_id = f"{self.base}/{ENTITY_SET}({quote(segment.text, safe=_KEY_SAFE)})"
        return Reply(204, None, _ODATA_HEADERS + (("OData-EntityId", entity_id),))

    def _get(self, request: Request, segment: KeySegment) -> Reply:
        select = self._select(request)
        record = self.store.get(segment)
        preferences = request.preferences
        # Never 304 when annotations are asked for (docs/dataverse.md 4, conditional GET).
        if preferences.annotations is None and request.header("If-None-Match") == etag(record):
            return Reply(304, None, _ODATA_HEADERS + (("ETag", etag(record)),))
        body = {"@odata.context": self._context(select, "/$entity"), **self._render(record, select, preferences)}
        return Reply(200, body, _ODATA_HEADERS + (("ETag", etag(record)),) + _applied(preferences))

    def _query(self, request: Request) -> Reply:
        """A collection read: $filter, $orderby, $top, $count and paging by `Prefer: odata.maxpagesize`
        with `@odata.nextLink`; with both, $top is ignored (docs/dataverse.md 4)."""
        query, schema = request.query, self.store.schema
        check_options(query, COLLECTION_OPTIONS)
        select = self._select(request)
        where = None
        if query.get("$filter"):
            aliases = {name: value for name, value in query.items() if name.startswith("@")}
            where = parse_filter(query["$filter"], schema.properties.__contains__, ENTITY_TYPE, aliases=aliases,
                                 coerce=lambda column, text: _coerce(schema, column, text),
                                 edm_of=lambda column: EDM_TYPES.get(schema.properties[column].attribute_type))
        orders = parse_orderby(query.get("$orderby"), schema.properties.__contains__, ENTITY_TYPE)
        top, count, preferences = parse_top(query), parse_count(query), request.preferences
        ordering = Ordering(schema, orders)
        rows = ordering.sort(self.store.query(where))
        matched, page_number = len(rows), 1
        size = self.page_limit.page_size(preferences.max_page_size)
        if "$skiptoken" in query:
            cursor = decode_skiptoken(query["$skiptoken"], orders, PRIMARY_KEY, _cookie_kinds(schema))
            rows, page_number = ordering.after(rows, cursor), cursor.page
        elif top is not None and preferences.max_page_size is None:
            rows = rows[:top]
            size = max(1, min(top, MAX_PAGE_SIZE))  # a $top answer is not paged by a lowered server limit
        page = rows[:size]
        body: dict[str, Any] = {"@odata.context": self._context(select)}
        if count:
            body["@odata.count"] = min(matched, MAX_PAGE_SIZE)
            if preferences.includes("Microsoft.Dynamics.CRM.totalrecordcount"):
                body["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(matched, MAX_PAGE_SIZE)
            if preferences.includes("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = matched > MAX_PAGE_SIZE
        body["value"] = [self._render(record, select, preferences) for _, record in page]
        if len(rows) > size:
            token = encode_skiptoken(page_number + 1, orders, page[-1][1], page[0][1], PRIMARY_KEY, page[-1][0])
            body["@odata.nextLink"] = next_link(f"{self.base}/{ENTITY_SET}", query, token)
        return Reply(200, body, _ODATA_HEADERS + _applied(preferences, paging=True, page_size=size))


_KEY_SAFE = "'=,()"


def _applied(preferences: Preferences, *extra: str, paging: bool = False,
             page_size: int | None = None) -> tuple[tuple[str, str], ...]:
    """The `Preference-Applied` header for the preferences honoured, if any."""
    items = [*extra, *preferences.applied(paging=paging, page_size=page_size)]
    return (("Preference-Applied", ",".join(items)),) if items else ()


_INTEGER_TYPES = (AttributeType.INTEGER, AttributeType.BIGINT, AttributeType.PICKLIST, AttributeType.STATE,
                  AttributeType.STATUS)


def _cookie_kinds(schema: Schema) -> dict[str, str]:
    kinds = {AttributeType.BOOLEAN: "bool", **{kind: "int" for kind in _INTEGER_TYPES}}
    return {name: kinds.get(column.attribute_type, "str") for name, column in schema.properties.items()}


def _coerce(schema: Schema, column: str, text: str) -> Any:
    """A `Microsoft.Dynamics.CRM.In` value (always a string) as the column's type. Raises ODataError 400."""
    kind = schema.properties[column].attribute_type
    if kind in _INTEGER_TYPES:
        try:
            return int(text)
        except ValueError:
            raise ODataError(400, QUERY_ERROR, f"Cannot convert the literal '{text}' to the expected type "
                                               "'Edm.Int32'.") from None
    if kind is AttributeType.BOOLEAN:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ODataError(400, QUERY_ERROR, f"Cannot convert the literal '{text}' to the expected type "
                                               "'Edm.Boolean'.")
        return text.lower() in ("true", "1")
    return text


def _method_not_allowed(method: str) -> ODataError:
    return ODataError(405, QUERY_ERROR, f"The requested resource does not support http method '{method}'.")


def _json(body: bytes) -> Any:
    return json.loads(body.decode("utf-8")) if body.strip() else {}
