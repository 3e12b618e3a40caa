"""Progress bars for the command-line programs: Rich, on stderr, only on a terminal.

From its first frame a bar says what it works on and how much there is: an import or a
save is given the file's size (a folder's: its files' sizes) before the first byte is
read, so it shows ``0.0/12.3 MB``; where the total comes only with the library's first
report (an export counts its entities first), it says ``starting…``; a spinner turns
until the work is done. The bar used to show ``0/?`` and ``-:--:--`` for its first second.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from ._text import safe_text

__all__ = ["new_progress", "progress_bar", "size_of"]


class _Label(ProgressColumn):
    """The label as literal text (a file name may hold ``[red]`` or ``{}``), cut with ``…``
    rather than wrapped when the terminal is narrow."""

    def __init__(self, label: str) -> None:
        super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis", max_width=40))
        self.label = safe_text(label)

    def render(self, task: Task) -> RenderableType:
        return Text(self.label, no_wrap=True, overflow="ellipsis")


class _Amount(ProgressColumn):
    """Done of total (bytes or items); ``starting…`` until the total is known."""

    def __init__(self, unit_bytes: bool) -> None:
        super().__init__()
        self.inner: ProgressColumn = DownloadColumn() if unit_bytes else MofNCompleteColumn()

    def render(self, task: Task) -> RenderableType:
        if task.total is None:
            return Text("starting…", style="progress.elapsed")
        return self.inner.render(task)


class _Remaining(TimeRemainingColumn):
    """The time left once there is a rate to estimate it from; nothing before (not ``-:--:--``)."""

    def render(self, task: Task) -> Text:
        if task.total is None or task.time_remaining is None:
            return Text("")
        return super().render(task)


def size_of(path: str | os.PathLike[str]) -> int | None:
    """Bytes to read from ``path``: a file's size, a folder's files' sizes (not below
    it), or None when it cannot be told (then the bar waits for the library's total)."""
    try:
        target = Path(path).expanduser()
        if target.is_dir():
            return sum(child.stat().st_size for child in target.iterdir() if child.is_file())
        return target.stat().st_size
    except (OSError, ValueError):
        return None


def new_progress(
    label: str, *, unit_bytes: bool, total: int | None = None, console: Console | None = None
) -> tuple[Progress, TaskID]:
    """The Rich progress display of :func:`progress_bar` and its one task (apart, so that
    a test can render a frame)."""
    columns = (SpinnerColumn(), _Label(label), BarColumn(), _Amount(unit_bytes), _Remaining())
    progress = Progress(*columns, console=console or Console(stderr=True), transient=True)
    return progress, progress.add_task(label, total=total)


@contextmanager
def progress_bar(
    label: str, unit_bytes: bool = False, *, total: int | None = None, console: Console | None = None
) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich progress bar on stderr, only when stderr is a terminal (or on ``console``).

    Yields ``update(done, total)`` (bytes when ``unit_bytes``, else items), or ``None``
    when there is no terminal to draw on. ``total``, when known before the work starts
    (a file's size), is shown from the first frame; the library's reports replace it.
    """
    if console is None and not sys.stderr.isatty():
        yield None
        return
    progress, task = new_progress(label, unit_bytes=unit_bytes, total=total, console=console)
    with progress:

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
