"""The lead records, their indexes, reject rules and the current schema, behind one lock."""
from __future__ import annotations

import contextlib
import datetime
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Iterable, Iterator

from local.emulators.dataverse.errors import (
    DUPLICATE_RECORD,
    ENTITY,
    KEY_NOT_DEFINED,
    KEY_RECORD_NOT_FOUND,
    KEY_VIOLATED,
    QUERY_ERROR,
    VERSION_MISMATCH,
    ODataError,
    record_not_found,
)
from local.emulators.dataverse.lifecycle import new_record_defaults, settle
from local.emulators.dataverse.odata_filter import Filter, fold
from local.emulators.dataverse.schema import (
    CHOICE_TYPES,
    KEY_TYPES,
    PRIMARY_KEY,
    SYSTEM_COLUMNS,
    AttributeType,
    Column,
    Key,
    KeyStatus,
    Option,
    Schema,
)
from local.emulators.dataverse.urlkeys import KeySegment

FIRST_VERSION = 1000000
MAX_KEY_COLUMNS = 16
_COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class SchemaChangeError(Exception):
    """A control-API schema change was refused; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rule:
    """Reject every create/update whose resulting record has `column` == `equals`."""

    column: str
    equals: Any
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Target:
    """Where a key segment points: the record id if it exists, and the alternate key values if any."""

    lead_id: str | None
    key: Key | None = None
    key_values: tuple[Any, ...] = ()


def etag(record: dict) -> str:
    return f'W/"{record["versionnumber"]}"'


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _uuid4() -> str:
    return str(uuid.uuid4())


def _fullname(record: dict) -> str | None:
    parts = [record.get("firstname"), record.get("lastname")]
    return " ".join(p for p in parts if p) or None


class LeadStore:
    """`clock` (UTC now) stamps createdon/modifiedon and `new_id` makes record ids, so an in-process
    caller can replay a run exactly; `on_write(record, created)` is told of each record written, once
    its transaction (if any) has committed."""

    def __init__(
        self,
        schema: Schema,
        *,
        clock: Callable[[], datetime.datetime] = _utc_now,
        new_id: Callable[[], str] = _uuid4,
        on_write: Callable[[dict, bool], None] | None = None,
    ) -> None:
        self._initial_schema = schema
        self._clock = clock
        self.new_id = new_id
        self._on_write = on_write
        self._lock = threading.RLock()  # re-entered by the writes inside transaction()
        self._undo: dict[str, tuple[dict | None, int | None]] | None = None
        self._unannounced: list[tuple[dict, bool]] = []  # writes of the open transaction, for on_write
        self.reset()

    # -- state -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Drop every record and rule and restore the initial schema."""
        with self._lock:
            self.schema = self._initial_schema
            self._records: dict[str, dict] = {}
            self._order: dict[str, int] = {}
            self._sequence = 0
            self._version = FIRST_VERSION
            self._rules: list[Rule] = []
            self._eq_indexes: dict[str, dict[Any, set[str]]] = {}
            self._key_indexes: dict[str, dict[tuple, str]] = {key.name: {} for key in self.schema.active_keys()}

    def records(self) -> list[dict]:
        with self._lock:
            return [dict(record) for record in self._records.values()]

    @property
    def by_id(self) -> Mapping[str, dict]:
        """The records by id, live and without copies (for an in-process caller: read, never write)."""
        return MappingProxyType(self._records)

    def add_rule(self, rule: Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock; if the block raises, every write made inside it is undone (all or nothing).
        A nested transaction joins the outer one."""
        with self._lock:
            if self._undo is not None:
                yield
                return
            self._undo = {}
            counters = (self._version, self._sequence)
            try:
                yield
            except BaseException:
                self._rollback(counters)
                self._unannounced.clear()
                raise
            finally:
                self._undo = None
            written, self._unannounced = self._unannounced, []
            for record, created in written:
                self._announce(record, created)

    # -- Web API operations ----------------------------------------------------------------------

    def create(self, values: dict[str, Any]) -> dict:
        """Insert a record (its id from `values["leadid"]` or new). Raises ODataError 412 when the id
        or an alternate key is taken, or the error of a matching reject rule."""
        with self._lock:
            lead_id = values.get(PRIMARY_KEY) or self.new_id()
            if lead_id in self._records:
                raise ODataError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
            return dict(self._insert(lead_id, values))

    def upsert(
        self, segment: KeySegment, values: dict[str, Any], *, if_match: str | None, if_none_match: str | None
    ) -> tuple[dict, bool]:
        """PATCH semantics of docs/dataverse.md 3.1/3.2; returns `(record, created)`.

        Raises ODataError: 404 under If-Match when missing, 412 under If-None-Match: * when present
        or on an etag mismatch or key clash, 400 for an undefined key, or a reject rule's error.
        """
        with self._lock:
            target = self._resolve(segment)
            if target.lead_id is None or target.lead_id not in self._records:
                if if_match is not None:
                    raise self._missing(segment, target)
                values = dict(values)
                if target.key is None:
                    values[PRIMARY_KEY] = target.lead_id
                else:
                    for column, value in zip(target.key.columns, target.key_values):
                        values.setdefault(column, value)
                lead_id = values.get(PRIMARY_KEY) or self.new_id()
                if lead_id in self._records:
                    raise ODataError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
                return dict(self._insert(lead_id, values)), True
            existing = self._records[target.lead_id]
            if if_none_match == "*":
                raise ODataError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
            if if_match not in (None, "*") and if_match.strip() != etag(existing):
                raise ODataError(
                    412,
                    VERSION_MISMATCH,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )
            changes = {name: value for name, value in values.items() if name != PRIMARY_KEY}
            if target.key is not None:
                for column in target.key.columns:
                    changes.pop(column, None)
            return dict(self._update(existing, changes)), False

    def get(self, segment: KeySegment) -> dict:
        """Raises ODataError 404 when missing, 400 for an undefined key."""
        with self._lock:
            target = self._resolve(segment)
            if target.lead_id is None or target.lead_id not in self._records:
                raise self._missing(segment, target)
            return dict(self._records[target.lead_id])

    def delete(self, segment: KeySegment) -> None:
        """Raises ODataError 404 when missing, 400 for an undefined key."""
        with self._lock:
            target = self._resolve(segment)
            if target.lead_id is None or target.lead_id not in self._records:
                raise self._missing(segment, target)
            self._remove(target.lead_id)

    def change(self, lead_id: str, changes: Mapping[str, Any]) -> dict:
        """Write `changes` to the record as the platform or a person would, read-only columns included
        (people.py). Raises ODataError 404 when missing, 400 for a status not of its state, or a
        reject rule's error."""
        with self._lock:
            existing = self._records.get(lead_id)
            if existing is None:
                raise record_not_found(lead_id)
            return dict(self._update(existing, dict(changes)))

    def delete_by_id(self, lead_id: str) -> bool:
        with self._lock:
            if lead_id not in self._records:
                return False
            self._remove(lead_id)
            return True

    def query(self, where: Filter | None) -> list[tuple[int, dict]]:
        """Every record `where` matches (all when None) as `(creation sequence, copy)`, in creation order."""
        with self._lock:
            if where is not None and where.lookups is not None:
                ids: set[str] = set()
                for column, value in where.lookups:
                    ids |= self._eq_index(column).get(value, set())
                candidates: Iterable[dict] = (self._records[i] for i in ids)
            else:
                candidates = self._records.values()
            found = [
                (self._order[record[PRIMARY_KEY]], dict(record))
                for record in candidates
                if where is None or where.matches(record)
            ]
            found.sort(key=lambda row: row[0])
            return found

    # -- schema changes --------------------------------------------------------------------------

    def add_column(self, column: Column) -> None:
        """Raises SchemaChangeError 409 if the name is taken, 400 for an invalid name."""
        with self._lock:
            if not _COLUMN_NAME.match(column.logical_name):
                raise SchemaChangeError(400, f"{column.logical_name!r} is not a valid logical name")
            if column.logical_name in self.schema.columns:
                raise SchemaChangeError(409, f"column {column.logical_name} already exists")
            self.schema = self.schema.with_column(column)

    def remove_column(self, name: str) -> None:
        """Drop the column and its values. Raises SchemaChangeError 404/400/409."""
        with self._lock:
            if name not in self.schema.columns:
                raise SchemaChangeError(404, f"no column {name}")
            if name in SYSTEM_COLUMNS:
                raise SchemaChangeError(400, f"{name} is a system column")
            if any(name in key.columns for key in self.schema.keys.values()):
                raise SchemaChangeError(409, f"{name} is used by an alternate key")
            self.schema = self.schema.without_column(name)
            self._eq_indexes.pop(name, None)
            for record in self._records.values():
                record.pop(name, None)

    def add_option(self, name: str, option: Option) -> None:
        """Raises SchemaChangeError 404 (no column), 400 (not a choice), 409 (value taken)."""
        with self._lock:
            column = self.schema.columns.get(name)
            if column is None:
                raise SchemaChangeError(404, f"no column {name}")
            if column.attribute_type not in CHOICE_TYPES:
                raise SchemaChangeError(400, f"{name} is not a choice column")
            if option.value in column.option_values:
                raise SchemaChangeError(409, f"{name} already has option {option.value}")
            self.schema = self.schema.with_column(replace(column, options=(*column.options, option)))

    def add_key(self, name: str, columns: tuple[str, ...]) -> Key:
        """Define a key; it is Failed if existing records already clash. Raises SchemaChangeError."""
        with self._lock:
            if name in self.schema.keys:
                raise SchemaChangeError(409, f"key {name} already exists")
            if not 1 <= len(columns) <= MAX_KEY_COLUMNS or len(set(columns)) != len(columns):
                raise SchemaChangeError(400, f"a key needs 1 to {MAX_KEY_COLUMNS} distinct columns")
            for column in columns:
                spec = self.schema.columns.get(column)
                if spec is None or spec.attribute_type not in KEY_TYPES:
                    raise SchemaChangeError(400, f"{column} is not a String, Integer or Picklist column")
            key = Key(name, columns)
            index: dict[tuple, str] = {}
            for lead_id, record in self._records.items():
                values = self._key_tuple(key, record)
                if values is not None:
                    if values in index:
                        key = Key(name, columns, KeyStatus.FAILED)
                        break
                    index[values] = lead_id
            self.schema = self.schema.with_key(key)
            if key.status is KeyStatus.ACTIVE:
                self._key_indexes[name] = index
            return key

    # -- internals (lock held) -------------------------------------------------------------------

    def _resolve(self, segment: KeySegment) -> Target:
        if segment.lead_id is not None:
            return Target(segment.lead_id)
        names = [name for name, _ in segment.values]
        key = self.schema.key_for(frozenset(names))
        if key is None:
            raise ODataError(
                400, KEY_NOT_DEFINED, f"The specified key attributes are not a defined key for the {ENTITY} entity"
            )
        given = dict(segment.values)
        values = []
        for column in key.columns:
            value = given[column]
            wants_string = self.schema.columns[column].attribute_type is AttributeType.STRING
            if wants_string != isinstance(value, str):
                raise ODataError(
                    400, QUERY_ERROR, f"The key value for '{column}' does not match the type of the column."
                )
            values.append(value)
        folded = tuple(fold(v) for v in values)
        return Target(self._key_indexes[key.name].get(folded), key, tuple(values))

    def _missing(self, segment: KeySegment, target: Target) -> ODataError:
        if target.key is None:
            return record_not_found(target.lead_id or "")
        return ODataError(
            404, KEY_RECORD_NOT_FOUND, f"A record with the specified key values does not exist in {ENTITY} entity"
        )

    def _insert(self, lead_id: str, values: dict[str, Any]) -> dict:
        now = self._now()
        record = {**new_record_defaults(), **settle(None, values, lead_id), PRIMARY_KEY: lead_id, "createdon": now}
        record.update(modifiedon=now, fullname=_fullname(record))
        self._commit(None, record)
        self._sequence += 1
        self._order[lead_id] = self._sequence
        self._written(record, created=True)
        return record

    def _update(self, existing: dict, changes: dict[str, Any]) -> dict:
        record = {**existing, **settle(existing, changes, existing[PRIMARY_KEY]), "modifiedon": self._now()}
        record["fullname"] = _fullname(record)
        self._commit(existing, record)
        self._written(record, created=False)
        return record

    def _now(self) -> str:
        return self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _written(self, record: dict, *, created: bool) -> None:
        if self._on_write is None:
            return
        if self._undo is not None:
            self._unannounced.append((record, created))
        else:
            self._announce(record, created)

    def _announce(self, record: dict, created: bool) -> None:
        if self._on_write is not None:
            self._on_write(dict(record), created)

    def _commit(self, old: dict | None, record: dict) -> None:
        lead_id = record[PRIMARY_KEY]
        keys = [(key, self._key_tuple(key, record)) for key in self.schema.active_keys()]
        for key, values in keys:
            holder = self._key_indexes[key.name].get(values) if values is not None else None
            if holder is not None and holder != lead_id:
                shown = ", ".join(self.schema.columns[c].display_name for c in key.columns)
                raise ODataError(
                    412,
                    KEY_VIOLATED,
                    f"Entity Key {key.name} violated. A record with the same value for {shown} already exists. "
                    "A duplicate record cannot be created. Select one or more unique values and try again.",
                )
        for rule in self._rules:
            if record.get(rule.column) == rule.equals:
                raise ODataError(rule.status, rule.code, rule.message)
        self._version += 1
        record["versionnumber"] = self._version
        self._remember(lead_id)
        if old is not None:
            self._unindex(old)
        self._index(record)
        self._records[lead_id] = record

    def _remove(self, lead_id: str) -> None:
        self._remember(lead_id)
        self._unindex(self._records.pop(lead_id))
        del self._order[lead_id]

    def _remember(self, lead_id: str) -> None:
        if self._undo is not None and lead_id not in self._undo:
            self._undo[lead_id] = (self._records.get(lead_id), self._order.get(lead_id))

    def _rollback(self, counters: tuple[int, int]) -> None:
        undo = self._undo or {}
        for lead_id in undo:
            current = self._records.pop(lead_id, None)
            self._order.pop(lead_id, None)
            if current is not None:
                self._unindex(current)
        for lead_id, (record, order) in undo.items():
            if record is not None and order is not None:
                self._records[lead_id] = record
                self._order[lead_id] = order
                self._index(record)
        self._version, self._sequence = counters

    def _index(self, record: dict) -> None:
        lead_id = record[PRIMARY_KEY]
        for key in self.schema.active_keys():
            values = self._key_tuple(key, record)
            if values is not None:
                self._key_indexes[key.name][values] = lead_id
        for column, index in self._eq_indexes.items():
            index.setdefault(fold(record.get(column)), set()).add(lead_id)

    def _unindex(self, record: dict) -> None:
        lead_id = record[PRIMARY_KEY]
        for key in self.schema.active_keys():
            values = self._key_tuple(key, record)
            if values is not None and self._key_indexes[key.name].get(values) == lead_id:
                del self._key_indexes[key.name][values]
        for column, index in self._eq_indexes.items():
            index.get(fold(record.get(column)), set()).discard(lead_id)

    def _eq_index(self, column: str) -> dict[Any, set[str]]:
        index = self._eq_indexes.get(column)
        if index is None:
            index = {}
            for lead_id, record in self._records.items():
                index.setdefault(fold(record.get(column)), set()).add(lead_id)
            self._eq_indexes[column] = index
        return index

    @staticmethod
    def _key_tuple(key: Key, record: dict) -> tuple | None:
        values = tuple(fold(record.get(column)) for column in key.columns)
        return None if any(v is None for v in values) else values
