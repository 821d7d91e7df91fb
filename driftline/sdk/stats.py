"""Counters of a logger, as a frozen snapshot."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LoggerStats"]


@dataclass(frozen=True, slots=True)
class LoggerStats:
    """What a logger has done so far; a snapshot taken by ``logger.stats``.

    Every row that :meth:`log` accepted is, at any instant, exactly one of
    buffered, in flight, delivered or failed::

        rows_logged == rows_buffered + rows_in_flight + rows_delivered + rows_failed

    Rows refused for lack of room (or after close) are counted in
    ``rows_dropped`` and not in ``rows_logged``; invalid rows raise and are
    counted nowhere.

    Attributes
    ----------
    rows_logged : int
        Rows accepted by ``log()``.
    rows_delivered, messages_delivered : int
        Rows and Kafka messages acknowledged by the broker.
    rows_dropped : int
        Rows refused by ``log()``: buffer full past ``max_block_seconds``, or
        logger closed.
    rows_failed, messages_failed : int
        Rows and messages accepted but not delivered: delivery error, message
        too large, or still unsent when the logger closed.
    rows_buffered : int
        Rows accepted and not yet handed to the producer.
    rows_in_flight : int
        Rows handed to the producer and not yet acknowledged.
    last_error : str or None
        The latest delivery or send error.

    Examples
    --------
    >>> stats = LoggerStats(rows_logged=3, rows_delivered=3, messages_delivered=1)
    >>> stats.rows_delivered, stats.last_error
    (3, None)
    """

    rows_logged: int = 0
    rows_delivered: int = 0
    messages_delivered: int = 0
    rows_dropped: int = 0
    rows_failed: int = 0
    messages_failed: int = 0
    rows_buffered: int = 0
    rows_in_flight: int = 0
    last_error: str | None = None
