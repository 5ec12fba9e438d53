"""Raw clickstream (Kafka envelopes) -> bronze Parquet for one event date, gated by Great Expectations.

For date D the job reads the raw files landed on Kafka-timestamp dates D-1 .. D+late_days,
parses each value against the explicit event schema (no inference), sends bad records to
quarantine with a reason, collapses re-read Kafka records (same topic/partition/offset),
dedupes re-delivered events by event_id, drops events without consent (counted, never
stored), replaces the IP by a prefix and a keyed hash, and writes the day aside. The staged
partition is validated with GX; only if it passes does it replace `bronze/clickstream/dt=D`
(rename), with a manifest of counts beside it, and the day's quarantine is published with it.
On failure nothing is published: both go to `quarantine/_rejected_batches/`, the Data Docs
say why, and the exit code is 3
(`jobs/common/exit_codes.py`: the operator then fails the task without retrying).

Each record is attributed to exactly one run: a good event to its event date, a bad one to
the date of the raw directory it landed in. So reruns and backfills never count twice.

    spark-submit jobs/clickstream_bronze.py --date 2026-11-20 [--end-date 2026-11-22] [--lake-root URI] [--refresh full]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StringType, StructField, StructType

from jobs.common import config, exit_codes
from jobs.common.paths import Lake, date_arg, date_range
from jobs.common.spark import LakeFS, get_spark, load_schema, read_raw

log = logging.getLogger("clickstream_bronze")

TABLE = "clickstream"
SUITE = "clickstream_bronze"
CORRUPT = "_corrupt"
BRONZE_COLUMNS = [
    "event_id", "event_type", "event_ts", "user_id", "session_id", "item_id", "query", "revenue",
    "currency", "user_agent", "referrer", "ip_prefix", "ip_hash", "experiments",
    "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
]
QUARANTINE_COLUMNS = [
    "reason", "event_id", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
    "landing_date", "source_file", "raw_value", "raw_value_b64",
]


@dataclass(frozen=True)
class Rules:
    """The record-level rules, from `include/pipeline.yaml`."""

    event_types: list[str]
    required_fields: list[str]
    late_days: int
    max_clock_skew_minutes: int

    @classmethod
    def from_config(cls) -> Rules:
        c = config.pipeline_config()["clickstream"]
        return cls(c["event_types"], c["required_fields"], int(c["late_days"]),
                   int(c["max_clock_skew_minutes"]))


# ---------------------------------------------------------------- pure transforms

def parse_events(raw: DataFrame, event_schema: StructType) -> DataFrame:
    """Envelope rows -> one row per Kafka record with the typed event `e` and parse diagnostics."""
    with_corrupt = StructType([*event_schema.fields, StructField(CORRUPT, StringType())])
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    parsed = F.from_json("value", with_corrupt, options)
    return raw.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.timestamp_millis("timestamp_ms").alias("kafka_ts"),
        F.to_date(F.regexp_extract("source_file", r"kafka_date=(\d{4}-\d{2}-\d{2})", 1)).alias("landing_date"),
        "source_file",
        F.col("value").alias("raw_value"),
        F.col("value_b64").alias("raw_value_b64"),
        F.col("_corrupt_envelope"),
        # explode of a one-element array: a Generate node the optimizer cannot inline through, so
        # later filters on `e` (the day's attribution) do not re-run from_json once per reference
        F.explode(F.array(parsed)).alias("e"),
    )


def _fields_where(names: list[str], predicate: Any) -> Column:
    """Comma-separated names of the fields for which `predicate(name)` holds ('' if none)."""
    return F.concat_ws(",", *[F.when(predicate(n), F.lit(n)) for n in names])


def classify(parsed: DataFrame, rules: Rules, event_schema: StructType) -> DataFrame:
    """Add `reason` (null for a good event) and `attributed_dt`, the one run that owns the record."""
    as_map = F.from_json("raw_value", MapType(StringType(), StringType()))
    wrong_types = _fields_where(
        event_schema.fieldNames(), lambda n: as_map[n].isNotNull() & F.col(f"e.{n}").isNull())
    missing = _fields_where(rules.required_fields, lambda n: F.col(f"e.{n}").isNull())
    skew = F.expr(f"INTERVAL {rules.max_clock_skew_minutes} MINUTES")
    event_date = F.to_date("e.event_ts")
    reason = (
        F.when(F.col("_corrupt_envelope").isNotNull() | F.col("kafka_offset").isNull(), "corrupt_envelope")
        .when(F.col("raw_value_b64").isNotNull(), "invalid_encoding")
        .when(F.col("raw_value").isNull(), "empty_value")
        .when(F.col(f"e.{CORRUPT}").isNotNull() & as_map.isNull(), "invalid_json")
        .when(F.col(f"e.{CORRUPT}").isNotNull(), F.concat(F.lit("wrong_type:"), wrong_types))
        .when(missing != "", F.concat(F.lit("missing_field:"), missing))
        .when(~F.col("e.event_type").isin(rules.event_types), "invalid_event_type")
        .when(F.col("e.revenue") < 0, "negative_revenue")
        .when(F.col("e.event_ts") > F.col("kafka_ts") + skew, "future_timestamp")
        .when(event_date < F.date_sub("landing_date", rules.late_days), "late_beyond_window")
    )
    return (parsed.withColumn("reason", reason)
            .withColumn("attributed_dt",
                        F.when(F.col("reason").isNull(), event_date).otherwise(F.col("landing_date")))
            # the raw text is only kept for quarantine: good rows shuffle without it
            .withColumn("raw_value", F.when(F.col("reason").isNotNull(), F.col("raw_value"))))


def resolve_duplicates(day_rows: DataFrame) -> DataFrame:
    """Flag Kafka re-reads (`reread`) and re-delivered events (reason `duplicate_event_id`).

    A re-read is the same Kafka record seen twice (a retried drain range): it is collapsed and
    counted. A re-delivery is the same event_id at another offset: the lowest (partition,
    offset) is kept and the others are quarantined. One window, keyed by event_id for good
    events and by the Kafka coordinates for bad ones.
    """
    coords = F.concat_ws("/", "kafka_topic", "kafka_partition", "kafka_offset")
    key = F.when(F.col("reason").isNull(), F.concat(F.lit("id:"), "e.event_id")).otherwise(
        F.concat(F.lit("at:"), coords))
    w = Window.partitionBy("_dedupe_key").orderBy("kafka_partition", "kafka_offset", "source_file")
    same_as_previous = (F.lag("kafka_partition").over(w).eqNullSafe(F.col("kafka_partition"))
                        & F.lag("kafka_offset").over(w).eqNullSafe(F.col("kafka_offset"))
                        & F.lag("kafka_topic").over(w).eqNullSafe(F.col("kafka_topic")))
    return (day_rows.withColumn("_dedupe_key", key)
            .withColumn("reread", F.coalesce(same_as_previous, F.lit(False)) & F.col("kafka_offset").isNotNull())
            .withColumn("_rank", F.row_number().over(w))
            .withColumn("reason", F.when(~F.col("reread") & (F.col("_rank") > 1) & F.col("reason").isNull(),
                                         F.lit("duplicate_event_id")).otherwise(F.col("reason")))
            .drop("_dedupe_key", "_rank"))


def outcome() -> Column:
    """What happens to each record: collapsed re-read, quarantined, excluded, or kept."""
    return (F.when(F.col("reread"), "reread_collapsed")
            .when(F.col("reason").isNotNull(), F.concat(F.lit("quarantined:"), "reason"))
            .when(~F.coalesce(F.col("e.consent"), F.lit(False)), "excluded_no_consent")
            .otherwise("bronze"))


def minimise_ip(ip: Column, key: str) -> tuple[Column, Column]:
    """IP -> (network prefix, keyed SHA-256): /24 for IPv4, /48 for IPv6; the raw IP never leaves."""
    v4 = F.regexp_extract(ip, r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$", 1)
    v6 = F.regexp_extract(ip, r"^([0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4})(:|$)", 1)
    prefix = (F.when(v4 != "", F.concat(v4, F.lit(".0/24")))
              .when(v6 != "", F.concat(F.lower(v6), F.lit("::/48"))))
    hashed = F.when(ip.isNotNull(), F.sha2(F.concat(F.lit(key), ip), 256))
    return prefix, hashed


def to_bronze(day_rows: DataFrame, ip_key: str) -> DataFrame:
    prefix, hashed = minimise_ip(F.col("e.ip"), ip_key)
    kept = day_rows.where(outcome() == "bronze")
    return kept.select(
        *[F.col(f"e.{c}").alias(c) for c in BRONZE_COLUMNS[:BRONZE_COLUMNS.index("ip_prefix")]],
        prefix.alias("ip_prefix"), hashed.alias("ip_hash"), F.col("e.experiments").alias("experiments"),
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
    )


def to_quarantine(day_rows: DataFrame) -> DataFrame:
    bad = day_rows.where(~F.col("reread") & F.col("reason").isNotNull())
    return bad.select(F.col("reason"), F.col("e.event_id").alias("event_id"), *QUARANTINE_COLUMNS[2:])


def count_outcomes(day_rows: DataFrame) -> dict[str, int]:
    """Counts per outcome in one aggregation: the manifest's numbers."""
    rows = day_rows.groupBy(outcome().alias("outcome")).count().collect()
    return {r["outcome"]: int(r["count"]) for r in rows}


