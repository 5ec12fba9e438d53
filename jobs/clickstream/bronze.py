"""raw/clickstream -> bronze/clickstream/dt=D for one event date, gated by Great Expectations.

For date D the job reads the raw files landed on Kafka-timestamp dates D-1 .. D+late_days,
applies the record rules of `transforms.py` and writes the day aside. The staged partition is
validated with GX; only if it passes does it replace `bronze/clickstream/dt=D`, with a manifest
of counts beside it, and the day's quarantine is published with it. On failure nothing is
published: both go to `quarantine/_rejected_batches/`, the Data Docs say why, and the entry
point exits 3 (the Airflow operator then fails the task without retrying).

Each record is attributed to exactly one run: a good event to its event date, a bad one to
the date of the raw directory it landed in. So reruns and backfills never count twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.clickstream.transforms import (
    Rules,
    classify,
    count_outcomes,
    mark_erased,
    parse_events,
    resolve_duplicates,
    to_bronze,
    to_quarantine,
)
from jobs.common import config, settings
from jobs.common.errors import MissingInput
from jobs.common.keyed_hash import redaction_pattern
from jobs.common.paths import Lake, utc_midnight
from jobs.common.run import Output, Run
from jobs.common.runner import Outcome, new_run_id
from jobs.common.spark import LakeFS, load_schema, read_raw

log = logging.getLogger(__name__)

JOB = "clickstream_bronze"
TABLE = "clickstream"
SUITE = "clickstream_bronze"


def raw_files(lake_fs: LakeFS, lake: Lake, topic: str, day: dt.date, late_days: int) -> list[str]:
    dirs = [lake.raw_day(topic, day + dt.timedelta(days=n)) for n in range(-1, late_days + 1)]
    return [d for d in dirs if lake_fs.exists(d)]


def input_fingerprint(lake_fs: LakeFS, dirs: list[str]) -> str:
    """Hash of every raw file (path, size) the run reads, plus the code version."""
    entries = sorted(f"{path}:{size}" for d in dirs for path, size in lake_fs.file_sizes(d).items())
    return hashlib.sha256("\n".join([*entries, config.code_version()]).encode()).hexdigest()


def lateness_window(day: dt.date, late_days: int) -> list[dt.date]:
    """The days before `day` whose raw inputs may still grow when `day` is built: an event for them can
    reach Kafka up to `late_days` after its day, so their partitions are rebuilt when their inputs changed."""
    return [day - dt.timedelta(days=n) for n in range(late_days, 0, -1)]


def run(spark: SparkSession, lake: Lake, day: dt.date, topic: str, full_refresh: bool = False,
        run_id: str | None = None, optional: bool = False) -> dict[str, Any] | None:
    """The whole job for one date; returns the manifest (status `published`, `up_to_date` or `rejected`).

    The day's partition and its quarantine are one output group: a second run of the same date waits.
    `optional`: a revisited day with no raw files at all has nothing to rebuild (None), not an error."""
    with Run(JOB, lake, day, run_id or new_run_id(), group=f"{TABLE}/dt={day}", fs=LakeFS(spark)) as this:
        return _run(spark, this, topic, full_refresh, optional)


def _run(spark: SparkSession, this: Run, topic: str, full_refresh: bool, optional: bool) -> dict[str, Any] | None:
    rules = Rules.from_settings()
    lake, day = this.lake, this.day
    final = lake.partition("bronze", TABLE, day)
    dirs = raw_files(this.fs, lake, topic, day, rules.late_days)
    if not dirs and optional:
        log.info("bronze %s dt=%s: no raw files, nothing to revisit", TABLE, day)
        return None
    if not dirs:
        raise MissingInput(f"no raw files for {topic} around {day} under {lake.raw_topic(topic)}")
    fingerprint = input_fingerprint(this.fs, dirs)
    published = json.loads(this.fs.read_text(lake.manifest(final)) or "{}")
    if not full_refresh and published.get("input_fingerprint") == fingerprint:
        log.info("bronze %s dt=%s is up to date (same raw inputs and code); --refresh full rebuilds it",
                 TABLE, day)
        return {**published, "status": "up_to_date"}

    ip_key = config.ip_hash_key()
    spark.conf.set("spark.sql.redaction.string.regex", redaction_pattern(ip_key))  # no key in plans or the UI
    event_schema = load_schema("clickstream_event")
    classified = classify(parse_events(read_raw(spark, dirs), event_schema), rules, event_schema)
    erased = lake.erased_users()
    day_rows = mark_erased(resolve_duplicates(classified.where(F.col("attributed_dt") == F.lit(day))),
                           spark.read.parquet(erased) if this.fs.exists(erased) else None, ip_key)
    day_rows = day_rows.persist(StorageLevel.MEMORY_AND_DISK)
    staged = {"bronze": this.staging("bronze", TABLE), "quarantine": this.staging("quarantine", TABLE)}
    try:
        counts = count_outcomes(day_rows)
        to_bronze(day_rows, ip_key).sortWithinPartitions("event_ts").write.parquet(staged["bronze"])
        to_quarantine(day_rows).write.parquet(staged["quarantine"])
    finally:
        day_rows.unpersist()
    transformed = this.elapsed()

    gate_settings = settings.pipeline().clickstream.row_count
    history = [int(m["counts"]["bronze"]) for m in this.fs.manifests_before(lake, "bronze", TABLE, day,
                                                                             gate_settings.history_days)]
    min_rows, max_rows = gate_settings.bounds(history)
    window_start = utc_midnight(day)
    params = {"event_types": rules.event_types, "window_start": window_start,
              "window_end": window_start + dt.timedelta(days=1), "min_rows": min_rows, "max_rows": max_rows}
    from jobs.common.validation import validate  # GX import is slow: only when validating

    written = spark.read.parquet(staged["bronze"])
    gate = validate(written, SUITE, params, this.docs(SUITE), this.fs)
    manifest = {
        "table": f"bronze/{TABLE}", **this.header(), "inputs": dirs, "input_fingerprint": fingerprint,
        "counts": {"raw_records": sum(counts.values()), "bronze": counts.get("bronze", 0),
                   "quarantined": sum(v for k, v in counts.items() if k.startswith("quarantined:")),
                   **{k: v for k, v in sorted(counts.items()) if k != "bronze"}},
        "row_count_bounds": [min_rows, max_rows], "row_count_history": history,
        "schema": json.loads(written.schema.json()),
        "validation": gate.as_dict(),
        "seconds": {"transform_and_write": transformed, "validation": round(this.elapsed() - transformed, 2)},
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if not gate.success:  # publish nothing: bronze and its quarantine stay together, for inspection
        return {**manifest, "status": "rejected",
                "rejected_batch": this.reject("bronze", TABLE, staged, {**manifest, "status": "rejected"})}
    manifest["status"] = "published"
    this.publish([Output(staged["quarantine"], lake.partition("quarantine", TABLE, day)),
                  Output(staged["bronze"], final, manifest)])
    return manifest


def summary(manifest: dict[str, Any]) -> Outcome:
    """What the entry point prints for a day, and the one line when the gate rejected it."""
    record = {k: manifest.get(k) for k in ("status", "dt", "run_id", "counts", "validation")}
    if manifest["status"] != "rejected":
        return Outcome(record)
    gate = manifest["validation"]
    return Outcome(record, rejected=f"bronze/{TABLE} dt={manifest['dt']} not published; "
                                    f"GX: {'; '.join(gate['failures'])}; Data Docs: {gate['data_docs']}; "
                                    f"batch kept at {manifest['rejected_batch']}")
