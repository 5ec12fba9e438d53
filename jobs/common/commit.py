"""The lake's commit protocol: how every table the project writes changes, safely.

A job writes a **group** of outputs (e.g. the CDC merge: the change log, its quarantine, each table's
history and current; a bronze day: the partition and its quarantine). For one group:

1. **Lock.** The run takes the group's lock before it reads any state it will replace, and keeps it to
   the end: two writers of one group are serialised (the second waits, then fails with one line
   naming the holder). On a local filesystem the lock is `flock` on `_locks/<group>.lock`: the
   kernel releases it when the process dies, even by `kill -9`. On S3 it is a lease object created
   with a conditional PUT (`If-None-Match: *`), refreshed by a heartbeat; a lease not refreshed for
   `lease_seconds` is taken over.
2. **Recover.** With the lock held, any journal a dead run left in `_commits/<group>/` is finished:
   a run that died while committing is rolled forward (its outputs were validated before the commit
   began); a run that died while staging is rolled back (its staging is deleted, Spark's
   `_temporary` files with it).
3. **Journal.** The run records every staging directory it creates (`state: staging`); before it
   publishes, it records the outputs (`state: committing`).
4. **Swap, output by output.** Each staged directory carries a manifest with the run id. A directory
   output replaces its target with `renameat2(RENAME_EXCHANGE)`: one atomic step, so a reader of the
   path sees the old or the new data, never neither; the old data goes to `_trash/` (kept
   `trash_retention_hours` for readers still on it, then deleted). A file output (a pointer, a
   report) is `os.replace`d. Every step can be repeated: recovery tells a swapped output from an
   unswapped one by the run id in the target's manifest.
5. **Done.** The journal is deleted, the lock released.

So a process killed at any instant, then retried, ends with exactly the outputs of an uninterrupted
run; a validation failure publishes nothing. What a reader sees: each output atomically; the
outputs of one group one after the other (a reader between two swaps of a CDC merge may see the new
history beside the old current for that instant). On S3 there is no atomic rename: a directory swap
is a copy, so a reader can see part of it; the manifest (written into the staged directory first)
lists the run id, and the lock and the journal still make crashes and concurrent writers safe.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jobs.common import settings, storage
from jobs.common.errors import PipelineError
from jobs.common.paths import Lake

log = logging.getLogger(__name__)


class CommitError(PipelineError):
    """A commit cannot go on: the group is busy, or the lake is in a state recovery cannot decide."""


@dataclass(frozen=True)
class Output:
    """A staged directory or file, where it goes, and the manifest written into it first (directories)."""

    staged: str
    final: str
    manifest: dict[str, Any] | None = None


def _group_file(group: str) -> str:
    return group.replace("/", "~")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _holder(run_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "since": _now(),
            "heartbeat": time.time()}


class GroupLock:
    """The writers' lock of one output group (see the module docstring)."""

    def __init__(self, lake: Lake, group: str, run_id: str) -> None:
        self.lake, self.group, self.run_id = lake, group, run_id
        self.uri = f"{lake.zone('_locks')}/{_group_file(group)}.lock"
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        waited = False
        while not self._try():
            if time.monotonic() >= deadline:
                raise CommitError(f"{self.group} is being written by another run ({self.describe_holder()}); "
                                  f"waited {wait_seconds:.0f}s. Retry later, or stop that run")
            if not waited:
                log.warning("%s is locked by %s; waiting up to %.0fs", self.group, self.describe_holder(),
                            wait_seconds)
                waited = True
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def _try(self) -> bool:
        local = storage.local_path(self.uri)
        if local is not None:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            fd = os.open(local, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_holder(self.run_id)).encode())
            self._fd = fd
            return True
        return self._try_lease()

    def _try_lease(self) -> bool:
        """Object stores: a lease object; a lease whose heartbeat is older than `lease_seconds` is taken over."""
        mine = _holder(self.run_id)
        if storage.create_exclusive(self.uri, json.dumps(mine).encode()):
            self._start_heartbeat(mine)
            return True
        lease = settings.pipeline().commit.lease_seconds
        holder = self._read_holder()
        if holder is not None and time.time() - float(holder.get("heartbeat", 0)) > lease:
            log.warning("%s: the lease of run %s expired (no heartbeat for %ss); taking it over",
                        self.group, holder.get("run_id"), lease)
            storage.delete(self.uri)
            return self._try_lease()
        return False

    def _start_heartbeat(self, holder: dict[str, Any]) -> None:
        """Refresh the lease's heartbeat (its `since` stays the time it was taken)."""
        every = settings.pipeline().commit.heartbeat_seconds

        def beat() -> None:
            while not self._stop.wait(every):
                storage.write_atomic(self.uri, json.dumps({**holder, "heartbeat": time.time()}).encode())

        self._beat = threading.Thread(target=beat, name=f"lease-{self.group}", daemon=True)
        self._beat.start()

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(storage.read_bytes(self.uri) or b"{}")
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def describe_holder(self) -> str:
        holder = self._read_holder() or {}
        return (f"run {holder.get('run_id', '?')}, pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"since {holder.get('since', '?')}")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._beat is not None:
            self._stop.set()
            self._beat.join()
            self._beat = None
            storage.delete(self.uri)


class Journal:
    """What a commit staged and what it publishes, in `_commits/<group>/<commit_id>.json` (module docstring)."""

    def __init__(self, lake: Lake, group: str, run_id: str, commit_id: str) -> None:
        self.lake, self.group, self.run_id, self.commit_id = lake, group, run_id, commit_id
        self.uri = f"{commits_dir(lake, group)}/{commit_id}.json"
        self.staged: list[str] = []
        self.state = "staging"

    def record_staging(self, uri: str) -> None:
        self.staged.append(uri)
        self._write({"staged": self.staged})

    def record_commit(self, outputs: list[Output]) -> None:
        self.state = "committing"
        self._write({"staged": self.staged, "outputs": [[o.staged, o.final] for o in outputs]})

    def _write(self, body: dict[str, Any]) -> None:
        storage.write_atomic(self.uri, json.dumps({"run_id": self.run_id, "commit_id": self.commit_id,
                                                   "group": self.group, "state": self.state, **body}).encode())

    def close(self) -> None:
        storage.delete(self.uri)


def commits_dir(lake: Lake, group: str) -> str:
    return f"{lake.zone('_commits')}/{_group_file(group)}"


def trash_dir(lake: Lake, group: str, run_id: str) -> str:
    return f"{lake.zone('_trash')}/{_group_file(group)}/{run_id}"


def commit_of(uri: str) -> str | None:
    """The commit that wrote a directory output (from its manifest) or a file output (from its JSON)."""
    target = Lake.manifest(uri) if storage.is_dir(uri) else uri
    try:
        return json.loads(storage.read_bytes(target)).get("commit_id")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None


def swap(lake: Lake, group: str, commit_id: str, n: int, staged: str, final: str) -> None:
    """Put one staged output in place of its target. Repeatable: a crash at any point, then this again,
    ends in the same place."""
    if not storage.exists(staged):
        if commit_of(final) == commit_id:
            return  # swapped and tidied up before the crash
        raise CommitError(f"cannot finish commit {commit_id} to {final}: its staged output {staged} is gone and "
                          "the target holds other data; inspect both, then remove the journal in "
                          f"{commits_dir(lake, group)}")
    if not storage.is_dir(staged) or not storage.exists(final):
        if storage.is_dir(staged):
            storage.move(staged, final)
        else:  # a file: one atomic replace
            local_staged, local_final = storage.local_path(staged), storage.local_path(final)
            if local_staged is not None and local_final is not None:
                os.makedirs(os.path.dirname(local_final), exist_ok=True)
                os.replace(local_staged, local_final)
            else:
                storage.delete(final)
                storage.move(staged, final)
        return
    old = f"{trash_dir(lake, group, commit_id)}/{n}"
    if commit_of(final) != commit_id:  # not swapped yet
        if not storage.exchange(staged, final):  # object store: no atomic exchange
            storage.move(final, old)
            storage.move(staged, final)
            return
    storage.move(staged, old)  # after the exchange, the staged path holds the old data


def apply(lake: Lake, group: str, commit_id: str, outputs: list[tuple[str, str]]) -> None:
    for n, (staged, final) in enumerate(outputs):
        swap(lake, group, commit_id, n, staged, final)


def recover(lake: Lake, group: str) -> list[str]:
    """Finish what dead runs of the group left (the group's lock must be held); returns what was done."""
    done = []
    for journal_uri in storage.children(commits_dir(lake, group)):
        if not journal_uri.endswith(".json"):
            continue
        journal = json.loads(storage.read_bytes(journal_uri))
        if journal["state"] == "committing":
            apply(lake, group, journal["commit_id"], [tuple(o) for o in journal["outputs"]])
            done.append(f"rolled forward commit {journal['commit_id']} of run {journal['run_id']}")
        for staged in journal["staged"]:  # rolled back, or the staging left behind a finished commit
            storage.delete(staged)
            _prune_empty_parents(staged)
        storage.delete(journal_uri)
        if journal["state"] != "committing":
            done.append(f"rolled back commit {journal['commit_id']} of run {journal['run_id']} (died while staging)")
    retention = settings.pipeline().commit.trash_retention_hours * 3600
    for old in storage.children(f"{lake.zone('_trash')}/{_group_file(group)}"):
        if time.time() - storage.modified(old) > retention:
            storage.delete(old)
    for line in done:
        log.warning("%s: %s", group, line)
    return done


def _prune_empty_parents(uri: str) -> None:
    """Remove the `_staging/...` directories a deleted staging leaves empty (up to the `_staging` one)."""
    parent = uri.rsplit("/", 1)[0]
    while "/_staging" in parent and storage.is_dir(parent) and not storage.children(parent):
        storage.delete(parent)
        if parent.rsplit("/", 1)[-1] == "_staging":
            return
        parent = parent.rsplit("/", 1)[0]


@dataclass
class Transaction:
    """One commit of a group under its lock: stage through it, then publish (or let it roll back)."""

    lake: Lake
    group: str
    run_id: str
    commit_id: str
    journal: Journal

    def stage(self, uri: str) -> str:
        """Record a staging directory before anything is written there, so a crash leaves nothing unowned."""
        self.journal.record_staging(uri)
        return uri

    def stage_file(self, uri: str) -> str:
        """A staged file: its directory is what the journal owns (a crash may leave a temporary file in it)."""
        self.stage(uri.rsplit("/", 1)[0])
        return uri

    def publish(self, outputs: list[Output]) -> None:
        """Swap every output in, in order. Each carries the commit id first: a directory in its manifest, a
        file output (a small JSON document: a report, a pointer) in itself."""
        for output in outputs:
            if storage.is_dir(output.staged):
                manifest = {**(output.manifest or {"group": self.group}), "run_id": self.run_id,
                            "commit_id": self.commit_id}
                storage.write_atomic(Lake.manifest(output.staged),
                                     json.dumps(manifest, indent=2, default=str).encode())
            else:
                document = {**json.loads(storage.read_bytes(output.staged)), "commit_id": self.commit_id}
                storage.write_atomic(output.staged, json.dumps(document, indent=2, default=str).encode())
        self.journal.record_commit(outputs)
        apply(self.lake, self.group, self.commit_id, [(o.staged, o.final) for o in outputs])
        self.journal.state = "committed"


@contextmanager
def transaction(lake: Lake, group: str, run_id: str, wait_seconds: float | None = None) -> Iterator[Transaction]:
    """Hold the group's lock for the block: recover what dead runs left, journal this commit's staging, and
    at the end the commit is complete, or its staging is gone, or (a failure while committing) its journal
    stays for the next run of the group to roll forward."""
    lock = GroupLock(lake, group, run_id)
    lock.acquire(settings.pipeline().commit.lock_wait_seconds if wait_seconds is None else wait_seconds)
    try:
        recover(lake, group)
        commit_id = f"{run_id}.{uuid.uuid4().hex[:6]}"
        journal = Journal(lake, group, run_id, commit_id)
        try:
            yield Transaction(lake, group, run_id, commit_id, journal)
        finally:
            if journal.state != "committing":  # committed (tidy up) or never committed (roll back)
                for staged in journal.staged:
                    storage.delete(staged)
                    _prune_empty_parents(staged)
                journal.close()
    finally:
        lock.release()