def row_count_bounds(history: list[int], min_ratio: float, max_ratio: float) -> tuple[int, int | None]:
    """GX row-count bounds from previous days' published counts (no history: at least one row)."""
    if not history:
        return 1, None
    median = statistics.median(history)
    return max(1, int(min_ratio * median)), int(max_ratio * median) + 1


# ---------------------------------------------------------------- I/O around the transforms

def raw_files(lake_fs: LakeFS, lake: Lake, topic: str, day: dt.date, late_days: int) -> list[str]:
    dirs = [f"{lake.raw_topic(topic)}/kafka_date={(day + dt.timedelta(days=n)).isoformat()}"
            for n in range(-1, late_days + 1)]
    return [d for d in dirs if lake_fs.exists(d)]


def input_fingerprint(lake_fs: LakeFS, dirs: list[str]) -> str:
    """Hash of every raw file (path, size) the run reads, plus the code version."""
    entries = sorted(f"{path}:{size}" for d in dirs for path, size in lake_fs.file_sizes(d).items())
    return hashlib.sha256("\n".join([*entries, config.code_version()]).encode()).hexdigest()


def previous_counts(lake_fs: LakeFS, lake: Lake, day: dt.date, days: int) -> list[int]:
    counts = []
    for n in range(1, days + 1):
        text = lake_fs.read_text(lake.manifest(lake.partition("bronze", TABLE, day - dt.timedelta(days=n))))
        if text:
            counts.append(int(json.loads(text)["counts"]["bronze"]))
    return counts


