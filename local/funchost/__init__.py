"""A small local stand-in for the Azure Functions host (Core Tools cannot be installed here).

It loads an app's `function_app.FunctionApp` unchanged and runs its HTTP, queue and timer
triggers with the documented host semantics; see `local_host.LocalHost` and `__main__`.
"""
from __future__ import annotations

from local.funchost.local_host import HostStartError, LocalHost

__all__ = ["HostStartError", "LocalHost"]
