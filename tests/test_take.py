"""Groups of the ingest agents: cut by message count, bytes and time."""

from __future__ import annotations

import pytest
from driftline.streams.take import GroupBuffer


def test_a_group_is_full_at_its_message_limit() -> None:
    buffer = GroupBuffer(max_messages=2, max_bytes=1_000)
    assert buffer.add("a", 1, now=0.0) is False
    assert buffer.add("b", 1, now=0.1) is True
    assert buffer.cut() == ["a", "b"]
    assert not buffer.full and buffer.size == 0


def test_a_group_is_full_at_its_byte_limit_whatever_its_count() -> None:
    buffer = GroupBuffer(max_messages=5_000, max_bytes=250)
    assert [buffer.add(i, 100, now=float(i)) for i in range(3)] == [False, False, True]
    assert buffer.size == 300  # the message that crossed the limit belongs to the group


def test_a_group_is_due_within_seconds_of_its_first_message() -> None:
    buffer = GroupBuffer(max_messages=10, max_bytes=10_000)
    assert buffer.deadline(within=0.5) is None  # empty: not due, whatever the time
    buffer.add("a", 1, now=10.0)
    buffer.add("b", 1, now=10.4)
    assert buffer.deadline(within=0.5) == 10.5  # from the first message, not the last
    buffer.cut()
    buffer.add("c", 1, now=20.0)
    assert buffer.deadline(within=0.5) == 20.5


def test_a_group_needs_room_for_one_message() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GroupBuffer(max_messages=0, max_bytes=10)
