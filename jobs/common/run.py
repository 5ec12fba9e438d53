"""One job's run for one date: where it stages its outputs, how it publishes them or sets them aside.

Every job that writes lake tables does it inside a `Run` (`with Run(...) as this:`), which holds a
commit transaction of the run's output group (`jobs/common/commit.py`): the group's lock is held
from before the run reads the state it replaces until its outputs are published; outputs are
written to staging (`_staging/...`, invisible to readers, recorded in the journal), validated, then
either swapped into place together with their manifests (`publish`) or moved, all together, to
`quarantine/_rejected_batches/` (`reject`). A run that fails or dies leaves no staging behind.
Manifests share one header (job, date, run id, code version, start time).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.common import commit, config, storage
from jobs.common.commit import Output
from jobs.common.paths import Lake

if TYPE_CHECKING:
    from jobs.common.spark import LakeFS

log = logging.getLogger(__name__)

__all__ = ["Output", "Run"]


@dataclass
class Run:
    """`group` names what the run writes, for the lock: e.g. `clickstream/dt=2026-11-20`, `cdc`, `models/als`."""

    job: str
    lake: Lake
    day: dt.date
    run_id: str
    group: str
    fs: LakeFS | None = None
    started: float = field(default_factory=time.time)
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)
    _txn: commit.Transaction | None = field(default=None, repr=False)

    def __enter__(self) -> Run:
        self._txn = self._stack.enter_context(commit.transaction(self.lake, self.group, self.run_id))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def txn(self) -> commit.Transaction:
        if self._txn is None:
            raise RuntimeError(f"{self.job}: use the run as a context manager (`with Run(...) as run:`)")
        return self._txn

    def header(self) -> dict[str, Any]:
        """The keys every manifest of this run starts with."""
        return {"job": self.job, "dt": self.day.isoformat(), "run_id": self.run_id,
                **config.code_identity(),
                "started_at": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat()}

    def elapsed(self) -> float:
        return round(time.time() - self.started, 2)

    def staging(self, zone: str, table: str) -> str:
        """Where this run writes the date's partition of `zone/table` before it is published."""
        return self.txn.stage(self.lake.staging(zone, table, self.day, self.txn.commit_id))

    def table_staging(self, zone: str, table: str) -> str:
        """Where this run writes a whole table (not one partition) or a file before it is published."""
        return self.txn.stage(self.lake.table_staging(zone, table, self.txn.commit_id))

    def file_staging(self, zone: str, name: str) -> str:
        """Where this run writes a single file (a report, a pointer) before it replaces the published one."""
        return self.txn.stage_file(self.lake.file_staging(zone, name, self.txn.commit_id))

    def docs(self, suite: str) -> str:
        return self.lake.data_docs(suite, self.day, self.run_id)

    def write_json(self, uri: str, document: dict[str, Any]) -> None:
        storage.write_atomic(uri, json.dumps(document, indent=2, default=str).encode())

    def publish(self, outputs: list[Output]) -> None:
        """Swap every staged output into place, in the order given, each with its manifest (commit protocol)."""
        self.txn.publish(outputs)

    def reject(self, zone: str, table: str, staged: dict[str, str], manifest: dict[str, Any]) -> str:
        """Publish nothing: move every staged output of the run to one rejected batch, for inspection.

        Returns the batch's directory: `quarantine/_rejected_batches/<zone>/<table>/dt=D/run_id=R/<name>`.
        """
        rejected = self.lake.rejected(zone, table, self.day, self.run_id)
        for name, path in staged.items():
            if storage.exists(path):
                storage.move(path, f"{rejected}/{name}")
        self.write_json(Lake.manifest(rejected), {**manifest, "status": "rejected", "rejected_batch": rejected})
        log.error("%s dt=%s rejected: nothing published; batch kept at %s", self.job, self.day, rejected)
        return rejected
