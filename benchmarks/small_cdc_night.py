"""What a small CDC night costs and where it goes: start-up, the GX gates, the rest (issue 16 item 3).

Generates the demo shop (`python -m demo --oltp-from D`: a dump as of D and two days of Debezium events),
onboards it with `cdc_snapshot` and merges the two days with `cdc_merge`, each by spark-submit with
`pipeline.yaml`'s conf, as the DAG runs them. The first merge applies the snapshot and the first day's
events (every table written whole), the second is an ordinary small night (a few hundred changes into
the populated tables). The merge runs under a wrapper that times every `validate` call (the GX gates:
the change log's, then history and current per table), the session's creation and the job's body; start-up
is the spark-submit's wall time before the body starts (JVM, Python, imports) plus the session's creation.

    python benchmarks/small_cdc_night.py [--users 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from submit import demo_lake, medians, spark_submit

from demo.shop import snapshot_options
from jobs.cdc import STAGE
from jobs.common import storage
from jobs.common.paths import Lake, as_date

FIRST, SECOND = "2026-11-19", "2026-11-20"
TIMINGS = "SMALL_CDC_NIGHT_TIMINGS"  # where the wrapper writes its timings (an environment variable)


def wrapped_merge() -> None:
    """Runs inside spark-submit: `cdc_merge` with its GX calls and its body timed."""
    from jobs import cdc_merge
    from jobs.common import spark, validation

    calls: list[dict[str, float | str]] = []
    session: list[float] = []
    original, get_spark = validation.validate, spark.get_spark

    def timed_get_spark(app_name: str):
        started = time.monotonic()
        try:
            return get_spark(app_name)
        finally:
            session.append(time.monotonic() - started)

    def timed_validate(df, suite_name, *args, **kwargs):
        started = time.monotonic()
        try:
            return original(df, suite_name, *args, **kwargs)
        finally:
            calls.append({"suite": suite_name, "seconds": time.monotonic() - started})

    validation.validate, spark.get_spark = timed_validate, timed_get_spark
    started = time.monotonic()
    code = cdc_merge.main(sys.argv[1:])
    Path(os.environ[TIMINGS]).write_text(json.dumps({"body": time.monotonic() - started,
                                                     "gates": calls, "session": sum(session)}))
    sys.exit(code)


def merge_night(lake: Lake, day: str, work: Path) -> dict:
    """One cdc_merge by spark-submit under the wrapper; seconds of each part and the night's event counts."""
    timings = work / f"timings-{day}.json"
    env = {**os.environ, "PIPELINE_MODE": "demo", TIMINGS: str(timings)}
    wall = spark_submit("cdc_merge", ["--merge", "--date", day, "--lake-root", lake.root], env, work / "merge.log",
                        {"spark.ui.enabled": "false"}, script=Path(__file__))
    measured = json.loads(timings.read_text())
    report = json.loads(storage.read_bytes(lake.report_file(STAGE, as_date(day))))
    gates = sum(c["seconds"] for c in measured["gates"])
    return {"wall": wall, "start_up": wall - measured["body"] + measured["session"], "gates": gates,
            "gate_calls": len(measured["gates"]), "rest": measured["body"] - measured["session"] - gates,
            "events": sum(v for t in report["tables"].values() for v in t["counts"]["events"].values()),
            "current_rows": sum(t["counts"]["current_rows"] for t in report["tables"].values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2, help="fresh lakes, each merged night by night")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"first night (snapshot + day 1)": [], "second night (day 2 only)": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="small-cdc-") as tmp:
            work = Path(tmp)
            lake = Lake((work / "lake").as_uri())
            demo_lake(lake.root, FIRST, 2, 200, args.users, "--oltp-from", FIRST)
            options = {**snapshot_options(lake, FIRST), "--lake-root": lake.root}
            spark_submit("cdc_snapshot", [a for flag, value in options.items() for a in (flag, value)],
                         {**os.environ, "PIPELINE_MODE": "demo"}, work / "snapshot.log")
            for label, day in zip(runs, (FIRST, SECOND), strict=True):
                runs[label].append(merge_night(lake, day, work))
    print(f"cdc_merge by spark-submit on the demo shop ({args.users:,} users; median of {args.repeats}):")
    for label, measured in runs.items():
        m = medians(measured)
        print(f"  {label}: {m['events']:,.0f} events, {m['current_rows']:,.0f} current rows; {m['wall']:.1f} s: "
              f"start-up {m['start_up']:.1f} s ({m['start_up'] / m['wall']:.0%}), GX gates {m['gates']:.1f} s in "
              f"{m['gate_calls']:.0f} calls ({m['gates'] / m['wall']:.0%}), the rest {m['rest']:.1f} s "
              f"({m['rest'] / m['wall']:.0%})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--merge"]:
        del sys.argv[1]
        wrapped_merge()
    else:
        main()
