"""A/B report at scale: 200 experiments x 3 variants x 10 metrics over 10 million exposure rows.

Generates bronze-shaped clickstream with Spark (2M users, each exposed to 5 of the 200
experiments = 10M exposure rows, plus outcome events), then times separately

* the Spark aggregation (`jobs.ab.aggregation.aggregate`): one scan of the source, checked by
  comparing the bytes Spark read from files with a plain scan of the same columns;
* the driver-side statistics (`jobs.ab.analysis.build_report`, vectorised numpy/scipy), and
  as a peer the same frequentist tests done one comparison at a time with statsmodels/scipy.

`--report-only` skips Spark: counts of the same shape (200 x 3 x 10, cumulative and 4 day slices) are made
with numpy, and the CPU time of what the nightly writes is measured: build_report, report.json and report.html
(with 5 nights of history, so every experiment has its lift chart).

    python benchmarks/ab_report_scale.py [--users 2000000] [--work-dir /tmp/ab-bench] [--report-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ab import aggregation as ab_report
from jobs.ab import analysis, outputs, registry, render, stats

DAY = dt.date(2026, 11, 20)
START = DAY - dt.timedelta(days=3)
EXPERIMENTS, PER_USER, VARIANTS = 200, 5, ["v0", "v1", "v2"]
TYPES = ["page_view", "click", "search", "play", "add_to_cart", "purchase"]
METRICS = {
    "buy": {"kind": "proportion", "event_type": "purchase"},
    "cart": {"kind": "proportion", "event_type": "add_to_cart"},
    "searched": {"kind": "proportion", "event_type": "search"},
    "revenue": {"kind": "continuous", "event_type": "purchase", "value": "revenue"},
    "purchases": {"kind": "continuous", "event_type": "purchase"},
    "plays": {"kind": "continuous", "event_type": "play"},
    "views": {"kind": "continuous", "event_type": "page_view"},
    "clicks": {"kind": "continuous", "event_type": "click"},
    "ctr": {"kind": "ratio", "numerator": {"event_type": "click"}, "denominator": {"event_type": "page_view"}},
    "aov": {"kind": "ratio", "numerator": {"event_type": "purchase", "value": "revenue"},
            "denominator": {"event_type": "purchase"}},
}


def bench_registry() -> registry.Registry:
    names = list(METRICS)
    return registry.parse({
        "metrics": METRICS,
        "experiments": [{
            "id": f"exp{e:03d}", "hypothesis": "benchmark", "variants": dict.fromkeys(VARIANTS, 1 / 3),
            "control": "v0", "primary_metric": {"metric": "buy", "direction": "increase"},
            "secondary_metrics": [{"metric": m, "direction": "any"} for m in names[1:7]],
            "guardrail_metrics": [{"metric": m, "must_not": "decrease"} for m in names[7:]],
            "start_date": str(START), "end_date": "2026-12-31"} for e in range(EXPERIMENTS)],
    })


def generate(spark: SparkSession, users: int, table: str) -> None:
    u = F.col("id")
    day0 = F.lit(dt.datetime.combine(START - dt.timedelta(days=1), dt.time())).cast("long")
    exposure_ts = (day0 + 86400 + F.abs(F.xxhash64(u, F.lit(1)) % (3 * 86400))).cast("timestamp")
    experiments = F.array(*[F.struct(
        F.format_string("exp%03d", ((u * 7 + k * 37) % EXPERIMENTS).cast("int")).alias("experiment_id"),
        F.element_at(F.array(*map(F.lit, VARIANTS)),
                     (F.abs(F.xxhash64(u, F.lit(k))) % 3 + 1).cast("int")).alias("variant"))
        for k in range(PER_USER)])
    base = spark.range(users).select(F.format_string("u%08d", u).alias("user_id"), u, exposure_ts.alias("exposed"))
    exposures = base.select("user_id", F.col("exposed").alias("event_ts"), F.lit("page_view").alias("event_type"),
                            F.lit(None).cast("double").alias("revenue"), experiments.alias("experiments"))
    outcome = base.select("user_id", "id", "exposed", F.explode(F.sequence(F.lit(0), F.lit(3))).alias("n"))
    shift = (F.abs(F.xxhash64("id", "n", F.lit(7))) % (4 * 86400)).cast("long") - 86400
    kind = F.element_at(F.array(*map(F.lit, TYPES)), (F.abs(F.xxhash64("id", "n")) % 6 + 1).cast("int"))
    outcomes = outcome.select("user_id", (F.col("exposed").cast("long") + shift).cast("timestamp").alias("event_ts"),
                              kind.alias("event_type"))
    outcomes = outcomes.withColumn("revenue", F.when(F.col("event_type") == "purchase", F.lit(19.9)))
    outcomes = outcomes.withColumn("experiments", F.lit(None).cast(exposures.schema["experiments"].dataType))
    events = exposures.unionByName(outcomes).where(F.col("event_ts") < F.lit(dt.datetime.combine(DAY, dt.time(23))))
    events.withColumn("dt", F.to_date("event_ts")).write.partitionBy("dt").mode("overwrite").parquet(table)


def rows_scanned(spark: SparkSession) -> int:
    """Rows read from Parquet files by every SQL query so far (`number of output rows` of the scan nodes).

    A query that reuses a persisted DataFrame shows the scan node with 0 rows, so this counts
    real scans only.
    """
    app = spark.sparkContext.applicationId
    url = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{app}/sql?details=true&length=100000"
    with urllib.request.urlopen(url) as resp:
        executions = json.load(resp)
    return sum(int(str(metric["value"]).replace(",", ""))
               for execution in executions for node in execution.get("nodes", [])
               if node.get("nodeName", "").startswith("Scan parquet")
               for metric in node.get("metrics", []) if metric.get("name") == "number of output rows")


def peer_loop(comps) -> float:
    """The frequentist tests one comparison at a time (statsmodels/scipy), as a loop would do them."""
    from scipy.stats import ttest_ind_from_stats
    from statsmodels.stats.proportion import proportions_ztest

    started = time.perf_counter()
    for r in comps.itertuples():
        if r.kind == "proportion":
            proportions_ztest([r.main_sum_t, r.main_sum_c], [r.count_t, r.count_c], alternative="two-sided")
        else:
            vc = stats.sample_variance(r.count_c, r.main_sum_c, r.main_sum_squares_c)
            vt = stats.sample_variance(r.count_t, r.main_sum_t, r.main_sum_squares_t)
            ttest_ind_from_stats(r.main_sum_t / r.count_t, np.sqrt(vt), r.count_t, r.main_sum_c / r.count_c,
                                 np.sqrt(vc), r.count_c, equal_var=False)
    return time.perf_counter() - started


def synthetic_counts(reg: registry.Registry, users: int) -> pd.DataFrame:
    """Counts in the interchange format, as the aggregation would give for `users` users in 5 experiments each:
    cumulative rows plus 4 day slices per experiment x variant x metric, with consistent sums."""
    rng = np.random.default_rng(11)
    per_arm = users * PER_USER // EXPERIMENTS // len(VARIANTS)
    rows = []
    for exp in reg.experiments:
        for v, variant in enumerate(VARIANTS):
            for day in (None, 0, 1, 2, 3):
                n = float(per_arm if day is None else per_arm * (4 - day) // 4)
                for name, metric in reg.metrics.items():
                    row = {"experiment_id": exp.id, "variant": variant, "metric": name, "day": day, "count": n}
                    if metric.kind == "proportion":
                        conversions = float(rng.binomial(int(n), 0.1 * (1 + 0.02 * v)))
                        row.update(main_sum=conversions, main_sum_squares=conversions)
                    else:
                        y = rng.gamma(2.0, 1.5, int(n))
                        row.update(main_sum=y.sum(), main_sum_squares=(y * y).sum())
                        if metric.kind == "ratio":
                            d = rng.poisson(4, int(n)) + 1.0
                            row.update(denominator_sum=d.sum(), denominator_sum_squares=(d * d).sum(),
                                       main_denominator_sum_product=(y * d).sum())
                    rows.append(row)
    return pd.DataFrame(rows)


def report_only(users: int) -> None:
    """CPU seconds of the report's statistics and of writing report.json and report.html, no Spark."""
    reg = bench_registry()
    counts = synthetic_counts(reg, users)
    started = time.process_time()
    report = analysis.build_report(counts, reg, DAY)
    built = time.process_time()
    text = json.dumps(report, allow_nan=False)
    dumped = time.process_time()
    tonight = outputs.history_rows(report)
    history = pd.concat([tonight.assign(report_date=str(DAY - dt.timedelta(days=n))) for n in range(5)])
    html = render.report_html(report, history)
    rendered = time.process_time()
    print(f"report for {len(report['experiments'])} experiments x {len(VARIANTS)} arms x {len(METRICS)} metrics "
          f"({len(counts):,} count rows), CPU seconds:")
    print(f"  build_report {built - started:.2f} s, report.json {dumped - built:.2f} s ({len(text) / 1e6:.1f} MB), "
          f"report.html {rendered - dumped:.2f} s ({len(html) / 1e6:.1f} MB); total {rendered - started:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--work-dir", default="/tmp/ab-bench")
    parser.add_argument("--report-only", action="store_true", help="no Spark: the report's CPU time alone")
    args = parser.parse_args()
    if args.report_only:
        report_only(args.users)
        return
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    spark = (SparkSession.builder.master("local[*]").config("spark.driver.memory", "8g")
             .config("spark.sql.shuffle.partitions", "16").config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    table = (work / "bronze" / "clickstream").as_uri()
    t0 = time.perf_counter()
    generate(spark, args.users, table)
    reg = bench_registry()
    events = spark.read.parquet(table)
    rows, exposure_rows = events.count(), events.select(F.size("experiments").alias("n")).where("n > 0").agg(
        F.sum("n")).first()[0]
    print(f"data: {rows:,} events, {exposure_rows:,} exposure rows, generated in {time.perf_counter() - t0:.1f}s")

    before = rows_scanned(spark)
    t1 = time.perf_counter()
    counts, diag = ab_report.aggregate(spark.read.parquet(table), reg, reg.experiments, DAY)
    aggregation = time.perf_counter() - t1
    scans = (rows_scanned(spark) - before) / rows
    print(f"spark aggregation: {aggregation:.1f}s -> {len(counts):,} count rows, {len(diag):,} diagnostic rows; "
          f"rows read from the source = {scans:.2f} x its {rows:,} rows")

    t2 = time.perf_counter()
    report = analysis.build_report(counts, reg, DAY, diagnostics=diag)
    statistics = time.perf_counter() - t2
    t_html = time.perf_counter()
    html = render.report_html(report, outputs.history_rows(report))
    rendering = time.perf_counter() - t_html
    comps = analysis.compare(analysis.normalise(counts), reg.experiments, reg.settings)
    t3 = time.perf_counter()
    analysis.compare(analysis.normalise(counts), reg.experiments, reg.settings)
    vectorised = time.perf_counter() - t3
    loop = peer_loop(comps[comps["kind"] != "ratio"])
    decisions = {}
    for e in report["experiments"]:
        decisions[e["verdict"]["decision"]] = decisions.get(e["verdict"]["decision"], 0) + 1
    print(f"statistics (whole report, {len(comps):,} comparisons, Bayesian/bandit, novelty, power): "
          f"{statistics:.2f}s (goal < 2 s); verdicts {decisions}")
    print(f"report.html: {rendering:.1f}s for {len(report['experiments'])} experiments ({len(html) / 1e6:.1f} MB)")
    n_loop = int((comps["kind"] != "ratio").sum())
    print(f"frequentist tests vectorised: {vectorised:.3f}s for {len(comps):,}; statsmodels/scipy one at a time: "
          f"{loop:.3f}s for {n_loop:,} -> ratio {loop / n_loop / (vectorised / len(comps)):.0f}x per comparison")
    spark.stop()


if __name__ == "__main__":
    main()
