"""The one place that reads the environment: variables with local defaults (12-factor).

Importable without pyspark, so DAG files and Airflow plugins can use it at parse time. Every
variable is listed in `.env.example`; settings files (YAML) are read by `jobs/common/settings.py`
and the domain loaders, from the directory `settings_path` names.
"""

from __future__ import annotations

import functools
import json
import os
import pkgutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jobs.common.errors import PipelineError


def _artifact_record() -> dict[str, str] | None:
    """`jobs/_artifact.json` when the code runs from the built artifact (jobs/common/artifact.py), else None."""
    try:
        data = pkgutil.get_data("jobs", "_artifact.json")
    except OSError:
        return None
    return json.loads(data) if data else None


def _checkout() -> Path:
    """The checkout with `include/`: `$PIPELINE_HOME`, else this file's; when the code runs from the artifact
    (spark-submit --py-files puts it first on the driver's path), the checkout the artifact was built from."""
    if os.environ.get("PIPELINE_HOME"):
        return Path(os.environ["PIPELINE_HOME"])
    here = Path(__file__).resolve().parents[2]
    record = None if (here / "include").is_dir() else _artifact_record()
    return Path(record["built_from"]) if record else here


REPO_ROOT = _checkout()
INCLUDE_DIR = REPO_ROOT / "include"
JOBS_DIR = REPO_ROOT / "jobs"

#: A key that makes IP hashes reproducible in the embedded demo; refused outside it.
DEMO_IP_HASH_KEY = "embedded-demo-key-not-secret"
#: Values that are placeholders, not secrets (the ones .env.example and tutorials ship).
PLACEHOLDERS = {"", "change-me", "change-me-too", "change-me-long-random", "changeme", "secret", "password",
                "airflow", "admin", "minioadmin", "test", DEMO_IP_HASH_KEY}
MIN_SECRET_CHARS = 32
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class MissingSecret(PipelineError, ValueError):
    """A secret is unset or a placeholder outside the demo mode; the message says how to make one."""


def demo_mode() -> bool:
    """`PIPELINE_MODE=demo` (scripts/env.sh sets it for the embedded mode): demo defaults are allowed.
    Anything else is a deployment: every secret must be set, and real."""
    return os.environ.get("PIPELINE_MODE", "production") == "demo"


def secret(name: str, demo_default: str | None = None) -> str:
    """The secret in `$name`; outside the demo mode an unset, short or placeholder value is refused."""
    value = os.environ.get(name) or ""
    if demo_mode():
        return value or demo_default or ""
    if value in PLACEHOLDERS or len(value) < MIN_SECRET_CHARS:
        why = "is not set" if not value else ("is a placeholder" if value in PLACEHOLDERS else
                                              f"is shorter than {MIN_SECRET_CHARS} characters")
        raise MissingSecret(f"{name} {why} (required outside PIPELINE_MODE=demo); generate one with {GENERATE}")
    return value


#: The secrets a deployment (docker-compose) must set; `python -m jobs.common.secrets` checks them at start.
DEPLOYMENT_SECRETS = ("PIPELINE_IP_HASH_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY",
                      "AWS_SECRET_ACCESS_KEY")


def secret_problems() -> list[str]:
    """Every deployment secret that is missing or a placeholder (empty in the demo mode)."""
    problems = []
    for name in DEPLOYMENT_SECRETS:
        try:
            secret(name)
        except MissingSecret as exc:
            problems.append(str(exc))
    return problems


def lake_root() -> str:
    """The lake root URI: `file:///...` locally, `s3a://bucket/prefix` on a cluster."""
    return os.environ.get("PIPELINE_LAKE_ROOT") or (REPO_ROOT / "lake").as_uri()


def settings_path(name: str) -> Path:
    """A settings file (`pipeline.yaml`, `cdc.yaml`, ...): from `$PIPELINE_CONFIG_DIR` when that
    directory has it, else the one in `include/`. A team keeps its own tables or experiments
    outside the checkout and overrides only the files it changes."""
    override = os.environ.get("PIPELINE_CONFIG_DIR")
    if override and (Path(override) / name).is_file():
        return Path(override) / name
    return INCLUDE_DIR / name


def include_path(*parts: str) -> Path:
    """An asset kept with the code (expectation suites, schemas, templates)."""
    return INCLUDE_DIR.joinpath(*parts)


def ip_hash_key() -> str:
    """The secret of the IP HMAC: required outside the demo mode (the demo key only in it)."""
    return secret("PIPELINE_IP_HASH_KEY", DEMO_IP_HASH_KEY)


def clickstream_source() -> str:
    """`kafka`: the pipeline drains Kafka into raw/; `raw`: something else fills raw/ (demo, sink)."""
    source = os.environ.get("PIPELINE_CLICKSTREAM_SOURCE", "raw")
    if source not in ("kafka", "raw"):
        raise ValueError(f"PIPELINE_CLICKSTREAM_SOURCE must be 'kafka' or 'raw', got {source!r}")
    return source


#: The pinned JVM jars (jvm/pom.xml), one line per jar with its SHA-256: what set-up fetches and checks.
JARS_MANIFEST = "jvm/jars.sha256"


