#!/usr/bin/env bash
# The two README commands, from nothing: `pipeline.sh demo` and `pipeline.sh test`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
DEMO_DATE="${DEMO_DATE:-2026-11-20}"

setup() {
  if ! command -v java >/dev/null 2>&1; then
    echo "== installing a Java runtime for Spark"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
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
}

airflow_db() {
  airflow db migrate >/dev/null
  airflow pools set kafka_drain 1 "serialises Kafka drains" >/dev/null
}

demo() {
  setup
  airflow_db
  echo "== generating demo clickstream for $(date -d "$DEMO_DATE -1 day" +%F) .. $DEMO_DATE into $PIPELINE_LAKE_ROOT/raw"
  python -m jobs.demo_generator --start-date "$(date -d "$DEMO_DATE -1 day" +%F)" --days 2
  echo "== airflow dags test nightly (run_date=$DEMO_DATE)"
  airflow dags test nightly --conf "{\"run_date\": \"$DEMO_DATE\"}" > "$AIRFLOW_HOME/demo-run.log" 2>&1 || true
  if ! grep -q "DagRun Finished: dag_id=nightly.*state=success" "$AIRFLOW_HOME/demo-run.log"; then
    grep -E "ERROR|failed|Failed" "$AIRFLOW_HOME/demo-run.log" | tail -20
    echo "nightly DAG run failed; full log: $AIRFLOW_HOME/demo-run.log" >&2
    exit 1
  fi
  python - "$DEMO_DATE" <<'PY'
import json, sys
from jobs.common import config
from jobs.common.outputs import partition_summary
from jobs.common.paths import Lake, as_date
summary = partition_summary(Lake(config.lake_root()), "clickstream", as_date(sys.argv[1]))
print(f"nightly DAG succeeded for {sys.argv[1]}. Outputs:")
for key in ("bronze", "quarantine", "manifest", "data_docs"):
    print(f"  {key.replace('_', ' '):<11} {summary[key]}")
print("  counts      " + json.dumps(summary["counts"]))
PY
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
  *) echo "usage: $0 {setup|demo|test [pytest args]}" >&2; exit 2 ;;
esac
