# Embedded-mode environment: SQLite Airflow, Spark local[*], a local lake. Sourced by scripts/pipeline.sh.
# Every value can be overridden from the caller's environment (see .env.example).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VENV="${VENV:-$REPO/.venv}"
export PATH="$VENV/bin:$PATH"
# The pinned JVM jars (jvm/pom.xml), fetched by set-up; every spark-submit passes them
export PIPELINE_JARS_DIR="${PIPELINE_JARS_DIR:-$REPO/.jars}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV/bin/python}"
export PIPELINE_LAKE_ROOT="${PIPELINE_LAKE_ROOT:-file://$REPO/lake}"
export PIPELINE_CLICKSTREAM_SOURCE="${PIPELINE_CLICKSTREAM_SOURCE:-raw}"
# The embedded mode is the demo: demo defaults (the public IP-hash key) are allowed only here.
export PIPELINE_MODE="${PIPELINE_MODE:-demo}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# A laptop's share: the LocalExecutor starts `parallelism` worker processes (default 32, ~150 MB each, idle)
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
LOCAL_SPARK='{"conn_type": "spark", "host": "local[*]"}'
export AIRFLOW_CONN_SPARK_DEFAULT="${AIRFLOW_CONN_SPARK_DEFAULT:-$LOCAL_SPARK}"
export GX_ANALYTICS_ENABLED=False
# Native BLAS single-threaded: in local mode Spark's tasks share the driver's environment.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

# A job by hand, as the DAG submits it: pipeline.yaml's Spark conf, the pinned jars (Iceberg, hadoop-aws, JDBC
# drivers), the code artifact for the executors. `source scripts/env.sh; spark_submit jobs/ab_report.py --date D`
spark_submit() {
  local conf
  conf=$(python -m jobs.common.catalog)
  # shellcheck disable=SC2086
  spark-submit $conf --py-files "$(python -m jobs.common.artifact)" "$@"
}
