"""`include/als.yaml` loaded into typed settings, with every problem listed at once.

Importable without pyspark: the DAG's cadence check uses it at run time on the worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common import config, errors
from jobs.common.settings import read_yaml

PRIMARY_METRICS = ("ndcg_at_k", "precision_at_k", "recall_at_k", "map_at_k")
#: auto: `implicit` on the driver up to `single_node_max_interactions`, Spark MLlib beyond (jobs/als/model.py)
ENGINES = ("auto", "spark", "implicit")
JAVA_INT_MAX = 2**31 - 1


class SettingsError(errors.SettingsError):
    """The ALS settings are unusable; the message lists every problem."""


@dataclass(frozen=True)
class AlsParams:
    """The hyperparameters a run may override (`--params`, the DAG's `als_params`)."""

    rank: int
    reg_param: float
    alpha: float
    max_iter: int

    def key(self) -> str:
        """Short stable hash: a model version is the run date plus this."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class AlsSettings:
    event_weights: dict[str, float]
    half_life_days: float
    window_days: int
    holdout_days: int
    max_id: int
    min_interactions: int
    min_users: int
    min_items: int
    params: AlsParams
    engine: str
    single_node_max_interactions: int
    single_node_threads: int
    num_blocks: int
    checkpoint_interval: int
    seed: int
    search_max_trials: int
    search_grid: dict[str, list[float]]
    k: int
    primary_metric: str
    min_improvement: float
    top_k: int
    similar_k: int
    popular_k: int
    item_block_size: int
    every_days: int
    min_new_events_ratio: float

    def with_params(self, overrides: dict[str, Any]) -> AlsSettings:
        """These settings with some hyperparameters replaced (validated like the file)."""
        merged = {**dataclasses.asdict(self.params), **overrides}
        problems = _param_problems(merged, "params")
        if problems:
            raise SettingsError("; ".join(problems))
        return dataclasses.replace(self, params=params_from(merged))


def default_path() -> Path:
    return config.settings_path("als.yaml")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: What a run may ask for: beyond these a run exhausts memory or time rather than learning more
#: (rank 512 x 1 M users is 2 GB of factors; ALS converges in tens of iterations, not thousands).
PARAM_BOUNDS = {"rank": (1, 512), "max_iter": (1, 100), "reg_param": (0.0, 1e6), "alpha": (0.0, 1e6)}


def _param_problems(params: dict[str, Any], where: str) -> list[str]:
    unknown = sorted(set(params) - {f.name for f in dataclasses.fields(AlsParams)})
    problems = [f"{where}: unknown hyperparameter(s) {unknown}"] if unknown else []
    for name in ("rank", "max_iter"):
        low, high = PARAM_BOUNDS[name]
        value = params.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            problems.append(f"{where}.{name} must be an integer in [{low}, {high}], got {value!r}")
    for name in ("reg_param", "alpha"):
        low, high = PARAM_BOUNDS[name]
        if not (_finite(params.get(name)) and low <= params[name] <= high):
            problems.append(f"{where}.{name} must be a finite number in [{low:g}, {high:g}], got {params.get(name)!r}")
    return problems


def params_from(values: dict[str, Any]) -> AlsParams:
    return AlsParams(int(values["rank"]), float(values["reg_param"]), float(values["alpha"]), int(values["max_iter"]))


def _positive_int(section: dict[str, Any], name: str, where: str, problems: list[str], minimum: int = 1) -> None:
    value = section.get(name)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        problems.append(f"{where}.{name} must be an integer >= {minimum}, got {value!r}")


def validate(raw: dict[str, Any]) -> list[str]:
    """Every problem in a parsed als.yaml (empty list: usable)."""
    problems: list[str] = []
    sections = {name: raw.get(name) for name in ("interactions", "training", "evaluation", "outputs", "cadence")}
    for name, section in sections.items():
        if not isinstance(section, dict):
            problems.append(f"section {name!r} is missing or not a mapping")
    if problems:
        return problems
    inter, train, evaluation, outputs, cadence = sections.values()
    weights = inter.get("event_weights")
    if not isinstance(weights, dict) or not weights:
        problems.append("interactions.event_weights must map event types to weights")
    else:
        for event_type, weight in weights.items():
            if not (_finite(weight) and weight >= 0):
                problems.append(f"interactions.event_weights.{event_type} must be a finite number >= 0, got {weight!r}")
        if all(_finite(w) and w == 0 for w in weights.values()):
            problems.append("interactions.event_weights are all 0: no event would be an interaction")
    if not (_finite(inter.get("half_life_days")) and inter["half_life_days"] > 0):
        problems.append(f"interactions.half_life_days must be > 0, got {inter.get('half_life_days')!r}")
    for name in ("window_days", "holdout_days", "min_interactions", "min_users", "min_items"):
        _positive_int(inter, name, "interactions", problems)
    if not problems and inter["holdout_days"] >= inter["window_days"]:
        problems.append("interactions.holdout_days must be smaller than window_days (no training days left)")
    max_id = inter.get("max_id")
    if not (isinstance(max_id, int) and 0 <= max_id <= JAVA_INT_MAX):
        problems.append(f"interactions.max_id must be an integer in [0, {JAVA_INT_MAX}] (ALS ids are Java ints)")
    problems += _param_problems(train.get("params") or {}, "training.params")
    for name in ("num_blocks", "checkpoint_interval"):
        _positive_int(train, name, "training", problems)
    if train.get("engine") not in ENGINES:
        problems.append(f"training.engine must be one of {ENGINES}, got {train.get('engine')!r}")
    _positive_int(train, "single_node_max_interactions", "training", problems, minimum=0)
    _positive_int(train, "single_node_threads", "training", problems, minimum=0)
    _positive_int(train, "seed", "training", problems, minimum=0)
    search = train.get("search") or {}
    _positive_int(search, "max_trials", "training.search", problems)
    grid = search.get("grid") or {}
    if not grid or set(grid) - {"rank", "reg_param", "alpha", "max_iter"}:
        problems.append("training.search.grid must map some of rank, reg_param, alpha, max_iter to value lists")
    else:
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                problems.append(f"training.search.grid.{name} must be a non-empty list")
            else:
                for value in values:
                    problems += _param_problems({**train.get("params", {}), name: value}, "training.search.grid")
    _positive_int(evaluation, "k", "evaluation", problems)
    if evaluation.get("primary_metric") not in PRIMARY_METRICS:
        problems.append(f"evaluation.primary_metric must be one of {PRIMARY_METRICS}, "
                        f"got {evaluation.get('primary_metric')!r}")
    if not (_finite(evaluation.get("min_improvement")) and evaluation["min_improvement"] >= 0):
        problems.append("evaluation.min_improvement must be a finite number >= 0")
    for name in ("top_k", "similar_k", "popular_k", "item_block_size"):
        _positive_int(outputs, name, "outputs", problems)
    _positive_int(cadence, "every_days", "cadence", problems)
    if not (_finite(cadence.get("min_new_events_ratio")) and cadence["min_new_events_ratio"] >= 0):
        problems.append("cadence.min_new_events_ratio must be a finite number >= 0")
    return problems


def parse(raw: dict[str, Any]) -> AlsSettings:
    problems = validate(raw)
    if problems:
        raise SettingsError("invalid ALS settings:\n  - " + "\n  - ".join(problems))
    inter, train, evaluation, outputs, cadence = (raw[n] for n in
                                                  ("interactions", "training", "evaluation", "outputs", "cadence"))
    return AlsSettings(
        event_weights={str(k): float(v) for k, v in inter["event_weights"].items() if v > 0},
        half_life_days=float(inter["half_life_days"]), window_days=inter["window_days"],
        holdout_days=inter["holdout_days"], max_id=inter["max_id"], min_interactions=inter["min_interactions"],
        min_users=inter["min_users"], min_items=inter["min_items"], params=params_from(train["params"]),
        engine=train["engine"], single_node_max_interactions=train["single_node_max_interactions"],
        single_node_threads=train["single_node_threads"],
        num_blocks=train["num_blocks"], checkpoint_interval=train["checkpoint_interval"], seed=train["seed"],
        search_max_trials=train["search"]["max_trials"], search_grid=train["search"]["grid"],
        k=evaluation["k"], primary_metric=evaluation["primary_metric"],
        min_improvement=float(evaluation["min_improvement"]), top_k=outputs["top_k"], similar_k=outputs["similar_k"],
        popular_k=outputs["popular_k"], item_block_size=outputs["item_block_size"],
        every_days=cadence["every_days"], min_new_events_ratio=float(cadence["min_new_events_ratio"]),
    )


def load(path: str | Path | None = None) -> AlsSettings:
    """Read and validate als.yaml; `SettingsError` lists every problem."""
    path = Path(path or default_path())
    raw = read_yaml(path, "ALS settings", SettingsError)
    if not isinstance(raw, dict):
        raise SettingsError(f"ALS settings {path} must be a YAML mapping")
    return parse(raw)
