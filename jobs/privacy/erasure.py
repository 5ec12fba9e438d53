"""Erase people from the lake: every row about them in every table `privacy.yaml` lists, and for good.

For each listed table (and each of its partitions), rows whose subject column equals one of the ids, or
whose JSON texts carry one of them in the subject field, are counted; a directory with any is rewritten
without them and swapped in under its writers' lock (the commit protocol: a reader sees it before or
after, a crash is finished by the next run). Hidden bookkeeping inside a table directory (the CDC
history's `_orphan_deletes`) and its manifest are carried over, the manifest noting the erasure (without the
CDC file layout, which no longer describes the files: the table's next merge rewrites it whole).

The ids' HMAC tokens join the suppression list (`gold/privacy/erased_users`): bronze and the CDC merge
leave those people out whenever they rebuild or merge, so raw/ (kept `raw_days`, then deleted) cannot
bring them back. The report (`reports/privacy/dt=D/erasure-<run>.json`) counts what was removed per
table; it holds the number of people, never their ids.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import config, storage
from jobs.common.keyed_hash import hmac_sha256
from jobs.common.paths import Lake
from jobs.common.run import Output, Run
from jobs.common.runner import new_run_id
from jobs.common.spark import LakeFS
from jobs.privacy import STAGE
from jobs.privacy.settings import PersonalTable, PrivacySettings, directories

log = logging.getLogger(__name__)
JOB = "privacy_erasure"
#: How many ids one erasure takes (a bigger request is split by the caller): the predicates list them.
MAX_SUBJECTS = 10_000


def matches(frame: DataFrame, table: PersonalTable, ids: list[str], field: str) -> Column | None:
    """Rows about one of `ids` (None: the frame has none of the table's matching columns)."""
    if table.column is not None:
        return F.col(table.column).isin(ids) if table.column in frame.columns else None
    texts = [c for c in table.json if c in frame.columns]
    if not texts:
        return None
    quoted = "|".join(re.escape(json.dumps(i)) for i in ids)
    pattern = rf'"{re.escape(field)}"\s*:\s*({quoted})'  # broken JSON (a quarantined record) too
    found = [F.get_json_object(F.col(c), f"$.{field}").isin(ids) | F.col(c).rlike(pattern) for c in texts]
    condition = found[0]
    for more in found[1:]:
        condition = condition | more
    return F.coalesce(condition, F.lit(False))


def _erase_directory(spark: SparkSession, lake: Lake, day: dt.date, run_id: str, directory: str, group: str,
                     table: PersonalTable, ids: list[str], field: str) -> int:
    """Rewrite one directory without the ids' rows, under its group's lock; the rows removed."""
    with Run(JOB, lake, day, run_id, group=group, fs=LakeFS(spark)) as this:
        if not storage.list_files(directory, ".parquet"):
            return 0
        frame = spark.read.parquet(directory)
        condition = matches(frame, table, ids, field)
        removed = frame.where(condition).count() if condition is not None else 0
        if not removed:
            return 0
        zone = directory[len(lake.root) + 1:].split("/", 1)[0]
        staged = this.table_staging(zone, "erasure")
        frame.where(~condition).write.parquet(staged)
        for hidden in storage.children(directory):  # bookkeeping Spark does not read (e.g. _orphan_deletes)
            name = hidden.rsplit("/", 1)[-1]
            if name.startswith("_") and name != "_manifest.json" and storage.is_dir(hidden):
                storage.copy(hidden, f"{staged}/{name}")
        previous = json.loads(this.fs.read_text(Lake.manifest(directory)) or "{}")
        previous.pop("layout", None)  # the files are new: a CDC table's next merge rewrites and re-cuts it whole
        manifest = {**previous, "erasure": {"run_id": run_id, "erased_on": day.isoformat(), "rows_removed": removed}}
        this.publish([Output(staged, directory, manifest)])
        return removed


def suppress(spark: SparkSession, lake: Lake, day: dt.date, run_id: str, ids: list[str]) -> None:
    """Add the ids' tokens to the suppression list (HMAC with the pseudonymisation key: not the ids)."""
    key = config.ip_hash_key()
    with Run(JOB, lake, day, run_id, group=f"{STAGE}/erased_users", fs=LakeFS(spark)) as this:
        fresh = spark.createDataFrame([(i,) for i in ids], "id string").select(
            hmac_sha256(F.col("id"), key).alias("token"), F.lit(day).alias("erased_on"))
        existing = spark.read.parquet(lake.erased_users()) if this.fs.exists(lake.erased_users()) else None
        tokens = fresh if existing is None else existing.unionByName(fresh).dropDuplicates(["token"])
        staged = this.table_staging("gold", "privacy_erased_users")
        tokens.coalesce(1).write.parquet(staged)
        this.publish([Output(staged, lake.erased_users())])


def run(spark: SparkSession, lake: Lake, day: dt.date, ids: list[str], settings: PrivacySettings,
        run_id: str | None = None) -> dict[str, Any]:
    """Erase `ids` from every listed table; returns the report (also written to reports/privacy/dt=D/)."""
    run_id = run_id or new_run_id()
    ids = sorted(set(ids))
    if not ids:
        return {"status": "nothing_to_erase", "dt": day.isoformat(), "run_id": run_id, "subjects": 0}
    if len(ids) > MAX_SUBJECTS:
        raise ValueError(f"{len(ids)} people in one erasure; at most {MAX_SUBJECTS} (split the request)")
    suppress(spark, lake, day, run_id, ids)  # first: a rebuild running meanwhile already leaves them out
    removed: dict[str, int] = {}
    for table in settings.tables:
        for directory, group in directories(lake, table):
            rows = _erase_directory(spark, lake, day, run_id, directory, group, table, ids, settings.subject_field)
            if rows:
                removed[directory[len(lake.root) + 1:]] = rows
                log.info("erased %d rows from %s", rows, directory)
    report = {"status": "erased", "dt": day.isoformat(), "run_id": run_id, "job": JOB,
              **config.code_identity(), "subjects": len(ids), "rows_removed": removed,
              "tables_checked": [t.path for t in settings.tables],
              "note": f"raw/ keeps the exact records until its retention ({settings.raw_days} days) deletes them"}
    storage.write_atomic(lake.report_file(STAGE, day, f"erasure-{run_id}.json"),
                         json.dumps(report, indent=2).encode())
    return report


def deleted_users(spark: SparkSession, lake: Lake, day: dt.date, field: str) -> list[str]:
    """The users the OLTP database deleted on `day` (closed by a delete in `silver/users_history`)."""
    history = lake.silver("users", "history")
    if not LakeFS(spark).exists(history):
        return []
    rows = (spark.read.parquet(history).where((F.col("closed_by") == "d") & (F.to_date("valid_to") == F.lit(day)))
            .select(field).distinct().collect())
    return sorted(r[field] for r in rows)
