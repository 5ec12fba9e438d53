"""The silver tables in key-range segments (jobs/cdc/layout.py): a night rewrites the segments its changes fall
into and links the others' files, and the tables are exactly those of merges that rewrite everything."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from jobs.cdc import layout, settings
from jobs.cdc import merge as cdc_merge
from jobs.common import storage
from jobs.common.paths import Lake
from tests.cdc_events import TABLE_SETTINGS, account, pg, pg_key
from tests.spark.test_cdc_merge import land

DAY = dt.date(2025, 11, 20)
SEGMENTED = settings.parse({**TABLE_SETTINGS, "segment_rows": 10})  # 60 keys: about six segments
WHOLE = settings.parse(TABLE_SETTINGS)  # one segment: every night rewrites the table


def nights() -> list[tuple[list[str | None], list[str | None] | None]]:
    """Four nights of changes to `accounts`, with the Kafka keys of their tombstones."""
    first = [pg("c", 100 + i, account(i)) for i in range(1, 61)]
    second = [pg("u", 300, account(3, "pro"), {"id": 3}), pg("u", 301, account(5, "gold"), {"id": 5}),
              pg("c", 302, account(100))]  # two keys at the low end, one past the highest key
    third = [pg("u", 250, account(4, "pro"), {"id": 4}),  # late: older than the second night's changes
             pg("d", 400, None, {"id": 5}), None,  # a delete and its tombstone
             pg("u", 401, account(3, "team"), {"id": 3})]
    fourth = [pg("u", 500, account(60, "pro", extra={"region": "eu"}), {"id": 60})]  # a column appears
    return [(first, None), (second, None), (third, [None, None, pg_key(5), None]), (fourth, None)]


def merge_nights(spark, lake: Lake, cdc: settings.Settings, stop: int, start: int = 0) -> list[dict]:
    """Land and merge nights `start` to `stop - 1`, each on its own day."""
    reports = []
    for offset, (values, keys) in list(enumerate(nights()))[start:stop]:
        day = DAY + dt.timedelta(days=offset)
        land(lake, values, keys=keys, day=day)
        reports.append(cdc_merge.run(spark, lake, day, cdc))
        assert reports[-1]["status"] == "published", reports[-1]
    return reports


def rows(spark, lake: Lake, kind: str) -> list[tuple]:
    frame = spark.read.parquet(lake.silver("accounts", kind))
    return sorted((tuple(r) for r in frame.select(sorted(frame.columns)).collect()), key=repr)


def manifest(lake: Lake, kind: str = "history") -> dict:
    return json.loads(storage.read_bytes(Lake.manifest(lake.silver("accounts", kind))))


def inodes(lake: Lake, kind: str) -> dict[str, int]:
    directory = Path(storage.local_path(lake.silver("accounts", kind)) or "")
    return {p.name: p.stat().st_ino for p in directory.glob("*.parquet")}


def assert_segments_hold_their_key_ranges(spark, lake: Lake) -> None:
    segments = manifest(lake)["layout"]["segments"]
    segment_of = layout.Layout.of(manifest(lake)).segment_of(SEGMENTED.table("accounts"))
    for kind in layout.KINDS:
        directory = lake.silver("accounts", kind)
        for index, segment in enumerate(segments):
            for name in segment["files"][kind]:
                owners = {r[0] for r in spark.read.parquet(f"{directory}/{name}").select(segment_of).distinct()
                          .collect()}
                assert owners == {index}, (kind, name, owners)
        assert sum(s["rows"][kind] for s in segments) == spark.read.parquet(directory).count()


def test_nights_rewrite_the_segments_they_changed_and_equal_whole_rewrites(spark, tmp_path):
    segmented, whole = Lake((tmp_path / "segmented").as_uri()), Lake((tmp_path / "whole").as_uri())
    merge_nights(spark, segmented, SEGMENTED, 1)
    first = manifest(segmented)["layout"]["segments"]
    assert len(first) >= 4 and first[0]["lo"] is None and manifest(segmented)["rewrite"]["full"] == "the first merge"
    assert_segments_hold_their_key_ranges(spark, segmented)
    before = {kind: inodes(segmented, kind) for kind in layout.KINDS}

    second = merge_nights(spark, segmented, SEGMENTED, 2, start=1)[-1]["tables"]["accounts"]
    rewrite = second["rewrite"]  # ids 3 and 5 fall into the first segment, 100 into the last
    assert rewrite["full"] is None and rewrite["segments"] - rewrite["rewritten"] == len(first) - 2, rewrite
    after = {kind: inodes(segmented, kind) for kind in layout.KINDS}
    kept = set(before["history"]) & set(after["history"])
    assert kept and all(before["history"][n] == after["history"][n] for n in kept)  # the same files, linked
    assert rewrite["linked_files"] == len(kept) + len(set(before["current"]) & set(after["current"]))
    assert rewrite["validated_rows"]["history"] < second["counts"]["history_rows"]  # the gates saw what changed

    third = merge_nights(spark, segmented, SEGMENTED, 3, start=2)[-1]  # a late update, a delete, its tombstone
    assert third["tables"]["accounts"]["rewrite"]["full"] is None
    assert third["tables"]["accounts"]["counts"]["events"]["d:applied"] == 1
    assert "quarantined:tombstone_without_delete" not in third["counts"]
    assert_segments_hold_their_key_ranges(spark, segmented)

    fourth = merge_nights(spark, segmented, SEGMENTED, 4, start=3)[-1]["tables"]["accounts"]
    assert fourth["rewrite"]["full"] == "new column(s) region"
    directory = storage.local_path(segmented.silver("accounts", "history"))
    for name in manifest(segmented)["layout"]["segments"][0]["files"]["history"]:
        assert "region" in spark.read.parquet(f"{directory}/{name}").columns  # every file has the new column

    merge_nights(spark, whole, WHOLE, 4)
    for kind in layout.KINDS:
        assert rows(spark, segmented, kind) == rows(spark, whole, kind)


def test_ids_are_ordered_as_numbers_not_as_their_json_text(spark):
    table = SEGMENTED.table("accounts")
    frame = spark.createDataFrame([(f"[{i}]",) for i in (9, 10, 100, 2)], "_key string")
    ordered = [r["_key"] for r in frame.orderBy(layout.sort_key(table)).collect()]
    assert ordered == ["[2]", "[9]", "[10]", "[100]"]
    lows = [None, '{"id":10,"_key":"[10]"}']
    owners = frame.select("_key", layout.owner(layout.sort_key(table), lows, layout.key_schema(table)).alias("s"))
    assert {r["_key"]: r["s"] for r in owners.collect()} == {"[2]": 0, "[9]": 0, "[10]": 1, "[100]": 1}


def test_a_table_rewritten_behind_the_layout_is_rewritten_whole(spark, tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    merge_nights(spark, lake, SEGMENTED, 1)
    directory = storage.local_path(lake.silver("accounts", "current")) or ""
    name = sorted(n for n in os.listdir(directory) if n.endswith(".parquet"))[0]
    os.rename(f"{directory}/{name}", f"{directory}/part-rewritten-{name}")  # e.g. an erasure wrote new files
    report = merge_nights(spark, lake, SEGMENTED, 2, start=1)[-1]
    assert report["tables"]["accounts"]["rewrite"]["full"].startswith("the layout no longer describes the files")
    ids = sorted(r["id"] for r in spark.read.parquet(lake.silver("accounts", "current")).select("id").collect())
    assert ids == [*range(1, 61), 100]  # the renamed file's rows were read and written once, not twice


def test_segment_rows_must_be_a_positive_whole_number():
    for bad in (0, -5, "many", 2.5, True):
        try:
            settings.parse({**TABLE_SETTINGS, "segment_rows": bad})
        except settings.CdcSettingsError as error:
            assert "segment_rows must be a whole number of rows above 0" in str(error)
        else:
            raise AssertionError(f"segment_rows={bad!r} was accepted")


def test_a_table_without_rows_merges_night_after_night(spark, tmp_path):
    """A table whose history is still empty has a layout of no segments (here: a delete of a key never created,
    and its tombstone); the tombstone is matched against no segment instead of failing the merge."""
    lake = Lake((tmp_path / "lake").as_uri())
    orphan = ([pg("d", 100, None, {"id": 5}), None], [None, pg_key(5)])
    for offset in range(2):
        land(lake, orphan[0], keys=orphan[1], day=DAY + dt.timedelta(days=offset))
        report = cdc_merge.run(spark, lake, DAY + dt.timedelta(days=offset), SEGMENTED)
        assert report["status"] == "published", report
    assert rows(spark, lake, "current") == [] and rows(spark, lake, "history") == []
    assert manifest(lake)["layout"]["segments"] == []
