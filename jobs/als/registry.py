"""The model registry in the lake, the promotion rule and the retraining cadence (no Spark).

    models/als/versions/<version>/   one trained model: model/ (ALSModel), embeddings, top-K
                                     recommendations, similar items, popular items, metrics.json,
                                     _manifest.json (written last: a version without it is not one)
    models/als/champion.json         the version that serves; moves only on a promotion

A version is `<run date>-<hyperparameter hash>-<commit>`: every training run adds a version of its own,
so a rerun can never overwrite another version's files, the serving champion's least of all.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from jobs.als.settings import AlsSettings
from jobs.common import storage
from jobs.common.paths import Lake, as_date

MODEL = "als"


def version_id(day: dt.date, params_key: str, commit_id: str) -> str:
    """Readable and unique: the run date, the hyperparameters' hash, and the commit that writes it."""
    return f"{day:%Y%m%d}-{params_key}-{commit_id.rsplit('.', 1)[-1]}"


def _json(uri: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        return None


def manifest(lake: Lake, version: str) -> dict[str, Any] | None:
    return _json(Lake.manifest(lake.model_version(MODEL, version)))


def champion(lake: Lake) -> dict[str, Any] | None:
    """`{"version", "promoted_at", "run_date", "metric", "value", "reason"}` or None."""
    return _json(lake.champion(MODEL))


def versions(lake: Lake) -> list[dict[str, Any]]:
    """Manifests of every complete version, oldest run date first."""
    files = storage.list_files(lake.model_versions(MODEL), "_manifest.json")
    found = [m for m in (_json(f) for f in files if f.rsplit("/", 3)[-3] == "versions") if m]
    return sorted(found, key=lambda m: (m["run_date"], m["version"]))


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(candidate: dict[str, Any] | None, baseline: dict[str, Any] | None,
           current: dict[str, Any] | None, settings: AlsSettings) -> Decision:
    """Promote only a model that beats the popularity baseline and the champion on the primary metric.

    `candidate`/`baseline`/`current` are metric dicts on the same holdout (`current` None: no
    champion, or none comparable; it then carries a `not_comparable` reason instead).
    """
    name, k = settings.primary_metric, settings.k
    label = f"{name.replace('_at_k', '')}@{k}"
    if candidate is None or candidate.get(name) is None:
        why = (candidate or {}).get("not_computable", "no evaluation")
        return Decision(False, f"not promoted: the model could not be evaluated ({why})")
    value = candidate[name]
    if current is not None and current.get("not_comparable"):
        return Decision(False, f"not promoted: the champion {current['version']} cannot be judged on this "
                               f"holdout ({current['not_comparable']})")
    if baseline is None or baseline.get(name) is None or value <= baseline[name]:
        base = "n/a" if baseline is None or baseline.get(name) is None else f"{baseline[name]:.4f}"
        return Decision(False, f"not promoted: {label} {value:.4f} does not beat the popularity baseline ({base})")
    if current is not None and value <= current[name] + settings.min_improvement:
        return Decision(False, f"not promoted: {label} {value:.4f} does not beat the champion "
                               f"{current['version']} ({current[name]:.4f}) by more than {settings.min_improvement}")
    against = f"champion {current['version']} {current[name]:.4f}" if current else "no champion yet"
    return Decision(True, f"promoted: {label} {value:.4f} beats popularity {baseline[name]:.4f} and {against}")


def training_due(lake: Lake, day: dt.date, settings: AlsSettings, force: bool = False) -> tuple[bool, str]:
    """Whether the nightly run should train: forced, no model yet, old enough, or enough new events."""
    if force:
        return True, "retrain forced"
    earlier = [m for m in versions(lake) if as_date(m["run_date"]) <= day]
    if not earlier:
        return True, "no trained model yet"
    last = earlier[-1]
    age = (day - as_date(last["run_date"])).days
    if age >= settings.every_days:
        return True, f"last model {last['version']} is {age} days old (cadence {settings.every_days} days)"
    new_events = sum(_bronze_rows(lake, as_date(last["run_date"]) + dt.timedelta(days=n))
                     for n in range(1, age + 1))
    trained_on = max(int(last["counts"]["events"]), 1)
    ratio = new_events / trained_on
    verdict = ratio >= settings.min_new_events_ratio
    return verdict, (f"last model {last['version']} is {age} days old (cadence {settings.every_days}); "
                     f"{new_events} new events = {ratio:.0%} of its {trained_on} "
                     f"({'>=' if verdict else '<'} {settings.min_new_events_ratio:.0%})")


def _bronze_rows(lake: Lake, day: dt.date) -> int:
    found = _json(Lake.manifest(lake.partition("bronze", "clickstream", day)))
    return int(found["counts"]["bronze"]) if found else 0
