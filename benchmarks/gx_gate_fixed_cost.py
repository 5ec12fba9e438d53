"""What one GX gate costs on a small table, where its fixed cost is all there is: `jobs.common.validation.validate`
with the bronze suite on a small bronze-shaped frame, its Data Docs written, in one warm SparkSession (the gates of
a CDC night or a small day run in a session that is already warm).

Three variants, alternated, in the same process:

* kept templates: as the jobs run it (Jinja's compiled Data Docs templates kept for the process);
* GX's own environment: every page compiles its ~100 templates again (GX 1.24 as shipped);
* no Data Docs: the verdict alone, the floor.

    python benchmarks/gx_gate_fixed_cost.py [--rows 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the suite's test frame (tests/ is not an installed package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from submit import pipeline_session

    from jobs.clickstream import bronze
    from jobs.common import validation
    from jobs.common.spark import LakeFS
    from tests.spark.test_validation_gate import PARAMS, frame

    spark = pipeline_session("gx-gate-fixed-cost", "local[2]")
    df = frame(spark, [{"event_id": f"e{n}", "kafka_offset": n} for n in range(args.rows)]).persist()
    df.count()
    lake_fs, kept = LakeFS(spark), validation.gx_views.Environment
    variants = {"kept templates": (kept, True), "GX's own environment": (jinja2.Environment, True),
                "no Data Docs": (kept, False)}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="gx-gate-") as work:
        for repeat in range(args.repeats + 1):  # the first round warms the JVM and GX up; not counted
            for name, (environment, docs) in variants.items():
                validation.gx_views.Environment = environment
                uri = Path(work, f"{repeat}-{name.replace(' ', '_')}").as_uri()
                started = time.perf_counter()
                outcome = validation.validate(df, bronze.SUITE, PARAMS, uri if docs else None, lake_fs)
                elapsed = time.perf_counter() - started
                assert outcome.success, outcome.summary()
                if repeat:
                    seconds[name].append(elapsed)
    validation.gx_views.Environment = kept
    spark.stop()
    base = statistics.median(seconds["GX's own environment"])
    print(f"GX gate (the bronze suite) on {args.rows:,} rows, median of {args.repeats}:")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:22s} {median:6.2f} s  ({median / base:.2f}x GX's own environment)")


if __name__ == "__main__":
    main()
