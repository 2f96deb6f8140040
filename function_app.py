"""lead push: Hunter leads into the Dynamics 365 `lead` table.

The composition root: settings are read and validated here, at start-up (one error naming every
missing or malformed setting); dependencies are built on first use, once per worker process.
"""

from __future__ import annotations

import os

import azure.functions as func

from blueprints import admin, crm_outcomes, health, lead_queue, lead_status, metrics, webhook
from shared.observability.logging_setup import configure_logging
from shared.observability.telemetry import install_log_dimensions
from shared.runtime.container import Container
from shared.runtime.settings import Settings

configure_logging()
install_log_dimensions()  # after the worker (or local host) put the Azure Monitor handler on the root logger
container = Container(Settings.from_env(os.environ))

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for module in (webhook, lead_status, lead_queue, health, admin, metrics, crm_outcomes):
    app.register_functions(module.blueprint(container))
