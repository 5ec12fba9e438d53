"""The embedded-mode environment of scripts/env.sh, pointed at a temporary Airflow home and lake."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def embedded_env(home: Path, lake_root: str) -> dict[str, str]:
    """Source scripts/env.sh (the same settings the README commands use) with overrides."""
    # no retries (a failure shows at once), no link to this test process's Spark gateway, and the embedded
    # Spark connection (local[*]) whatever connection an earlier test of this process pointed elsewhere
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("PYSPARK_GATEWAY") and k != "AIRFLOW_CONN_SPARK_DEFAULT"}
    base.update(AIRFLOW_HOME=str(home), PIPELINE_LAKE_ROOT=lake_root, PIPELINE_TASK_RETRIES="0")
    out = subprocess.run(["bash", "-c", f"source {REPO}/scripts/env.sh && env -0"], env=base,
                         capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def airflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, check=check, cwd=REPO)

