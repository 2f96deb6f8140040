"""`python -m shared.runtime.replay [--company-id N]`: move poison messages back to the lead queue,
with the app's settings (each replayed lead is reset to `queued`)."""

from __future__ import annotations

import argparse
import os
import sys

from shared.postgres.store import LeadStore
from shared.runtime.container import postgres_connector
from shared.runtime.env import SettingsError
from shared.runtime.settings import Settings
from shared.storage.queue import LeadQueues
from shared.usecases.replay import replay_poisoned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.runtime.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--company-id", type=int, help="only this company's messages (default: all)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    store = LeadStore(connect=postgres_connector(settings).connect, pool_max=2)
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
