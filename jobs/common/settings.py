"""Typed, validated settings files: `include/pipeline.yaml` here, and the checker every loader shares.

A loader reads its YAML once, checks every field and raises one `SettingsError` that lists every
problem (not the first), so a typo fails before any data moves and is fixed in one pass.
Importable without pyspark: DAG files read the Airflow and Spark sections at parse time.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from jobs.common import config
from jobs.common.errors import SettingsError

T = TypeVar("T")


def read_yaml(path: Path, what: str, error: type[Exception] = SettingsError) -> Any:
    """A YAML file's content; an unreadable or malformed file becomes one `error` naming `what` and the path."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc


def load_file(name: str, what: str, parse: Callable[[Any, Path], T], path: Path | None = None) -> T:
    """The settings file `name` (from `$PIPELINE_CONFIG_DIR` if it has one, else `include/`; or `path`),
    read and validated by `parse`."""
    path = path or config.settings_path(name)
    return parse(read_yaml(path, what), path)


class Checker:
    """Reads typed fields out of a parsed YAML mapping, collecting every problem instead of stopping."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.problems: list[str] = []

    def section(self, raw: Any, name: str, where: str = "") -> dict[str, Any]:
        value = raw.get(name) if isinstance(raw, dict) else None
        if not isinstance(value, dict):
            self.problems.append(f"{where}{name} must be a mapping, got {value!r}")
            return {}
        return value

    def integer(self, section: dict[str, Any], name: str, where: str, minimum: int = 0) -> int:
        value = section.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            self.problems.append(f"{where}.{name} must be an integer >= {minimum}, got {value!r}")
            return minimum
        return value

    def number(self, section: dict[str, Any], name: str, where: str, minimum: float = 0.0,
               exclusive: bool = False) -> float:
        value = section.get(name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < minimum or (exclusive and value == minimum):
            self.problems.append(f"{where}.{name} must be a finite number {'>' if exclusive else '>='} {minimum}, "
                                 f"got {value!r}")
            return minimum
        return float(value)

    def text(self, section: dict[str, Any], name: str, where: str) -> str:
        value = section.get(name)
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{where}.{name} must be a non-empty string, got {value!r}")
            return ""
        return value

    def texts(self, section: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
        value = section.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.problems.append(f"{where}.{name} must be a non-empty list of strings, got {value!r}")
            return ()
        return tuple(value)

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def done(self, path: Path) -> None:
        """Raise one SettingsError listing every problem found so far."""
        if self.problems:
            raise SettingsError(f"invalid {self.what} {path}:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class RowCountGate:
    """The GX row-count bounds: [min_ratio, max_ratio] x the median of the last `history_days` days."""

    history_days: int
    min_ratio: float
    max_ratio: float

    def bounds(self, history: list[int]) -> tuple[int, int | None]:
        """GX row-count bounds from previous days' published counts (no history: at least one row)."""
        if not history:
            return 1, None
        median = statistics.median(history)
        return max(1, int(self.min_ratio * median)), int(self.max_ratio * median) + 1


@dataclass(frozen=True)
class ClickstreamSettings:
    topic: str
    late_days: int
    max_clock_skew_minutes: int
    required_fields: tuple[str, ...]
    event_types: tuple[str, ...]
    row_count: RowCountGate
    max_field_chars: int


@dataclass(frozen=True)
class KafkaDrainSettings:
    consumer_group: str
    max_records_per_file: int
    poll_timeout_seconds: float
    connect_timeout_seconds: float


@dataclass(frozen=True)
class AirflowSettings:
    drain_pool: str
    retries: int
    retry_delay_minutes: float
    cdc_wait_poke_minutes: float
    cdc_wait_timeout_hours: float


@dataclass(frozen=True)
class CommitSettings:
    lock_wait_seconds: float
    lease_seconds: float
    heartbeat_seconds: float
    trash_retention_hours: float


@dataclass(frozen=True)
class PublishSettings:
    connect_timeout_seconds: float
    read_timeout_seconds: float
    attempts: int


@dataclass(frozen=True)
class MaintenanceSettings:
    """Iceberg table maintenance (`jobs/maintenance/`): how far back time travel reaches, when a file no snapshot
    references is an orphan, the file size compaction aims at."""

    snapshot_retention_days: float
    retain_last_snapshots: int
    orphan_file_age_hours: float
    target_file_size_mb: int


