"""No orphans: what driftline starts dies with the process that started it, even on SIGKILL.

Each test starts a real driftline process, records the whole process tree under it
from ``/proc`` while it runs, SIGKILLs it (no ``finally`` block, no signal handler
runs) and polls until every recorded descendant is gone. A process counts as gone
when its pid no longer exists, belongs to a newer process (start time differs), or
is a zombie (dead, waiting for init to reap it). Whatever is left is SIGKILLed at
teardown, so a failing test does not leave orphans behind either.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from driftline.broker import free_port, wait_for_port
from driftline.lifeline import die_with_parent
from driftline.store.remote import worker_health

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent-death signals and /proc are Linux only"
)

Popen = subprocess.Popen[bytes]
GONE_WITHIN = 10.0  # seconds the kernel gets to deliver the signals and tear processes down


@dataclass(frozen=True)
class Proc:
    """One process, identified by pid and start time (a reused pid is another process)."""

    pid: int
    start: int
    command: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State letter, parent pid and start time of ``pid``, or ``None`` when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(root: int) -> list[Proc]:
    """Every live process under ``root`` (children, their children, ...), from /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] not in "ZX":
            children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found: list[Proc] = []
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            found.append(Proc(pid, start, _command(pid)))
            todo.append(pid)
    return found


def alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[2] == proc.start and stat[0] not in "ZX"


def wait_until_gone(procs: list[Proc], timeout: float = GONE_WITHIN) -> list[Proc]:
    """Poll until none of ``procs`` is alive or ``timeout`` passes; return those still alive."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in procs if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_for(check: Callable[[], bool], timeout: float, what: str, process: Popen) -> None:
    """Poll ``check`` until true; fail early when ``process`` exits, late at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def read_line(stream: IO[bytes], timeout: float, what: str) -> str:
    """The next line of a child's stdout, waiting at most ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        pytest.fail(f"timed out after {timeout}s waiting for {what}")
    return stream.readline().decode()


@pytest.fixture
def reaper() -> Iterator[list[Proc]]:
    """Processes a test recorded; any still alive at teardown are SIGKILLed."""
    recorded: list[Proc] = []
    yield recorded
    # A test that failed before its kill leaves a live tree: take all of it.
    leftovers = [d for p in recorded if alive(p) for d in [p, *descendants(p.pid)]]
    for proc in [*recorded, *leftovers]:
        if alive(proc):
            os.kill(proc.pid, signal.SIGKILL)


def start(command: list[str], reaper: list[Proc], **kwargs: Any) -> Popen:
    """Start ``command`` in a session of its own, recorded for the reaper."""
    # die_with_parent: the process under test must not outlive the test run either.
    process = subprocess.Popen(
        command, start_new_session=True, preexec_fn=die_with_parent(), **kwargs
    )
    stat = _stat(process.pid)
    assert stat is not None
    reaper.append(Proc(process.pid, stat[2], " ".join(command)))
    return process


def driftline_command(*args: str) -> list[str]:
    """``driftline ARGS`` as a user runs it: the console script next to this Python."""
    script = Path(sys.executable).with_name("driftline")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "driftline.cli", *args]


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no Kafka or ClickHouse configured: all embedded."""
    env = {
        **os.environ,
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
    return env


def sigkill_and_expect_no_orphans(process: Popen, tree: list[Proc], reaper: list[Proc]) -> None:
    """SIGKILL ``process``; every process of ``tree`` must be gone soon after."""
    reaper.extend(tree)
    assert process.poll() is None, "the process under test exited before the kill"
    assert all(alive(p) for p in tree), tree
    process.send_signal(signal.SIGKILL)
    process.wait(GONE_WITHIN)
    left = wait_until_gone(tree)
    assert not left, f"orphans {GONE_WITHIN}s after the parent's SIGKILL: {left}"


def is_tansu(proc: Proc) -> bool:
    return "tansu" in proc.command.split(" ")[0] and " broker " in f"{proc.command} "


@pytest.mark.e2e
def test_embedded_broker_dies_with_a_sigkilled_parent(reaper: list[Proc]) -> None:
    code = (
        "import time\n"
        "from driftline.broker import EmbeddedBroker\n"
        "broker = EmbeddedBroker().start()\n"
        "print(broker.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = start([sys.executable, "-c", code], reaper, stdout=subprocess.PIPE)
    assert parent.stdout is not None
    pid = int(read_line(parent.stdout, 30, "the broker's pid"))
    tree = descendants(parent.pid)
    assert [p.pid for p in tree] == [pid] and is_tansu(tree[0]), tree
    sigkill_and_expect_no_orphans(parent, tree, reaper)


@pytest.mark.e2e
def test_driftline_broker_cli_leaves_no_broker_when_sigkilled(
    reaper: list[Proc], tmp_path: Path
) -> None:
    port = free_port()
    cli = start(
        driftline_command("broker", "--port", str(port)),
        reaper,
        stdout=subprocess.PIPE,
        env=embedded_env(tmp_path),
    )
    assert cli.stdout is not None
    line = read_line(cli.stdout, 30, "the broker CLI's first line")
    assert f"listening on 127.0.0.1:{port}" in line, line
    wait_for_port("127.0.0.1", port, 10)
    tree = descendants(cli.pid)
    assert len(tree) == 1 and is_tansu(tree[0]), tree
    sigkill_and_expect_no_orphans(cli, tree, reaper)


@pytest.mark.e2e
def test_driftline_worker_leaves_no_embedded_broker_when_sigkilled(
    reaper: list[Proc], tmp_path: Path
) -> None:
    port = free_port()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = start(
            driftline_command("worker"),
            reaper,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=embedded_env(tmp_path, DRIFTLINE_WORKER_WEB_PORT=str(port)),
        )
    wait_for(lambda: worker_health(port, timeout=1) is not None, 45, "the worker's /health", worker)
    tree = descendants(worker.pid)
    assert any(is_tansu(p) for p in tree), tree  # it started its own broker
    sigkill_and_expect_no_orphans(worker, tree, reaper)


@pytest.mark.e2e
def test_driftline_demo_leaves_no_descendant_when_sigkilled(
    reaper: list[Proc], tmp_path: Path
) -> None:
    out = tmp_path / "demo.out"
    with open(out, "wb") as log:
        demo = start(
            driftline_command("demo", "--duration", "40", "--data-dir", str(tmp_path / "data")),
            reaper,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=embedded_env(tmp_path),
        )
    # The retrainer line comes after the broker, the worker (its /health answers) and
    # the first model: every child the demo starts is running then.
    wait_for(lambda: "  retrainer   pid" in out.read_text(), 150, "the demo's retrainer", demo)
    tree = descendants(demo.pid)
    commands = [p.command for p in tree]
    assert any(is_tansu(p) for p in tree), commands
    assert any("driftline.cli worker" in c for c in commands), commands
    assert any("driftline.cli retrainer" in c for c in commands), commands
    sigkill_and_expect_no_orphans(demo, tree, reaper)


def test_a_child_whose_parent_is_not_the_expected_one_never_runs(tmp_path: Path) -> None:
    """The race check: a parent that died before the prctl call means no program at all."""
    marker = tmp_path / "ran"
    child = subprocess.run(
        [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
        preexec_fn=die_with_parent(parent=os.getppid()),
        timeout=30,
    )
    assert child.returncode == 1 and not marker.exists()
    subprocess.run(
        [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
        preexec_fn=die_with_parent(),
        timeout=30,
        check=True,
    )
    assert marker.exists()
