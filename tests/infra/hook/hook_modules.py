"""The postprovision hook's modules, imported as the hook imports them (infra/hooks/ first on sys.path)."""

from __future__ import annotations

import sys

from tests.infra.bicep_model import INFRA

HOOKS = INFRA / "hooks"
if str(HOOKS) not in sys.path:
    sys.path.insert(0, str(HOOKS))

import azcli  # noqa: E402
import database_setup  # noqa: E402
import flexible_server  # noqa: E402
import postprovision  # noqa: E402

__all__ = ["HOOKS", "azcli", "database_setup", "flexible_server", "postprovision"]
