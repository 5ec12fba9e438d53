"""The one place for configuration: environment variables with local defaults (12-factor).

Importable without pyspark, so DAG files and Airflow plugins can use it at parse time.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
INCLUDE_DIR = REPO_ROOT / "include"
JOBS_DIR = REPO_ROOT / "jobs"

#: A key that makes IP hashes reproducible in the embedded demo. Production sets its own.
DEMO_IP_HASH_KEY = "embedded-demo-key-not-secret"


def lake_root() -> str:
    """The lake root URI: `file:///...` locally, `s3a://bucket/prefix` on a cluster."""
    return os.environ.get("PIPELINE_LAKE_ROOT") or (REPO_ROOT / "lake").as_uri()


def ip_hash_key() -> str:
    """Secret for keyed IP hashing; never committed, the demo key is used only when unset."""
    return os.environ.get("PIPELINE_IP_HASH_KEY") or DEMO_IP_HASH_KEY


def clickstream_source() -> str:
    """`kafka`: the pipeline drains Kafka into raw/; `raw`: something else fills raw/ (demo, sink)."""
    source = os.environ.get("PIPELINE_CLICKSTREAM_SOURCE", "raw")
    if source not in ("kafka", "raw"):
        raise ValueError(f"PIPELINE_CLICKSTREAM_SOURCE must be 'kafka' or 'raw', got {source!r}")
    return source


def jdbc_driver_jar() -> str:
    """The PostgreSQL JDBC driver for snapshots (Debian `libpostgresql-jdbc-java`), for spark-submit --jars."""
    return os.environ.get("PIPELINE_JDBC_JAR", "/usr/share/java/postgresql.jar")


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


@functools.cache
def pipeline_config() -> dict[str, Any]:
    """`include/pipeline.yaml`: tunables shared by jobs and DAGs (data, not code)."""
    with open(INCLUDE_DIR / "pipeline.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def read_yaml(path: Path, what: str, error: type[Exception]) -> Any:
    """A YAML file's content; an unreadable or malformed file becomes one `error` naming `what` and the path."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc


def include_path(*parts: str) -> Path:
    return INCLUDE_DIR.joinpath(*parts)
