"""The lake's Apache Iceberg catalog: what every spark-submit passes, and how a session and other engines reach it.

Tables live in one Iceberg catalog, named `lake` in Spark SQL (`SELECT ... FROM lake.gold.ab_history`), whose
warehouse is `<lake>/warehouse`: table `gold.ab_history` keeps its data and metadata under
`<lake>/warehouse/gold/ab_history/`, apart from the directories of the previous release's layout
(`<lake>/<zone>/...`): a table moved onto Iceberg never shares a directory with its own legacy copy, so the
migration reads the one while it writes the other, and orphan-file removal under a table can never touch legacy
files. The catalog itself is a JDBC catalog: a SQLite file inside the lake (`<lake>/_catalog/iceberg.db`) in the
embedded mode, PostgreSQL in compose and production (`PIPELINE_CATALOG_URI`). A commit is one compare-and-swap of
the table's metadata pointer in that database, so two writer processes are serialised by it (Iceberg retries or
fails the second with a conflict), on a local disk and on object stores alike; Iceberg's Hadoop catalog would rely
on an atomic rename that S3 lacks.

Importable without pyspark: the Airflow operator builds its spark-submit conf here at parse time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.common import config, settings
from jobs.common.errors import PipelineError
from jobs.common.paths import Lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The catalog's name in Spark SQL.
NAME = "lake"
EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def jvm_conf() -> dict[str, str]:
    """What a JVM needs before it starts to use the lake's tables: the pinned jars (never `--packages`) and
    Iceberg's SQL extensions (MERGE INTO, CALL). Every spark-submit has them (`submit_conf`), and so has the
    tests' in-process session."""
    return {"spark.jars": ",".join(config.spark_jars()), "spark.sql.extensions": EXTENSIONS}


def submit_conf(lake_root: str | None = None) -> dict[str, str]:
    """The `--conf` of every spark-submit the project makes: `pipeline.yaml`'s `spark_conf`, `jvm_conf` and, for a
    lake on `s3a://`, the s3a settings. The catalog's own properties are set by the job for its `--lake-root`
    (`use`)."""
    root = lake_root or config.lake_root()
    return {**settings.pipeline().spark_conf, **jvm_conf(),
            **(config.s3a_conf() if root.startswith("s3a://") else {})}


def properties(lake: Lake) -> dict[str, str]:
    """The catalog's Spark properties for `lake` (no secret among them: the login is added at run time)."""
    return {
        "": "org.apache.iceberg.spark.SparkCatalog",
        ".type": "jdbc",
        ".uri": config.catalog_uri(lake.root),
        ".warehouse": warehouse(lake),
        # No views in the catalog: the table schema every Iceberg JDBC catalog reads (Spark, pyiceberg).
        ".jdbc.schema-version": "V1",
        # Every load reads the catalog: a long-lived session (a backfill, the tests) sees other writers' commits.
        ".cache-enabled": "false",
    }


def warehouse(lake: Lake) -> str:
    """Where the catalog's tables keep their files: `<lake>/warehouse/<zone>/<table>/{data,metadata}`."""
    return f"{lake.root}/warehouse"


def use(spark: SparkSession, lake: Lake) -> None:
    """Point the session's `lake` catalog at `lake` before the job touches a table (a job's `--lake-root` may
    differ from the environment's; a test session goes through many lakes). Spark loads a catalog on first use,
    so a changed location drops the loaded one."""
    wanted = properties(lake)
    login = config.catalog_login()
    wanted.update({k: v for k, v in ((".jdbc.user", login.user), (".jdbc.password", login.password)) if v})
    uri = wanted[".uri"]
    if uri.startswith("jdbc:sqlite:"):  # SQLite creates the file, not its folder (a new lake has none)
        Path(uri.removeprefix("jdbc:sqlite:")).parent.mkdir(parents=True, exist_ok=True)
    current = {key: spark.conf.get(f"spark.sql.catalog.{NAME}{key}", None) for key in wanted}
    if current == wanted:  # already so: from spark-submit's --conf (`python -m jobs.common.catalog`) or a prior use
        return
    for key, value in wanted.items():
        spark.conf.set(f"spark.sql.catalog.{NAME}{key}", value)
    spark._jsparkSession.sessionState().catalogManager().reset()


def table_name(zone: str, table: str) -> str:
    """A lake table's name in Spark SQL: zone = namespace (`lake.bronze.clickstream`)."""
    return f"{NAME}.{zone}.{table}"


def pyiceberg_catalog(lake: Lake) -> Any:
    """The same catalog through pyiceberg (no JVM), for readers and checks outside Spark."""
    from pyiceberg.catalog.sql import SqlCatalog

    uri = config.catalog_uri(lake.root)
    if uri.startswith("jdbc:sqlite:"):
        url = f"sqlite:///{uri.removeprefix('jdbc:sqlite:')}"
    elif uri.startswith("jdbc:postgresql://"):
        login = config.catalog_login()
        auth = f"{login.user}:{login.password}@" if login.user else ""
        url = f"postgresql+psycopg2://{auth}{uri.removeprefix('jdbc:postgresql://')}"
    else:
        raise ValueError(f"pyiceberg reads a SQLite or PostgreSQL catalog, not {uri}")
    return SqlCatalog(NAME, uri=url, warehouse=warehouse(lake))


def submit_args(lake_root: str | None = None, with_catalog: bool = False) -> list[str]:
    """`submit_conf` as spark-submit arguments, for a job run by hand: `spark-submit $(python -m jobs.common.catalog)
    --py-files ... jobs/<job>.py ...`; `with_catalog`: also the catalog of `lake_root`, so a shell
    (`pyspark`, `spark-sql`) reads `lake.<zone>.<table>` at once."""
    conf = submit_conf(lake_root)
    if with_catalog:
        conf.update({f"spark.sql.catalog.{NAME}{k}": v for k, v in properties(Lake(lake_root or config.lake_root()))
                     .items()})
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


if __name__ == "__main__":
    import sys

    try:
        print(" ".join(submit_args(with_catalog=True)))
    except PipelineError as exc:
        sys.exit(f"jobs.common.catalog: {exc}")
