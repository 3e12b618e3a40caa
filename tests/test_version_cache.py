"""What is kept of a version (load_frames' tables, summaries): the same as computing it,
never stale, and never in the way."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from healthsim.state import ScenarioStore
from healthsim.state.version_cache import SUMMARY_RECIPE, VersionCache
from helpers.paths import EXAMPLES

ODD: dict[str, list[dict[str, Any]]] = {
    "things": [
        {"n": 123456789012345678901234567890, "mixed": 1, "u": 2**64 - 1, "list": [1, {"a": "b"}]},
        {"n": 1.5, "mixed": "x", "u": -1, "Name": 1, "name": 2, "entity_id": "theirs"},
    ]
}


def cache_root(store: ScenarioStore) -> Path:
    return VersionCache(store.path).root


def folders(store: ScenarioStore) -> list[str]:
    root = cache_root(store)
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*")) if root.exists() else []


def summaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("summary"))


def same(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> bool:
    return list(a) == list(b) and all(a[t].schema == b[t].schema and a[t].equals(b[t]) for t in a)


def test_cached_tables_equal_built_ones_and_follow_every_change(store: ScenarioStore) -> None:
    store.save_scenario("example", json.loads((EXAMPLES / "diabetes-cohort.json").read_text()) | ODD)
    built = store.load_frames("example")
    assert len(folders(store)) == 1  # every type of version 1, cached
    cached = store.load_frames("example")
    assert same(cached, built)
    assert same(
        store.load_frames("example", types=["things", "patients"]), {t: built[t] for t in ("things", "patients")}
    )

    store.add_entities("example", {"patients": [{"patient_id": "NEW", "gender": "other"}]})
    after = store.load_frames("example")
    assert after["patients"].num_rows == built["patients"].num_rows + 1
    assert [f.split("/")[1].split("-")[0] for f in folders(store)] == ["v2"]  # the older version's files went
    assert same(store.load_frames("example", version=1), built)  # built again: not cached any more
    assert [f.split("/")[1].split("-")[0] for f in folders(store)] == ["v2"]  # the newer one stays kept

    store.delete_scenario("example")
    assert folders(store) == []


def test_a_damaged_or_unwritable_cache_is_ignored(store: ScenarioStore) -> None:
    store.save_scenario("s", ODD)
    built = store.load_frames("s")
    (folder,) = cache_root(store).glob("*/*")
    (folder / "0.parquet").write_bytes(b"not parquet")
    assert same(store.load_frames("s"), built)
    (folder / "types.json").write_text("{")
    assert same(store.load_frames("s"), built)

    store.save_scenario("t", ODD)
    root = cache_root(store)
    for item in root.iterdir():
        if item.is_dir():
            for sub in item.iterdir():
                for f in sub.iterdir():
                    f.unlink()
                sub.rmdir()
            item.rmdir()
    root.rmdir()
    root.write_text("a file where the cache folder would be")
    assert same(store.load_frames("t"), store.load_frames("t"))
    assert root.read_text() == "a file where the cache folder would be"


def test_summaries_are_kept_per_version_and_equal_computed_ones(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ODD | {"patients": [{"gender": "female"}, {"gender": "female"}]})
    first = store.summarize_scenario("s")
    (folder,) = cache_root(store).glob("*/*")
    assert summaries(folder) == [f"summary-2-12288-r{SUMMARY_RECIPE}.json"]
    assert store.summarize_scenario("s") == first
    assert (
        json.loads((folder / f"summary-2-12288-r{SUMMARY_RECIPE}.json").read_text())["types"]["things"]["fields"]["n"][
            "min"
        ]
        == 1.5
    )
    assert store.summarize_scenario("s", samples=1) != first  # another key: computed, and kept beside
    store.report_scenario("s", tmp_path / "r.html")
    assert summaries(folder) == [
        f"summary-1-12288-r{SUMMARY_RECIPE}.json",
        f"summary-2-12288-r{SUMMARY_RECIPE}.json",
        f"summary-2-524288-r{SUMMARY_RECIPE}.json",
    ]
    (folder / f"summary-2-12288-r{SUMMARY_RECIPE}.json").write_text("[1, 2")  # damaged: computed again
    assert store.summarize_scenario("s") == first
    store.update_scenario("s", add_tags=["checked"])  # a new version: a new summary
    assert store.summarize_scenario("s")["tags"] == ["checked"]
    assert [f.split("/")[1].split("-")[0] for f in folders(store)] == ["v2"]


def test_summaries_kept_by_an_earlier_release_are_not_read(store: ScenarioStore) -> None:
    store.save_scenario("s", {"things": [{"n": 2**53 + 1}, {"n": 9007199254740992.0}]})
    right = store.summarize_scenario("s")
    (folder,) = cache_root(store).glob("*/*")
    kept = folder / f"summary-2-12288-r{SUMMARY_RECIPE}.json"
    stale = json.loads(kept.read_text())
    stale["types"]["things"]["fields"]["n"]["min"] = 2**53 + 1  # what the earlier recipe said
    kept.unlink()
    (folder / "summary-2-12288.json").write_text(json.dumps(stale))  # the earlier release's name
    assert store.summarize_scenario("s") == right and right["types"]["things"]["fields"]["n"]["min"] == 2.0**53


def test_a_parquet_export_is_kept_for_load_frames(store: ScenarioStore, tmp_path: Path) -> None:
    store.save_scenario("s", ODD | {"patients": [{"patient_id": "A"}]})
    store.export_scenario("s", tmp_path / "some", format="parquet", types=["patients"])
    assert not list(cache_root(store).glob("*/*/*.parquet"))  # only a whole version is kept
    folder = store.export_scenario("s", tmp_path / "all", format="parquet")
    (kept,) = cache_root(store).glob("*/*")
    kept_files = sorted(p.name for p in kept.iterdir() if p.name != "keys.json")  # (the save's, on DuckDB)
    assert kept_files == ["0.parquet", "1.parquet", "types.json"]
    frames = store.load_frames("s")  # read from what the export kept
    assert all(frames[t].equals(pq.read_table(folder / f"{t}.parquet")) for t in ("things", "patients"))
    (folder / "things.parquet").write_bytes(b"changed by the user")  # the export is theirs, the copy ours
    assert same(store.load_frames("s"), frames)


def test_a_killed_build_is_cleaned_up_later(store: ScenarioStore) -> None:
    import os

    store.save_scenario("s", ODD)
    left = cache_root(store) / ".build-left-by-a-killed-process"
    left.mkdir(parents=True)
    (left / "0.parquet").write_bytes(b"half")
    os.utime(left, (0, 0))
    recent = cache_root(store) / ".build-of-another-process"
    recent.mkdir()
    store.load_frames("s")
    assert not left.exists() and recent.exists()


def test_a_save_keeps_its_key_totals_and_damaged_ones_are_not_read(tmp_path: Path) -> None:
    store = ScenarioStore(tmp_path / "keys.duckdb")
    store.save_scenario("k", {"a": [{"x": 1, "y": None}, {"x": 2}], "b": [{}]})
    with store.open_scenario("k") as reader:
        made = (reader.header.scenario_id, reader.version, reader.header.updated_at)
    cache = VersionCache(store.path)
    assert cache.key_totals(*made) == {"a": (2, 3, ["x", "y"]), "b": (1, 0, [])}
    (folder,) = cache_root(store).glob("*/*")
    right = store.summarize_scenario("k")
    for damaged in ("[1, 2", '{"a": [2, 3]}', '{"a": [2, -1, []], "b": "x"}', '{"a": [2, 3, [1]]}', "[]"):
        (folder / "keys.json").write_text(damaged)
        assert cache.key_totals(*made) == {}
    for kept in list(folder.iterdir()):
        kept.unlink()
    assert store.summarize_scenario("k") == right  # (read twice, without the totals)
    store.update_scenario("k", add_tags=["t"])  # a new version: the save's totals are not its own
    with store.open_scenario("k") as reader:
        assert cache.key_totals(reader.header.scenario_id, reader.version, reader.header.updated_at) == {}


def test_what_was_kept_of_purged_versions_goes_with_them(store: ScenarioStore) -> None:
    store.save_scenario("p", ODD)
    store.load_frames("p")  # kept for version 1
    store.add_entities("p", {"things": [{"n": 3}]})  # version 2: nothing kept of it yet
    (kept,) = folders(store)
    assert kept.split("/")[1].startswith("v1-")
    assert store.purge_history("p", keep_versions=1)["versions_removed"] == 1
    assert folders(store) == []
    store.load_frames("p")  # kept for version 2, which stays
    assert store.purge_history(keep_versions=1)["versions_removed"] == 0
    assert [f.split("/")[1].split("-")[0] for f in folders(store)] == ["v2"]


def kept_checks(store: ScenarioStore) -> list[Path]:
    root = cache_root(store)
    return sorted(root.glob("*/*/check-*.json")) if root.exists() else []


def test_a_check_is_kept_per_version_and_day_and_summaries_share_it(store: ScenarioStore) -> None:
    store.save_scenario("s", {"patients": [{"mrn": "M1", "birth_date": "unknown"}]})
    first = store.check_scenario("s")
    (kept,) = kept_checks(store)
    assert kept.name.startswith(f"check-{_dt.datetime.now(_dt.UTC).date().isoformat()}-r")
    assert json.loads(kept.read_text()) == first
    # Read back, not computed again: a kept answer changed by hand is what comes back...
    marked = first | {"problems": [dict(first["problems"][0], count=999)]}
    kept.write_text(json.dumps(marked))
    assert store.check_scenario("s")["problems"][0]["count"] == 999
    # ...and what the version's summary shows (its check counts are the kept check's).
    assert "999" in json.dumps(store.summarize_scenario("s")["check"])
    # Another day's check is not read: made again for today.
    kept.rename(kept.with_name("check-2000-01-01-r1.json"))
    assert store.check_scenario("s") == first
    assert [p.name for p in kept_checks(store)] == [kept.name]  # (the other day's went)
    # A new version is checked anew.
    store.add_entities("s", {"lab_results": [{"patient_mrn": "NOBODY"}]})
    rules = {p["rule"] for p in store.check_scenario("s")["problems"]}
    assert rules == {"not_a_date", "unresolved_reference"}
    assert len(kept_checks(store)) == 1


def test_a_summary_keeps_the_check_it_made(store: ScenarioStore) -> None:
    store.save_scenario("s", {"patients": [{"mrn": "M1", "ssn": "123-45-6789"}]})
    summary = store.summarize_scenario("s")
    (kept,) = kept_checks(store)
    assert store.check_scenario("s") == json.loads(kept.read_text())
    assert summary["check"]["warnings"] == 1
