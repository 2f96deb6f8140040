"""The lead queues' contract: the same tests against `FakeLeadQueues` and `LeadQueues` on Azurite.

Visibility is in whole seconds on Azure Storage, so the real side waits a little over a second
where the fake moves its clock.
"""
from __future__ import annotations

from datetime import timedelta

from tests.contract.conftest import QueueHarness

SECOND = 1.3  # just over one second of visibility


def test_a_message_is_received_once_until_its_visibility_ends(queue_side: QueueHarness) -> None:
    queue_side.queues.send(["eyJ2IjoyfQ=="])

    first = queue_side.receive(1)
    assert [(m.text, m.dequeue_count) for m in first] == [("eyJ2IjoyfQ==", 1)]
    assert queue_side.receive(1) == []

    queue_side.wait(SECOND)
    again = queue_side.receive(30)
    assert [(m.id, m.dequeue_count) for m in again] == [(first[0].id, 2)]
    assert again[0].pop_receipt != first[0].pop_receipt


def test_a_delayed_send_is_invisible_until_its_delay_ends(queue_side: QueueHarness) -> None:
    queue_side.queues.send(["a", "b"], delay_seconds=1)
    assert queue_side.receive(30) == []

    queue_side.wait(SECOND)
    assert sorted(m.text for m in queue_side.receive(30)) == ["a", "b"]


def test_a_redelivery_is_pushed_back_with_the_current_pop_receipt_only(queue_side: QueueHarness) -> None:
    queue_side.queues.send(["m"])
    taken = queue_side.receive(1)[0]

    queue_side.queues.delay_redelivery(taken.id, "stale-receipt", 0)  # ignored, as the runtime's own update is
    queue_side.queues.delay_redelivery(taken.id, taken.pop_receipt, 2)
    queue_side.wait(SECOND)
    assert queue_side.receive(30) == []
    queue_side.queues.delay_redelivery(taken.id, taken.pop_receipt, 0)  # that receipt is stale now

    queue_side.wait(SECOND)
    back = queue_side.receive(30)
    assert [(m.id, m.dequeue_count) for m in back] == [(taken.id, 2)]


def test_poison_messages_are_drained_once_removed_or_released(queue_side: QueueHarness) -> None:
    queue_side.queues.send_to_poison("p1")
    queue_side.queues.send_to_poison("p2")

    drained = list(queue_side.queues.drain_poison())
    assert sorted(m.text for m in drained) == ["p1", "p2"]
    assert list(queue_side.queues.drain_poison()) == []  # hidden while being decided on

    first, second = sorted(drained, key=lambda m: m.text)
    queue_side.queues.remove_from_poison(first)
    queue_side.queues.release_poison(second)
    queue_side.queues.remove_from_poison(first)  # already gone: no error

    assert [m.text for m in queue_side.queues.drain_poison()] == ["p2"]
    assert queue_side.receive(1) == []  # the lead queue holds none of them


def test_oldest_waiting_is_the_insertion_time_of_the_front_message(queue_side: QueueHarness) -> None:
    assert queue_side.queues.oldest_waiting() is None
    before = queue_side.now() - timedelta(seconds=1)
    queue_side.queues.send(["first"])
    after = queue_side.now() + timedelta(seconds=1)
    queue_side.wait(SECOND)
    queue_side.queues.send(["second"])

    oldest = queue_side.queues.oldest_waiting()

    assert oldest is not None and before <= oldest <= after


def test_oldest_waiting_ignores_messages_being_processed(queue_side: QueueHarness) -> None:
    queue_side.queues.send(["only"])
    queue_side.receive(30)
    assert queue_side.queues.oldest_waiting() is None


def test_depths_count_every_message_visible_or_not(queue_side: QueueHarness) -> None:
    queue_side.queues.send(["a", "b"])
    queue_side.queues.send(["c"], delay_seconds=60)
    queue_side.receive(30)
    queue_side.queues.send_to_poison("p")

    depths = queue_side.queues.depths()

    assert depths == {queue_side.queues.main.queue_name: 3, queue_side.queues.poison.queue_name: 1}
