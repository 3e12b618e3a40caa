"""Output cut by a closed pipe (``healthsim summary NAME | head``): end quietly, exit 141.

Python ignores SIGPIPE, so a write into a pipe whose reader has gone raises
``BrokenPipeError``: from ``sys.stdout.write`` (a traceback, or the CLI's "unexpected
error" line), from Rich (which exits 1 on its own), from click (exit 1), or at the flush
at exit ("Exception ignored … BrokenPipeError", exit 120). Every one of these paths ends
here instead: the stream is pointed at ``/dev/null`` (so that nothing buffered fails
again at exit) and the program exits 141, the status a shell shows for a program killed
by SIGPIPE (``seq 1 1000000 | head -1``). Exiting, rather than dying by the signal, lets
the database close cleanly; every command prints after its transaction, so work that was
done stays done (docs/decisions.md, "Command line").
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from collections.abc import Iterator
from typing import IO, Any, BinaryIO, NoReturn, cast

from rich.console import Console

__all__ = ["OUTPUT_CUT", "PipeConsole", "copy_out", "output_cut", "quiet_when_cut", "write_out"]

OUTPUT_CUT = 141  # 128 + SIGPIPE
# Characters per write: at most 8 KiB of UTF-8, what the stream's buffer holds. A larger
# write goes to the pipe directly, and CPython's buffered writer reports the bytes the
# pipe took before its reader left as written, dropping the rest without an error: the
# last big write of a program (`load --json | head -1`) ended with exit 0. Writes that
# pass through the buffer fail as they should.
BUFFER_BYTES = 8192
CHUNK = BUFFER_BYTES // 4  # (a character is at most 4 bytes of UTF-8)


def _silence(stream: IO[str] | None) -> None:
    """Point ``stream``'s file descriptor at /dev/null; a stream without one (a test
    runner's buffer) is left alone."""
    if stream is None:
        return
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def output_cut(stream: IO[str] | None = None) -> NoReturn:
    """End the program because its output's reader has gone: quietly, exit 141."""
    _silence(stream if stream is not None else sys.stdout)
    raise SystemExit(OUTPUT_CUT)


def write_out(text: str, stream: IO[str] | None = None) -> None:
    """Write ``text`` to ``stream`` (default: the current ``sys.stdout``) in pieces that a
    closed pipe cannot swallow unnoticed (see ``CHUNK``)."""
    target = stream if stream is not None else sys.stdout
    for start in range(0, len(text), CHUNK):
        target.write(text[start : start + CHUNK])


def copy_out(source: BinaryIO) -> None:
    """Copy the bytes of ``source`` to standard output in pieces of at most 8 KiB, the
    stream's buffer (see ``CHUNK``: a larger piece cut by a closed pipe is reported as
    written), then flush."""
    sys.stdout.flush()
    shutil.copyfileobj(source, sys.stdout.buffer, BUFFER_BYTES)
    sys.stdout.buffer.flush()


class _Chunked:
    """A text stream whose writes go through :func:`write_out`; all else is the stream's."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        write_out(text, self.stream)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class PipeConsole(Console):
    """A Rich console that ends as :func:`output_cut` when its stream's reader has gone
    (Rich's own reaction is exit 1, the status of a failure), and that writes in pieces
    (Rich writes a whole table at once)."""

    @property
    def file(self) -> IO[str]:
        stream = super().file
        return stream if isinstance(stream, _Chunked) else cast(IO[str], _Chunked(stream))

    @file.setter
    def file(self, new_file: IO[str]) -> None:
        self._file = new_file

    def on_broken_pipe(self) -> None:
        self.quiet = True
        output_cut(cast(_Chunked, self.file).stream)


@contextlib.contextmanager
def quiet_when_cut() -> Iterator[None]:
    """Around the whole program: the closed pipes no command saw (click's help and usage,
    click's own catch of EPIPE, output still buffered at exit) end as :func:`output_cut`."""
    stdout, stderr = sys.stdout, sys.stderr
    try:
        yield
    except BrokenPipeError:
        output_cut()
    except SystemExit:
        if getattr(sys.stdout, "wrapped", None) is stdout:  # click met EPIPE, wrapped the streams to exit 1
            sys.stdout, sys.stderr = stdout, stderr
            output_cut()
        _flush_or_cut()
        raise
    _flush_or_cut()


def _flush_or_cut() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        output_cut()
