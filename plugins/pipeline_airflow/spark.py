"""The Spark side of the DAGs: `spark_job` turns a job name into a configured `SparkJobOperator`.

The operator runs `jobs/<job>.py` through spark-submit on the `spark_default` connection, with the
Spark conf from `pipeline.yaml`. Its arguments are declared as options and switches whose values
are templates; after rendering, an empty or `None` option is left out and a switch appears only
when true, so a job sees the same command line a person would type (`--search`, not `--search true`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from jobs.common import config, settings
from jobs.common.errors import VALIDATION_REJECTED

ABSENT = ("", "None")
TRUE = ("True", "true")


def command_line(options: Mapping[str, Any], switches: Mapping[str, Any]) -> list[str]:
    """Rendered options and switches as arguments: absent values left out, switches only when true."""
    args: list[str] = []
    for flag, value in options.items():
        if str(value) not in ABSENT:
            args += [flag, str(value)]
    return args + [flag for flag, value in switches.items() if str(value) in TRUE]


def jdbc_env(connection: Connection | None) -> dict[str, str]:
    """The environment `cdc_snapshot` reads its database from, built from a PostgreSQL connection (none: empty,
    and the job says what is missing)."""
    if connection is None:
        return {}
    url = f"jdbc:postgresql://{connection.host}:{connection.port or 5432}/{connection.schema or ''}"
    env = {"PIPELINE_OLTP_JDBC_URL": url}
    env.update({name: value for name, value in (("PIPELINE_OLTP_USER", connection.login),
                                                ("PIPELINE_OLTP_PASSWORD", connection.password)) if value})
    return env


class SparkJobOperator(SparkSubmitOperator):
    """spark-submit of a pipeline job: rendered flags, JDBC settings from a connection at run time (never in the
    rendered fields), and no retry when the job says its data was rejected (exit 3)."""

    template_fields = (*SparkSubmitOperator.template_fields, "options", "switches")

    def __init__(self, *, options: Mapping[str, Any], switches: Mapping[str, Any] | None = None,
                 jdbc_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = dict(options)
        self.switches = dict(switches or {})
        self.jdbc_conn_id = jdbc_conn_id

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        self.application_args = command_line(self.options, self.switches)

    def execute(self, context: Any) -> None:
        if self.jdbc_conn_id:
            try:
                connection = Connection.get(self.jdbc_conn_id)
            except AirflowNotFoundException:
                self.log.warning("no %s connection: cdc_snapshot needs a JDBC URL or a dump", self.jdbc_conn_id)
                connection = None
            self.env_vars = {**(self.env_vars or {}), **jdbc_env(connection)}
        try:
            super().execute(context)
        except AirflowException as exc:
            if f"Error code is: {VALIDATION_REJECTED}." in str(exc):
                raise AirflowFailException(
                    f"{self.task_id}: data rejected by validation, nothing published (not retried); "
                    "the job's last log lines name the failed expectations and the Data Docs") from exc
            raise


def spark_job(job: str, doc_md: str, options: Mapping[str, Any], switches: Mapping[str, Any] | None = None,
              **kwargs: Any) -> SparkJobOperator:
    """A `jobs/<job>.py` run through spark-submit on the `spark_default` connection.

    The same command works by hand: `spark-submit jobs/<job>.py <options>`.
    """
    return SparkJobOperator(
        task_id=job,
        application=str(config.JOBS_DIR / f"{job}.py"),
        options=options,
        switches=switches,
        conn_id="spark_default",
        name=f"pipeline-{job}",
        conf=dict(settings.pipeline().spark_conf),
        doc_md=doc_md,
        **kwargs,
    )
