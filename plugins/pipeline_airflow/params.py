"""Trigger-form params shared by the DAGs, as JSON schemas Airflow checks when a run is triggered: typed,
bounded and titled, so a typo or an absurd value is refused in the form, not hours later in a job.

Airflow accepts any other key in a run's conf and passes it on; `refuse_unknown` fails the run's first task on
one (`run_dte` would otherwise quietly process yesterday), naming the closest declared param."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException

from jobs.als.settings import PARAM_BOUNDS
from jobs.common import config

#: Long enough for any path or id the DAGs take; a 100 kB string is never a real parameter.
MAX_TEXT = 1024


def run_date(description: str) -> Param:
    return Param(None, type=["null", "string"], format="date", maxLength=10, title="Run date (UTC)",
                 description=description)


def text(title: str, description: str, max_length: int = MAX_TEXT, pattern: str | None = None) -> Param:
    """An optional string param (null: not given)."""
    schema = {"maxLength": max_length, **({"pattern": pattern} if pattern else {})}
    return Param(None, type=["null", "string"], title=title, description=description, **schema)


def als_params() -> Param:
    """ALS hyperparameter overrides: the keys and bounds the job accepts (`jobs/als/settings.py`), nothing else."""
    properties = {name: {"type": "integer" if isinstance(low, int) else "number", "minimum": low, "maximum": high}
                  for name, (low, high) in PARAM_BOUNDS.items()}
    return Param({}, type="object", properties=properties, additionalProperties=False,
                 title="ALS hyperparameters",
                 description='Overrides, e.g. {"rank": 64, "reg_param": 0.05, "alpha": 10, "max_iter": 15}; '
                             + ", ".join(f"{n} in [{lo:g}, {hi:g}]" for n, (lo, hi) in PARAM_BOUNDS.items()))


def feature_names(title: str, description: str, min_items: int = 0) -> Param:
    """A list of feature names, each one the registry declares (include/feature_names.json, generated from it)."""
    known = sorted({n for names in json.loads(config.include_path("feature_names.json").read_text()).values()
                    for n in names})
    return Param([], type="array", items={"type": "string", "enum": known}, uniqueItems=True, minItems=min_items,
                 title=title, description=description)


def unknown(conf: Mapping[str, Any], declared: Iterable[str]) -> list[str]:
    """The conf keys a DAG does not declare, each with the closest declared name when there is one."""
    names = sorted(declared)
    found = []
    for key in sorted(set(conf) - set(names)):
        close = difflib.get_close_matches(key, names, n=1)
        found.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return found


def refuse_unknown(context: Mapping[str, Any]) -> None:
    """Fail the run (no retry) when its conf has a key the DAG's params do not declare."""
    declared = context["dag"].params.keys()
    problems = unknown(context["dag_run"].conf or {}, declared)
    if problems:
        raise AirflowFailException(f"unknown param {', '.join(problems)}; {context['dag'].dag_id} takes "
                                   f"{', '.join(sorted(declared))}. Nothing ran: trigger again with the right names.")
