"""Killing or interrupting a process in the middle of its work, for the crash and Ctrl-C tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator


def kill_while_working(proc: subprocess.Popen[str], ready: str, delay: float) -> None:
    """Wait until ``proc`` prints the line ``ready`` (it has begun), let it work ``delay``
    seconds, then kill it with SIGKILL (no clean-up of any kind runs) and reap it."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == ready
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def kill_after(proc: subprocess.Popen[str], ready: str, done: str) -> float:
    """Wait until ``proc`` prints ``ready`` and then ``done``, kill it with SIGKILL at once and reap it.

    Returns:
        The seconds from ``ready`` to ``done``: how long the work took, for placing later kills inside it.
    """
    assert proc.stdout is not None and proc.stdout.readline().strip() == ready
    began = time.perf_counter()
    assert proc.stdout.readline().strip() == done
    took = time.perf_counter() - began
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return took


@contextlib.contextmanager
def ctrl_c_as_at_a_terminal() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process, and is at its default in the processes it
    starts meanwhile, whatever the run was started with: a run started in the background by a
    shell without job control (``cmd &`` in a script) inherits SIGINT ignored, Python keeps it
    ignored, and so would every program the tests start (an ignored signal survives exec).
    Three Ctrl-C tests failed so in a clean clone's ``.ci/run`` started that way."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
