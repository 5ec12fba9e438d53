"""Copy a night's report from the lake to an S3 bucket (MinIO, SeaweedFS, AWS) with boto3, as one commit.

The files go under a prefix of their own that nothing else writes, then the pointers move:

    <prefix>/dt=D/<content hash>/report.json, report.html, _manifest.json   immutable, one per distinct report
    <prefix>/dt=D/latest.json     {"report_json": ..., "report_html": ...}: the date's current report
    <prefix>/dt=D/report.html     a one-line redirect to the current report.html (a stable link for people)
    <prefix>/latest.json          the newest date's pointer (a backfill never moves it back)

Each pointer is a single PUT, written after every file it points at is uploaded and checked against
the lake copy (MD5 = ETag of a single-part upload), so a reader never finds a pointer to half a report,
and a publish that dies halfway leaves the previous report in place. Timeouts and retries are bounded
(`pipeline.yaml`, `publish`); every failure is a `PublishError` with one line.

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
from jobs.common import config, settings, storage
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

        limits = settings.pipeline().publish
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region_name or "us-east-1",
                            aws_access_key_id=self.aws_access_key_id,
                            aws_secret_access_key=self.aws_secret_access_key,
                            config=Config(retries={"total_max_attempts": limits.attempts, "mode": "standard"},
                                          connect_timeout=limits.connect_timeout_seconds,
                                          read_timeout=limits.read_timeout_seconds))


class PublishError(PipelineError):
    """The report could not be copied to the bucket; the message says where and why."""


def redirect_page(html_key: str) -> bytes:
    target = html_key.rsplit("/", 2)[-2] + "/report.html"  # relative to dt=D/
    return (f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={target}">'
            f'<title>A/B report</title><a href="{target}">A/B report</a>\n').encode()


def publish(lake: Lake, day: dt.date, target: Target) -> dict[str, Any]:
    """Upload the date's report files under a prefix of their own, verify them, then move the pointers."""
    from botocore.exceptions import BotoCoreError, ClientError

    source = lake.partition("reports", STAGE, day)
    bodies = {}
    for name in FILES:
        try:
            bodies[name] = storage.read_bytes(f"{source}/{name}")
        except FileNotFoundError:
            raise PublishError(f"no report for {day}: {source}/{name} does not exist "
                               "(run ab_report first)") from None
    # the prefix is the content's hash: re-publishing the same report rewrites the same objects, no duplicates
    content = hashlib.sha256(bodies["report.json"] + bodies["report.html"]).hexdigest()[:16]
    date_dir = f"{target.prefix.strip('/')}/dt={day.isoformat()}".lstrip("/")
    base = f"{date_dir}/{content}"
    client = target.client()
    try:
        for name, content_type in FILES.items():
            key = f"{base}/{name}"
            response = client.put_object(Bucket=target.bucket, Key=key, Body=bodies[name], ContentType=content_type)
            if response["ETag"].strip('"') != hashlib.md5(bodies[name], usedforsecurity=False).hexdigest():
                raise PublishError(f"s3://{target.bucket}/{key}: uploaded object does not match the lake copy")
        pointer = {"report_date": day.isoformat(), "report_json": f"{base}/report.json",
                   "report_html": f"{base}/report.html", "code_version": config.code_version()}
        _put_json(client, target.bucket, f"{date_dir}/latest.json", pointer)
        client.put_object(Bucket=target.bucket, Key=f"{date_dir}/report.html",
                          Body=redirect_page(pointer["report_html"]), ContentType=FILES["report.html"])
        latest, note = _newer_latest(client, target, day)
        if latest:
            _put_json(client, target.bucket, latest, pointer)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise PublishError(f"S3 {error.get('Code', 'error')} on bucket {target.bucket!r} at "
                           f"{target.endpoint_url or 'AWS'}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise PublishError(f"S3 endpoint {target.endpoint_url or 'AWS'} failed: {exc}") from exc
    return {"uploaded": [f"s3://{target.bucket}/{base}/{name}" for name in FILES],
            "date_pointer": f"s3://{target.bucket}/{date_dir}/latest.json",
            "latest": f"s3://{target.bucket}/{latest}" if latest else None, **({"note": note} if note else {})}


def _put_json(client: Any, bucket: str, key: str, document: dict[str, Any]) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(document, indent=2).encode(),
                      ContentType="application/json")


def _newer_latest(client: Any, target: Target, day: dt.date) -> tuple[str | None, str | None]:
    """The `latest.json` key, unless it points at a later date (a backfill must not move it back); a pointer
    that is not JSON is replaced, and said so."""
    from botocore.exceptions import ClientError

    key = f"{target.prefix.strip('/')}/latest.json".lstrip("/")
    try:
        current = json.loads(client.get_object(Bucket=target.bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return key, None
        raise
    except json.JSONDecodeError:
        return key, f"s3://{target.bucket}/{key} was not JSON; replaced"
    if not isinstance(current, dict):
        return key, f"s3://{target.bucket}/{key} was not a pointer; replaced"
    return (key, None) if str(current.get("report_date", "")) <= day.isoformat() else (None, None)


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
