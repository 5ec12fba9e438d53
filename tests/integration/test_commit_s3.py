"""The commit protocol on an S3 API server (moto's, over HTTP): the lease lock from conditional PUTs, a whole
commit with the copy-based swap, and a lease left by a dead run taken over once it expires."""

from __future__ import annotations

import json
import time

import pytest

from jobs.common import commit, settings, storage
from jobs.common.commit import CommitError, Output
from jobs.common.paths import Lake


def test_exclusive_create_is_a_conditional_put(s3_lake):
    uri = f"{s3_lake.root}/_locks/x.lock"
    assert storage.create_exclusive(uri, b"first") is True
    assert storage.create_exclusive(uri, b"second") is False
    assert storage.read_bytes(uri) == b"first"


def test_a_commit_on_s3_swaps_outputs_and_leaves_no_lock_or_journal(s3_lake):
    target = s3_lake.table("silver", "users")
    storage.write_atomic(f"{target}/part-0.parquet", b"v1")
    with commit.transaction(s3_lake, "users", "run-1", wait_seconds=5) as txn:
        staged = txn.stage(s3_lake.table_staging("silver", "users", txn.commit_id))
        storage.write_atomic(f"{staged}/part-1.parquet", b"v2")
        with pytest.raises(CommitError, match="users is being written by another run \\(run run-1"):
            with commit.transaction(s3_lake, "users", "run-2", wait_seconds=0.5):
                pass
        txn.publish([Output(staged, target, {"version": 2})])
    assert storage.list_files(target, ".parquet") == [f"{target}/part-1.parquet"]
    assert json.loads(storage.read_bytes(Lake.manifest(target)))["version"] == 2
    assert not storage.exists(f"{s3_lake.root}/_locks/users.lock")
    assert not storage.list_files(f"{s3_lake.root}/_commits", ".json")


def test_a_lease_not_refreshed_is_taken_over(s3_lake, monkeypatch):
    lock_uri = f"{s3_lake.root}/_locks/users.lock"
    dead = {"run_id": "dead", "host": "elsewhere", "pid": 1, "since": "then", "heartbeat": time.time() - 3600}
    storage.write_atomic(lock_uri, json.dumps(dead).encode())
    lease = settings.pipeline().commit.lease_seconds
    assert time.time() - dead["heartbeat"] > lease
    with commit.transaction(s3_lake, "users", "alive", wait_seconds=5):
        assert json.loads(storage.read_bytes(lock_uri))["run_id"] == "alive"
