"""A local emulator of the Dataverse Web API subset lead push uses (see docs/dataverse.md).

`serve(host, port, profile=, alternate_key=, resource=)` starts it in-process; `python -m
local.emulators.dataverse` runs it as a process.
"""
from local.emulators.dataverse.server import DataverseServer, serve

__all__ = ["DataverseServer", "serve"]
