"""The Spark aggregation against a plain pandas replay of the same definitions, plus its edge cases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jobs.ab import aggregation as ab_report
from jobs.ab import registry
from tests.conftest import in_jvm

DAY = dt.date(2026, 11, 20)
SCHEMA = ("user_id string, event_ts timestamp, event_type string, revenue double, "
          "experiments array<struct<experiment_id:string,variant:string>>")
REGISTRY = {
    "defaults": {"cuped_lookback_days": 3},
    "metrics": {
        "buy": {"kind": "proportion", "event_type": "purchase"},
        "revenue": {"kind": "continuous", "event_type": "purchase", "value": "revenue"},
        "ctr": {"kind": "ratio", "numerator": {"event_type": "click"}, "denominator": {"event_type": "page_view"}},
    },
    "experiments": [
        {"id": e, "hypothesis": "h", "variants": {"a": 0.5, "b": 0.5}, "control": "a",
         "primary_metric": {"metric": "buy", "direction": "increase"},
         "secondary_metrics": [{"metric": "revenue", "direction": "increase"}, {"metric": "ctr", "direction": "any"}],
         "start_date": start, "end_date": end}
        for e, start, end in (("e1", "2026-11-17", "2026-12-31"), ("e2", "2026-11-18", "2026-11-19"))
    ],
}


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def random_events(seed: int, users: int = 60) -> list[tuple]:
    rng = np.random.default_rng(seed)
    start = ts("2026-11-13T00:00:00")
    rows = []
    for u in range(users):
        for _ in range(rng.integers(1, 25)):
            when = start + dt.timedelta(seconds=int(rng.integers(0, 8 * 86400)))
            kind = rng.choice(["page_view", "click", "purchase", "search"])
            exposures = None
            if kind == "page_view" and rng.random() < 0.5:
                exposures = [("e1", rng.choice(["a", "b"], p=[0.47, 0.47 + 0.06]) if u % 9 == 0 else "ab"[u % 2]),
                             ("e2", "ab"[(u // 2) % 2])]
                if u % 13 == 0:
                    exposures.append(("e1", "zz"))  # an unregistered variant on the same user: multi-variant
            revenue = float(rng.integers(1, 50)) if kind == "purchase" else None
            rows.append((f"u{u}", when, kind, revenue, exposures))
    return rows


def reference(events: pd.DataFrame, reg: registry.Registry) -> pd.DataFrame:
    """The metric definitions, replayed user by user in pandas."""
    out = []
    lookback = dt.timedelta(days=reg.settings.cuped_lookback_days)
    for exp in reg.experiments:
        lo, hi = ts(f"{exp.start_date}T00:00:00"), ts(f"{exp.analysis_end(DAY) + dt.timedelta(days=1)}T00:00:00")
        expo = [(r.user_id, r.event_ts, v) for r in events.itertuples() if r.experiments is not None
                for (e, v) in r.experiments if e == exp.id and lo <= r.event_ts < hi]
        by_user: dict[str, list] = {}
        for user, when, variant in expo:
            by_user.setdefault(user, []).append((when, variant))
        for user, seen in by_user.items():
            if len({v for _, v in seen}) > 1:
                continue
            first, variant = min(seen)
            mine = events[(events.user_id == user) & (events.event_ts < hi) & (events.event_ts >= first - lookback)]
            post, pre = mine[mine.event_ts >= first], mine[mine.event_ts < first]
            for metric in reg.metrics.values():
                def value(frame: pd.DataFrame, m: registry.Measure) -> float:
                    hits = frame[frame.event_type == m.event_type]
                    return float(hits[m.value].fillna(0).sum()) if m.value else float(len(hits))
                y, x = value(post, metric.numerator), value(pre, metric.numerator)
                if metric.kind == "proportion":
                    y, x = float(y > 0), float(x > 0)
                d = value(post, metric.denominator) if metric.denominator else np.nan
                out.append({"experiment_id": exp.id, "variant": variant, "metric": metric.name, "y": y, "d": d,
                            "x": np.nan if metric.kind == "ratio" else x})
    frame = pd.DataFrame(out)
    return frame.groupby(["experiment_id", "variant", "metric"]).apply(lambda g: pd.Series({
        "count": float(len(g)), "main_sum": g.y.sum(), "main_sum_squares": (g.y**2).sum(),
        "denominator_sum": g.d.sum(min_count=1), "main_denominator_sum_product": (g.y * g.d).sum(min_count=1),
        "covariate_sum": g.x.sum(min_count=1), "main_covariate_sum_product": (g.y * g.x).sum(min_count=1),
    }), include_groups=False).reset_index()


@pytest.mark.parametrize("seed", [1, 2])
def test_totals_match_a_pandas_replay(spark, seed):
    reg = registry.parse(REGISTRY)
    rows = random_events(seed)
    counts, diag = ab_report.aggregate(in_jvm(spark.createDataFrame(rows, SCHEMA)), reg, reg.experiments, DAY)
    totals = counts[counts["day"].isna()].drop(columns="day")
    expected = reference(pd.DataFrame(rows, columns=["user_id", "event_ts", "event_type", "revenue", "experiments"]),
                         reg)
    merged = expected.merge(totals, on=["experiment_id", "variant", "metric"], suffixes=("", "_spark"), how="outer")
    assert len(merged) == len(expected) == len(totals)
    for column in ("count", "main_sum", "main_sum_squares", "denominator_sum", "main_denominator_sum_product",
                   "covariate_sum", "main_covariate_sum_product"):
        np.testing.assert_allclose(merged[f"{column}_spark"].astype(float), merged[column].astype(float),
                                   err_msg=column)
    assert (diag.loc[diag.kind == "multi_variant_users", "experiment_id"] == "e1").all()


def test_exposure_rules_and_day_slices(spark):
    reg = registry.parse(REGISTRY)
    x = [("e1", "b")]
    rows = [
        ("u1", ts("2026-11-16T10:00:00"), "purchase", 9.0, None),    # before exposure: covariate only
        ("u1", ts("2026-11-16T23:00:00"), "page_view", None, x),     # exposure before the start date: ignored
        ("u1", ts("2026-11-18T10:00:00"), "page_view", None, x),     # first exposure
        ("u1", ts("2026-11-18T11:00:00"), "purchase", 5.0, None),    # day 0
        ("u1", ts("2026-11-20T09:00:00"), "purchase", 7.0, None),    # day 1 (23 h after day 0 ends)
        ("u2", ts("2026-11-19T08:00:00"), "page_view", None, [("e1", "a")]),
        ("u2", ts("2026-11-21T08:00:00"), "purchase", 100.0, None),  # after the report date: not counted
        ("u3", ts("2026-11-19T08:00:00"), "page_view", None, [("e1", "a")]),
        ("u3", ts("2026-11-19T09:00:00"), "page_view", None, [("e1", "b")]),  # two variants: excluded
    ]
    counts, diag = ab_report.aggregate(in_jvm(spark.createDataFrame(rows, SCHEMA)), reg, reg.experiments[:1], DAY)
    revenue = counts[counts.metric == "revenue"]
    total_b = revenue[(revenue.variant == "b") & revenue.day.isna()].iloc[0]
    assert total_b["count"] == 1 and total_b["main_sum"] == 12.0 and total_b["covariate_sum"] == 9.0
    total_a = revenue[(revenue.variant == "a") & revenue.day.isna()].iloc[0]
    assert total_a["count"] == 1 and total_a["main_sum"] == 0.0  # u2's later purchase is outside the window
    days_b = revenue[(revenue.variant == "b") & revenue.day.notna()].sort_values("day")
    # u1 exposed 2026-11-18 10:00, window ends 2026-11-21 00:00: days 0 and 1 are complete
    assert days_b["day"].tolist() == [0, 1] and days_b["main_sum"].tolist() == [5.0, 7.0]
    assert days_b["count"].tolist() == [1.0, 1.0]
    assert diag.to_dict("records") == [{"experiment_id": "e1", "kind": "multi_variant_users", "other": None,
                                        "users": 1.0}]


def test_collisions_count_users_shared_between_experiments(spark):
    reg = registry.parse(REGISTRY)
    both = [("e1", "a"), ("e2", "b")]
    rows = [(f"u{i}", ts("2026-11-18T10:00:00"), "page_view", None, both if i < 3 else [("e1", "a")])
            for i in range(5)]
    _, diag = ab_report.aggregate(in_jvm(spark.createDataFrame(rows, SCHEMA)), reg, reg.experiments, DAY)
    collisions = diag[diag.kind == "collision"].sort_values("experiment_id")
    assert collisions[["experiment_id", "other", "users"]].values.tolist() == [["e1", "e2", 3.0], ["e2", "e1", 3.0]]


def test_junk_variant_names_make_one_arm_and_a_count(spark):
    """20,000 junk variant strings once gave 180,000 count rows; now they are one arm, and the report says how
    many names there were."""
    reg = registry.parse(REGISTRY)
    rows = [(f"u{n}", ts("2026-11-18T10:00:00"), "page_view", None, [("e1", "ab"[n % 2] if n < 40 else f"junk-{n}")])
            for n in range(340)]
    events = in_jvm(spark.createDataFrame(rows, SCHEMA))
    counts, diag = ab_report.aggregate(events, reg, [reg.experiments[0]], DAY)
    assert sorted(counts["variant"].unique()) == ["(unregistered)", "a", "b"]
    totals = counts[(counts["metric"] == "buy") & counts["day"].isna()].set_index("variant")["count"].to_dict()
    assert totals == {"a": 20.0, "b": 20.0, "(unregistered)": 300.0}
    names = diag[diag["kind"] == "unregistered_variant_names"]
    assert names["users"].tolist() == [300.0]
