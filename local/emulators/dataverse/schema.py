"""The emulated `lead` table: columns, choice options, alternate keys, and the three profiles.

A lookup column (`ownerid`, `masterid`) has its logical name in metadata and in `@odata.bind`, and is
read, selected, filtered and ordered as `_<name>_value` (`Column.property_name`); records hold it
under that name.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Mapping

CHOICE_BASE = 100000000
INT_MIN, INT_MAX = -2147483648, 2147483647
PRIMARY_KEY = "leadid"
SYSTEM_COLUMNS = frozenset({PRIMARY_KEY, "createdon", "modifiedon", "versionnumber", "statecode", "statuscode",
                            "ownerid", "merged", "masterid"})
_METADATA_NAMESPACE = uuid.UUID("8f0d8b5e-7c1c-4b0e-9a53-6d0f6f1e0a11")


class AttributeType(str, Enum):
    STRING = "String"
    MEMO = "Memo"
    INTEGER = "Integer"
    BOOLEAN = "Boolean"
    PICKLIST = "Picklist"
    STATE = "State"
    STATUS = "Status"
    UNIQUEIDENTIFIER = "Uniqueidentifier"
    DATETIME = "DateTime"
    BIGINT = "BigInt"
    OWNER = "Owner"
    LOOKUP = "Lookup"


# The types a caller may add through the control API, and those a key may use (docs/dataverse.md 3.2).
CREATABLE_TYPES = (AttributeType.STRING, AttributeType.MEMO, AttributeType.INTEGER, AttributeType.BOOLEAN,
                   AttributeType.PICKLIST)
KEY_TYPES = (AttributeType.STRING, AttributeType.INTEGER, AttributeType.PICKLIST)
CHOICE_TYPES = (AttributeType.PICKLIST, AttributeType.STATE, AttributeType.STATUS)
LOOKUP_TYPES = (AttributeType.OWNER, AttributeType.LOOKUP)


class KeyStatus(str, Enum):
    ACTIVE = "Active"
    FAILED = "Failed"


def metadata_id(*parts: str) -> str:
    """A stable MetadataId, so repeated reads and restarts agree."""
    return str(uuid.uuid5(_METADATA_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class Option:
    value: int
    label: str


@dataclass(frozen=True)
class Column:
    logical_name: str
    attribute_type: AttributeType
    display_name: str
    max_length: int | None = None
    options: tuple[Option, ...] = ()
    valid_for_create: bool = True
    valid_for_update: bool = True
    is_custom: bool = False
    required_level: str = "None"
    targets: tuple[str, ...] = ()  # a lookup's tables, e.g. ("systemuser", "team")

    @property
    def option_values(self) -> frozenset[int]:
        return frozenset(option.value for option in self.options)

    @property
    def property_name(self) -> str:
        """The name the Web API reads it by: `_<name>_value` for a lookup."""
        if self.attribute_type in LOOKUP_TYPES:
            return f"_{self.logical_name}_value"
        return self.logical_name


@dataclass(frozen=True)
class Key:
    name: str
    columns: tuple[str, ...]
    status: KeyStatus = KeyStatus.ACTIVE


@dataclass(frozen=True)
class Schema:
    """An immutable schema; changes return a new one, so readers never need a lock."""

    columns: Mapping[str, Column]
    keys: Mapping[str, Key] = field(default_factory=dict)

    @functools.cached_property
    def properties(self) -> Mapping[str, Column]:
        """The columns by the names the Web API reads them by (`Column.property_name`)."""
        return {column.property_name: column for column in self.columns.values()}

    def with_column(self, column: Column) -> "Schema":
        return replace(self, columns={**self.columns, column.logical_name: column})

    def without_column(self, name: str) -> "Schema":
        return replace(self, columns={n: c for n, c in self.columns.items() if n != name})

    def with_key(self, key: Key) -> "Schema":
        return replace(self, keys={**self.keys, key.name: key})

    def active_keys(self) -> tuple[Key, ...]:
        return tuple(key for key in self.keys.values() if key.status is KeyStatus.ACTIVE)

    def key_for(self, columns: frozenset[str]) -> Key | None:
        return next((key for key in self.active_keys() if frozenset(key.columns) == columns), None)


def _title(name: str) -> str:
    return name.removeprefix("hnt_").replace("_", " ").title()


def _string(name: str, max_length: int, display: str | None = None, **flags) -> Column:
    return Column(name, AttributeType.STRING, display or _title(name), max_length=max_length, **flags)


def _memo(name: str, max_length: int, display: str | None = None) -> Column:
    return Column(name, AttributeType.MEMO, display or _title(name), max_length=max_length,
                  is_custom=name.startswith("hnt_"))


def _choice(name: str, labels: list[str], *, first: int = CHOICE_BASE, display: str | None = None,
            kind: AttributeType = AttributeType.PICKLIST, **flags) -> Column:
    options = tuple(Option(first + i, label) for i, label in enumerate(labels))
    return Column(name, kind, display or _title(name), options=options, is_custom=name.startswith("hnt_"), **flags)


def _custom_string(name: str, max_length: int) -> Column:
    return _string(name, max_length, is_custom=True)


def _custom(name: str, kind: AttributeType) -> Column:
    return Column(name, kind, _title(name), is_custom=True)


_LEAD_SOURCES = ["Advertisement", "Employee Referral", "External Referral", "Partner", "Public Relations",
                 "Seminar", "Trade Show", "Web", "Word of Mouth", "Other"]
_STATUS_REASONS = ["New", "Contacted", "Qualified", "Lost", "Cannot Contact", "No Longer Interested", "Canceled"]

_BARE = (
    Column(PRIMARY_KEY, AttributeType.UNIQUEIDENTIFIER, "Lead", valid_for_update=False,
           required_level="SystemRequired"),
    _string("subject", 300, "Topic", required_level="ApplicationRequired"),
    _string("companyname", 100, "Company Name"),
    _string("websiteurl", 200, "Website"),
    _string("emailaddress1", 100, "Email"),
    _memo("description", 2000, "Description"),
    _string("firstname", 50, "First Name"),
    _string("lastname", 50, "Last Name", required_level="ApplicationRequired"),
    _string("fullname", 160, "Name", valid_for_create=False, valid_for_update=False),
    _string("jobtitle", 100, "Job Title"),
    _string("telephone1", 50, "Business Phone"),
    _choice("leadsourcecode", _LEAD_SOURCES, first=1, display="Lead Source"),
    _choice("statecode", ["Open", "Qualified", "Disqualified"], first=0, display="Status",
            kind=AttributeType.STATE, valid_for_create=False),
    _choice("statuscode", _STATUS_REASONS, first=1, display="Status Reason", kind=AttributeType.STATUS),
    Column("createdon", AttributeType.DATETIME, "Created On", valid_for_create=False, valid_for_update=False),
    Column("modifiedon", AttributeType.DATETIME, "Modified On", valid_for_create=False, valid_for_update=False),
    Column("versionnumber", AttributeType.BIGINT, "Version Number", valid_for_create=False,
           valid_for_update=False),
    Column("ownerid", AttributeType.OWNER, "Owner", targets=("systemuser", "team"), required_level="SystemRequired"),
    Column("merged", AttributeType.BOOLEAN, "Merged", valid_for_create=False, valid_for_update=False),
    Column("masterid", AttributeType.LOOKUP, "Master ID", targets=("lead",), valid_for_create=False,
           valid_for_update=False),
)

_MVP = (
    _custom("hnt_companyid", AttributeType.INTEGER),
    _custom_string("hnt_domain", 253),
    _custom("hnt_finalscore", AttributeType.INTEGER),
    _custom("hnt_m365fitscore", AttributeType.INTEGER),
    _custom("hnt_priorityscore", AttributeType.INTEGER),
    _custom_string("hnt_provider", 100),
    _memo("hnt_infrasummary", 4000),
    _custom_string("hnt_referralid", 100),
    _choice("hnt_segment", ["Existing", "New", "Prospect", "Partner"]),
    _choice("hnt_huntertenantsize", ["Small", "Medium", "Large", "Enterprise"]),
    _choice("hnt_source", ["Manual", "Import", "API", "Crawler"]),
    _choice("hnt_processingstatus", ["Idle", "Queued", "Processing", "Completed", "Failed"]),
    _choice("hnt_referraltype", ["Partner Center", "Customer", "Internal"]),
)

_FULL = (
    _choice("hnt_prioritycategory", ["High", "Medium", "Low"]),
    _custom_string("hnt_prioritylabel", 10),
    _choice("hnt_technicalheat", ["Hot", "Warm", "Cold"]),
    _custom_string("hnt_commercialsegment", 100),
    _choice("hnt_commercialheat", ["Hot", "Warm", "Cold"]),
    _custom("hnt_ispartnercenterreferral", AttributeType.BOOLEAN),
)

PROFILES: dict[str, tuple[Column, ...]] = {"bare": _BARE, "mvp": _BARE + _MVP, "full": _BARE + _MVP + _FULL}


def key_name(columns: tuple[str, ...]) -> str:
    return "_".join(columns) + "_key"


def profile_schema(profile: str, alternate_key: str | None = None) -> Schema:
    """The schema of `profile`, with an Active key on `alternate_key` if given.

    Raises ValueError for an unknown profile or a key column the profile lacks or cannot key on.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    schema = Schema({column.logical_name: column for column in PROFILES[profile]})
    if alternate_key is not None:
        column = schema.columns.get(alternate_key)
        if column is None or column.attribute_type not in KEY_TYPES:
            raise ValueError(f"{alternate_key!r} is not a String, Integer or Picklist column of profile {profile!r}")
        schema = schema.with_key(Key(key_name((alternate_key,)), (alternate_key,)))
    return schema