def jars_dir() -> Path:
    """Where set-up put the pinned JVM jars (`$PIPELINE_JARS_DIR`, default `.jars` beside the venv)."""
    return Path(os.environ.get("PIPELINE_JARS_DIR") or REPO_ROOT / ".jars")


def spark_jars() -> list[str]:
    """The pinned jars every spark-submit passes (Iceberg, hadoop-aws, the catalogs' JDBC drivers), in the
    manifest's order. Set-up fetches them (no job downloads a jar); a session without them fails at start
    (`jobs.common.spark.get_spark`), so a DAG still parses on a machine that lacks them."""
    lines = (REPO_ROOT / JARS_MANIFEST).read_text().splitlines()
    return [str(jars_dir() / line.split()[1]) for line in lines if line.strip()]


def catalog_uri(lake_root: str) -> str:
    """The Iceberg catalog's JDBC URL: `$PIPELINE_CATALOG_URI` (PostgreSQL in compose and production), else, for a
    lake on the local disk, a SQLite file inside it (`<lake>/_catalog/iceberg.db`: nothing to run)."""
    if os.environ.get("PIPELINE_CATALOG_URI"):
        return os.environ["PIPELINE_CATALOG_URI"]
    if not lake_root.startswith("file:"):
        raise PipelineError(f"PIPELINE_CATALOG_URI is not set: a lake on {lake_root.split(':', 1)[0]}:// needs a "
                            "catalog database, e.g. jdbc:postgresql://db:5432/iceberg (the SQLite default is for a "
                            "lake on the local disk)")
    return f"jdbc:sqlite:{lake_root.removeprefix('file://').removeprefix('file:')}/_catalog/iceberg.db"


@dataclass(frozen=True)
class CatalogLogin:
    """The catalog database's login (PostgreSQL), set in the session at run time, never on the command line."""

    user: str | None
    password: str | None


def catalog_login() -> CatalogLogin:
    return CatalogLogin(os.environ.get("PIPELINE_CATALOG_USER") or None,
                        os.environ.get("PIPELINE_CATALOG_PASSWORD") or None)


@dataclass(frozen=True)
class OltpDatabase:
    """The OLTP database a JDBC snapshot reads when run by hand (in Airflow: the `oltp_postgres` connection,
    which the task passes in these same variables)."""

    jdbc_url: str | None
    user: str | None
    password: str | None


def oltp_database() -> OltpDatabase:
    return OltpDatabase(os.environ.get("PIPELINE_OLTP_JDBC_URL") or None, os.environ.get("PIPELINE_OLTP_USER") or None,
                        os.environ.get("PIPELINE_OLTP_PASSWORD") or None)


@dataclass(frozen=True)
class ReportsBucket:
    """Where the A/B reports are copied without an Airflow connection; credentials come from boto3's chain."""

    bucket: str | None
    prefix: str
    endpoint_url: str | None
    region_name: str | None


def reports_bucket() -> ReportsBucket:
    return ReportsBucket(os.environ.get("PIPELINE_REPORTS_BUCKET") or None,
                         os.environ.get("PIPELINE_REPORTS_PREFIX", "ab-reports"),
                         os.environ.get("AWS_ENDPOINT_URL") or None, os.environ.get("AWS_DEFAULT_REGION") or None)


def s3a_conf() -> dict[str, str]:
    """The Spark settings for a lake on `s3a://` (the operator adds them when the lake root is one): the
    endpoint of an S3-compatible store ($AWS_ENDPOINT_URL, path-style, TLS as its scheme says) and credentials
    from the environment or the instance profile, never in `--conf` (they show in `ps`). hadoop-aws itself is
    one of the pinned jars (`spark_jars`)."""
    conf = {"spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf.update({"spark.hadoop.fs.s3a.endpoint": endpoint, "spark.hadoop.fs.s3a.path.style.access": "true",
                     "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower()})
    if os.environ.get("AWS_DEFAULT_REGION"):
        conf["spark.hadoop.fs.s3a.endpoint.region"] = os.environ["AWS_DEFAULT_REGION"]
    return conf


def task_retries(default: int) -> int:
    """Airflow task retries: `PIPELINE_TASK_RETRIES` (0 in development and tests) or the configured default."""
    return int(os.environ.get("PIPELINE_TASK_RETRIES", default))


def quiet_great_expectations() -> None:
    """No usage analytics calls from GX (this machine, and many clusters, have no internet)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def artifact_dir() -> Path:
    """Where the code artifact for the executors is built (`$PIPELINE_ARTIFACT_DIR`, default `build/py-files`)."""
    return Path(os.environ.get("PIPELINE_ARTIFACT_DIR") or REPO_ROOT / "build" / "py-files")


@functools.cache
def code_version() -> str:
    """Git commit of the running code, for manifests; PIPELINE_CODE_VERSION wins (images)."""
    return os.environ.get("PIPELINE_CODE_VERSION") or git_commit()


@functools.cache
def code_artifact() -> str | None:
    """The artifact the code runs from (`pipeline-jobs-<hash>.zip`, in every manifest), None outside one
    (a test, `python -m`)."""
    record = _artifact_record()
    return record["name"] if record else None


def code_identity() -> dict[str, str | None]:
    """What every manifest says about the code that wrote it."""
    return {"code_version": code_version(), "code_artifact": code_artifact()}


def git_commit() -> str:
    """The checkout's commit ("unknown" without git)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
