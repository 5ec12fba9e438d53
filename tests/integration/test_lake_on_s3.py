"""The lake's driver-side operations with an `s3://` root on a real S3 API server (moto's, over HTTP): writing and
reading files, listing partitions, the manifest as the commit marker, run reports, retention, the nightly's
input check. Spark's own `s3a` filesystem needs the hadoop-aws jars, which these machines cannot download:
tests/unit/test_s3a_settings.py checks the settings a cluster run passes instead."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

from pipeline_airflow.tasks import clickstream

from jobs.common import storage
from jobs.common.commit import Output
from jobs.common.outputs import read_run_report
from jobs.common.paths import Lake
from jobs.common.run import Run
from jobs.privacy import retention
from jobs.privacy import settings as privacy_settings

DAY = dt.date(2026, 11, 20)


def test_files_partitions_and_reports_on_s3(s3_lake):
    table = s3_lake.table("bronze", "clickstream")
    for day in (DAY - dt.timedelta(days=1), DAY):
        part = s3_lake.partition("bronze", "clickstream", day)
        storage.write_atomic(f"{part}/part-0.parquet", b"PAR1...")
        storage.write_atomic(Lake.manifest(part), json.dumps({"rows": 3}).encode())
    assert storage.children(table) == [f"{table}/dt=2026-11-19", f"{table}/dt=2026-11-20"]
    assert storage.list_files(table, ".parquet") == [f"{table}/dt=2026-11-19/part-0.parquet",
                                                    f"{table}/dt=2026-11-20/part-0.parquet"]
    assert json.loads(storage.read_bytes(Lake.manifest(f"{table}/dt=2026-11-20"))) == {"rows": 3}
    assert storage.is_dir(table) and not storage.exists(f"{table}/dt=2026-11-21")

    assert read_run_report(s3_lake, "cdc", DAY) is None
    storage.write_atomic(s3_lake.report_file("cdc", DAY), b'{"status": "published"}')
    assert read_run_report(s3_lake, "cdc", DAY) == {"status": "published"}


def test_a_kept_segment_is_linked_as_a_server_side_copy_on_s3(s3_lake):
    """What a CDC merge does with the files of the segments it did not change (jobs/cdc/layout.py): locally a
    hard link, on S3 a copy; the published file stays as it was."""
    published, staged = s3_lake.silver("accounts", "history"), f"{s3_lake.zone('silver')}/_staging/x/history"
    storage.write_atomic(f"{published}/h0.0-part-0.parquet", b"PAR1 segment 0")
    storage.link(f"{published}/h0.0-part-0.parquet", f"{staged}/h0.0-part-0.parquet")
    assert storage.read_bytes(f"{staged}/h0.0-part-0.parquet") == b"PAR1 segment 0"
    assert storage.read_bytes(f"{published}/h0.0-part-0.parquet") == b"PAR1 segment 0"


def test_a_publish_on_s3_lands_data_then_its_manifest(s3_lake):
    """The commit protocol's publish with an s3:// root: the partition appears with its files and the manifest
    (the commit marker) together, nothing is left in staging, and a second publish replaces the first."""
    for rows in (2, 5):
        with Run("test_job", s3_lake, DAY, f"run-{rows}", group="t/dt=2026-11-20") as run:
            staged = run.staging("bronze", "t")
            for n in range(rows):
                storage.write_atomic(f"{staged}/part-{n}.parquet", b"x")
            final = s3_lake.partition("bronze", "t", DAY)
            run.publish([Output(staged, final, {**run.header(), "rows": rows})])
        assert len(storage.list_files(final, ".parquet")) == rows
        assert json.loads(storage.read_bytes(Lake.manifest(final)))["rows"] == rows
    assert not [f for f in storage.list_files(s3_lake.root) if "_staging" in f or "_commits" in f]


def test_retention_and_the_nightly_input_check_on_s3(s3_lake, monkeypatch):
    topic = clickstream.TOPIC
    for day in (DAY - dt.timedelta(days=40), DAY):
        storage.write_atomic(s3_lake.raw_file(topic, day, 0, 0, 9), b"{}\n")
    report = retention.run(s3_lake, DAY, privacy_settings.load(), run_id="r1")
    assert report["deleted"]["raw"] == [f"raw/{topic}/kafka_date={DAY - dt.timedelta(days=40)}"]
    assert storage.exists(s3_lake.raw_day(topic, DAY))

    monkeypatch.setattr(clickstream, "LAKE", s3_lake)
    scheduled = {"dag_run": SimpleNamespace(run_type="scheduled", conf={})}
    assert clickstream.input_landed.function(DAY.isoformat(), **scheduled) is True
    assert clickstream.input_landed.function((DAY + dt.timedelta(days=1)).isoformat(), **scheduled) is False
