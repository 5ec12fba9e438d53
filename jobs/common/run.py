"""One job's run for one date: where it stages its outputs, how it publishes them or sets them aside.

Every Spark job that writes a lake table goes through a `Run`: outputs are written to staging
(`_staging/...`, invisible to readers), validated, then either swapped into place together with
their manifests (`publish`) or moved, all together, to `quarantine/_rejected_batches/` (`reject`).
Manifests share one header (job, date, run id, code version, start time), so any output can be
traced to the run and the code that made it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.common import config
from jobs.common.paths import Lake

if TYPE_CHECKING:
    from jobs.common.spark import LakeFS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """A staged directory, where it goes, and the manifest written into it before the swap (its commit marker)."""

    staged: str
    final: str
    manifest: dict[str, Any] | None = None


@dataclass
class Run:
    job: str
    lake: Lake
    day: dt.date
    run_id: str
    fs: LakeFS
    started: float = field(default_factory=time.time)

    def header(self) -> dict[str, Any]:
        """The keys every manifest of this run starts with."""
        return {"job": self.job, "dt": self.day.isoformat(), "run_id": self.run_id,
                "code_version": config.code_version(),
                "started_at": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat()}

    def elapsed(self) -> float:
        return round(time.time() - self.started, 2)

    def staging(self, zone: str, table: str) -> str:
        """Where this run writes the date's partition of `zone/table` before it is published."""
        return self.lake.staging(zone, table, self.day, self.run_id)

    def table_staging(self, zone: str, table: str) -> str:
        """Where this run writes a whole table (not one partition) before it is published."""
        return self.lake.table_staging(zone, table, self.run_id)

    def docs(self, suite: str) -> str:
        return self.lake.data_docs(suite, self.day, self.run_id)

    def write_json(self, uri: str, document: dict[str, Any]) -> None:
        self.fs.write_text(uri, json.dumps(document, indent=2, default=str))

    def publish(self, outputs: list[Output]) -> None:
        """Swap each staged output into place, in the order given, each with its manifest."""
        for output in outputs:
            if output.manifest is not None:
                self.write_json(Lake.manifest(output.staged), output.manifest)
            self.fs.publish(output.staged, output.final)

    def reject(self, zone: str, table: str, staged: dict[str, str], manifest: dict[str, Any]) -> str:
        """Publish nothing: move every staged output of the run to one rejected batch, for inspection.

        Returns the batch's directory: `quarantine/_rejected_batches/<zone>/<table>/dt=D/run_id=R/<name>`.
        """
        rejected = self.lake.rejected(zone, table, self.day, self.run_id)
        for name, path in staged.items():
            self.fs.move(path, f"{rejected}/{name}")
            self.fs.prune_staging(path)
        self.write_json(Lake.manifest(rejected), {**manifest, "status": "rejected", "rejected_batch": rejected})
        log.error("%s dt=%s rejected: nothing published; batch kept at %s", self.job, self.day, rejected)
        return rejected
