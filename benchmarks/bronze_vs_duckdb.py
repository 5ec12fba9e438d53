"""Raw -> bronze throughput: this project's Spark job against DuckDB on the same raw files, same run.

Generates one day of demo clickstream (default 5 million events, ~1% bad) in the raw layout
the Kafka drain writes, then times:

* spark: `jobs/clickstream/bronze.run` (parse with the explicit schema, classify, dedupe,
  PII minimisation, bronze + quarantine Parquet), with GX validation timed separately;
* duckdb_equivalent: the same rules in DuckDB SQL (typed parse, the same quarantine reasons,
  dedupe on coordinates and event_id, keyed IP hash, consent filter), bronze + quarantine Parquet;
* duckdb_plain: DuckDB converting the raw envelopes to Parquet with no checks (a floor).

    python benchmarks/bronze_vs_duckdb.py [--events 5000000] [--work-dir benchmarks/out]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

DAY = dt.date(2026, 11, 20)


def generate(lake_root: str, events: int, users: int, items: int) -> None:
    from demo import cli as demo_cli

    demo_cli.main(["--start-date", DAY.isoformat(), "--events-per-day", str(events), "--users", str(users),
                         "--items", str(items), "--lake-root", lake_root])


def run_spark(lake_root: str, driver_memory: str) -> dict:
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--driver-memory {driver_memory} pyspark-shell"
    from submit import pipeline_session

    from jobs.clickstream import bronze as clickstream_bronze
    from jobs.common.paths import Lake

    spark = pipeline_session("bench-bronze")
    started = time.perf_counter()
    manifest = clickstream_bronze.run(spark, Lake(lake_root), DAY, "clickstream", full_refresh=True)
    total = time.perf_counter() - started
    spark.stop()
    return {"records": manifest["counts"]["raw_records"], "bronze": manifest["counts"]["bronze"],
            "quarantined": manifest["counts"]["quarantined"], "seconds": manifest["seconds"]["transform_and_write"],
            "validation_seconds": manifest["seconds"]["validation"], "total_seconds": round(total, 2),
            "status": manifest["status"]}


ENVELOPE = ("{'topic': 'VARCHAR', 'partition': 'INTEGER', 'offset': 'BIGINT', 'timestamp_ms': 'BIGINT', "
            "'key': 'VARCHAR', 'key_b64': 'VARCHAR', 'value': 'VARCHAR', 'value_b64': 'VARCHAR'}")
EVENT = json.dumps({
    "event_id": "VARCHAR", "event_type": "VARCHAR", "event_ts": "TIMESTAMPTZ", "user_id": "VARCHAR",
    "session_id": "VARCHAR", "item_id": "VARCHAR", "query": "VARCHAR", "revenue": "DOUBLE", "currency": "VARCHAR",
    "user_agent": "VARCHAR", "referrer": "VARCHAR", "ip": "VARCHAR", "consent": "BOOLEAN",
    "experiments": [{"experiment_id": "VARCHAR", "variant": "VARCHAR"}],
})


def run_duckdb(raw_glob: str, out: Path, threads: int) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    read = f"read_json({raw_glob}, format='newline_delimited', columns={ENVELOPE}, filename=true)"
    started = time.perf_counter()
    con.execute(f"""
        CREATE TEMP TABLE classified AS
        WITH parsed AS (
            SELECT *, try(json_transform_strict(value, '{EVENT}')) AS e,
                   try(json(value)) IS NOT NULL AND json_type(try(json(value))) = 'OBJECT' AS is_object,
                   make_timestamp(timestamp_ms * 1000) AS kafka_ts,
                   CAST(regexp_extract(filename, 'kafka_date=(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS DATE) AS landing_date
            FROM {read}),
        reasoned AS (
            SELECT *, CASE
                WHEN value_b64 IS NOT NULL THEN 'invalid_encoding'
                WHEN value IS NULL THEN 'empty_value'
                WHEN NOT is_object THEN 'invalid_json'
                WHEN e IS NULL THEN 'wrong_type'
                WHEN e.event_id IS NULL OR e.event_type IS NULL OR e.event_ts IS NULL OR e.user_id IS NULL
                    THEN 'missing_field'
                WHEN e.event_type NOT IN ('page_view','search','click','play','add_to_cart','purchase')
                    THEN 'invalid_event_type'
                WHEN e.revenue < 0 THEN 'negative_revenue'
                WHEN e.event_ts > kafka_ts + INTERVAL 60 MINUTE THEN 'future_timestamp'
                WHEN CAST(e.event_ts AS DATE) < landing_date - 1 THEN 'late_beyond_window'
              END AS reason
            FROM parsed),
        attributed AS (
            SELECT *, CASE WHEN reason IS NULL THEN CAST(e.event_ts AS DATE) ELSE landing_date END AS attributed_dt
            FROM reasoned),
        ranked AS (
            SELECT *,
              row_number() OVER (PARTITION BY CASE WHEN reason IS NULL THEN 'id:' || e.event_id
                                 ELSE 'at:' || topic || '/' || partition || '/' || "offset" END
                                 ORDER BY partition, "offset", filename) AS rank,
              lag(partition) OVER w = partition AND lag("offset") OVER w = "offset" AS reread
            FROM attributed WHERE attributed_dt = DATE '{DAY}'
            WINDOW w AS (PARTITION BY CASE WHEN reason IS NULL THEN 'id:' || e.event_id
                         ELSE 'at:' || topic || '/' || partition || '/' || "offset" END
                         ORDER BY partition, "offset", filename))
        SELECT * REPLACE (CASE WHEN NOT coalesce(reread, false) AND rank > 1 AND reason IS NULL
                               THEN 'duplicate_event_id' ELSE reason END AS reason),
               coalesce(reread, false) AS is_reread
        FROM ranked""")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    con.execute(f"""
        COPY (SELECT e.event_id, e.event_type, e.event_ts, e.user_id, e.session_id, e.item_id, e.query, e.revenue,
                     e.currency, e.user_agent, e.referrer,
                     regexp_extract(e.ip, '^(\\d+\\.\\d+\\.\\d+)\\.\\d+$', 1) || '.0/24' AS ip_prefix,
                     sha256('bench-key' || e.ip) AS ip_hash, e.experiments,
                     topic AS kafka_topic, partition AS kafka_partition, "offset" AS kafka_offset, kafka_ts
              FROM classified WHERE reason IS NULL AND NOT is_reread AND coalesce(e.consent, false)
              ORDER BY e.event_ts)
        TO '{out}/bronze.parquet' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT reason, e.event_id, topic, partition, "offset", kafka_ts, landing_date, filename,
                                 value, value_b64 FROM classified WHERE reason IS NOT NULL AND NOT is_reread)
                    TO '{out}/quarantine.parquet' (FORMAT parquet)""")
    seconds = time.perf_counter() - started
    counts = dict(con.execute("""SELECT CASE WHEN is_reread THEN 'reread' WHEN reason IS NOT NULL THEN 'quarantined'
                                       WHEN coalesce(e.consent, false) THEN 'bronze' ELSE 'no_consent' END, count(*)
                                 FROM classified GROUP BY ALL""").fetchall())
    con.close()
    return {"records": sum(counts.values()), "bronze": counts.get("bronze", 0),
            "quarantined": counts.get("quarantined", 0), "seconds": round(seconds, 2)}


def run_duckdb_plain(raw_glob: str, out: Path, threads: int) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    con.execute(f"""COPY (SELECT * FROM read_json({raw_glob}, format='newline_delimited', columns={ENVELOPE}))
                    TO '{out}/plain.parquet' (FORMAT parquet)""")
    seconds = time.perf_counter() - started
    records = con.execute(f"SELECT count(*) FROM '{out}/plain.parquet'").fetchone()[0]
    return {"records": records, "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()
    work = args.work_dir.resolve()
    lake_root = (work / f"lake-{args.events}").as_uri()
    raw_dir = work / f"lake-{args.events}" / "raw" / "clickstream"
    if not raw_dir.exists():
        t = time.perf_counter()
        generate(lake_root, args.events, args.users, args.items)
        print(f"generated {args.events:,} events in {time.perf_counter() - t:.0f}s")
    threads = os.cpu_count() or 1
    # the window the Spark job reads for DAY: kafka dates DAY-1 .. DAY+1 (those that exist)
    window = [raw_dir / f"kafka_date={DAY + dt.timedelta(days=n)}" for n in (-1, 0, 1)]
    raw_glob = str([f"{d}/*/*.jsonl" for d in window if d.exists()])
    results = {
        "spark": run_spark(lake_root, args.driver_memory),
        "duckdb_equivalent": run_duckdb(raw_glob, work / "duckdb-out", threads),
        "duckdb_plain": run_duckdb_plain(raw_glob, work / "duckdb-out", threads),
    }
    for r in results.values():
        r["events_per_second"] = round(r["records"] / r["seconds"])
    spark_eps = results["spark"]["events_per_second"]
    print(json.dumps(results, indent=2))
    print(f"\ncores: {threads}")
    for name in ("duckdb_equivalent", "duckdb_plain"):
        eps = results[name]["events_per_second"]
        print(f"spark {spark_eps:,} ev/s vs {name} {eps:,} ev/s: spark/duckdb = {spark_eps / eps:.2f}")
    print(f"GX validation of the staged partition (not in the ratio): {results['spark']['validation_seconds']}s")


if __name__ == "__main__":
    main()
