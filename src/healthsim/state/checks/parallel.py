"""The check's per-type work two types at a time, on two cursors of one connection.

A type of under 122,880 entities fills one or two DuckDB row groups, and a row group is
scanned by one thread: one type's statements keep one core busy. Two types at once keep
two busy. Only where the engine runs one connection's cursors at once
(:attr:`~healthsim.state._engines.base.Engine.concurrent_cursors`) and the rows are
committed in a table every cursor reads; otherwise the types are checked one after
another on the connection itself, with the same answers.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TypeVar, cast

from .._engines import Connection

__all__ = ["each_type"]

T = TypeVar("T")
C = TypeVar("C", bound=Connection)

# Types checked at once (the machines this runs on have two cores or more; more workers
# than cores only share them).
_WORKERS = 2


def each_type(con: C, sizes: Mapping[str, int], work: Callable[[C, str], T], *, parallel: bool) -> dict[str, T]:
    """``work(connection, type)`` of every type of ``sizes`` (type -> entities), in its order
    (the check's types; the summary's, on DuckDB's connection or a cursor of it).

    With ``parallel``, two workers take the types from a queue, the biggest first (so the
    last one left is a small one), each on a cursor of its own; the answers are put back
    in the order of ``sizes``. An error of one worker stops the other after its current
    type and is raised.
    """
    types = list(sizes)
    if not parallel or len(types) < 2:
        return {t: work(con, t) for t in types}
    pending: queue.SimpleQueue[str] = queue.SimpleQueue()
    for entity_type in sorted(types, key=lambda t: -sizes[t]):
        pending.put(entity_type)
    results: dict[str, T] = {}

    def run(cursor: C) -> None:
        # (each worker has its share of the engine's threads, measured cheaper than every
        # statement on every thread; the last one busy gets them all)
        with cursor.engine.share_threads(cursor):
            while True:
                try:
                    entity_type = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[entity_type] = work(cursor, entity_type)
                except BaseException:
                    _drain(pending)  # (the other worker stops after its type)
                    raise

    with ExitStack() as cursors:
        workers = [
            cast(C, cursors.enter_context(con.engine.worker_cursor(con))) for _ in range(min(_WORKERS, len(types)))
        ]
        with ThreadPoolExecutor(len(workers)) as pool:
            try:
                for future in [pool.submit(run, cursor) for cursor in workers]:
                    future.result()
            except BaseException:  # (Ctrl-C in the waiting thread: the workers end after their type)
                _drain(pending)
                raise
    return {t: results[t] for t in types}


def _drain(pending: queue.SimpleQueue[str]) -> None:
    """Take the types no worker has begun out of the queue."""
    while True:
        try:
            pending.get_nowait()
        except queue.Empty:
            return
