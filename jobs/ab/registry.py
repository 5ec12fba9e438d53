"""The experiment registry (`include/experiments.yaml`), validated on load.

A broken file (not YAML, no `experiments` list, a bad metric definition) raises
`RegistryError` with every problem listed. A broken *experiment entry* (a split that does not
sum to 1, an unknown metric, end before start, ...) does not: the entry keeps its `errors`, so
the report shows that experiment as invalid with the reasons while every other experiment is
analysed as usual.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.common import config
from jobs.common.errors import SettingsError
from jobs.common.settings import read_yaml

KINDS = ("proportion", "continuous", "ratio")
DIRECTIONS = ("increase", "decrease", "any")
GUARDRAIL_HARM = ("decrease", "increase", "change")
#: Numeric bronze columns a metric may sum (anything else would be a Spark error at run time).
VALUE_COLUMNS = ("revenue",)
SPLIT_TOLERANCE = 1e-6
#: family-wise error (Holm; Bonferroni, more conservative, as some teams' policies require) or false discovery rate
CORRECTIONS = ("holm", "bonferroni", "bh")
log = logging.getLogger(__name__)


class RegistryError(SettingsError):
    """The registry file itself cannot be used, or names no such experiment."""


@dataclass(frozen=True)
class Measure:
    """A per-user sum over post-exposure events: `value` (None = count) of `event_type` events."""

    event_type: str
    value: str | None = None

    @property
    def key(self) -> str:
        return f"{self.event_type}__{self.value or 'count'}"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    numerator: Measure
    denominator: Measure | None = None
    description: str = ""


@dataclass(frozen=True)
class MetricUse:
    """A metric as one experiment uses it: its role and what counts as a win or a harm."""

    metric: Metric
    role: str  # primary | secondary | guardrail
    direction: str  # increase | decrease | any (guardrails: the harmful move, `change` = any)
    #: guardrails only: the relative harm that is acceptable (0.02 = 2% of the control mean); with it the guardrail
    #: must be shown non-inferior (within the margin), not merely "no significant harm found"
    margin: float | None = None

    @property
    def alternative(self) -> str:
        """scipy/statsmodels naming of the test's alternative hypothesis (treatment vs control)."""
        harm = {"decrease": "smaller", "increase": "larger", "change": "two-sided"}
        win = {"increase": "larger", "decrease": "smaller", "any": "two-sided"}
        return harm[self.direction] if self.role == "guardrail" else win[self.direction]


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.05
    power: float = 0.8
    srm_alpha: float = 0.001
    correction: str = "holm"
    min_users_per_arm: int = 100
    min_days: int = 7
    cuped_lookback_days: int = 7
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    expected_loss_threshold: float = 0.001
    value_remaining_threshold: float = 0.01
    novelty_min_days: int = 3
    #: also show GrowthBook's Bayesian model (a normal posterior of the relative lift) beside the exact one
    gaussian_view: bool = False
    effect_prior_mean: float = 0.0
    effect_prior_sd: float | None = None  # None: flat (improper) prior, GrowthBook's default


@dataclass
class Experiment:
    id: str
    hypothesis: str = ""
    owner: str = ""
    variants: dict[str, float] = field(default_factory=dict)
    control: str = ""
    metrics: list[MetricUse] = field(default_factory=list)
    alpha: float = 0.05
    power: float = 0.8
    mde: float = 0.05
    min_days: int = 7
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def primary(self) -> MetricUse:
        return next(m for m in self.metrics if m.role == "primary")

    @property
    def treatments(self) -> list[str]:
        return [v for v in self.variants if v != self.control]

    def status_on(self, day: dt.date) -> str:
        if self.start_date and day < self.start_date:
            return "not_started"
        if self.end_date and day > self.end_date:
            return "ended"
        return "running"

    def analysis_end(self, day: dt.date) -> dt.date:
        """Last event date analysed: the report date, or the end date once the test ended."""
        return min(day, self.end_date) if self.end_date else day


@dataclass(frozen=True)
class Registry:
    settings: Settings
    metrics: dict[str, Metric]
    experiments: list[Experiment]

    def measures(self) -> list[Measure]:
        """Every per-user sum the metrics need, each once."""
        seen: dict[str, Measure] = {}
        for metric in self.metrics.values():
            for measure in (metric.numerator, metric.denominator):
                if measure is not None:
                    seen.setdefault(measure.key, measure)
        return list(seen.values())

    def select(self, only: list[str] | None) -> list[Experiment]:
        """The experiments a run reports on (all, or the ids asked for; unknown ids are an error)."""
        if not only:
            return list(self.experiments)
        known = {e.id for e in self.experiments}
        unknown = sorted(set(only) - known)
        if unknown:
            raise RegistryError(f"unknown experiment id(s): {', '.join(unknown)}; "
                                f"registered: {', '.join(sorted(known))}")
        return [e for e in self.experiments if e.id in only]


