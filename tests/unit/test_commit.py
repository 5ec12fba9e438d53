"""The commit protocol on a real local filesystem: killed at every step then retried, two writers at once,
a lock holder killed, a run that fails before committing. No Spark: a job's outputs are directories."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from jobs.common import commit, storage
from jobs.common.commit import CommitError, Output
from jobs.common.paths import Lake

GROUP = "things/dt=2026-11-20"
STEPS = (("storage", "write_atomic"), ("storage", "move"), ("storage", "exchange"), ("storage", "delete"),
         ("os", "replace"))


def tree(root: Path) -> dict[str, str]:
    """Every file below `root` with its content (manifests without their run-specific ids)."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_text()
        if path.suffix == ".json" and not path.name.endswith(".lock"):
            text = json.dumps({k: v for k, v in json.loads(text).items() if k not in ("run_id", "commit_id")})
        found[str(path.relative_to(root))] = text
    return found


def published(lake_dir: Path) -> dict[str, str]:
    """What readers see: the tables, not the lake's own bookkeeping (locks, journals, trash, staging)."""
    return {k: v for k, v in tree(lake_dir).items() if not k.startswith(("_locks", "_commits", "_trash"))
            and "/_staging" not in f"/{k}"}


def seed(lake: Lake) -> None:
    """Yesterday's state: a table, a partition and a pointer file."""
    for uri, data in ((f"{lake.table('silver', 'users')}/part-0.parquet", b"users v1"),
                      (f"{lake.table('silver', 'users')}/_manifest.json", b'{"version": 1}'),
                      (f"{lake.partition('bronze', 'events', _day())}/part-0.parquet", b"events v1"),
                      (lake.champion("m"), b'{"version": "v1"}')):
        storage.write_atomic(uri, data)


def _day():
    import datetime as dt

    return dt.date(2026, 11, 20)


def job(lake: Lake, run_id: str, fail_before_publish: bool = False) -> None:
    """Tonight's run: replaces the table, the partition and the pointer, and adds a new partition."""
    with commit.transaction(lake, GROUP, run_id, wait_seconds=5) as txn:
        users = txn.stage(lake.table_staging("silver", "users", txn.commit_id))
        storage.write_atomic(f"{users}/part-0.parquet", b"users v2")
        storage.write_atomic(f"{users}/part-1.parquet", b"users v2, more")
        events = txn.stage(lake.staging("bronze", "events", _day(), txn.commit_id))
        storage.write_atomic(f"{events}/part-0.parquet", b"events v2")
        fresh = txn.stage(lake.staging("bronze", "events_new", _day(), txn.commit_id))
        storage.write_atomic(f"{fresh}/part-0.parquet", b"new v2")
        pointer = txn.stage_file(lake.file_staging("models", "champion.json", txn.commit_id))
        storage.write_atomic(pointer, b'{"version": "v2"}')
        if fail_before_publish:
            raise RuntimeError("validation crashed")
        txn.publish([Output(users, lake.table("silver", "users"), {"version": 2}),
                     Output(events, lake.partition("bronze", "events", _day())),
                     Output(fresh, lake.partition("bronze", "events_new", _day())),
                     Output(pointer, lake.champion("m"))])


def expected_after_one_run(tmp_path: Path) -> dict[str, str]:
    lake = Lake((tmp_path / "reference").as_uri())
    seed(lake)
    job(lake, "reference")
    return published(tmp_path / "reference")


def _crash_at(lake_root: str, step: int, queue: multiprocessing.Queue) -> None:
    """In a child process: run the job and die (os._exit, no clean-up at all) at the step-th file operation."""
    calls = {"n": 0}

    def counted(original):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == step:
                os._exit(17)
            return original(*args, **kwargs)
        return wrapper

    for module, name in STEPS:
        target = storage if module == "storage" else os
        setattr(target, name, counted(getattr(target, name)))
    job(Lake(lake_root), "crashing")
    queue.put(calls["n"])
    os._exit(0)


def test_killed_at_every_step_then_retried_ends_as_an_uninterrupted_run(tmp_path):
    expected = expected_after_one_run(tmp_path)
    context = multiprocessing.get_context("fork")
    step, completed = 0, False
    while not completed:
        step += 1
        lake_dir = tmp_path / f"crash-{step}"
        lake = Lake(lake_dir.as_uri())
        seed(lake)
        queue = context.Queue()
        child = context.Process(target=_crash_at, args=(lake.root, step, queue))
        child.start()
        child.join(60)
        completed = child.exitcode == 0
        if not completed:
            assert child.exitcode == 17, f"step {step}: the child failed otherwise ({child.exitcode})"
            before_retry = published(lake_dir)
            # a reader between the crash and the retry sees whole outputs: old or new, never a missing one
            assert {k.split("/part-")[0] for k in before_retry if "/part-" in k} >= {
                "silver/users", "bronze/events/dt=2026-11-20"}
            job(lake, "retry")  # what Airflow does after a crash: run the task again
        assert published(lake_dir) == expected, f"killed at file operation {step}"
        assert not list(lake_dir.rglob("_staging")), f"step {step}: staging left behind"
        assert not list((lake_dir / "_commits").rglob("*.json")), f"step {step}: a journal left behind"
    assert step > 10  # every operation of staging and of the commit was a crash point