def run(spark: SparkSession, lake: Lake, day: dt.date, topic: str, full_refresh: bool = False) -> dict[str, Any]:
    """The whole job for one date; returns the manifest (status `published`, `up_to_date` or `rejected`)."""
    started = time.time()
    rules = Rules.from_config()
    lake_fs = LakeFS(spark)
    run_id = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    final = lake.partition("bronze", TABLE, day)
    dirs = raw_files(lake_fs, lake, topic, day, rules.late_days)
    if not dirs:
        raise FileNotFoundError(f"no raw files for {topic} around {day} under {lake.raw_topic(topic)}")
    fingerprint = input_fingerprint(lake_fs, dirs)
    published = json.loads(lake_fs.read_text(lake.manifest(final)) or "{}")
    if not full_refresh and published.get("input_fingerprint") == fingerprint:
        log.info("bronze %s dt=%s is up to date (same raw inputs and code); --refresh full rebuilds it",
                 TABLE, day)
        return {**published, "status": "up_to_date"}

    ip_key = config.ip_hash_key()
    spark.conf.set("spark.sql.redaction.string.regex", re.escape(ip_key))  # keep the key out of plans/UI
    event_schema = load_schema("clickstream_event")
    classified = classify(parse_events(read_raw(spark, dirs), event_schema), rules, event_schema)
    day_rows = resolve_duplicates(classified.where(F.col("attributed_dt") == F.lit(day)))
    day_rows = day_rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = count_outcomes(day_rows)
        staging = lake.staging("bronze", TABLE, day, run_id)
        q_staging = lake.staging("quarantine", TABLE, day, run_id)
        to_bronze(day_rows, ip_key).sortWithinPartitions("event_ts").write.parquet(staging)
        to_quarantine(day_rows).write.parquet(q_staging)
    finally:
        day_rows.unpersist()
    transformed = time.time()

    settings = config.pipeline_config()["clickstream"]["row_count"]
    history = previous_counts(lake_fs, lake, day, int(settings["history_days"]))
    min_rows, max_rows = row_count_bounds(history, float(settings["min_ratio"]), float(settings["max_ratio"]))
    window_start = dt.datetime.combine(day, dt.time())
    params = {"event_types": rules.event_types, "window_start": window_start,
              "window_end": window_start + dt.timedelta(days=1), "min_rows": min_rows, "max_rows": max_rows}
    from jobs.common.validation import validate  # GX import is slow: only when validating

    docs = f"{lake.data_docs()}/{SUITE}/dt={day.isoformat()}/run_id={run_id}"
    staged = spark.read.parquet(staging)
    gate = validate(staged, SUITE, params, docs, lake_fs)
    validated = time.time()
    manifest = {
        "table": f"bronze/{TABLE}", "dt": day.isoformat(), "run_id": run_id, "job": "clickstream_bronze",
        "code_version": config.code_version(), "inputs": dirs, "input_fingerprint": fingerprint,
        "counts": {"raw_records": sum(counts.values()), "bronze": counts.get("bronze", 0),
                   "quarantined": sum(v for k, v in counts.items() if k.startswith("quarantined:")),
                   **{k: v for k, v in sorted(counts.items()) if k != "bronze"}},
        "row_count_bounds": [min_rows, max_rows], "row_count_history": history,
        "schema": json.loads(staged.schema.json()),
        "validation": {"suite": SUITE, "success": gate.success, "failures": gate.failures,
                       "data_docs": gate.data_docs},
        "seconds": {"transform_and_write": round(transformed - started, 2),
                    "validation": round(validated - transformed, 2)},
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if gate.success:
        manifest["status"] = "published"
        lake_fs.write_text(lake.manifest(staging), json.dumps(manifest, indent=2, default=str))
        lake_fs.publish(q_staging, lake.partition("quarantine", TABLE, day))
        lake_fs.publish(staging, final)
    else:  # publish nothing: bronze and its quarantine stay together, for inspection
        manifest["status"] = "rejected"
        rejected = lake.rejected("bronze", TABLE, day, run_id)
        for zone, staged_dir in (("bronze", staging), ("quarantine", q_staging)):
            lake_fs.move(staged_dir, f"{rejected}/{zone}")
            lake_fs.prune_staging(staged_dir)
        lake_fs.write_text(lake.manifest(rejected), json.dumps(manifest, indent=2, default=str))
        manifest["rejected_batch"] = rejected
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", required=True, type=date_arg, help="event date (UTC) to build, YYYY-MM-DD")
    parser.add_argument("--end-date", type=date_arg,
                        help="backfill: build every date from --date to this one in one Spark session")
    parser.add_argument("--lake-root", default=config.lake_root(), help="lake root URI (default: %(default)s)")
    parser.add_argument("--topic", default=config.pipeline_config()["clickstream"]["topic"],
                        help="raw topic directory to read (default: %(default)s)")
    parser.add_argument("--refresh", choices=["incremental", "full"], default="incremental",
                        help="incremental (default) skips a day whose published partition has the same "
                             "raw inputs and code; full rebuilds it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        days = date_range(args.date, args.end_date)
    except ValueError as exc:
        parser.error(str(exc))
    spark = get_spark(f"clickstream_bronze:{args.date}")
    rc = 0
    try:
        for day in days:
            manifest = run(spark, Lake(args.lake_root), day, args.topic, full_refresh=args.refresh == "full")
            print(json.dumps({k: manifest.get(k) for k in ("status", "dt", "run_id", "counts", "validation")},
                             indent=2, default=str))
            if manifest["status"] == "rejected":
                gate = manifest["validation"]
                print(f"clickstream_bronze failed: bronze/{TABLE} dt={day} not published; "
                      f"GX: {'; '.join(gate['failures'])}; Data Docs: {gate['data_docs']}; "
                      f"batch kept at {manifest['rejected_batch']}", file=sys.stderr)
                rc = exit_codes.VALIDATION_REJECTED
    except FileNotFoundError as exc:
        print(f"clickstream_bronze failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    finally:
        spark.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
