"""Copy a night's report from the lake to an S3 bucket (MinIO, SeaweedFS, AWS) with boto3.

Keys: `<prefix>/dt=D/report.json`, `report.html`, `_manifest.json`, then `<prefix>/latest.json`
(a pointer to the newest date, written last so it never points at a half-uploaded report).
Re-publishing a date overwrites the same keys: no duplicates. Each upload is checked against
the MD5 of the lake copy (ETag of a single-part upload).

    python -m jobs.ab.s3_publish --date 2026-11-20 --bucket reports [--prefix ab] [--endpoint-url URL]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

from jobs.ab import STAGE
from jobs.common import config, storage
from jobs.common.errors import PipelineError
from jobs.common.paths import Lake
from jobs.common.runner import Context, Job, Outcome

FILES = {"report.json": "application/json", "report.html": "text/html; charset=utf-8",
         "_manifest.json": "application/json"}


@dataclass(frozen=True)
class Target:
    bucket: str
    prefix: str = "ab-reports"
    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    @classmethod
    def from_env(cls) -> Target | None:
        """`PIPELINE_REPORTS_BUCKET` (+ `_PREFIX`, `AWS_ENDPOINT_URL`); credentials by boto3's own chain."""
        env = config.reports_bucket()
        return cls(env.bucket, env.prefix, env.endpoint_url, env.region_name) if env.bucket else None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region_name or "us-east-1",
                            aws_access_key_id=self.aws_access_key_id,
                            aws_secret_access_key=self.aws_secret_access_key,
                            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10))


class PublishError(PipelineError):
    """The report could not be copied to the bucket; the message says where and why."""


def publish(lake: Lake, day: dt.date, target: Target) -> dict[str, Any]:
    """Upload the date's report files, verify them, then move `latest.json`. Returns the URIs."""
    from botocore.exceptions import BotoCoreError, ClientError

    source = lake.partition("reports", STAGE, day)
    base = f"{target.prefix.strip('/')}/dt={day.isoformat()}".lstrip("/")
    client = target.client()
    uploaded = []
    try:
        for name, content_type in FILES.items():
            try:
                body = storage.read_bytes(f"{source}/{name}")
            except FileNotFoundError:
                raise PublishError(f"no report for {day}: {source}/{name} does not exist "
                                   "(run ab_report first)") from None
            key = f"{base}/{name}"
            response = client.put_object(Bucket=target.bucket, Key=key, Body=body, ContentType=content_type)
            if response["ETag"].strip('"') != hashlib.md5(body, usedforsecurity=False).hexdigest():
                raise PublishError(f"s3://{target.bucket}/{key}: uploaded object does not match the lake copy")
            uploaded.append(f"s3://{target.bucket}/{key}")
        pointer = {"report_date": day.isoformat(), "report_json": f"{base}/report.json",
                   "report_html": f"{base}/report.html", "code_version": config.code_version()}
        latest = _newer_latest(client, target, day)
        if latest:
            client.put_object(Bucket=target.bucket, Key=latest, Body=json.dumps(pointer, indent=2).encode(),
                              ContentType="application/json")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise PublishError(f"S3 {error.get('Code', 'error')} on bucket {target.bucket!r} at "
                           f"{target.endpoint_url or 'AWS'}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise PublishError(f"S3 endpoint {target.endpoint_url or 'AWS'} unreachable: {exc}") from exc
    return {"uploaded": uploaded, "latest": f"s3://{target.bucket}/{latest}" if latest else None}


def _newer_latest(client: Any, target: Target, day: dt.date) -> str | None:
    """The `latest.json` key, unless it already points at a later date (a backfill must not move it back)."""
    from botocore.exceptions import ClientError

    key = f"{target.prefix.strip('/')}/latest.json".lstrip("/")
    try:
        current = json.loads(client.get_object(Bucket=target.bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return key
        raise
    return key if current.get("report_date", "") <= day.isoformat() else None


def main(argv: list[str] | None = None) -> int:
    env = config.reports_bucket()
    job = Job("s3_publish", __doc__, dates="day")
    job.argument("--bucket", default=env.bucket, help="target bucket (default: $PIPELINE_REPORTS_BUCKET)")
    job.argument("--prefix", default=env.prefix, help="key prefix (default: %(default)s)")
    job.argument("--endpoint-url", default=env.endpoint_url, help="S3 API endpoint (default: $AWS_ENDPOINT_URL)")

    def upload(ctx: Context) -> list[Outcome]:
        if not ctx.args.bucket:
            ctx.usage_error("--bucket (or PIPELINE_REPORTS_BUCKET) is required")
        target = Target(ctx.args.bucket, ctx.args.prefix, ctx.args.endpoint_url, env.region_name)
        return [Outcome(publish(ctx.lake, ctx.args.date, target))]

    return job.main(argv, upload)


if __name__ == "__main__":
    sys.exit(main())
