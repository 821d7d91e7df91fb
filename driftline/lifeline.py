"""Child processes that die with the process that started them, also on SIGKILL.

A parent that exits normally stops its children in ``finally`` blocks; a parent
killed by SIGKILL (the OOM killer, ``kill -9``, a test runner's timeout) runs no
code at all, and its children live on as orphans. On Linux the kernel can deliver a
signal to a child when its parent dies: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set in
the child between ``fork`` and ``exec``. :func:`die_with_parent` returns the
``preexec_fn`` for :class:`subprocess.Popen` that does that.

Caveats
-------
- The "parent" of ``PR_SET_PDEATHSIG`` is the *thread* that forked the child, not the
  whole process: when that thread exits, the child is killed even though the process
  lives on. Start long-lived children from a long-lived thread (the main thread, as
  :class:`~driftline.broker.EmbeddedBroker`, ``driftline worker`` and ``driftline
  demo`` do), never from a short-lived worker thread such as
  :func:`asyncio.to_thread` or a thread pool's.
- The setting survives ``exec`` of an ordinary binary but is cleared for a set-user-ID
  or set-group-ID one, and it is not inherited by the child's own children: a child
  that starts processes must arm them itself.
- Elsewhere than on Linux there is no such call: :func:`die_with_parent` then returns
  a ``preexec_fn`` that does nothing, and a parent killed by SIGKILL leaves its
  children running as before.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
ORPHANED_EXIT = 1  # a child whose parent is already gone exits with this, before exec


@functools.cache
def _prctl() -> Any | None:
    """libc's ``prctl``, resolved once, in the parent (never between fork and exec)."""
    if not sys.platform.startswith("linux"):
        # macOS, the BSDs and Windows have no parent-death signal; a kqueue
        # NOTE_EXIT watcher in the child would need our code in every child, and
        # tansu is a foreign binary. Documented as a no-op instead.
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).prctl  # glibc or musl, already loaded
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has prctl
        return None
    function.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    function.restype = ctypes.c_int
    return function


def _nothing() -> None:
    """The ``preexec_fn`` where the platform has no parent-death signal."""


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes a child get ``sig`` when its parent dies.

    Between ``fork`` and ``exec`` the child asks the kernel for ``sig`` at its
    parent's death (``prctl(PR_SET_PDEATHSIG)``), then checks that its parent is
    still ``parent``: if the parent died before the ``prctl`` call, the child was
    already handed to init and would never get the signal, so it exits at once
    (status 1) instead of starting. What the child runs between ``fork`` and
    ``exec`` is one ctypes call and two ``os`` functions, all looked up in the parent
    beforehand: the little Python work that the warning about ``preexec_fn`` in
    threaded programs (a lock held by another thread at ``fork``) is about.

    Parameters
    ----------
    sig : int, default ``signal.SIGKILL``
        Signal the child gets when the forking thread of its parent exits. SIGKILL
        cannot be caught, so the child cannot outlive its parent by mistake.
    parent : int, optional
        Pid the child must have as its parent when the signal is armed; the calling
        process by default.

    Returns
    -------
    callable
        Pass it as ``preexec_fn`` to :class:`subprocess.Popen` (alongside
        ``start_new_session`` if wanted). On platforms other than Linux it does
        nothing.

    Examples
    --------
    >>> import subprocess, sys
    >>> code = "import os; print(os.getppid() > 1)"
    >>> subprocess.run(
    ...     [sys.executable, "-c", code], preexec_fn=die_with_parent(), capture_output=True
    ... ).stdout
    b'True\\n'

    A child whose parent is not the one expected never runs its program:

    >>> import os
    >>> impostor = die_with_parent(parent=os.getppid())  # the child's grandparent
    >>> child = subprocess.run([sys.executable, "-c", "print(1)"], preexec_fn=impostor)
    >>> child.returncode
    1
    """
    prctl = _prctl()
    if prctl is None:
        return _nothing
    expected = os.getpid() if parent is None else parent
    signum = int(sig)
    getppid, exit_now = os.getppid, os._exit

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            # Only a bad signal number fails; Popen reports the error to the parent.
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if getppid() != expected:  # the parent died before the prctl: nobody would kill us
            exit_now(ORPHANED_EXIT)

    return arm
