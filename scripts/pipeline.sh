#!/usr/bin/env bash
# The two README commands, from nothing: `pipeline.sh demo` and `pipeline.sh test`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
DEMO_DATE="${DEMO_DATE:-2026-11-20}"

setup() {
  local packages=()
  command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)  # Spark
  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q libopenblas.so.0 || packages+=(libopenblas0)  # BLAS, ALS
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)  # CDC snapshot tests
  command -v mvn >/dev/null 2>&1 || packages+=(maven)  # fetches the pinned JVM jars (jvm/pom.xml)
  command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)  # Celery broker (distributed-workers tests)
  command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)  # validates docker-compose.yaml (tests)
  if [ "${#packages[@]}" -gt 0 ]; then
    echo "== installing Debian packages: ${packages[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat "$REPO"/requirements*.txt "$REPO/constraints.txt" "$REPO/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "== installing Python packages (pinned, see constraints.txt)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r "$REPO/requirements-dev.txt" -c "$REPO/constraints.txt"
    "$VENV/bin/pip" install -q --no-deps -e "$REPO"
    touch "$stamp"
  fi
  fetch_jars
}

fetch_jars() {  # the pinned JVM jars (jvm/pom.xml) into $PIPELINE_JARS_DIR, checked against jvm/jars.sha256
  mkdir -p "$PIPELINE_JARS_DIR"
  if ! (cd "$PIPELINE_JARS_DIR" && sha256sum --quiet -c "$REPO/jvm/jars.sha256" >/dev/null 2>&1); then
    echo "== fetching the pinned JVM jars (jvm/pom.xml) into $PIPELINE_JARS_DIR"
    mvn -q -B -C -f "$REPO/jvm/pom.xml" dependency:copy-dependencies -DexcludeTransitive=true \
      -DoutputDirectory="$PIPELINE_JARS_DIR"
    (cd "$PIPELINE_JARS_DIR" && sha256sum --quiet -c "$REPO/jvm/jars.sha256") \
      || { echo "a fetched jar does not match jvm/jars.sha256" >&2; exit 1; }
  fi
}

airflow_db() {
  airflow db migrate >/dev/null
  airflow pools set kafka_drain 1 "serialises Kafka drains" >/dev/null
}

start_s3() {  # an S3 API server on loopback standing in for MinIO, with the reports bucket
  local port=${DEMO_S3_PORT:-9787}
  moto_server -H 127.0.0.1 -p "$port" > "$AIRFLOW_HOME/demo-s3.log" 2>&1 &
  S3_PID=$!
  trap 'kill $S3_PID 2>/dev/null || true' EXIT
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
  export AIRFLOW_CONN_AB_REPORTS_S3="{\"conn_type\": \"aws\", \"login\": \"demo\", \"password\": \"demo\", \"extra\": {\"bucket\": \"ab-reports\", \"prefix\": \"nightly\", \"endpoint_url\": \"http://127.0.0.1:$port\"}}"
  python - "$port" <<'PY'
import sys, time, boto3
client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
for _ in range(50):
    try:
        client.create_bucket(Bucket="ab-reports")
        break
    except Exception:
        time.sleep(0.2)
else:
    sys.exit("the demo S3 server did not start; see .airflow/demo-s3.log")
PY
}

run_dag() {  # airflow dags test DAG CONF; on failure show the errors and the log, and stop
  local dag=$1 log="$AIRFLOW_HOME/demo-$1.log"
  airflow dags test "$dag" --conf "$2" > "$log" 2>&1 || true
  if ! grep -q "DagRun Finished: dag_id=$dag.*state=success" "$log"; then
    grep -E "ERROR|failed|Failed" "$log" | tail -20
    echo "$dag DAG run failed; full log: $log" >&2
    exit 1
  fi
}

