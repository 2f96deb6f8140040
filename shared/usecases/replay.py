"""Moving messages from the poison queue back to the lead queue.

`python -m shared.usecases.replay [--company-id N]` does it from a shell, with the app's settings.
"""

from __future__ import annotations

import logging
import os
import sys

from shared.model.messages import LeadRef, MalformedMessage
from shared.postgres.store import LeadStore
from shared.storage.queue import LeadQueues

logger = logging.getLogger(__name__)


def replay_poisoned(*, queues: LeadQueues, store: LeadStore, company_id: int | None = None) -> int:
    """Move all poison messages (or one company's) back to the lead queue, each lead reset to
    `queued`. Returns how many were moved. Raises QueueUnavailable or StoreUnavailable."""
    moved = 0
    for message in queues.drain_poison():
        lead_company: int | None
        try:
            lead_company = LeadRef.from_wire(message.text.encode("utf-8")).company_id
        except MalformedMessage as exc:
            lead_company = exc.company_id
        if company_id is not None and lead_company != company_id:
            queues.release_poison(message)
            continue
        if lead_company is not None:
            store.reset_for_replay(lead_company)
        queues.send([message.text])
        queues.remove_from_poison(message)
        moved += 1
        logger.info(
            "poison_replayed company_id=%s message_id=%s",
            lead_company,
            message.id,
            extra={"company_id": lead_company, "message_id": message.id},
        )
    return moved


def main(argv: list[str] | None = None) -> int:
    # Imported here, not at the top: this module is part of the function app, which never needs them.
    import argparse

    from shared.postgres.connect import PostgresConnector
    from shared.runtime.settings import Settings, SettingsError

    parser = argparse.ArgumentParser(prog="python -m shared.usecases.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--company-id", type=int, help="only this company's messages (default: all)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    store = LeadStore(connect=PostgresConnector.from_settings(settings).connect, pool_max=2)
    try:
        moved = replay_poisoned(
            queues=LeadQueues(settings.storage, settings.lead_queue_name),
            store=store,
            company_id=args.company_id,
        )
    finally:
        store.close()
    print(f"replayed {moved} message(s) from {settings.poison_queue_name} to {settings.lead_queue_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
