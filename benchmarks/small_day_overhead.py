"""What a small day costs: the bronze job by spark-submit on a 5,000-event day, Spark's tasks counted.

With 200 shuffle partitions (what a 10 M-event day needs), adaptive execution coalesces a small day's shuffles to
a few partitions, except for a frame the job caches (bronze's day rows): Spark keeps a cached plan's partitioning
unless `spark.sql.optimizer.canChangeCachedPlanOutputPartitioning` is on. This runs the job both ways on the same
day, alternately, and reads the task count from Spark's event log.

    python benchmarks/small_day_overhead.py [--events 5000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from submit import spark_submit

SETTING = "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning"
DAY = "2026-11-20"


def tasks_in(event_log_dir: Path) -> int:
    """Tasks run by the application whose (uncompressed) event log is the only one in the directory."""
    (log,) = [p for p in event_log_dir.rglob("*") if p.is_file() and "appstatus" not in p.name]
    return sum(1 for line in log.open() if json.loads(line)["Event"] == "SparkListenerTaskEnd")


def run_bronze(lake: Path, coalesce_cached: bool, work: Path) -> tuple[float, int]:
    events = Path(tempfile.mkdtemp(prefix="events-", dir=work))
    conf = {SETTING: str(coalesce_cached).lower(), "spark.ui.enabled": "false", "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": events.as_uri(), "spark.eventLog.compress": "false"}
    seconds = spark_submit("clickstream_bronze", ["--date", DAY, "--lake-root", lake.as_uri(), "--refresh", "full"],
                           {**os.environ, "PIPELINE_MODE": "demo"}, work / "bronze.log", conf)
    return seconds, tasks_in(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="small-day-") as tmp:
        work = Path(tmp)
        lake = work / "lake"
        subprocess.run([sys.executable, "-m", "demo", "--start-date", DAY, "--days", "1", "--events-per-day",
                        str(args.events), "--users", "300", "--items", "100", "--lake-root", lake.as_uri()],
                       check=True, stdout=subprocess.DEVNULL)
        runs: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for coalesce_cached in (False, True):
                runs[coalesce_cached].append(run_bronze(lake, coalesce_cached, work))
    print(f"bronze, one day of {args.events:,} events, spark-submit wall time (median of {args.repeats}) and tasks:")
    for coalesce_cached, measured in runs.items():
        print(f"  {SETTING}={str(coalesce_cached).lower()}: {statistics.median(s for s, _ in measured):.1f} s, "
              f"{measured[0][1]} tasks")
    ratio = statistics.median(s for s, _ in runs[False]) / statistics.median(s for s, _ in runs[True])
    print(f"  coalescing cached frames: {ratio:.2f}x faster")


if __name__ == "__main__":
    main()
