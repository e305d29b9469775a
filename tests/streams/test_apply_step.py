"""apply_step's order: outputs acknowledged, then the changelog acknowledged, then the
table in memory; a failed send, or a rebalance meanwhile, leaves the table as it was (the
batch is then done again against it)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from streams.app import Step, apply_step
from streams.sender import BatchSender, Output

CHANGELOG = "slotstream-stream-tracker_by_slot-changelog"


class SendFailed(Exception):
    pass


class RecordingSender:
    """Stands in for the broker: records each ``send_all`` call, or raises on call
    number ``fail_at`` (0-based) as an unacknowledged send would."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[list[Output]] = []
        self.fail_at = fail_at

    async def send_all(self, outputs: Iterable[Output]) -> None:
        records = list(outputs)
        if len(self.sent) == self.fail_at:
            raise SendFailed
        self.sent.append(records)


def _table(data: dict[bytes, bytes]) -> Any:
    return SimpleNamespace(data=data, changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG))


STEP = Step(
    outputs=[("changes", b"k1", b"c1"), ("current", b"k1", b"s1"), ("changes", b"k2", b"c2")],
    writes={b"k1": b"t1-new", b"k2": b"t2-new"},
    tally=Counter(changed=2),
)


def _apply(sender: RecordingSender, data: dict[bytes, bytes], step: Step = STEP, current: bool = True) -> bool:
    return asyncio.run(apply_step(cast(BatchSender, sender), _table(data), step, current=lambda: current))


def test_outputs_then_changelog_then_memory() -> None:
    sender, data = RecordingSender(), {b"k1": b"t1-old"}
    assert _apply(sender, data)
    assert sender.sent == [STEP.outputs, [(CHANGELOG, b"k1", b"t1-new"), (CHANGELOG, b"k2", b"t2-new")]]
    assert data == {b"k1": b"t1-new", b"k2": b"t2-new"}


@pytest.mark.parametrize("fail_at", [0, 1])
def test_a_failed_send_leaves_the_table_as_it_was(fail_at: int) -> None:
    sender, data = RecordingSender(fail_at=fail_at), {b"k1": b"t1-old"}
    with pytest.raises(SendFailed):
        _apply(sender, data)
    assert data == {b"k1": b"t1-old"}
    # Nothing of the changelog goes out before the outputs were acknowledged.
    assert sender.sent == [STEP.outputs][:fail_at]


def test_a_batch_without_table_writes_sends_only_its_outputs() -> None:
    sender, data = RecordingSender(), dict[bytes, bytes]()
    _apply(sender, data, Step(outputs=[("dead-letter", b"x", b"raw")], writes={}, tally=Counter()))
    assert sender.sent == [[("dead-letter", b"x", b"raw")]]
    assert data == {}


def test_a_rebalance_during_the_sends_leaves_changelog_and_table_alone() -> None:
    # The group rebalanced while the outputs were sent: another owner may be restoring the
    # table from the changelog, and the batch will be fetched and done again.
    sender, data = RecordingSender(), {b"k1": b"t1-restored"}
    assert not _apply(sender, data, current=False)
    assert sender.sent == [STEP.outputs]
    assert data == {b"k1": b"t1-restored"}


def test_a_rebalance_after_the_changelog_was_sent_leaves_the_table_alone() -> None:
    answers = iter([True, False])
    sender, data = RecordingSender(), {b"k1": b"t1-restored"}
    done = asyncio.run(apply_step(cast(BatchSender, sender), _table(data), STEP, current=lambda: next(answers)))
    assert not done
    assert len(sender.sent) == 2
    assert data == {b"k1": b"t1-restored"}