demo() {
  setup
  airflow_db
  local first before
  first=$(date -d "$DEMO_DATE -8 day" +%F)  # two days before the experiments start: CUPED's pre-period
  before=$(date -d "$DEMO_DATE -1 day" +%F)
  echo "== generating nine days of demo clickstream ($first .. $DEMO_DATE) into $PIPELINE_LAKE_ROOT/raw,"
  echo "   and the shop database: its dump as of $before and Debezium events for $before .. $DEMO_DATE"
  python -m demo --start-date "$first" --days 9 --users 12000 --events-per-day 30000 \
    --oltp-from "$before" > "$AIRFLOW_HOME/demo-generate.log"
  echo "== backfilling bronze for $first .. $before and A/B history for the two nights before (spark-submit)"
  spark_submit jobs/clickstream_bronze.py --date "$first" --end-date "$before" > "$AIRFLOW_HOME/demo-backfill.log" 2>&1
  spark_submit jobs/ab_report.py --date "$(date -d "$DEMO_DATE -2 day" +%F)" --end-date "$before" \
    >> "$AIRFLOW_HOME/demo-backfill.log" 2>&1
  echo "== training the first ALS model on the data up to $(date -d "$DEMO_DATE -3 day" +%F) (spark-submit): tonight's champion"
  spark_submit jobs/als_train.py --date "$(date -d "$DEMO_DATE -3 day" +%F)" >> "$AIRFLOW_HOME/demo-backfill.log" 2>&1
  echo "== airflow dags test cdc_ingestion: onboard users, subscriptions, items from the dump, merge $before"
  run_dag cdc_ingestion "$(python -c 'import json, sys; from jobs.common import config; from jobs.common.paths import Lake
from demo.shop import snapshot_params
print(json.dumps(snapshot_params(Lake(config.lake_root()), sys.argv[1])))' "$before")"
  echo "== airflow dags test cdc_ingestion (run_date=$DEMO_DATE): the incremental merge"
  run_dag cdc_ingestion "{\"run_date\": \"$DEMO_DATE\"}"
  start_s3
  echo "== airflow dags test nightly (run_date=$DEMO_DATE)"
  run_dag nightly "{\"run_date\": \"$DEMO_DATE\"}"
  python - "$DEMO_DATE" <<'PY'
import json, os, sys
import boto3
from jobs.common import config, storage
from jobs.common.outputs import partition_summary
from jobs.common.paths import Lake, as_date
lake, day = Lake(config.lake_root()), as_date(sys.argv[1])
summary = partition_summary(lake, "clickstream", day)
print(f"nightly DAG succeeded for {sys.argv[1]}. Outputs:")
for key in ("bronze", "quarantine", "manifest", "data_docs"):
    print(f"  {key.replace('_', ' '):<11} {summary[key]}")
print("  counts      " + json.dumps(summary["counts"]))
reports = lake.partition("reports", "ab", day)
print(f"  A/B report  {reports}/report.html (and report.json)")
extra = json.loads(os.environ["AIRFLOW_CONN_AB_REPORTS_S3"])["extra"]
client = boto3.client("s3", endpoint_url=extra["endpoint_url"], region_name="us-east-1")
objects = [o["Key"] for o in client.list_objects_v2(Bucket=extra["bucket"])["Contents"]]
print(f"  S3          s3://{extra['bucket']}/ at {extra['endpoint_url']}: {', '.join(sorted(objects))}")
print("A/B verdicts:")
for entry in json.loads(storage.read_bytes(lake.report_file("ab", day, "report.json")))["experiments"]:
    print(f"  {entry['id']}: {entry['verdict']['text']}")
als = json.loads(storage.read_bytes(lake.report_file("als", day)))
cdc = json.loads(storage.read_bytes(lake.report_file("cdc", day)))
print(f"CDC merge of the shop database ({cdc['status']}): {json.dumps(cdc['counts'])}")
for name, table in cdc["tables"].items():
    counts = table["counts"]
    print(f"  silver/{name}_current {counts['current_rows']} rows, {name}_history {counts['history_rows']} versions; "
          f"tonight {json.dumps(counts['events'])}")
print(f"ALS embeddings: {als['status']}: {als['reason']}")
if als["status"] == "trained":
    for name in ("model", "popularity", "champion"):
        found = als["metrics"][name] or {}
        if found.get("ndcg_at_k") is not None:
            label = f"champion {found['version']}" if name == "champion" else name
            print(f"  {label:<34} ndcg@10 {found['ndcg_at_k']:.4f}  precision@10 {found['precision_at_k']:.4f}  "
                  f"coverage {found['coverage']:.0%}")
    print(f"  version     {als['model']}")
    print(f"  champion    {lake.champion('als')} -> {als['champion']}")
print("Iceberg tables (catalog lake; Spark SQL: SELECT ... FROM lake.<zone>.<table>):")
from jobs.common.catalog import pyiceberg_catalog
iceberg = pyiceberg_catalog(lake)
for namespace in sorted(iceberg.list_namespaces()):
    for identifier in sorted(iceberg.list_tables(namespace)):
        table = iceberg.load_table(identifier)
        snapshot = table.current_snapshot()
        records = int(snapshot.summary["total-records"]) if snapshot else 0
        print(f"  lake.{'.'.join(identifier):<24} snapshot {snapshot.snapshot_id if snapshot else '-':<20} "
              f"{records:>8,} rows")
print("Features (docs/FEATURES.md):")
for table in ("features/user_day", "features/item_day", "labels/churn_7d"):
    root = lake.table("gold", table)
    for partition in sorted(p for p in storage.children(root) if "dt=" in p):
        found = json.loads(storage.read_bytes(Lake.manifest(partition)))
        print(f"  {partition}  {found['rows']:>6,} rows  GX {'passed' if found['validation']['success'] else 'FAILED'}")
PY
  echo "== a training set (spark-submit jobs/training_set.py): 1,000 users of $DEMO_DATE at times on the next day,"
  echo "   each joined with the features known at its time"
  python - "$DEMO_DATE" "$AIRFLOW_HOME/demo-entities.parquet" <<'PY'
import datetime as dt, sys
import pyarrow as pa, pyarrow.parquet as pq
from jobs.common import config
from jobs.common.paths import Lake, as_date
from jobs.common.storage import local_path
day = as_date(sys.argv[1])
users = pq.read_table(local_path(Lake(config.lake_root()).partition("gold", "features/user_day", day)),
                      columns=["user_id"]).column("user_id").to_pylist()[:1000]
start = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
times = [start + dt.timedelta(minutes=83 * n % 1440) for n in range(len(users))]
pq.write_table(pa.table({"user_id": users, "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC"))}),
               sys.argv[2])
