"""What a Spark task passes to its job: real flags rendered from the params, JDBC settings from a connection."""

from __future__ import annotations

import json
import re

from airflow.sdk import Connection
from pipeline_airflow.spark import command_line, jdbc_env

from tests.airflow_env import airflow, embedded_env


def test_absent_options_are_left_out_and_switches_appear_only_when_true():
    options = {"--date": "2026-11-20", "--dump": "None", "--taken-at": "", "--params": '{"rank": 64}'}
    assert command_line(options, {"--search": "True", "--verbose": "False"}) == [
        "--date", "2026-11-20", "--params", '{"rank": 64}', "--search"]
    assert command_line({}, {"--search": "False"}) == []


def test_jdbc_env_from_a_postgres_connection():
    conn = Connection(conn_id="oltp_postgres", conn_type="postgres", host="db.internal", port=5433, schema="shop",
                      login="reader", password="s3cret")
    assert jdbc_env(conn) == {"PIPELINE_OLTP_JDBC_URL": "jdbc:postgresql://db.internal:5433/shop",
                              "PIPELINE_OLTP_USER": "reader", "PIPELINE_OLTP_PASSWORD": "s3cret"}
    no_login = Connection(conn_id="oltp_postgres", conn_type="postgres", host="db", schema="app")
    assert jdbc_env(no_login) == {"PIPELINE_OLTP_JDBC_URL": "jdbc:postgresql://db:5432/app"}
    assert jdbc_env(None) == {}  # no connection: the job says what is missing


def test_rendered_arguments_of_the_real_dag(tmp_path):
    """`airflow tasks render` shows the command line the snapshot job gets with the default params: the params
    that are not set are absent (not `--dump ''`), and the connection's password is in no rendered field."""
    env = embedded_env(tmp_path, "file:///tmp/unused-lake")
    env["AIRFLOW_CONN_OLTP_POSTGRES"] = json.dumps({"conn_type": "postgres", "host": "db.internal", "port": 5433,
                                                   "schema": "shop", "login": "reader", "password": "s3cret"})
    airflow(env, "db", "migrate")
    out = airflow(env, "tasks", "render", "cdc_ingestion", "cdc_snapshot", "2026-11-20T00:30:00+00:00").stdout
    args = re.search(r"# property: application_args\s*# -+\s*(\[.*?\])", out, re.S)
    assert args, out[-2000:]
    assert args.group(1) == "['--lake-root', 'file:///tmp/unused-lake', '--format', 'json']"
    assert "s3cret" not in out  # it reaches spark-submit's environment at run time, never a rendered field
