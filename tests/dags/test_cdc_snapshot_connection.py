"""The snapshot task takes the OLTP database from the `oltp_postgres` Airflow connection."""

from __future__ import annotations

import json

from tests.airflow_env import airflow, embedded_env


def test_cdc_snapshot_renders_the_jdbc_settings_from_the_connection(tmp_path):
    env = embedded_env(tmp_path, "file:///tmp/unused-lake")
    env["AIRFLOW_CONN_OLTP_POSTGRES"] = json.dumps({"conn_type": "postgres", "host": "db.internal", "port": 5433,
                                                   "schema": "shop", "login": "reader", "password": "s3cret"})
    airflow(env, "db", "migrate")
    out = airflow(env, "tasks", "render", "cdc_ingestion", "cdc_snapshot", "2026-11-20T00:30:00+00:00").stdout
    assert ("{'PIPELINE_OLTP_JDBC_URL': 'jdbc:postgresql://db.internal:5433/shop', 'PIPELINE_OLTP_USER': 'reader', "
            "'PIPELINE_OLTP_PASSWORD': 's3cret'}") in out

    env.pop("AIRFLOW_CONN_OLTP_POSTGRES")  # no connection: empty values, and the job says what is missing
    out = airflow(env, "tasks", "render", "cdc_ingestion", "cdc_snapshot", "2026-11-20T00:30:00+00:00").stdout
    assert "{'PIPELINE_OLTP_JDBC_URL': '', 'PIPELINE_OLTP_USER': '', 'PIPELINE_OLTP_PASSWORD': ''}" in out
