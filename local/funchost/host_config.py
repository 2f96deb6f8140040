"""The parts of host.json the local host honours, with the Functions runtime's defaults."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_BATCH_SIZE = 16
MAX_BATCH_SIZE = 32  # the Storage service returns at most 32 messages per receive
DEFAULT_MAX_POLLING_INTERVAL_SECONDS = 60.0
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 0.0
DEFAULT_MAX_DEQUEUE_COUNT = 5
MESSAGE_ENCODINGS = ("base64", "none")

# .NET TimeSpan as host.json writes it: [d.]hh:mm:ss[.fffffff]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


class HostConfigError(Exception):
    """host.json is unreadable or holds a value the host cannot use."""


@dataclass(frozen=True)
class QueuesConfig:
    batch_size: int = DEFAULT_BATCH_SIZE
    new_batch_threshold: int = DEFAULT_BATCH_SIZE // 2
    max_polling_interval: float = DEFAULT_MAX_POLLING_INTERVAL_SECONDS
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT_SECONDS
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = DEFAULT_ROUTE_PREFIX
    queues: QueuesConfig = QueuesConfig()
    function_timeout: float | None = None  # seconds; None means unbounded


def parse_timespan(text: str) -> float:
    """Seconds in a TimeSpan such as "00:01:00" or "1.00:00:00.5". Raises HostConfigError."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise HostConfigError(f"not a TimeSpan (hh:mm:ss): {text!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def load_host_config(app_dir: Path) -> HostConfig:
    """Read DIR/host.json (defaults when absent). Raises HostConfigError for bad JSON or values."""
    path = app_dir / "host.json"
    if not path.exists():
        return HostConfig()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HostConfigError(f"{path}: {exc}") from exc
    extensions = document.get("extensions") or {}
    timeout = document.get("functionTimeout")
    return HostConfig(
        route_prefix=str((extensions.get("http") or {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)).strip("/"),
        queues=_queues_config(extensions.get("queues") or {}),
        function_timeout=None if timeout in (None, "-1") else parse_timespan(timeout),
    )


def _queues_config(section: dict) -> QueuesConfig:
    batch_size = int(section.get("batchSize", DEFAULT_BATCH_SIZE))
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise HostConfigError(f"extensions.queues.batchSize must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
    encoding = str(section.get("messageEncoding", "base64")).lower()
    if encoding not in MESSAGE_ENCODINGS:
        raise HostConfigError(f"extensions.queues.messageEncoding must be one of {MESSAGE_ENCODINGS}, got {encoding!r}")
    max_dequeue_count = int(section.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT))
    if max_dequeue_count < 1:
        raise HostConfigError(f"extensions.queues.maxDequeueCount must be at least 1, got {max_dequeue_count}")
    return QueuesConfig(
        batch_size=batch_size,
        new_batch_threshold=int(section.get("newBatchThreshold", batch_size // 2)),
        max_polling_interval=_seconds(section, "maxPollingInterval", DEFAULT_MAX_POLLING_INTERVAL_SECONDS),
        visibility_timeout=_seconds(section, "visibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT_SECONDS),
        max_dequeue_count=max_dequeue_count,
        message_encoding=encoding,
    )


def _seconds(section: dict, key: str, default: float) -> float:
    value = section.get(key)
    return default if value is None else parse_timespan(str(value))
