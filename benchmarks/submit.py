"""Running a job as the DAG does, for the benchmarks: `spark-submit` with the pipeline's Spark conf and the code
artifact (`--py-files`), its output kept in a log, its wall time returned."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jobs.common import artifact, catalog, config


def timed(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run a command, its output in `log`; the wall seconds, or exit with the log's tail."""
    started = time.monotonic()
    with log.open("ab") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed ({done.returncode}); last lines of {log}:\n"
                 + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
    return time.monotonic() - started


def spark_submit(job: str, args: list[str], env: dict[str, str], log: Path,
                 conf: dict[str, str] | None = None, script: Path | None = None) -> float:
    """`jobs/<job>.py` (or a benchmark's `script` wrapping a job) by spark-submit with the conf the DAG submits
    (`catalog.submit_conf`: `pipeline.yaml`'s `spark_conf`, the pinned jars; `conf` on top); the wall seconds."""
    merged = {**catalog.submit_conf(), **(conf or {})}
    options = [a for key, value in merged.items() for a in ("--conf", f"{key}={value}")]
    return timed(["spark-submit", *options, "--py-files", str(artifact.build()),
                  str(script or config.JOBS_DIR / f"{job}.py"), *args], env, log)


def demo_lake(lake_uri: str, first_day: str, days: int, events_per_day: int, users: int, *extra: str) -> None:
    """A small generated lake (`python -m demo`, 100 items; `extra`: e.g. `--oltp-from D` for the shop)."""
    subprocess.run([sys.executable, "-m", "demo", "--start-date", first_day, "--days", str(days), "--events-per-day",
                    str(events_per_day), "--users", str(users), "--items", "100", "--lake-root", lake_uri, *extra],
                   check=True, stdout=subprocess.DEVNULL, cwd=config.REPO_ROOT)


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each measured figure's median over repeated runs."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def pipeline_session(app: str, master: str = "local[*]") -> Any:
    """An in-process SparkSession with the conf the DAG submits with (`catalog.submit_conf`; the driver's memory is
    the caller's, set before the JVM starts), no UI, Spark's log at ERROR."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app).config("spark.ui.enabled", "false")
    for key, value in catalog.submit_conf().items():
        if key != "spark.driver.memory":
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
