"""What a small day costs: the bronze job by spark-submit on a 5,000-event day, Spark's tasks and CPU counted.

With 200 shuffle partitions (what a 10 M-event day needs), adaptive execution coalesces a small day's shuffles to
a few partitions, except for a frame the job caches (bronze's day rows): Spark keeps a cached plan's partitioning
unless `spark.sql.optimizer.canChangeCachedPlanOutputPartitioning` is on. A short run is also dominated by the
JVM compiling Spark's code: the tests start their spark-submits with C1 only and the serial collector
(`SPARK_SUBMIT_OPTS`, tests/conftest.py). This runs the job three ways on the same day, alternately, and reads
the task count from Spark's event log and the CPU time from the children's resource usage.

    python benchmarks/small_day_overhead.py [--events 5000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from submit import demo_lake, spark_submit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' JVM options (tests/ is not installed)
from tests.conftest import SHORT_RUN_JVM_OPTIONS  # noqa: E402

SETTING = "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning"
DAY = "2026-11-20"
#: label -> (cached frames coalesced, SPARK_SUBMIT_OPTS)
VARIANTS = {
    "cached frames keep 200 partitions (Spark's default)": (False, ""),
    "cached frames coalesced (pipeline.yaml)": (True, ""),
    "... and the tests' JVM options (C1 JIT, serial GC)": (True, SHORT_RUN_JVM_OPTIONS),
}


def tasks_in(event_log_dir: Path) -> int:
    """Tasks run by the application whose (uncompressed) event log is the only one in the directory."""
    (log,) = [p for p in event_log_dir.rglob("*") if p.is_file() and "appstatus" not in p.name]
    return sum(1 for line in log.open() if json.loads(line)["Event"] == "SparkListenerTaskEnd")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_bronze(lake: Path, coalesce_cached: bool, jvm_options: str, work: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (spark-submit and everything it started) and Spark tasks of one run."""
    events = Path(tempfile.mkdtemp(prefix="events-", dir=work))
    conf = {SETTING: str(coalesce_cached).lower(), "spark.ui.enabled": "false", "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": events.as_uri(), "spark.eventLog.compress": "false"}
    env = {**os.environ, "PIPELINE_MODE": "demo", "SPARK_SUBMIT_OPTS": jvm_options}
    cpu = children_cpu()
    seconds = spark_submit("clickstream_bronze", ["--date", DAY, "--lake-root", lake.as_uri(), "--refresh", "full"],
                           env, work / "bronze.log", conf)
    return seconds, children_cpu() - cpu, tasks_in(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="small-day-") as tmp:
        work = Path(tmp)
        lake = work / "lake"
        demo_lake(lake.as_uri(), DAY, 1, args.events, 300)
        runs: dict[str, list[tuple[float, float, int]]] = {label: [] for label in VARIANTS}
        for _ in range(args.repeats):
            for label, (coalesce_cached, jvm_options) in VARIANTS.items():
                runs[label].append(run_bronze(lake, coalesce_cached, jvm_options, work))
    print(f"bronze, one day of {args.events:,} events by spark-submit (median of {args.repeats}):")
    medians = {label: (statistics.median(r[0] for r in measured), statistics.median(r[1] for r in measured),
                       measured[0][2]) for label, measured in runs.items()}
    for label, (wall, cpu, tasks) in medians.items():
        print(f"  {label}: {wall:.1f} s wall, {cpu:.1f} s CPU, {tasks} tasks")
    (default, coalesced, short) = medians.values()
    print(f"  coalescing cached frames: {default[0] / coalesced[0]:.2f}x faster")
    print(f"  the tests' JVM options: {coalesced[0] / short[0]:.2f}x faster, {coalesced[1] / short[1]:.2f}x less CPU")


if __name__ == "__main__":
    main()
