"""
### Nightly pipeline

Runs at 02:00 UTC and processes the **previous UTC day** (event date D): drains the
clickstream topic one last time, then builds `bronze/clickstream/dt=D` with the Great
Expectations gate, then the A/B report on the validated data (`ab_report`: Spark aggregation,
scipy statistics, `reports/ab/dt=D/report.{json,html}` in the lake) and copies it to the reports
bucket (`publish_ab_report`). A failed gate fails `clickstream_bronze`, nothing downstream runs
and the partition is not published; the task log names the failed expectations and the Data Docs.

**Params** (Trigger DAG w/ config): `run_date` (YYYY-MM-DD) re-runs or backfills one day;
`full_refresh` rebuilds even when the published partition already has the same raw inputs;
`experiments` (list of ids) recomputes only those experiments' reports for the date, keeping the
others. Experiments are registered in `include/experiments.yaml`.

ALS embeddings (`als_due` -> `als_train` -> `summarise_als`) train on the cadence in
`include/als.yaml` (weekly, or when enough new events arrived); `als_force_retrain` trains
tonight, `als_params` overrides hyperparameters (e.g. `{"rank": 64, "reg_param": 0.05}`) and
`als_search` runs the small hyperparameter search. A new model serves only if it beats the
champion and the popularity baseline on the holdout; `summarise_als` says which and why.

A scheduled run whose day has no clickstream (`input_landed`: e.g. unpausing the DAG on a machine
without data) is skipped as a whole at once, so it never holds the run slot ahead of a manual run.

`wait_for_cdc` holds `summarise_outputs` until the `cdc_ingestion` DAG has published the date's
OLTP tables (`silver/<table>_current`, `_history`); a rejected CDC merge fails it visibly.

`features_daily` then computes the day's user and item features as of the end of the day (and the
churn labels whose horizon closed), after recomputing the lateness window's days whose inputs
changed; `features` recomputes only the listed features. Catalogue: docs/FEATURES.md. Training
sets are built by hand with the `training_set` DAG.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable
from pipeline_airflow import params
from pipeline_airflow.dates import resolve_run_date
from pipeline_airflow.shared import (
    AB_REPORTS,
    ALS_MODELS,
    BRONZE_CLICKSTREAM,
    CDC_SILVER,
    DAG_DEFAULTS,
    FEATURES,
    LABELS,
    LAKE,
    RUN_DATE,
)
from pipeline_airflow.spark import spark_job
from pipeline_airflow.tasks.ab import publish_ab_report
from pipeline_airflow.tasks.als import als_due, summarise_als
from pipeline_airflow.tasks.cdc import wait_for_cdc
from pipeline_airflow.tasks.clickstream import input_landed, summarise_outputs
from pipeline_airflow.tasks.ingest import drain_clickstream
from pipeline_airflow.tasks.privacy import apply_retention

with DAG(
    dag_id="nightly",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
    doc_md=__doc__,
    tags=["nightly", "clickstream"],
    **DAG_DEFAULTS,
    params={
        "run_date": params.run_date("Event date to process (default: the day before the run)"),
        "full_refresh": Param(False, type="boolean", title="Full refresh",
                              description="Rebuild even if the partition's raw inputs did not change"),
        "experiments": Param([], type="array", items={"type": "string", "maxLength": 128}, maxItems=500,
                             title="Experiments",
                             description="A/B report only for these experiment ids (default: all registered)"),
        "als_force_retrain": Param(False, type="boolean", title="Retrain ALS",
                                   description="Train ALS tonight whatever the cadence says"),
        "als_params": params.als_params(),
        "als_search": Param(False, type="boolean", title="ALS search",
                            description="Run the small ALS hyperparameter search (als.yaml)"),
        "features": params.feature_names("Features", "Recompute only these features for the date, keeping the "
                                         "others (default: all; names in docs/FEATURES.md)"),
    },
):
    run_date = resolve_run_date()
    bronze = spark_job(
        "clickstream_bronze",
        doc_md="Raw -> bronze Parquet for the day (and the days of the lateness window whose raw inputs grew), "
               "quarantine with reasons, GX gate, atomic publish.",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root,
                 "--refresh": "{{ 'full' if params.full_refresh else 'incremental' }}"},
        switches={"--revisit-late": True},  # late events of the days before land in their day
        trigger_rule="none_failed",
        outlets=[BRONZE_CLICKSTREAM],
    )

    ab_report = spark_job(
        "ab_report",
        doc_md="Exposures and outcomes aggregated in Spark, statistics in scipy; report.json/html in the lake.",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root,
                 "--experiments": "{{ params.experiments | join(',') }}"},
        outlets=[AB_REPORTS],
    )

    als_train = spark_job(
        "als_train",
        doc_md="ALS on the clickstream window, judged on the holdout against popularity and the champion; "
               "a versioned model with embeddings and recommendations; the champion moves only on a win.",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root,
                 "--params": "{{ params.als_params | tojson if params.als_params else '' }}"},
        switches={"--search": "{{ params.als_search }}"},
        outlets=[ALS_MODELS],
    )

    features = spark_job(
        "features_daily",
        doc_md="User and item features as of the end of the day from the bronze window and the CDC history, "
               "churn labels whose horizon closed, GX gate, atomic publish (docs/FEATURES.md).",
        options={"--date": RUN_DATE, "--lake-root": LAKE.root, "--features": "{{ params.features | join(',') }}",
                 "--refresh": "{{ 'full' if params.full_refresh else 'incremental' }}"},
        switches={"--revisit-late": "{{ not params.features }}"},  # late events of the days before count there
        inlets=[BRONZE_CLICKSTREAM, *[a for a in CDC_SILVER if a.name.endswith("_history")]],
        outlets=[*FEATURES, LABELS],
    )

    outputs = summarise_outputs(run_date)
    cdc_ready = wait_for_cdc(run_date)
    landed = input_landed(run_date)
    run_date >> drain_clickstream() >> landed >> bronze >> outputs >> apply_retention(run_date)
    landed >> cdc_ready >> outputs
    [bronze, cdc_ready] >> features
    bronze >> ab_report >> publish_ab_report(run_date)
    bronze >> als_due(run_date) >> als_train >> summarise_als(run_date)
