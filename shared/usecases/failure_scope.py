"""Whether a failure is the org's (every lead would meet it until someone fixes the configuration)
or one lead's. An org-level failure pauses the pipeline instead of failing the lead.

The signals, their codes and our reading of their scope are in docs/dataverse.md 11.6.
"""

from __future__ import annotations

from d365.errors import D365AuthenticationError, D365Error
from shared.model.pause import PauseReason

# The application user's role lacks a privilege: PrivilegeDenied, a failed privilege check, and the
# other privilege codes Microsoft lists for 403 (PrincipalPrivilegeDenied, CrmSecurityError,
# AttributePrivilegeCreateIsMissing have no published hex code; their messages are matched).
PRIVILEGE_CODES = frozenset({"0x80040220", "0x80040299"})
PRIVILEGE_WORDS = ("missing prv", "privilegedenied", "principalprivilegedenied", "crmcheckprivilege")
# No application user for the identity, the app id blocked from the API, the user disabled.
APPLICATION_USER_CODES = frozenset({"0x80072560", "0x80095ffc", "0x80040225"})
APPLICATION_USER_WORDS = ("is not a member of the organization", "disabled users cannot access")
# The environment disabled, or in administration mode.
ORG_UNAVAILABLE_CODES = frozenset({"0x8004a104"})
ORG_UNAVAILABLE_WORDS = ("admin only mode", "administration mode", "organization you are attempting to access is")


def pause_reason(exc: BaseException) -> PauseReason | None:
    """The reason to pause the pipeline for this failure, or None when it is this lead's own."""
    if not isinstance(exc, D365Error):
        return None
    if isinstance(exc, D365AuthenticationError):
        # A refused credential, or a 401 that a fresh token did not cure (the client retried once).
        refused = not exc.transient or exc.status == 401
        return PauseReason.CREDENTIALS if refused else None
    code, text = (exc.code or "").lower(), exc.message.lower()
    if code in ORG_UNAVAILABLE_CODES or any(words in text for words in ORG_UNAVAILABLE_WORDS):
        return PauseReason.ORG_UNAVAILABLE
    if code in APPLICATION_USER_CODES or any(words in text for words in APPLICATION_USER_WORDS):
        return PauseReason.APPLICATION_USER
    if exc.status == 403 and (code in PRIVILEGE_CODES or any(words in text for words in PRIVILEGE_WORDS)):
        return PauseReason.PRIVILEGE
    return None
