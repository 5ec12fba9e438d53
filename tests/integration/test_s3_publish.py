"""Publishing reports to a real S3 API server (moto's, over HTTP) with boto3."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest

from jobs.ab import s3_publish
from jobs.ab.s3_publish import PublishError, Target
from jobs.common import storage

CREDS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


@pytest.fixture
def bucket(s3_endpoint, request):
    name = f"reports-{request.node.name.lower().replace('_', '-')[:40]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDS)
    client.create_bucket(Bucket=name)
    return client, name


def write_report(lake, day: str, marker: str) -> None:
    base = lake.partition("reports", "ab", dt.date.fromisoformat(day))
    storage.write_atomic(f"{base}/report.json", json.dumps({"report_date": day, "marker": marker}).encode())
    storage.write_atomic(f"{base}/report.html", f"<html>{marker}</html>".encode())
    storage.write_atomic(f"{base}/_manifest.json", b"{}")


def keys(client, bucket_name: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket_name).get("Contents", []))


def test_publish_uploads_verifies_and_points_latest(lake, bucket, s3_endpoint):
    client, name = bucket
    target = Target(name, "ab", s3_endpoint, None, **CREDS)
    write_report(lake, "2026-11-20", "first")
    result = s3_publish.publish(lake, dt.date(2026, 11, 20), target)
    assert result["uploaded"][0] == f"s3://{name}/ab/dt=2026-11-20/report.json"
    write_report(lake, "2026-11-20", "rerun")
    s3_publish.publish(lake, dt.date(2026, 11, 20), target)  # a rerun overwrites: no duplicates
    assert keys(client, name) == ["ab/dt=2026-11-20/_manifest.json", "ab/dt=2026-11-20/report.html",
                                  "ab/dt=2026-11-20/report.json", "ab/latest.json"]
    body = client.get_object(Bucket=name, Key="ab/dt=2026-11-20/report.json")
    assert json.loads(body["Body"].read())["marker"] == "rerun"
    assert body["ContentType"] == "application/json"

    write_report(lake, "2026-11-18", "backfill")
    s3_publish.publish(lake, dt.date(2026, 11, 18), target)  # a backfill must not move latest back
    latest = json.loads(client.get_object(Bucket=name, Key="ab/latest.json")["Body"].read())
    assert latest["report_date"] == "2026-11-20" and latest["report_json"] == "ab/dt=2026-11-20/report.json"


def test_missing_report_bucket_or_endpoint_are_one_line_errors(lake, bucket, s3_endpoint):
    _, name = bucket
    with pytest.raises(PublishError, match="no report for 2026-11-20: .* does not exist"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), Target(name, "ab", s3_endpoint, None, **CREDS))
    write_report(lake, "2026-11-20", "x")
    with pytest.raises(PublishError, match="S3 NoSuchBucket on bucket 'nope'"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), Target("nope", "ab", s3_endpoint, None, **CREDS))
    down = Target(name, "ab", "http://127.0.0.1:9", None, **CREDS)
    with pytest.raises(PublishError, match="S3 endpoint http://127.0.0.1:9 unreachable"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), down)


def test_cli_reads_the_target_from_arguments(lake, bucket, s3_endpoint, monkeypatch, capsys):
    client, name = bucket
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    write_report(lake, "2026-11-20", "cli")
    assert s3_publish.main(["--date", "2026-11-20", "--lake-root", lake.root, "--bucket", name,
                            "--prefix", "nightly", "--endpoint-url", s3_endpoint]) == 0
    assert "nightly/latest.json" in keys(client, name)
    assert s3_publish.main(["--date", "2026-11-21", "--lake-root", lake.root, "--bucket", name,
                            "--endpoint-url", s3_endpoint]) == 1
    assert "s3_publish failed: no report for 2026-11-21" in capsys.readouterr().err