PY
  spark_submit jobs/training_set.py --entities "$AIRFLOW_HOME/demo-entities.parquet" --overwrite \
    --features search_count_7d,days_since_last_search,sessions_28d,play_from_recommendation_share_28d,plan,tenure_days \
    --out "$AIRFLOW_HOME/demo-training-set" > "$AIRFLOW_HOME/demo-training-set.log" 2>&1 \
    || { tail -5 "$AIRFLOW_HOME/demo-training-set.log"; exit 1; }
  python - "$AIRFLOW_HOME/demo-training-set" <<'PY'
import sys
import pandas as pd
frame = pd.read_parquet(sys.argv[1]).sort_values(["event_timestamp", "user_id"])
print(f"  {sys.argv[1]}: {len(frame):,} rows, {frame['user_feature_ts'].notna().sum():,} with features")
with pd.option_context("display.width", 200, "display.max_columns", 20):
    print(frame.head(5).to_string(index=False))
PY
}

web_ui() {  # api-server, scheduler, dag-processor and triggerer on the embedded settings; Ctrl-C stops them all.
  # With AIRFLOW__CORE__EXECUTOR=CeleryExecutor (and a broker and a PostgreSQL metadata database configured), a
  # Celery worker too: the distributed set-up on one machine (docs/OPERATIONS.md).
  setup
  airflow_db
  local port=${AIRFLOW_PORT:-8080} logs="$AIRFLOW_HOME/logs/services" secret="$AIRFLOW_HOME/jwt_secret"
  mkdir -p "$logs"
  [ -s "$secret" ] || (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$secret")
  export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}" AIRFLOW__API__PORT="$port"
  export AIRFLOW__CELERY__WORKER_CONCURRENCY="${AIRFLOW__CELERY__WORKER_CONCURRENCY:-$AIRFLOW__CORE__PARALLELISM}"
  export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"  # this machine only: no TLS, a demo login
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$port/execution/"
  export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(cat "$secret")}"
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
  local pids=() name services=(api-server scheduler dag-processor triggerer)
  [ "$AIRFLOW__CORE__EXECUTOR" = CeleryExecutor ] && services+=("celery worker")
  for name in "${services[@]}"; do
    # shellcheck disable=SC2086 ("celery worker" is two words)
    airflow $name > "$logs/${name// /-}.log" 2>&1 &
    pids+=($!)
  done
  # shellcheck disable=SC2064 (the pids are fixed now; the function's locals are gone when the trap runs)
  trap "kill ${pids[*]} 2>/dev/null; wait" EXIT
  trap 'exit 130' INT TERM
  local deadline=$((SECONDS + 180))
  until python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/api/v2/version" 2>/dev/null; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "an Airflow service exited; logs in $logs" >&2; tail -n 5 "$logs"/*.log; exit 1; }
    done
    [ "$SECONDS" -lt "$deadline" ] || { echo "the API server did not answer in 180 s; logs in $logs" >&2; exit 1; }
    sleep 1
  done
  local passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
  echo "Airflow UI: http://127.0.0.1:$port"
  echo "  log in as admin, password: $(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["admin"])' "$passwords")"
  echo "  (generated once, kept in $passwords)"
  echo "  lake: $PIPELINE_LAKE_ROOT (make demo fills it); DAGs start paused; $AIRFLOW__CORE__EXECUTOR;" \
       "logs: $logs; Ctrl-C stops them all"
  wait -n "${pids[@]}"
  echo "an Airflow service exited; logs in $logs" >&2
  exit 1
}

run_tests() {
  setup
  set +e
  pytest "$@"
  local rc=$?
  set -e
  [ "$rc" -eq 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
  exit "$rc"
}

case "${1:-}" in
  setup) setup ;;
  demo) demo ;;
  test) shift; run_tests "$@" ;;
  airflow) web_ui ;;
  *) echo "usage: $0 {setup|demo|airflow|test [pytest args]}" >&2; exit 2 ;;
esac
