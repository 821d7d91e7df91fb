"""The Kafka transport of the worker: Faust's aiokafka driver with a short fetch wait.

Faust builds its consumer with ``fetch_max_wait_ms=1500`` and no setting to change
it. A fetch that finds nothing new waits that long on the broker for data, and a
broker that does not end the wait as soon as data arrives (tansu, the embedded
broker, answers when the wait is over) then adds up to 1.5 s to the time from an
event being produced to the worker seeing it: to every window close and every alert.
:class:`PromptTransport` keeps everything of Faust's driver but that wait, which it
sets to :data:`FETCH_MAX_WAIT_MS`.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

__all__ = ["FETCH_MAX_WAIT_MS", "PromptTransport", "WorkerApp"]

#: Longest a fetch waits on the broker for new data, in milliseconds.
FETCH_MAX_WAIT_MS = 100


class _PromptConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _PromptConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)


class PromptTransport(driver.Transport):
    """Faust's aiokafka transport whose consumer waits at most 100 ms per empty fetch.

    Examples
    --------
    >>> PromptTransport.Consumer.__name__
    '_PromptConsumer'
    """

    Consumer = _PromptConsumer


class WorkerApp(faust.App):
    """A Faust app that consumes through :class:`PromptTransport`.

    Examples
    --------
    >>> app = WorkerApp("doc-prompt", broker="kafka://127.0.0.1:9092")
    >>> type(app.transport).__name__
    'PromptTransport'
    """

    def _new_transport(self) -> Any:
        return PromptTransport(self.conf.broker_consumer, self)
