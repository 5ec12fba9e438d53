"""Publishing reports to a real S3 API server (moto's, over HTTP) with boto3."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

import boto3
import pytest
import yaml
from botocore.exceptions import EndpointConnectionError

from jobs.ab import s3_publish
from jobs.ab.s3_publish import PublishError, Target
from jobs.common import config, settings, storage

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


def pointer(client, name: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=name, Key=key)["Body"].read())


def report_behind(client, name: str, key: str) -> dict:
    """What a reader gets by following a pointer."""
    return json.loads(client.get_object(Bucket=name, Key=pointer(client, name, key)["report_json"])["Body"].read())


def test_publish_uploads_verifies_then_moves_the_pointers(lake, bucket, s3_endpoint):
    client, name = bucket
    target = Target(name, "ab", s3_endpoint, None, **CREDS)
    write_report(lake, "2026-11-20", "first")
    result = s3_publish.publish(lake, dt.date(2026, 11, 20), target)
    assert result["uploaded"][0].startswith(f"s3://{name}/ab/dt=2026-11-20/") and result["uploaded"][0].endswith(
        "/report.json")
    s3_publish.publish(lake, dt.date(2026, 11, 20), target)  # the same report again: the same objects
    assert len(keys(client, name)) == 6  # 3 files, the date's pointer and redirect page, latest.json
    write_report(lake, "2026-11-20", "rerun")
    s3_publish.publish(lake, dt.date(2026, 11, 20), target)
    assert report_behind(client, name, "ab/dt=2026-11-20/latest.json")["marker"] == "rerun"
    assert report_behind(client, name, "ab/latest.json")["marker"] == "rerun"
    html = pointer(client, name, "ab/dt=2026-11-20/latest.json")["report_html"]
    redirect = client.get_object(Bucket=name, Key="ab/dt=2026-11-20/report.html")
    assert html.split("/")[-2] in redirect["Body"].read().decode() and redirect["ContentType"].startswith("text/html")

    write_report(lake, "2026-11-18", "backfill")
    s3_publish.publish(lake, dt.date(2026, 11, 18), target)  # a backfill must not move latest back
    assert pointer(client, name, "ab/latest.json")["report_date"] == "2026-11-20"
    assert report_behind(client, name, "ab/dt=2026-11-18/latest.json")["marker"] == "backfill"


def test_a_publish_that_dies_halfway_leaves_the_previous_report_whole(lake, bucket, s3_endpoint, monkeypatch):
    client, name = bucket
    target = Target(name, "ab", s3_endpoint, None, **CREDS)
    write_report(lake, "2026-11-20", "v1")
    s3_publish.publish(lake, dt.date(2026, 11, 20), target)
    write_report(lake, "2026-11-20", "v2")
    real_client = Target.client

    def dropping_client(self):
        inner = real_client(self)
        real_put, calls = inner.put_object, {"n": 0}

        def put_object(**kwargs):
            calls["n"] += 1
            if calls["n"] == 2:  # the connection drops after the first object
                raise EndpointConnectionError(endpoint_url=s3_endpoint)
            return real_put(**kwargs)

        inner.put_object = put_object
        return inner

    monkeypatch.setattr(Target, "client", dropping_client)
    with pytest.raises(PublishError, match="failed"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), target)
    for key in ("ab/dt=2026-11-20/latest.json", "ab/latest.json"):
        assert report_behind(client, name, key)["marker"] == "v1"  # v1's json and html, never v2 beside v1
    assert pointer(client, name, "ab/latest.json")["report_html"].rsplit("/", 1)[0] == pointer(
        client, name, "ab/latest.json")["report_json"].rsplit("/", 1)[0]


def test_a_corrupt_latest_pointer_is_replaced_and_said(lake, bucket, s3_endpoint):
    client, name = bucket
    client.put_object(Bucket=name, Key="ab/latest.json", Body=b"{not json")
    write_report(lake, "2026-11-20", "x")
    result = s3_publish.publish(lake, dt.date(2026, 11, 20), Target(name, "ab", s3_endpoint, None, **CREDS))
    assert "was not JSON; replaced" in result["note"]
    assert report_behind(client, name, "ab/latest.json")["marker"] == "x"


def test_an_endpoint_that_never_answers_fails_within_the_configured_bound(lake, tmp_path, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    settings_dir = tmp_path / "config"
    settings_dir.mkdir()
    raw = yaml.safe_load(config.settings_path("pipeline.yaml").read_text())
    raw["publish"] = {"connect_timeout_seconds": 1, "read_timeout_seconds": 1, "attempts": 2}
    (settings_dir / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PIPELINE_CONFIG_DIR", str(settings_dir))
    settings.pipeline.cache_clear()
    write_report(lake, "2026-11-20", "x")
    started = time.monotonic()
    try:
        with pytest.raises(PublishError, match="failed: Read timeout"):
            s3_publish.publish(lake, dt.date(2026, 11, 20),
                               Target("b", "ab", f"http://127.0.0.1:{silent.getsockname()[1]}", None, **CREDS))
    finally:
        settings.pipeline.cache_clear()
        silent.close()
    assert time.monotonic() - started < 15


def test_missing_report_bucket_or_endpoint_are_one_line_errors(lake, bucket, s3_endpoint):
    _, name = bucket
    with pytest.raises(PublishError, match="no report for 2026-11-20: .* does not exist"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), Target(name, "ab", s3_endpoint, None, **CREDS))
    write_report(lake, "2026-11-20", "x")
    with pytest.raises(PublishError, match="S3 NoSuchBucket on bucket 'nope'"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), Target("nope", "ab", s3_endpoint, None, **CREDS))
    down = Target(name, "ab", "http://127.0.0.1:9", None, **CREDS)
    with pytest.raises(PublishError, match="S3 endpoint http://127.0.0.1:9 failed"):
        s3_publish.publish(lake, dt.date(2026, 11, 20), down)


def test_cli_reads_the_target_from_arguments(lake, bucket, s3_endpoint, monkeypatch, capsys):
    client, name = bucket
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    write_report(lake, "2026-11-20", "cli")
    assert s3_publish.main(["--date", "2026-11-20", "--lake-root", lake.root, "--bucket", name,
                            "--prefix", "nightly", "--endpoint-url", s3_endpoint]) == 0
    assert "nightly/latest.json" in keys(client, name) and "nightly/dt=2026-11-20/latest.json" in keys(client, name)
    assert s3_publish.main(["--date", "2026-11-21", "--lake-root", lake.root, "--bucket", name,
                            "--endpoint-url", s3_endpoint]) == 1
    assert "s3_publish failed: no report for 2026-11-21" in capsys.readouterr().err
