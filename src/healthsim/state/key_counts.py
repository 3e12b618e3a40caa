"""How many top-level keys a version's entities have, carried from version to version.

A save counts them while it encodes the entities (:class:`.bulk.ChunkEncoder`) and keeps
the count beside the file (:meth:`.VersionCache.keep_key_totals`); a first summary then
reads every entity once instead of twice (see :mod:`.summaries`). An edit that adds or
removes entities makes a new version: its count is the last version's, plus the keys of
the rows it wrote, minus the keys of the rows it archived — a parse of the rows the edit
touched only, never of the whole scenario.
"""

from __future__ import annotations

import datetime as _dt
import uuid

from ._engines import AnalyticsConnection
from .history import BIRTHS, ENTITY_HISTORY, version_counts
from .version_cache import KeyTotal, VersionCache

__all__ = ["edited_key_totals"]


def edited_key_totals(
    con: AnalyticsConnection,
    cache: VersionCache,
    scenario_id: uuid.UUID,
    last: tuple[int, _dt.datetime],
    version: int,
    start: int,
) -> dict[str, KeyTotal]:
    """The key count of ``version``, made by an edit of version ``last`` (its number and
    instant), inside the edit's transaction once its rows have changed and before the
    version is recorded (retention may drop the rows it archived).

    Args:
        start: the first id of the rows the edit inserted; the rows it replaced in place
            are those it already recorded as written by ``version`` (ranges of one id).
            Their texts were written by orjson from a dict (the caller checks), so each
            key is in them once.

    Returns:
        Per type, as :meth:`.VersionCache.key_totals`; a type the last version's count
        does not describe is left out (and all of them when there is none).
    """
    before = cache.key_totals(scenario_id, *last)
    if not before:
        return {}
    change: dict[str, list[int]] = {}  # type -> [entities, keys] written minus archived
    for entity_type, n, keys in con.execute(
        f"SELECT entity_type, count(*), sum(len(json_keys(entity_data)))::BIGINT FROM {ENTITY_HISTORY} "
        "WHERE scenario_id = $sid AND to_version = $version GROUP BY ALL",
        {"sid": scenario_id, "version": version},
    ).fetchall():
        change[entity_type] = [-n, -keys]
    # The rows written, parsed once: their key lists, each with how many rows have it (a list
    # may come twice, once per part). The two parts are apart: as one filter with OR, DuckDB
    # read the text of every row of the scenario (~90 ms of an add of 100 to 1,000,000).
    shapes: dict[str, dict[str, None]] = {}
    written = "SELECT entity_type, json_keys(entity_data), count(*) FROM scenario_entities WHERE scenario_id = $sid"
    births = f"SELECT first_id FROM {BIRTHS} WHERE scenario_id = $sid AND version = $version"
    inserted = f"{written} AND id >= $start GROUP BY ALL"
    replaced = f"{written} AND id < $start AND id IN ({births}) GROUP BY ALL"
    for entity_type, keys, n in con.execute(
        f"{inserted} UNION ALL {replaced}", {"sid": scenario_id, "start": start, "version": version}
    ).fetchall():
        counted = change.setdefault(entity_type, [0, 0])
        counted[0] += n
        counted[1] += n * len(keys)
        shapes.setdefault(entity_type, {}).update(dict.fromkeys(keys))
    had = version_counts(con, scenario_id, last[0]) or {}
    after: dict[str, KeyTotal] = {}
    for entity_type in sorted(before.keys() | change.keys()):
        if entity_type in before:
            count, total, noted = before[entity_type]
        elif not had.get(entity_type):
            count, total, noted = 0, 0, []  # a type new in this version
        else:  # its entities of the last version were not counted
            continue
        n, keys = change.get(entity_type, (0, 0))
        seen = list(dict.fromkeys([*noted, *shapes.get(entity_type, {})]))
        after[entity_type] = (count + n, total + keys, seen)
    return after
