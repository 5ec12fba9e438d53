"""The one place that reads the environment: variables with local defaults (12-factor).

Importable without pyspark, so DAG files and Airflow plugins can use it at parse time. Every
variable is listed in `.env.example`; settings files (YAML) are read by `jobs/common/settings.py`
and the domain loaders, from the directory `settings_path` names.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jobs.common.errors import PipelineError

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def jdbc_driver_jar() -> str:
    """The PostgreSQL JDBC driver for snapshots (Debian `libpostgresql-jdbc-java`), for spark-submit --jars."""
    return os.environ.get("PIPELINE_JDBC_JAR", "/usr/share/java/postgresql.jar")


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


def task_retries(default: int) -> int:
    """Airflow task retries: `PIPELINE_TASK_RETRIES` (0 in development and tests) or the configured default."""
    return int(os.environ.get("PIPELINE_TASK_RETRIES", default))


def quiet_great_expectations() -> None:
    """No usage analytics calls from GX (this machine, and many clusters, have no internet)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@functools.cache
def code_version() -> str:
    """Git commit of the running code, for manifests; PIPELINE_CODE_VERSION wins (images)."""
    if os.environ.get("PIPELINE_CODE_VERSION"):
        return os.environ["PIPELINE_CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
