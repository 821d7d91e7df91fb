"""Groups of messages for the ingest agents, cut by count, bytes and time.

Faust's ``noack_take(max_, within)`` flushes a buffer when it holds ``max_`` messages
or ``within`` seconds passed, and stops filling it while the agent handles the group it
yielded. With large batch messages (a ``prediction_batch`` of 1,000 rows is about
100 KiB) the count is never reached, so every group waits out ``within`` although a
full group's worth of bytes is already there, and nothing is read meanwhile.
:meth:`IngestStream.take_groups` flushes on bytes too and fills the next group while
the agent handles the current one (up to the same limits: then reading waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT

__all__ = ["GroupBuffer", "IngestStream"]

log = logging.getLogger(__name__)


class GroupBuffer:
    """The group being filled: events, their bytes and when the first one arrived.

    Examples
    --------
    >>> buffer = GroupBuffer(max_messages=3, max_bytes=10)
    >>> buffer.add("a", 4, now=1.0), buffer.add("b", 4, now=2.0), buffer.add("c", 4, now=3.0)
    (False, False, True)
    >>> buffer.deadline(within=0.5)
    1.5
    >>> buffer.cut(), buffer.size, buffer.deadline(within=0.5)
    (['a', 'b', 'c'], 0, None)
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a group holds at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.events: list[Any] = []
        self.size = 0
        self.first_at: float | None = None

    def add(self, event: Any, size: int, now: float) -> bool:
        """Append one event of ``size`` bytes; whether the group is full now."""
        if not self.events:
            self.first_at = now
        self.events.append(event)
        self.size += size
        return self.full

    @property
    def full(self) -> bool:
        """Whether the group reached its message or byte limit."""
        return len(self.events) >= self.max_messages or self.size >= self.max_bytes

    def deadline(self, within: float) -> float | None:
        """When the group is due by time (``None`` while it is empty)."""
        return None if self.first_at is None else self.first_at + within

    def cut(self) -> list[Any]:
        """Hand over the events and start an empty group."""
        events, self.events = self.events, []
        self.size, self.first_at = 0, None
        return events


class IngestStream(faust.Stream):
    """A Faust stream with :meth:`take_groups` (set as the app's ``Stream`` class).

    Examples
    --------
    >>> hasattr(IngestStream, "take_groups")
    True
    """

    async def take_groups(
        self, max_messages: int, max_bytes: int, within: float
    ) -> AsyncIterator[list[EventT]]:
        """Yield groups of events, unacknowledged, in order.

        A group is yielded once it holds ``max_messages`` messages or ``max_bytes``
        bytes of message values, or ``within`` seconds after its first message arrived.
        The caller acknowledges the events itself (``stream.ack``).
        """
        buffer = GroupBuffer(max_messages, max_bytes)
        ready = asyncio.Event()  # the group is full
        room = asyncio.Event()  # the group may take more events
        room.set()

        async def add_to_group(value: Any) -> Any:
            try:
                while not room.is_set():
                    await room.wait()
                event = self.current_event
                if event is None:
                    raise RuntimeError("a stream value without its event")
                value_bytes = event.message.value
                size = len(value_bytes) if isinstance(value_bytes, bytes | bytearray) else 0
                if buffer.add(event, size, time.monotonic()):
                    ready.set()
                    room.clear()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the agent must not go on without its input
                log.exception("adding to an ingest group failed")
                await self.crash(error)
            return value

        acks = self.enable_acks
        self.enable_acks = False
        self.add_processor(add_to_group)
        self._enable_passive(cast(ChannelT, aiter(self.channel)))
        try:
            while not self.should_stop:
                deadline = buffer.deadline(within)
                wait = within if deadline is None else max(0.0, deadline - time.monotonic())
                if not ready.is_set() and wait > 0:
                    await self.wait_for_stopped(ready, timeout=wait)  # type: ignore[arg-type]
                due = buffer.deadline(within)
                if buffer.full or (due is not None and due <= time.monotonic()):
                    group = buffer.cut()
                    ready.clear()
                    room.set()
                    yield group
        finally:
            self.enable_acks = acks
            self._processors.remove(add_to_group)
