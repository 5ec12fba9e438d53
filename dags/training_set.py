"""
### Training set (manual)

Joins an entity file of `(user_id and/or item_id, event_timestamp[, label, ...])` rows with the
requested features **as they were known at each row's timestamp**: the latest feature day whose
`feature_ts` is at or before it, none older than `max_age_days` (docs/FEATURES.md). Writes Parquet
to `out` (never half written); refuses an existing `out` unless `overwrite`.

A churn training set: `entities` = `<lake>/gold/labels/churn_7d/dt=D` (user_id, event_timestamp,
churned), `features` = e.g. `search_count_7d`, `days_since_last_search`, `plan`, `tenure_days`.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param
from pipeline_airflow import params
from pipeline_airflow.shared import DAG_DEFAULTS, FEATURES, LAKE
from pipeline_airflow.spark import spark_job

with DAG(
    dag_id="training_set",
    schedule=None,
    doc_md=__doc__,
    tags=["features", "manual"],
    **DAG_DEFAULTS,
    params={
        "entities": Param("", type="string", minLength=1, maxLength=params.MAX_TEXT, title="Entity file",
                          description="Parquet file or directory with user_id / item_id and event_timestamp"),
        "features": params.feature_names("Features", "The features to join (docs/FEATURES.md)", min_items=1),
        "out": Param("", type="string", minLength=1, maxLength=params.MAX_TEXT, title="Output",
                     description="Where to write the training set (a Parquet directory)"),
        "max_age_days": Param(None, type=["null", "integer"], minimum=1, maximum=365, title="Maximum age (days)",
                              description="Oldest feature day to serve (default: include/features.yaml)"),
        "overwrite": Param(False, type="boolean", title="Overwrite", description="Replace an existing output"),
    },
):
    spark_job(
        "training_set",
        doc_md="Point-in-time join of the entity file with the features (an as-of join in Spark).",
        options={"--entities": "{{ params.entities }}", "--features": "{{ params.features | join(',') }}",
                 "--out": "{{ params.out }}", "--lake-root": LAKE.root, "--max-age-days": "{{ params.max_age_days }}"},
        switches={"--overwrite": "{{ params.overwrite }}"},
        inlets=FEATURES,
    )