@dataclass(frozen=True)
class PipelineSettings:
    clickstream: ClickstreamSettings
    kafka_drain: KafkaDrainSettings
    airflow: AirflowSettings
    commit: CommitSettings
    publish: PublishSettings
    maintenance: MaintenanceSettings
    #: spark-submit --conf for every job, as strings
    spark_conf: dict[str, str]


def parse_pipeline(raw: Any, path: Path) -> PipelineSettings:
    """PipelineSettings from a parsed pipeline.yaml; SettingsError lists every problem."""
    check = Checker("pipeline settings")
    click = check.section(raw, "clickstream")
    rows = check.section(click, "row_count", "clickstream.") if click else {}
    drain, airflow = check.section(raw, "kafka_drain"), check.section(raw, "airflow")
    commit, publish = check.section(raw, "commit"), check.section(raw, "publish")
    spark_conf, maintenance = check.section(raw, "spark_conf"), check.section(raw, "maintenance")
    row_count = RowCountGate(check.integer(rows, "history_days", "clickstream.row_count"),
                             check.number(rows, "min_ratio", "clickstream.row_count"),
                             check.number(rows, "max_ratio", "clickstream.row_count", exclusive=True))
    check.check(row_count.min_ratio < row_count.max_ratio or not rows,
                "clickstream.row_count.min_ratio must be below max_ratio")
    clickstream = ClickstreamSettings(
        check.text(click, "topic", "clickstream"), check.integer(click, "late_days", "clickstream"),
        check.integer(click, "max_clock_skew_minutes", "clickstream"),
        check.texts(click, "required_fields", "clickstream"), check.texts(click, "event_types", "clickstream"),
        row_count, check.integer(click, "max_field_chars", "clickstream", minimum=1))
    kafka_drain = KafkaDrainSettings(
        check.text(drain, "consumer_group", "kafka_drain"),
        check.integer(drain, "max_records_per_file", "kafka_drain", minimum=1),
        check.number(drain, "poll_timeout_seconds", "kafka_drain", exclusive=True),
        check.number(drain, "connect_timeout_seconds", "kafka_drain", exclusive=True))
    airflow_settings = AirflowSettings(
        check.text(airflow, "drain_pool", "airflow"), check.integer(airflow, "retries", "airflow"),
        check.number(airflow, "retry_delay_minutes", "airflow"),
        check.number(airflow, "cdc_wait_poke_minutes", "airflow", exclusive=True),
        check.number(airflow, "cdc_wait_timeout_hours", "airflow", exclusive=True))
    commit_settings = CommitSettings(
        check.number(commit, "lock_wait_seconds", "commit"), check.number(commit, "lease_seconds", "commit",
                                                                         exclusive=True),
        check.number(commit, "heartbeat_seconds", "commit", exclusive=True),
        check.number(commit, "trash_retention_hours", "commit"))
    check.check(commit_settings.heartbeat_seconds < commit_settings.lease_seconds or not commit,
                "commit.heartbeat_seconds must be below lease_seconds (else a live lease expires)")
    publish_settings = PublishSettings(
        check.number(publish, "connect_timeout_seconds", "publish", exclusive=True),
        check.number(publish, "read_timeout_seconds", "publish", exclusive=True),
        check.integer(publish, "attempts", "publish", minimum=1))
    maintenance_settings = MaintenanceSettings(
        check.number(maintenance, "snapshot_retention_days", "maintenance"),
        check.integer(maintenance, "retain_last_snapshots", "maintenance", minimum=1),
        # a write in progress has files no snapshot references yet: an hour is the least that never deletes them
        check.number(maintenance, "orphan_file_age_hours", "maintenance", minimum=1.0),
        check.integer(maintenance, "target_file_size_mb", "maintenance", minimum=1))
    for key, value in spark_conf.items():
        check.check(isinstance(value, (str, int, float, bool)), f"spark_conf.{key} must be a scalar, got {value!r}")
    check.done(path)
    conf = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in spark_conf.items()}
    return PipelineSettings(clickstream, kafka_drain, airflow_settings, commit_settings, publish_settings,
                            maintenance_settings, conf)


@functools.cache
def pipeline() -> PipelineSettings:
    """`pipeline.yaml` (see `config.settings_path`): the tunables shared by jobs and DAGs, read once per process."""
    return load_file("pipeline.yaml", "pipeline settings", parse_pipeline)