def parse_ids(text: str) -> list[str] | None:
    """`--experiments a,b` as a list of ids (None: all registered)."""
    return [x.strip() for x in text.split(",") if x.strip()] or None


def default_path() -> Path:
    return config.settings_path("experiments.yaml")


def load(path: str | Path | None = None) -> Registry:
    path = Path(path or default_path())
    return parse(read_yaml(path, "experiment registry", RegistryError), source=str(path))


def parse(raw: Any, source: str = "registry") -> Registry:
    if not isinstance(raw, dict) or not isinstance(raw.get("experiments"), list):
        raise RegistryError(f"{source}: expected a mapping with an `experiments` list")
    settings = _settings(raw.get("defaults") or {}, source)
    metrics, problems = {}, []
    for name, body in (raw.get("metrics") or {}).items():
        try:
            metrics[name] = _metric(name, body)
        except ValueError as exc:
            problems.append(f"metric {name}: {exc}")
    if problems:
        raise RegistryError(f"{source}: " + "; ".join(problems))
    experiments = [_experiment(entry, n, settings, metrics) for n, entry in enumerate(raw["experiments"])]
    ids = [e.id for e in experiments]
    for exp in experiments:
        if ids.count(exp.id) > 1:
            exp.errors.append(f"experiment id {exp.id!r} is registered {ids.count(exp.id)} times")
    return Registry(settings, metrics, experiments)


def _settings(raw: dict[str, Any], source: str) -> Settings:
    values = dict(raw)
    prior = values.pop("prior", {}) or {}
    values["prior_alpha"] = prior.get("alpha", Settings.prior_alpha)
    values["prior_beta"] = prior.get("beta", Settings.prior_beta)
    effect_prior = values.pop("effect_prior", None) or {}
    if not isinstance(effect_prior, dict) or set(effect_prior) - {"mean", "sd"}:
        raise RegistryError(f"{source}: defaults.effect_prior must be a mapping with `mean` and `sd` (of the relative "
                            f"lift, e.g. {{mean: 0, sd: 0.3}}), got {effect_prior!r}")
    values["effect_prior_mean"] = effect_prior.get("mean", Settings.effect_prior_mean)
    values["effect_prior_sd"] = effect_prior.get("sd", Settings.effect_prior_sd)
    if values.pop("posterior_draws", None) is not None:  # registries written before the numbers were exact
        log.warning("%s: defaults.posterior_draws is no longer used: the Bayesian numbers are computed exactly", source)
    unknown = set(values) - set(Settings.__dataclass_fields__)
    if unknown:
        raise RegistryError(f"{source}: unknown defaults {sorted(unknown)}")
    settings = Settings(**values)
    problems = [f"{name} must be in (0, 1)" for name in ("alpha", "power", "srm_alpha")
                if not 0 < getattr(settings, name) < 1]
    if settings.correction not in CORRECTIONS:
        problems.append(f"correction must be one of {', '.join(CORRECTIONS)}")
    if settings.prior_alpha <= 0 or settings.prior_beta <= 0:
        problems.append("prior alpha and beta must be > 0")
    if not isinstance(settings.gaussian_view, bool):
        problems.append(f"gaussian_view must be true or false, got {settings.gaussian_view!r}")
    sd, mean = settings.effect_prior_sd, settings.effect_prior_mean
    if sd is not None and (isinstance(sd, bool) or not isinstance(sd, int | float) or not 0 < sd < math.inf):
        problems.append(f"effect_prior.sd must be a positive number, got {sd!r}")
    if isinstance(mean, bool) or not isinstance(mean, int | float) or not math.isfinite(mean):
        problems.append(f"effect_prior.mean must be a number, got {mean!r}")
    if problems:
        raise RegistryError(f"{source}: defaults: " + "; ".join(problems))
    return settings


def _measure(body: Any) -> Measure:
    if not isinstance(body, dict) or not body.get("event_type"):
        raise ValueError("needs an event_type")
    value = body.get("value")
    if value is not None and value not in VALUE_COLUMNS:
        raise ValueError(f"value must be one of {VALUE_COLUMNS}, got {value!r}")
    return Measure(body["event_type"], value)


def _metric(name: str, body: Any) -> Metric:
    if not isinstance(body, dict) or body.get("kind") not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    description = body.get("description", "")
    if body["kind"] == "ratio":
        return Metric(name, "ratio", _measure(body.get("numerator")), _measure(body.get("denominator")), description)
    if body["kind"] == "proportion" and body.get("value"):
        raise ValueError("a proportion counts users with an event; it takes no value")
    return Metric(name, body["kind"], _measure(body), None, description)