def test_a_failure_before_publishing_leaves_the_tables_and_no_staging(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    seed(lake)
    before = published(tmp_path / "lake")
    with pytest.raises(RuntimeError, match="validation crashed"):
        job(lake, "failing", fail_before_publish=True)
    assert published(tmp_path / "lake") == before
    assert not list((tmp_path / "lake").rglob("_staging"))


def test_manifests_carry_the_commit_and_the_old_data_waits_in_the_trash(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    seed(lake)
    job(lake, "run-1")
    manifest = json.loads(storage.read_bytes(Lake.manifest(lake.table("silver", "users"))))
    assert manifest["version"] == 2 and manifest["run_id"] == "run-1" and manifest["commit_id"].startswith("run-1.")
    trash = tmp_path / "lake" / "_trash"
    assert sorted(p.read_text() for p in trash.rglob("part-0.parquet")) == ["events v1", "users v1"]


def _hold(lake_root: str, ready, release) -> None:
    with commit.transaction(Lake(lake_root), GROUP, "holder", wait_seconds=5):
        ready.set()
        release.wait(30)


def test_a_second_writer_waits_then_fails_naming_the_holder(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(lake.root, ready, release))
    holder.start()
    assert ready.wait(30)
    started = time.monotonic()
    with pytest.raises(CommitError, match=rf"{GROUP} is being written by another run \(run holder, pid {holder.pid}"):
        with commit.transaction(lake, GROUP, "second", wait_seconds=1.5):
            pass
    assert time.monotonic() - started >= 1.5
    release.set()
    holder.join(30)
    with commit.transaction(lake, GROUP, "third", wait_seconds=5):  # free again
        pass


def test_two_writers_at_once_are_serialised(tmp_path):
    """Two runs start together and each reads, increments and writes a counter: no update is lost."""
    lake = Lake((tmp_path / "lake").as_uri())
    storage.write_atomic(lake.champion("counter"), b'{"n": 0}')
    context = multiprocessing.get_context("fork")
    runs = [context.Process(target=_increment, args=(lake.root, f"w{i}")) for i in range(4)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
        assert run.exitcode == 0
    assert json.loads(storage.read_bytes(lake.champion("counter")))["n"] == 4


def _increment(lake_root: str, run_id: str) -> None:
    lake = Lake(lake_root)
    with commit.transaction(lake, GROUP, run_id, wait_seconds=30) as txn:
        n = json.loads(storage.read_bytes(lake.champion("counter")))["n"]
        time.sleep(0.2)  # a window in which an unserialised writer would read the same n
        staged = txn.stage_file(lake.file_staging("models", "counter.json", txn.commit_id))
        storage.write_atomic(staged, json.dumps({"n": n + 1}).encode())
        txn.publish([Output(staged, lake.champion("counter"))])


def _hold_and_die(lake_root: str, ready) -> None:
    with commit.transaction(Lake(lake_root), GROUP, "doomed", wait_seconds=5) as txn:
        txn.stage(Lake(lake_root).staging("bronze", "events", _day(), txn.commit_id))
        ready.set()
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_writer_killed_with_sigkill_releases_the_lock_and_its_staging_is_rolled_back(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    seed(lake)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    doomed = context.Process(target=_hold_and_die, args=(lake.root, ready))
    doomed.start()
    doomed.join(30)
    assert doomed.exitcode == -signal.SIGKILL and ready.is_set()
    assert list((tmp_path / "lake" / "_commits").rglob("*.json"))  # it died holding a journal
    job(lake, "next")  # no wait: the kernel released the lock with the process
    assert published(tmp_path / "lake") == expected_after_one_run(tmp_path)


def test_recovery_refuses_an_ambiguous_state(tmp_path):
    """A committing journal whose staged output vanished while the target is not its own: stop and say so."""
    lake = Lake((tmp_path / "lake").as_uri())
    seed(lake)
    journal = f"{commit.commits_dir(lake, GROUP)}/lost.json"
    storage.write_atomic(journal, json.dumps({"run_id": "lost", "commit_id": "lost.1", "state": "committing",
                                              "staged": [], "outputs": [[f"{lake.root}/gone", lake.table(
                                                  "silver", "users")]]}).encode())
    with pytest.raises(CommitError, match="its staged output .*/gone is gone"):
        job(lake, "next")
