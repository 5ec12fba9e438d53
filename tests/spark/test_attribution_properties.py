"""Property: however records are duplicated, re-read or spread over landing days, running every
day once counts each Kafka record exactly once and keeps each consented event exactly once."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from jobs.clickstream import bronze
from jobs.clickstream import transforms as job
from jobs.common import storage
from jobs.common.paths import Lake
from jobs.common.spark import LakeFS, load_schema, read_raw
from jobs.ingest import raw_zone
from tests.conftest import event, record

D = dt.date(2026, 11, 20)
RULES = job.Rules(["click"], ["event_id", "event_type", "event_ts", "user_id"], late_days=1,
                  max_clock_skew_minutes=60)

records_strategy = st.lists(
    st.tuples(
        st.integers(0, 11),           # event id from a small pool: re-deliveries happen
        st.integers(0, 20 * 3600),    # seconds until Kafka got this copy (late arrivals cross midnight)
        st.sampled_from(["ok", "ok", "ok", "bad_json", "reread"]),
    ),
    min_size=1, max_size=25,
)


def event_of(ident: int) -> tuple[dt.datetime, bool]:
    """An event id stands for one event: its time (D-1 .. D+1) and consent never change."""
    day = D + dt.timedelta(days=ident % 3 - 1)
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=ident * 9_973 % 86_400), ident % 4 != 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records_strategy)
def test_every_record_is_owned_by_exactly_one_day(spark, rows):
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp).as_uri())
        landed, rereads = [], []
        for offset, (ident, delay, kind) in enumerate(rows):
            ts, consent = event_of(ident)
            kafka_ts = (ts + dt.timedelta(seconds=delay)).isoformat()
            value = "{not json" if kind == "bad_json" else event(f"e{ident}", ts=ts.isoformat(), consent=consent)
            landed.append(record(offset, value, kafka_ts=kafka_ts))
            if kind == "reread":
                rereads.append(landed[-1])
        raw_zone.write_grouped(lake, landed)
        for r in rereads:  # the same Kafka record landed again by a retried drain, in its own file
            raw_zone.write_raw_file(lake, [r])

        schema = load_schema("clickstream_event")
        totals: dict[str, int] = {}
        kept: list[str] = []
        for day in (D + dt.timedelta(days=n) for n in range(-1, 3)):
            dirs = bronze.raw_files(LakeFS(spark), lake, "clickstream", day, RULES.late_days)
            if not dirs:
                continue
            classified = job.classify(job.parse_events(read_raw(spark, dirs), schema), RULES, schema)
            rows_of_day = job.resolve_duplicates(classified.where(F.col("attributed_dt") == F.lit(day)))
            for name, n in job.count_outcomes(rows_of_day).items():
                totals[name] = totals.get(name, 0) + n
            kept += [r["event_id"] for r in job.to_bronze(rows_of_day, "k").select("event_id").collect()]

        on_disk = [json.loads(line) for uri in storage.list_files(lake.raw_topic("clickstream"), ".jsonl")
                   for line in storage.read_bytes(uri).splitlines()]
        distinct = {(line["partition"], line["offset"]) for line in on_disk}
        assert sum(totals.values()) == len(on_disk)  # every landed line counted once, by one day
        assert totals.get("reread_collapsed", 0) == len(on_disk) - len(distinct)
        assert len(kept) == len(set(kept))  # no event twice in bronze
        expected = {f"e{ident}" for ident, _, kind in rows if kind != "bad_json" and event_of(ident)[1]}
        assert set(kept) == expected
