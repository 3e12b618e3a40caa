"""Killing a process in the middle of its work, for the crash tests."""

from __future__ import annotations

import signal
import subprocess
import time


def kill_while_working(proc: subprocess.Popen[str], ready: str, delay: float) -> None:
    """Wait until ``proc`` prints the line ``ready`` (it has begun), let it work ``delay``
    seconds, then kill it with SIGKILL (no clean-up of any kind runs) and reap it."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == ready
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
