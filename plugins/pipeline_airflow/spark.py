"""The Spark side of the DAGs: `spark_job` turns a job name into a configured `SparkJobOperator`.

The operator runs `jobs/<job>.py` through spark-submit on the `spark_default` connection, with the
Spark conf from `pipeline.yaml` and the project's code built into one zip for the executors
(`--py-files`, jobs/common/artifact.py): a cluster's workers need only the pinned Python packages.
Its arguments are declared as options and switches whose values are templates; after rendering, an
empty or `None` option is left out and a switch appears only when true, so a job sees the same
command line a person would type (`--search`, not `--search true`).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException

from jobs.common import artifact, catalog, config
from jobs.common.errors import VALIDATION_REJECTED
from pipeline_airflow.params import refuse_unknown
from pipeline_airflow.shared import LAKE

#: The level a spark-submit output line was written at: the job's Python logging (runner.LOG_FORMAT), Spark's
#: log4j ("25/11/20 02:00:01 WARN ..."), or the runner's one-line failure ("<job> failed: ...").
LINE_LEVEL = re.compile(r"^(?:\d{4}-\d{2}-\d{2}[ T][\d:.,]+ |\d{2}/\d{2}/\d{2} [\d:]+ )"
                        r"(CRITICAL|FATAL|ERROR|WARNING|WARN) ")
FAILURE_LINE = re.compile(r"^\w+ failed: ")
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


def unreachable(master: str, timeout: float = 5.0) -> str | None:
    """Why none of a standalone master's addresses (`spark://h1:7077,h2:7077`) accepts a connection, or None.
    spark-submit itself would retry for a minute and then log "All masters are unresponsive" among its INFO."""
    if not master.startswith("spark://"):
        return None  # local, yarn, k8s: spark-submit reports those itself
    errors = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return None
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
    return "; ".join(errors)


def line_level(line: str) -> str:
    """`error`, `warning` or `info`: how a line of the job's output belongs in the task log."""
    if FAILURE_LINE.match(line):
        return "error"
    found = LINE_LEVEL.match(line)
    if not found:
        return "info"
    return "warning" if found.group(1).startswith("WARN") else "error"


class LevelledLog:
    """The hook's logger, seen by its loop over spark-submit's output: it logs every line with `info`; this
    gives each line its writer's level, so a job's ERROR shows as an error in the task log (and in the UI's
    error filter), not as one more INFO line."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> Any:
        level = line_level(msg) if isinstance(msg, str) and not args else "info"
        return getattr(self._log, level)(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class SparkJobOperator(SparkSubmitOperator):
    """spark-submit of a pipeline job: rendered flags, the code artifact shipped with `--py-files`, JDBC settings
    from a connection at run time (never in the rendered fields), and no retry when the job says its data was
    rejected (exit 3)."""

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

    def _get_hook(self) -> Any:
        hook = super()._get_hook()
        hook._log = LevelledLog(hook.log)
        return hook

    def execute(self, context: Any) -> None:
        if context.get("dag_run") is not None:
            refuse_unknown(context)  # a DAG whose first task is a Spark job (training_set)
        self.py_files = str(artifact.build())
        self.log.info("code for the executors: --py-files %s", self.py_files)
        if self.jdbc_conn_id:
            try:
                connection = Connection.get(self.jdbc_conn_id)
            except AirflowNotFoundException:
                self.log.warning("no %s connection: cdc_snapshot needs a JDBC URL or a dump", self.jdbc_conn_id)
                connection = None
            self.env_vars = {**(self.env_vars or {}), **jdbc_env(connection)}
        self._hook = self._get_hook()  # after py_files and env_vars: the hook copies them
        master = self._hook._connection["master"]  # as the hook resolves the connection (the provider's rules)
        problem = unreachable(master)
        if problem:  # retried like any failure: a master restarting is back by the next try
            raise AirflowException(f"Spark master {master} is unreachable ({problem}); check the {self._conn_id} "
                                   "connection and that the master is running")
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

    The same command works by hand: `spark-submit $(python -m jobs.common.catalog) --py-files
    "$(python -m jobs.common.artifact)" jobs/<job>.py <options>` (the conf, the pinned jars, the code).
    """
    return SparkJobOperator(
        task_id=job,
        application=str(config.JOBS_DIR / f"{job}.py"),
        options=options,
        switches=switches,
        conn_id="spark_default",
        name=f"pipeline-{job}",
        conf=catalog.submit_conf(LAKE.root),
        doc_md=doc_md,
        **kwargs,
    )
