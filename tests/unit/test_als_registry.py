"""The promotion rule and the retraining cadence, on a real (local) lake directory."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jobs.als import registry
from jobs.als.settings import load
from jobs.common import storage
from jobs.common.paths import Lake

SETTINGS = load()
DAY = dt.date(2026, 11, 20)


def metrics(ndcg: float | None, **extra) -> dict:
    return {"ndcg_at_k": ndcg, **extra}


@pytest.mark.parametrize("candidate, baseline, champion, promote, fragment", [
    (metrics(0.20), metrics(0.10), None, True, "promoted: ndcg@10 0.2000 beats popularity 0.1000 and no champion yet"),
    (metrics(0.20), metrics(0.10), metrics(0.15, version="v1"), True, "and champion v1 0.1500"),
    (metrics(0.09), metrics(0.10), None, False, "does not beat the popularity baseline (0.1000)"),
    (metrics(0.10), metrics(0.10), None, False, "does not beat the popularity baseline"),
    (metrics(0.14), metrics(0.10), metrics(0.15, version="v1"), False, "does not beat the champion v1 (0.1500)"),
    (metrics(0.15), metrics(0.10), metrics(0.15, version="v1"), False, "does not beat the champion"),
    (metrics(None, not_computable="empty holdout"), metrics(None), None, False, "could not be evaluated (empty "),
    (metrics(0.20), metrics(0.10), {"version": "v9", "not_comparable": "trained on the holdout"}, False,
     "champion v9 cannot be judged on this holdout (trained on the holdout)"),
])
def test_promotion_rule(candidate, baseline, champion, promote, fragment):
    decision = registry.decide(candidate, baseline, champion, SETTINGS)
    assert decision.promote is promote and fragment in decision.reason


def write_version(lake: Lake, run_date: dt.date, events: int) -> None:
    version = registry.version_id(run_date, "abcd1234", "20261120T020000-1a2b3c4d.5e6f70")
    body = {"version": version, "run_date": run_date.isoformat(), "counts": {"events": events}}
    storage.write_atomic(Lake.manifest(lake.model_version(registry.MODEL, version)), json.dumps(body).encode())


def write_bronze_manifest(lake: Lake, day: dt.date, rows: int) -> None:
    storage.write_atomic(Lake.manifest(lake.partition("bronze", "clickstream", day)),
                         json.dumps({"counts": {"bronze": rows}}).encode())


def test_training_cadence(tmp_path):
    lake = Lake(tmp_path.as_uri())
    assert registry.training_due(lake, DAY, SETTINGS) == (True, "no trained model yet")
    write_version(lake, DAY - dt.timedelta(days=2), events=10_000)
    due, reason = registry.training_due(lake, DAY, SETTINGS)
    assert not due and "0 new events = 0% of its 10000 (< 25%)" in reason
    write_bronze_manifest(lake, DAY - dt.timedelta(days=1), 1_500)
    write_bronze_manifest(lake, DAY, 1_000)
    due, reason = registry.training_due(lake, DAY, SETTINGS)
    assert due and "2500 new events = 25% of its 10000 (>= 25%)" in reason
    assert registry.training_due(lake, DAY + dt.timedelta(days=5), SETTINGS)[1].endswith(
        "is 7 days old (cadence 7 days)")
    assert registry.training_due(lake, DAY - dt.timedelta(days=1), SETTINGS, force=True) == (True, "retrain forced")
    # a backfill before the only model: nothing to compare with, so train
    assert registry.training_due(lake, DAY - dt.timedelta(days=3), SETTINGS) == (True, "no trained model yet")


def test_versions_without_a_manifest_do_not_count(tmp_path):
    lake = Lake(tmp_path.as_uri())
    storage.write_atomic(f"{lake.model_version(registry.MODEL, '20261119-deadbeef')}/metrics.json", b"{}")
    write_version(lake, DAY, 5)
    assert [v["version"] for v in registry.versions(lake)] == ["20261120-abcd1234-5e6f70"]
    assert registry.champion(lake) is None
