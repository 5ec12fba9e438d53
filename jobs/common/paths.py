"""Every zone, table and partition path of the lake, built in one place.

The lake root is a URI (`file:///...` or `s3a://...`); paths are plain string joins so the
same code serves both. Names that start with `_` are invisible to Spark's partition
discovery, which is how staging areas and manifests stay out of readers' way.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass

MANIFEST_FILE = "_manifest.json"


def as_date(value: str | dt.date) -> dt.date:
    """Parse a `YYYY-MM-DD` run date with a clear error (jobs get dates as strings)."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def date_arg(value: str) -> dt.date:
    """`as_date` for argparse: a bad date becomes a one-line usage error, not a traceback."""
    try:
        return as_date(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def utc_midnight(day: dt.date) -> dt.datetime:
    """The start of `day` in UTC, zone attached: PySpark reads a datetime without one in the driver's local time
    zone, so a driver off UTC (a laptop running a backfill) would shift every day window built from a date."""
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def date_range(first: dt.date, last: dt.date | None = None) -> list[dt.date]:
    """`first` .. `last` inclusive (just `first` without `last`), for backfills in one Spark session."""
    last = last or first
    if last < first:
        raise ValueError(f"end date {last} is before start date {first}")
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass(frozen=True)
class Lake:
    root: str

    def __post_init__(self) -> None:
        if "://" not in self.root:
            raise ValueError(f"lake root must be a URI such as file:///data/lake, got {self.root!r}")
        object.__setattr__(self, "root", self.root.rstrip("/"))

    def zone(self, zone: str) -> str:
        return f"{self.root}/{zone}"

    def table(self, zone: str, table: str) -> str:
        return f"{self.zone(zone)}/{table}"

    # raw/: immutable landing, one directory per Kafka timestamp date and partition
    def raw_topic(self, topic: str) -> str:
        return self.table("raw", topic)

    def raw_day(self, topic: str, kafka_date: dt.date) -> str:
        """Everything landed from `topic` with a Kafka timestamp on `kafka_date`."""
        return f"{self.raw_topic(topic)}/kafka_date={kafka_date.isoformat()}"

    def raw_dir(self, topic: str, kafka_date: dt.date, partition: int) -> str:
        return f"{self.raw_day(topic, kafka_date)}/partition={partition}"

    def raw_file(self, topic: str, kafka_date: dt.date, partition: int, first: int, last: int) -> str:
        """A raw file is named by its Kafka coordinates, so a retried range maps to the same name."""
        name = f"{topic}-{partition}-{first:020d}-{last:020d}.jsonl"
        return f"{self.raw_dir(topic, kafka_date, partition)}/{name}"

    def export_dir(self, name: str) -> str:
        """Table exports (dump files) from source systems, landed as delivered, like Kafka records."""
        return f"{self.table('raw', '_exports')}/{name}"

    # date-partitioned zones
    def partition(self, zone: str, table: str, day: dt.date) -> str:
        return f"{self.table(zone, table)}/dt={day.isoformat()}"

    def staging(self, zone: str, table: str, day: dt.date, run_id: str) -> str:
        return f"{self.table(zone, table)}/_staging/dt={day.isoformat()}/run_id={run_id}"

    def file_staging(self, zone: str, name: str, run_id: str) -> str:
        """Where a single file (a report, a pointer) is written before it replaces the published one."""
        return f"{self.root}/{zone}/_staging/_files/run_id={run_id}/{name}"

    def table_staging(self, zone: str, table: str, run_id: str) -> str:
        """Where a whole table is written before it replaces the published one (outside its directory)."""
        return f"{self.root}/{zone}/_staging/{table}/run_id={run_id}"

    def rejected(self, zone: str, table: str, day: dt.date, run_id: str) -> str:
        """Where a batch that failed validation is kept for inspection, outside readers' view."""
        return f"{self.root}/quarantine/_rejected_batches/{zone}/{table}/dt={day.isoformat()}/run_id={run_id}"

    def data_docs(self, suite: str, day: dt.date, run_id: str) -> str:
        """GX Data Docs of one validation run (`suite` may name a sub-path, e.g. `cdc/users`)."""
        return f"{self.root}/data_docs/{suite}/dt={day.isoformat()}/run_id={run_id}"

    # reports/<stage>/dt=D/: what a run did, for people and for the DAGs' sensors and summaries
    def report_file(self, stage: str, day: dt.date, name: str = "run.json") -> str:
        return f"{self.partition('reports', stage, day)}/{name}"

    # silver/: merged tables (CDC): `<table>_current` and its SCD2 `<table>_history`
    def silver(self, table: str, kind: str) -> str:
        return self.table("silver", f"{table}_{kind}")

    @staticmethod
    def orphan_deletes(history_dir: str) -> str:
        """CDC deletes that found no version to close, kept inside the history table (hidden from its readers)."""
        return f"{history_dir}/_orphan_deletes"

    # bronze/cdc_snapshots/<table>/snapshot_id=<id>: full table snapshots a merge starts from
    def snapshots(self, table: str) -> str:
        return self.table("bronze", f"cdc_snapshots/{table}")

    def snapshot(self, table: str, snapshot_id: str) -> str:
        return f"{self.snapshots(table)}/snapshot_id={snapshot_id}"

    def snapshot_quarantine(self, table: str, snapshot_id: str) -> str:
        return f"{self.table('quarantine', 'cdc_snapshots')}/{table}/snapshot_id={snapshot_id}"

    # gold/privacy/erased_users: HMAC tokens of the users erased on request; bronze leaves them out
    def erased_users(self) -> str:
        return self.table("gold", "privacy/erased_users")

    # gold/als/id_map/{users,items}: the stable integer ids ALS factors are indexed by
    def id_map(self, kind: str) -> str:
        return self.table("gold", f"als/id_map/{kind}")

    def id_map_staging(self, kind: str, run_id: str) -> str:
        return f"{self.table('gold', f'als/id_map/_staging_{kind}')}/run_id={run_id}"

    # models/<name>/: versioned model artefacts and the champion pointer
    def model_versions(self, name: str) -> str:
        return f"{self.table('models', name)}/versions"

    def model_version(self, name: str, version: str) -> str:
        return f"{self.model_versions(name)}/{version}"

    def model_staging(self, name: str, version: str, run_id: str) -> str:
        return f"{self.table('models', name)}/_staging/{version}/run_id={run_id}"

    def champion(self, name: str) -> str:
        return f"{self.table('models', name)}/champion.json"

    def checkpoints(self, job: str, run_id: str) -> str:
        """Scratch space for Spark checkpoints, deleted when the run ends."""
        return f"{self.root}/_checkpoints/{job}/{run_id}"

    @staticmethod
    def manifest(partition_dir: str) -> str:
        return f"{partition_dir}/{MANIFEST_FILE}"
