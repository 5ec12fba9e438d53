"""One feature day: bronze window + CDC history -> `gold/features/{user_day,item_day}/dt=D` and the churn labels
whose window closed that night (`gold/labels/churn_<N>d/dt=D-N`), gated by GX and published together.

Inputs are checked before Spark reads anything: the day's bronze partition and every partition of the
read window after the first day the lake has (a gap is an error naming the days, never a silent
computation on part of the window), and the CDC history merged through D (else the plan state of D
could miss that day's changes). A day whose inputs (the window's bronze commits, the history's commit,
the code and the settings) did not change since it was published is not recomputed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from jobs.common import config, storage
from jobs.common.errors import MissingInput
from jobs.common.outputs import read_run_report
from jobs.common.paths import Lake
from jobs.common.run import Output, Run
from jobs.common.runner import Outcome, new_run_id
from jobs.common.spark import LakeFS, Persisted
from jobs.features import compute, gate
from jobs.features.registry import ENTITIES, Entity, Feature, Scope, registry, select
from jobs.features.settings import FeatureSettings, load

log = logging.getLogger(__name__)

JOB = "features_daily"
HISTORY_TABLES = ("subscriptions", "users")


def feature_table(entity: Entity) -> str:
    return f"features/{entity.table}"


def label_table(settings: FeatureSettings) -> str:
    return f"labels/churn_{settings.churn_horizon_days}d"


def cdc_merged_through(lake: Lake) -> dt.date | None:
    """The last date whose CDC merge was published (reports/cdc/dt=D/run.json), None before the first."""
    reports = lake.table("reports", "cdc")
    days = [dt.date.fromisoformat(d.rsplit("dt=", 1)[1])
            for d in (storage.children(reports) if storage.exists(reports) else []) if "/dt=" in d]
    return max((d for d in days if (read_run_report(lake, "cdc", d) or {}).get("status") == "published"),
               default=None)


@dataclass(frozen=True)
class Inputs:
    bronze: list[str]        # the read window's bronze partitions, oldest first
    history: dict[str, str]  # table -> silver/<table>_history
    fingerprint: str


def find_inputs(lake_fs: LakeFS, lake: Lake, day: dt.date, settings: FeatureSettings,
                features: tuple[Feature, ...]) -> Inputs:
    """Everything day D reads, or MissingInput naming what is missing."""
    table = lake.table("bronze", "clickstream")
    present = lake_fs.partition_dates(table)
    if day not in present:
        raise MissingInput(f"bronze/clickstream/dt={day} is not published: run clickstream_bronze for {day} first")
    window = [day - dt.timedelta(days=n) for n in range(settings.read_days - 1, -1, -1)]
    gaps = [d for d in window if d >= min(present) and d not in present]
    if gaps:
        raise MissingInput(f"bronze/clickstream has no partition for {', '.join(map(str, gaps))} inside the "
                           f"{settings.read_days}-day window of {day}: features are never computed on part of a "
                           "window; backfill those days with clickstream_bronze first")
    merged = cdc_merged_through(lake)
    if merged is None or merged < day:
        raise MissingInput(f"the CDC history is merged through {merged or 'no date yet'}, not {day}: the plan state "
                           f"as of the end of {day} could miss changes; run cdc_ingestion for {day} first")
    history = {t: lake.silver(t, "history") for t in HISTORY_TABLES}
    absent = [f"silver/{t}_history" for t, path in history.items() if not lake_fs.exists(path)]
    if absent:
        raise MissingInput(f"{', '.join(absent)} not found: onboard the table with cdc_ingestion first")
    bronze = [lake.partition("bronze", "clickstream", d) for d in window if d in present]
    commits = [json.loads(lake_fs.read_text(Lake.manifest(p)) or "{}").get("commit_id") for p in
               [*bronze, *history.values()]]
    entries = [*bronze, *map(str, commits), config.code_version(), repr(settings), *(f.name for f in features)]
    return Inputs(bronze, history, hashlib.sha256("\n".join(entries).encode()).hexdigest())


def patched(fresh: DataFrame, published: DataFrame, entity: Entity, chosen: tuple[Feature, ...]) -> DataFrame:
    """`--features`: the published rows with only the chosen features replaced. A published key the fresh
    computation has no row for gets 0 where the computation itself gives 0 (`Feature.zero_when_absent`)."""
    names = [f.name for f in chosen]
    joined = published.drop(*names).join(fresh.select(entity.key, *names), entity.key, "left")
    zeros = {f.name: 0 for f in chosen if f.zero_when_absent}
    return joined.fillna(zeros).select(*fresh.columns)


def requested(names: str) -> list[str]:
    """`--features a,b` as a list; an unknown name fails (before Spark starts) with the list of known ones."""
    only = [n.strip() for n in names.split(",") if n.strip()]
    select(registry(load()), only)
    return only


def run(spark: SparkSession, lake: Lake, day: dt.date, run_id: str | None = None, only: list[str] | None = None,
        full_refresh: bool = False, optional: bool = False) -> dict[str, Any] | None:
    """The whole job for one day; returns the manifest (`published`, `up_to_date` or `rejected`).

    `only`: recompute just these features, keeping the others' published values. `optional` (a revisited
    day): a day with no bronze partition has nothing to recompute (None), not an error."""
    settings = load()
    features = registry(settings)
    chosen = select(features, only) if only else features
    with Run(JOB, lake, day, run_id or new_run_id(), group=f"features/dt={day}", fs=LakeFS(spark)) as this:
        if optional and not this.fs.exists(lake.partition("bronze", "clickstream", day)):
            return None
        inputs = find_inputs(this.fs, lake, day, settings, chosen)
        finals = {e.name: lake.partition("gold", feature_table(e), day) for e in ENTITIES.values()}
        published = json.loads(this.fs.read_text(Lake.manifest(finals["user"])) or "{}")
        if not full_refresh and not only and published.get("input_fingerprint") == inputs.fingerprint:
            log.info("features dt=%s are up to date (same inputs, code and settings)", day)
            return {**published, "status": "up_to_date"}
        persisted = Persisted()
        try:
            return _compute_and_publish(spark, this, settings, features, chosen, inputs, persisted)
        finally:
            persisted.release()


def _compute_and_publish(spark: SparkSession, this: Run, settings: FeatureSettings, features: tuple[Feature, ...],
                         chosen: tuple[Feature, ...], inputs: Inputs, persisted: Persisted) -> dict[str, Any]:
    lake, day = this.lake, this.day
    bronze = spark.read.option("basePath", lake.table("bronze", "clickstream")).parquet(*inputs.bronze)
    events = compute.window_events(bronze, day)
    subscriptions = spark.read.parquet(inputs.history["subscriptions"])
    scope = Scope(day, settings)
    frames = {"user": compute.user_day(events, compute.user_state(
                  subscriptions, spark.read.parquet(inputs.history["users"]), day), features, scope),
              "item": compute.item_day(events, features, scope, persisted)}
    label_day = day - dt.timedelta(days=settings.churn_horizon_days)
    staged: dict[str, str] = {}
    targets: dict[str, tuple[str, str, dt.date]] = {}  # name -> (table, final, day)
    for name, entity in ENTITIES.items():
        table, final = feature_table(entity), lake.partition("gold", feature_table(entity), day)
        frame = frames[name]
        if len(chosen) < len(features):
            if not this.fs.exists(final):
                raise MissingInput(f"--features patches a published partition, and gold/{table}/dt={day} has none; "
                                   "run without --features first")
            mine = entity.features(chosen)
            frame = patched(frame, spark.read.parquet(final), entity, mine) if mine else spark.read.parquet(final)
        staged[name] = this.staging("gold", table)
        frame.write.parquet(staged[name])
        targets[name] = (table, final, day)
    labels = label_table(settings)
    staged["labels"] = this.txn.stage(lake.staging("gold", labels, label_day, this.txn.commit_id))
    compute.churn_labels(subscriptions, label_day, settings.churn_horizon_days).write.parquet(staged["labels"])
    targets["labels"] = (labels, lake.partition("gold", labels, label_day), label_day)
    transformed = this.elapsed()

    from jobs.common.validation import validate  # GX import is slow: only when validating

    manifests: dict[str, dict[str, Any]] = {}
    gates = []
    for name, (table, _, table_day) in targets.items():
        written = spark.read.parquet(staged[name])
        rows = written.count()
        history = [int(m["rows"]) for m in this.fs.manifests_before(lake, "gold", table, table_day,
                                                                      settings.row_count.history_days)]
        min_rows, max_rows = settings.row_count.bounds(history) if name != "labels" else (0, None)
        suite = gate.feature_suite(ENTITIES[name], features) if name != "labels" else gate.label_suite(labels)
        outcome = validate(written, suite["name"], {"min_rows": min_rows, "max_rows": max_rows},
                           this.docs(f"features/{name}"), this.fs, suite_document=suite)
        gates.append(outcome)
        manifests[name] = {"table": f"gold/{table}", **this.header(), "dt": table_day.isoformat(),
                           "feature_ts": compute.feature_ts(table_day).isoformat(), "rows": rows,
                           "row_count_bounds": [min_rows, max_rows], "validation": outcome.as_dict()}
    shared = {"inputs": {"bronze": inputs.bronze, "history": inputs.history}, "input_fingerprint": inputs.fingerprint,
              "features_recomputed": [f.name for f in chosen] if len(chosen) < len(features) else "all",
              "seconds": {"transform_and_write": transformed, "validation": round(this.elapsed() - transformed, 2)},
              "finished_at": dt.datetime.now(dt.UTC).isoformat()}
    manifests = {name: {**m, **shared} for name, m in manifests.items()}
    if not all(g.success for g in gates):
        failures = [f"{g.suite}: {failure}" for g in gates for failure in g.failures]
        record = {**manifests["user"], "status": "rejected", "failures": failures,
                  "data_docs": [g.data_docs for g in gates if not g.success]}
        return {**record, "rejected_batch": this.reject("gold", "features", staged, record)}
    this.publish([Output(staged[name], final, {**manifests[name], "status": "published"})
                  for name, (_, final, _) in targets.items()])
    return {**manifests["user"], "status": "published", "outputs": {
        name: {"path": final, "dt": manifests[name]["dt"], "rows": manifests[name]["rows"]}
        for name, (_, final, _) in targets.items()}}


def summary(manifest: dict[str, Any]) -> Outcome:
    """What the entry point prints for a day, and the one line when the gate rejected it."""
    record = {k: manifest.get(k) for k in ("status", "dt", "run_id", "rows", "outputs", "features_recomputed")}
    if manifest["status"] != "rejected":
        return Outcome(record)
    docs = ", ".join(manifest["data_docs"])
    return Outcome(record, rejected=f"features dt={manifest['dt']} not published; GX: "
                                    f"{'; '.join(manifest['failures'])}; Data Docs: {docs}; "
                                    f"batch kept at {manifest['rejected_batch']}")
