"""Metadata-shaped JSON bodies, as the four schema GETs return them, for pure tests."""
from __future__ import annotations

from typing import Any

_CAST = {"String": "StringAttributeMetadata", "Memo": "MemoAttributeMetadata", "Picklist": "PicklistAttributeMetadata"}


def option(value: int, label: str, *, user_label: bool = True) -> dict[str, Any]:
    localized = {"Label": label, "LanguageCode": 1033, "IsManaged": False, "MetadataId": "m", "HasChanged": None}
    return {
        "Value": value,
        "Label": {"LocalizedLabels": [localized], "UserLocalizedLabel": localized if user_label else None},
        "Description": {"LocalizedLabels": [], "UserLocalizedLabel": None},
        "Color": None,
        "IsManaged": False,
    }


def bodies(columns: dict[str, tuple]) -> tuple[dict, dict, dict, dict]:
    """columns: name -> ("String", max_length) | ("Memo", max_length) | ("Picklist", [options]) | (type,)."""
    attributes, picklists, strings, memos = [], [], [], []
    for name, (kind, *rest) in columns.items():
        cast = _CAST.get(kind, f"{kind}AttributeMetadata")
        attributes.append({"@odata.type": f"#Microsoft.Dynamics.CRM.{cast}", "LogicalName": name,
                           "AttributeType": kind, "MetadataId": f"id-{name}"})
        if kind == "Picklist":
            picklists.append({"LogicalName": name, "MetadataId": f"id-{name}",
                              "OptionSet": {"Options": rest[0], "MetadataId": "os"}, "GlobalOptionSet": None})
        elif kind in ("String", "Memo"):
            (strings if kind == "String" else memos).append(
                {"LogicalName": name, "MaxLength": rest[0], "MetadataId": f"id-{name}"})
    return tuple({"@odata.context": "ctx", "value": items} for items in (attributes, picklists, strings, memos))


def choice(*labels: str, first: int = 100000000) -> tuple:
    return ("Picklist", [option(first + i, label) for i, label in enumerate(labels)])


MVP_COLUMNS: dict[str, tuple] = {
    "leadid": ("Uniqueidentifier",),
    "subject": ("String", 300),
    "companyname": ("String", 100),
    "websiteurl": ("String", 200),
    "emailaddress1": ("String", 100),
    "hnt_companyid": ("Integer",),
    "hnt_domain": ("String", 253),
    "hnt_finalscore": ("Integer",),
    "hnt_m365fitscore": ("Integer",),
    "hnt_priorityscore": ("Integer",),
    "hnt_provider": ("String", 100),
    "hnt_infrasummary": ("Memo", 4000),
    "hnt_referralid": ("String", 100),
    "hnt_segment": choice("Existing", "New", "Prospect", "Partner"),
    "hnt_huntertenantsize": choice("Small", "Medium", "Large", "Enterprise"),
    "hnt_source": choice("Manual", "Import", "API", "Crawler"),
    "hnt_processingstatus": choice("Idle", "Queued", "Processing", "Completed", "Failed"),
    "hnt_referraltype": choice("Partner Center", "Customer", "Internal"),
}
FULL_COLUMNS: dict[str, tuple] = {
    **MVP_COLUMNS,
    "hnt_prioritycategory": choice("High", "Medium", "Low"),
    "hnt_prioritylabel": ("String", 10),
    "hnt_technicalheat": choice("Hot", "Warm", "Cold"),
    "hnt_commercialsegment": ("String", 100),
    "hnt_commercialheat": choice("Hot", "Warm", "Cold"),
    "hnt_ispartnercenterreferral": ("Boolean",),
}
