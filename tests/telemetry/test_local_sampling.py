"""`make run` with telemetry on samples traces as the deployment does (every trace), unless the environment
names a sampler of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from local.funchost.telemetry import DEPLOYED_SAMPLER, sample_as_deployed
from local.services import REPO
from tests.infra.test_app_settings import bicep_app_settings

PROBE = """
import os
from local.funchost.telemetry import configure_worker_telemetry
from opentelemetry import trace
configure_worker_telemetry(os.environ)
print(trace.get_tracer_provider().sampler.get_description())
"""


def test_the_local_default_is_the_deployments_sampler():
    deployed = bicep_app_settings()

    assert DEPLOYED_SAMPLER == {name: deployed[name] for name in DEPLOYED_SAMPLER}


@pytest.mark.parametrize(
    ("given", "applied"),
    [
        ({}, True),
        ({"OTEL_TRACES_SAMPLER": "microsoft.rate_limited"}, False),
        ({"OTEL_TRACES_SAMPLER_ARG": "0.25"}, False),
    ],
)
def test_a_sampler_the_user_names_is_kept(given, applied):
    environ = dict(given)

    assert sample_as_deployed(environ) is applied

    assert environ == (DEPLOYED_SAMPLER if applied else given)


def _sampler_of_a_local_worker(**sampler: str) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env |= {
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        # an ingestion endpoint nobody answers: nothing is exported while the probe runs
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9"
        ),
        **sampler,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_with_telemetry_on_the_local_worker_keeps_every_trace():
    assert _sampler_of_a_local_worker() == "ApplicationInsightsSampler1.0"
    # the distro's own default, which the local host no longer falls back to
    assert _sampler_of_a_local_worker(OTEL_TRACES_SAMPLER="microsoft.rate_limited") == "RateLimitedSampler{5.0}"
