"""The jobs on the commit protocol: a CDC merge that dies in the middle of publishing, then the normal
retry, ends with exactly the tables of an uninterrupted run (the first reproduction of the issue);
two merges and two bronze runs of one date at once lose nothing and duplicate nothing."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path

import pytest

from jobs.cdc import merge as cdc_merge
from jobs.cdc import settings
from jobs.clickstream import bronze
from jobs.common import storage
from jobs.common.paths import Lake
from jobs.common.run import Run
from jobs.ingest import raw_zone
from tests.cdc_events import TABLE_SETTINGS, account, pg, pg_key
from tests.conftest import event, record
from tests.spark.test_cdc_merge import land

DAY = dt.date(2025, 11, 20)
NEXT = DAY + dt.timedelta(days=1)
CDC = settings.parse({**TABLE_SETTINGS, "segment_rows": 4})  # day 2 rewrites some segments and links the others


class Crash(Exception):
    """Stands for the process dying: raised out of the commit, no clean-up of what was swapped."""


def two_days(lake: Lake) -> None:
    land(lake, [pg("c", 100 + n, account(n)) for n in range(1, 21)])
    land(lake, [pg("u", 200, account(1, "pro", "19.99"), {"id": 1}), pg("d", 210, None, {"id": 2}), None,
                pg("c", 220, account(9))], keys=[None, pg_key(2), pg_key(2), None], day=NEXT)


def tables(spark, lake: Lake) -> dict[str, list[tuple]]:
    found = {}
    for kind in ("current", "history"):
        rows = spark.read.parquet(lake.silver("accounts", kind)).drop("_flags").collect()
        found[kind] = sorted((tuple(r) for r in rows), key=repr)
    found["changes"] = sorted((tuple(r) for r in spark.read.parquet(lake.partition("bronze", "cdc_changes", NEXT))
                               .drop("source_file").collect()), key=repr)
    return found


@pytest.fixture(scope="module")
def uninterrupted(spark, tmp_path_factory):
    lake = Lake((tmp_path_factory.mktemp("uninterrupted") / "lake").as_uri())
    two_days(lake)
    for day in (DAY, NEXT):
        assert cdc_merge.run(spark, lake, day, CDC)["status"] == "published"
    return tables(spark, lake)


@pytest.mark.parametrize("swaps_before_the_crash", [3, 5])  # inside the history swap, inside the current one
def test_a_merge_killed_while_publishing_then_retried_equals_an_uninterrupted_run(
        spark, lake, monkeypatch, uninterrupted, swaps_before_the_crash):
    two_days(lake)
    assert cdc_merge.run(spark, lake, DAY, CDC)["status"] == "published"
    real_exchange, real_move, real_publish = storage.exchange, storage.move, Run.publish
    swaps = {"n": 0, "publishing": False}

    def dying(real):
        def step(*args):
            if swaps["publishing"]:  # the swaps of the publish, not the moves that lay out the staged files
                if swaps["n"] == swaps_before_the_crash:
                    raise Crash
                swaps["n"] += 1
            return real(*args)
        return step

    def publish(this, outputs):
        swaps["publishing"] = True
        return real_publish(this, outputs)

    monkeypatch.setattr(storage, "exchange", dying(real_exchange))
    monkeypatch.setattr(storage, "move", dying(real_move))
    monkeypatch.setattr(Run, "publish", publish)
    with pytest.raises(Crash):
        cdc_merge.run(spark, lake, NEXT, CDC)
    monkeypatch.setattr(storage, "exchange", real_exchange)
    monkeypatch.setattr(storage, "move", real_move)
    monkeypatch.setattr(Run, "publish", real_publish)
    root = Path(lake.root.removeprefix("file://"))
    assert (root / "silver" / "accounts_history").is_dir() and (root / "silver" / "accounts_current").is_dir()

    retried = cdc_merge.run(spark, lake, NEXT, CDC)  # Airflow's retry of the same date
    assert retried["status"] == "published"
    assert retried["tables"]["accounts"]["rewrite"]["full"] is None  # the night rewrote some segments only
    assert tables(spark, lake) == uninterrupted
    assert not list(root.rglob("_staging")) and not list(root.glob("_commits/*/*.json"))


def test_two_merges_at_once_lose_no_update(spark, lake, uninterrupted):
    two_days(lake)
    reports, errors = {}, []

    def merge(day: dt.date) -> None:
        try:
            reports[day] = cdc_merge.run(spark, lake, day, CDC)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(day,)) for day in (NEXT, DAY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert errors == [] and {r["status"] for r in reports.values()} == {"published"}
    assert tables(spark, lake) == uninterrupted  # both days' changes, whichever merged first


def test_two_bronze_runs_of_one_date_at_once_publish_it_once(spark, lake):
    day = dt.date(2026, 11, 20)
    raw_zone.write_grouped(lake, [record(n, event(f"e{n}")) for n in range(50)])
    results, errors = [], []

    def build() -> None:
        try:
            results.append(bronze.run(spark, lake, day, "clickstream"))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert errors == []
    assert sorted(r["status"] for r in results) == ["published", "up_to_date"]  # the second waited, then saw it
    rows = spark.read.parquet(lake.partition("bronze", "clickstream", day))
    assert rows.count() == rows.select("event_id").distinct().count() == 50
    root = Path(lake.root.removeprefix("file://"))
    assert not list(root.rglob("_staging"))
    shutil.rmtree(root)
