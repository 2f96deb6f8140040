"""A tiny app for the local host's tests: each function records what it received.

Records are JSON lines in $RECORD_DIR/<function>.jsonl. Importing fails without RECORD_DIR,
like an app whose settings validation fails.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import azure.functions as func
from azure.storage.queue import QueueClient

RECORD_DIR = Path(os.environ["RECORD_DIR"])
WORKER = uuid.uuid4().hex  # a new one after the host restarts its worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def record(function: str, **fields: object) -> None:
    with open(RECORD_DIR / f"{function}.jsonl", "a", encoding="utf-8") as sink:
        sink.write(json.dumps(fields) + "\n")


def record_message(function: str, msg: func.QueueMessage, **fields: object) -> None:
    record(function, id=msg.id, body=msg.get_body().decode(), dequeue_count=msg.dequeue_count,
           has_pop_receipt=bool(msg.pop_receipt), worker=WORKER, at=time.time(), **fields)


def hang_on_first_delivery(function: str, msg: func.QueueMessage) -> None:
    """The first delivery waits (at most a minute) for the file RECORD_DIR/release-<body>; later ones return."""
    record_message(function, msg, event="start")
    release = RECORD_DIR / f"release-{msg.get_body().decode()}"
    deadline = time.monotonic() + 60
    while msg.dequeue_count == 1 and not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    record_message(function, msg, event="finish")


@app.route(route="items/{item_id:int}", methods=["GET", "POST"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    echo = {
        "method": req.method,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "x_test": req.headers.get("x-test"),
    }
    return func.HttpResponse(json.dumps(echo), status_code=201 if req.method == "POST" else 200,
                             headers={"X-Echo": "yes"}, mimetype="application/json")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail that must not leak")


@app.route(route="slow")
async def slow(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(1.0)
    return func.HttpResponse("slept")


@app.queue_trigger(arg_name="msg", queue_name="%ECHO_QUEUE%", connection="")
def echo(msg: func.QueueMessage) -> None:
    record_message("echo", msg)


@app.queue_trigger(arg_name="msg", queue_name="always-fails", connection="SampleStorage")
def always_fails(msg: func.QueueMessage) -> None:
    record_message("always_fails", msg)
    raise RuntimeError("always fails")


@app.queue_trigger(arg_name="msg", queue_name="self-delay", connection="")
def self_delay(msg: func.QueueMessage) -> None:
    """Backs off by itself on the first delivery, as the lead push app does when throttled."""
    record_message("self_delay", msg)
    if msg.dequeue_count == 1:
        queue = QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"], "self-delay")
        queue.update_message(msg.id, msg.pop_receipt, visibility_timeout=2)
        raise RuntimeError("throttled; retry later")


@app.queue_trigger(arg_name="msg", queue_name="%HANG_QUEUE%", connection="")
def hangs(msg: func.QueueMessage) -> None:
    hang_on_first_delivery("hangs", msg)


@app.queue_trigger(arg_name="msg", queue_name="%BYSTANDER_QUEUE%", connection="")
def bystander(msg: func.QueueMessage) -> None:
    hang_on_first_delivery("bystander", msg)


@app.queue_trigger(arg_name="msg", queue_name="outlives-lease", connection="")
def outlives_lease(msg: func.QueueMessage) -> None:
    """Runs for twice the lease the tests give the host (FUNCHOST_MESSAGE_LEASE_SECONDS=2)."""
    record_message("outlives_lease", msg)
    time.sleep(4)


@app.queue_trigger(arg_name="msg", queue_name="returns-value", connection="")
def returns_value(msg: func.QueueMessage) -> str:
    record_message("returns_value", msg)
    return "a queue function has no $return binding"


@app.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due, at=time.time())
