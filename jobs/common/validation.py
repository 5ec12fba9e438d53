"""The Great Expectations gate: validate a staged DataFrame against a suite kept in include/.

GX runs inside the Spark job (the GX Airflow operators build DataFrames at DAG-parse time).
Run-dependent bounds (time window, row-count range) are GX suite parameters (`$PARAMETER`),
so the suite file stays the single statement of the contract. GX 1.x has no S3 stores: the
Data Docs are built in a local temp dir and copied to the lake with Hadoop's FileSystem.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any

from jobs.common import config

config.quiet_great_expectations()
logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines drown the job's log

import great_expectations as gx  # noqa: E402
import jinja2  # noqa: E402
from great_expectations.checkpoint import UpdateDataDocsAction  # noqa: E402
from great_expectations.core.expectation_suite import ExpectationSuite  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.render.view import view as gx_views  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402

from jobs.common.spark import LakeFS  # noqa: E402


class CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's compiled Data Docs templates, kept for the process (Jinja's own bytecode-cache hook, in memory).

    GX builds a new Jinja environment for every page it renders, so every `validate` compiled the same ~100
    templates again: 0.2 s of a 1.4 s gate on a small table (benchmarks/gx_gate_fixed_cost.py). Jinja keys a
    compiled template by its name and source checksum, so a changed template is compiled again."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


TEMPLATES = CompiledTemplates()


class _DataDocsEnvironment(jinja2.Environment):
    """The environment GX's Data Docs views build, with the process's compiled templates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("bytecode_cache", TEMPLATES)
        super().__init__(*args, **kwargs)


# GX 1.24 builds its views' environments from the name `Environment` of this module (pinned in requirements.txt;
# tests/spark/test_validation_gate.py fails if a second page render compiles a template again)
gx_views.Environment = _DataDocsEnvironment


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    evaluated: int
    failures: list[str] = field(default_factory=list)
    data_docs: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as manifests record it."""
        return {"suite": self.suite, "success": self.success, "failures": self.failures, "data_docs": self.data_docs}

    def summary(self) -> str:
        head = f"GX suite {self.suite}: {len(self.failures)} of {self.evaluated} expectations failed"
        return "; ".join([head, *self.failures]) if self.failures else f"GX suite {self.suite}: all passed"


def _suite_document(name: str) -> dict[str, Any]:
    with open(config.include_path("expectations", f"{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def _describe(result: Any) -> str:
    cfg = result.expectation_config
    column = cfg.kwargs.get("column")
    description = getattr(cfg, "description", None)
    target = f"{cfg.type}({column})" if column else (f"{cfg.type} ({description})" if description else cfg.type)
    res = result.result or {}
    if "unexpected_count" in res:
        examples = ", ".join(map(str, (res.get("partial_unexpected_list") or [])[:3]))
        return f"{target}: {res['unexpected_count']} unexpected (e.g. {examples})"
    if cfg.type == "unexpected_rows_expectation" and "observed_value" in res:
        rows = (res.get("details") or {}).get("unexpected_rows") or []
        return f"{target}: {res['observed_value']} rows" + (f", e.g. {rows[:2]}" if rows else "")
    if "observed_value" in res:
        return f"{target}: observed {res['observed_value']}"
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"{target}: error {result.exception_info.get('exception_message')}"
    return target


#: The first pass: the verdict with observed values and unexpected counts but no examples of unexpected values,
#: which cost one Spark job per expectation (14 jobs instead of 40 for the bronze suite). BOOLEAN_ONLY costs
#: the same and GX 1.24's Data Docs cannot render it (no observed value for the ordered column list).
FIRST_PASS: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0}
DETAILS: dict[str, Any] = {"result_format": "SUMMARY"}


def validate(df: DataFrame, suite_name: str, parameters: dict[str, Any],
             docs_uri: str | None = None, lake_fs: LakeFS | None = None,
             suite_document: dict[str, Any] | None = None) -> ValidationOutcome:
    """Run the suite on `df`; optionally publish the run's Data Docs (HTML) to `docs_uri`.

    The suite is `include/expectations/<suite_name>.json`, or `suite_document` when the suite is generated
    (the feature tables' suites come from their registry). Two passes: every expectation at `FIRST_PASS`
    (the verdict); only when one fails, the suite again at `DETAILS` (with examples of the unexpected values
    for the manifest, the log and the Data Docs). A passing batch costs a third of the Spark jobs."""
    document = suite_document or _suite_document(suite_name)
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as verdict_docs, \
            tempfile.TemporaryDirectory(prefix="gx-docs-") as detail_docs:
        results, success = _run(df, suite_name, document, parameters, FIRST_PASS, docs_uri and verdict_docs)
        docs = verdict_docs
        if not success:
            results, success = _run(df, suite_name, document, parameters, DETAILS, docs_uri and detail_docs)
            docs = detail_docs
        if docs_uri and lake_fs is not None:  # the Data Docs of the pass that decided, with its details
            lake_fs.copy_from_local(docs, docs_uri)
    return ValidationOutcome(suite=suite_name, success=success, evaluated=len(results),
                             failures=[_describe(r) for r in results if not r.success],
                             data_docs=f"{docs_uri}/index.html" if docs_uri else None)


def _run(df: DataFrame, suite_name: str, document: dict[str, Any], parameters: dict[str, Any],
         result_format: dict[str, Any],
         local_docs: str | None) -> tuple[list[Any], bool]:
    """One checkpoint run in an ephemeral context, its Data Docs built into `local_docs` (if given)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if local_docs:
        context.add_data_docs_site("lake", {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": local_docs},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    # not persisted: GX would cache every column of the batch (and never release it), while each of its Spark
    # jobs reads only the columns its expectations need from the Parquet just written (4.1 instead of 9.0 s on
    # 0.94 M bronze rows); a caller that computes its frame persists it itself (the CDC history checks)
    batch = (context.data_sources.add_spark("spark", persist=False)
             .add_dataframe_asset(suite_name)
             .add_batch_definition_whole_dataframe("partition"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch,
                                suite=context.suites.add(ExpectationSuite(**copy.deepcopy(document)))))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=suite_name, validation_definitions=[definition],
        actions=[UpdateDataDocsAction(name="data_docs")] if local_docs else [],
        result_format=result_format,
    ))
    run = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=parameters)
    return [r for vr in run.run_results.values() for r in vr.results], bool(run.success)