def _experiment(entry: Any, position: int, settings: Settings, metrics: dict[str, Metric]) -> Experiment:
    if not isinstance(entry, dict):
        return Experiment(id=f"<entry {position}>", errors=["entry is not a mapping"])
    exp = Experiment(
        id=str(entry.get("id") or f"<entry {position}>"),
        hypothesis=str(entry.get("hypothesis") or ""),
        owner=str(entry.get("owner") or ""),
        control=str(entry.get("control") or ""),
        alpha=entry.get("alpha", settings.alpha),
        power=entry.get("power", settings.power),
        mde=entry.get("mde", 0.05),
        min_days=entry.get("min_days", settings.min_days),
    )
    errors = exp.errors
    if not entry.get("id"):
        errors.append("missing id")
    if not exp.hypothesis:
        errors.append("missing hypothesis")
    _check_split(entry.get("variants"), exp)
    for name in ("alpha", "power"):
        if not isinstance(getattr(exp, name), int | float) or not 0 < getattr(exp, name) < 1:
            errors.append(f"{name} must be a number in (0, 1), got {getattr(exp, name)!r}")
    if not isinstance(exp.mde, int | float) or exp.mde <= 0:
        errors.append(f"mde (relative minimum detectable effect) must be > 0, got {exp.mde!r}")
    exp.start_date, exp.end_date = _date(entry, "start_date", errors), _date(entry, "end_date", errors)
    if exp.start_date and exp.end_date and exp.end_date < exp.start_date:
        errors.append(f"end_date {exp.end_date} is before start_date {exp.start_date}")
    exp.metrics = _metric_uses(entry, metrics, errors)
    return exp


def _check_split(variants: Any, exp: Experiment) -> None:
    if not isinstance(variants, dict) or len(variants) < 2:
        exp.errors.append("variants must map at least two variant names to their expected share")
        return
    shares = {str(k): v for k, v in variants.items()}
    bad = [k for k, v in shares.items() if not isinstance(v, int | float) or not v > 0 or math.isnan(v)]
    if bad:
        exp.errors.append(f"variant shares must be positive numbers: {', '.join(bad)}")
        return
    total = sum(shares.values())
    if abs(total - 1.0) > SPLIT_TOLERANCE:
        exp.errors.append(f"invalid split: variant shares sum to {total:g}, not 1")
    exp.variants = shares
    if exp.control not in shares:
        exp.errors.append(f"control {exp.control!r} is not one of the variants {sorted(shares)}")


def _date(entry: dict[str, Any], key: str, errors: list[str]) -> dt.date | None:
    value = entry.get(key)
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        errors.append(f"{key} must be a date YYYY-MM-DD, got {value!r}")
        return None


def _metric_uses(entry: dict[str, Any], metrics: dict[str, Metric], errors: list[str]) -> list[MetricUse]:
    uses: list[MetricUse] = []
    primary = entry.get("primary_metric")
    if not isinstance(primary, dict):
        errors.append("missing primary_metric")
    specs = [("primary", primary)] if isinstance(primary, dict) else []
    specs += [("secondary", s) for s in entry.get("secondary_metrics") or []]
    specs += [("guardrail", s) for s in entry.get("guardrail_metrics") or []]
    for role, spec in specs:
        name = spec.get("metric") if isinstance(spec, dict) else None
        if name not in metrics:
            errors.append(f"{role} metric {name!r} is not in the metric catalog")
            continue
        margin = spec.get("margin")
        if margin is not None and (role != "guardrail" or isinstance(margin, bool)
                                   or not isinstance(margin, int | float) or not 0 < margin < 1):
            errors.append(f"{role} metric {name}: margin is a relative non-inferiority margin for guardrails, "
                          f"a number in (0, 1) such as 0.02 for 2%, got {margin!r}")
            continue
        allowed_keys = {"metric", "must_not", "margin"} if role == "guardrail" else {"metric", "direction"}
        if set(spec) - allowed_keys:  # a misspelt `margn` must not silently become "no margin"
            errors.append(f"{role} metric {name}: unknown key(s) {sorted(set(spec) - allowed_keys)}; "
                          f"allowed: {sorted(allowed_keys)}")
            continue
        direction = spec.get("must_not") if role == "guardrail" else spec.get("direction")
        allowed = GUARDRAIL_HARM if role == "guardrail" else DIRECTIONS
        if direction not in allowed:
            key = "must_not" if role == "guardrail" else "direction"
            errors.append(f"{role} metric {name}: {key} must be one of {allowed}, got {direction!r}")
            continue
        if any(u.metric.name == name for u in uses):
            errors.append(f"metric {name} is listed twice")
            continue
        uses.append(MetricUse(metrics[name], role, direction, margin))
    return uses
