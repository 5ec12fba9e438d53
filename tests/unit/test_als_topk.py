"""Blockwise top-K with exclusions equals a brute-force ranking, whatever the block size."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.als.topk import top_k


def brute_force(queries, items, item_ids, exclude, k):
    scores = queries @ items.T
    out_ids, out_scores = [], []
    for row, banned in zip(scores, exclude, strict=True):
        ranked = sorted((-s, i) for s, i in zip(row, item_ids, strict=True) if i not in set(banned.tolist()))[:k]
        ids = [i for _, i in ranked] + [-1] * (min(k, len(item_ids)) - len(ranked))
        out_ids.append(ids)
        out_scores.append([-s for s, _ in ranked])
    return out_ids, out_scores


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 40), st.integers(1, 4), st.integers(1, 12), st.integers(1, 50),
       st.integers(0, 2**32 - 1))
def test_blockwise_equals_brute_force(n_queries, n_items, rank, k, block, seed):
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((n_queries, rank)).astype(np.float32)
    items = rng.standard_normal((n_items, rank)).astype(np.float32)
    item_ids = np.sort(rng.choice(1000, n_items, replace=False))
    exclude = [rng.choice(np.append(item_ids, [5000, 5001]), rng.integers(0, n_items + 2), replace=False)
               for _ in range(n_queries)]  # 5000/5001: excluded ids that are not in the catalog
    ids, scores = top_k(queries, items, item_ids, exclude, k, block)
    expected_ids, expected_scores = brute_force(queries, items, item_ids, exclude, k)
    assert ids.tolist() == expected_ids
    for got, want in zip(scores, expected_scores, strict=True):
        assert np.allclose(got[: len(want)], want, rtol=1e-5, atol=1e-5) and np.isneginf(got[len(want):]).all()


def test_equal_scores_are_listed_by_item_id():
    ids, _ = top_k(np.ones((1, 1), np.float32), np.ones((4, 1), np.float32), np.array([3, 5, 7, 9]),
                   [np.empty(0, np.int64)], k=4, block=2)
    assert ids.tolist() == [[3, 5, 7, 9]]


def test_excluded_items_never_appear_and_short_lists_are_padded():
    items = np.eye(3, dtype=np.float32)
    ids, scores = top_k(np.ones((1, 3), np.float32), items, np.array([10, 20, 30]), [np.array([10, 30])], k=5,
                        block=2)
    assert ids.tolist() == [[20, -1, -1]] and scores[0, 0] == 1.0


def test_no_queries_or_no_items():
    ids, _ = top_k(np.empty((0, 2), np.float32), np.ones((3, 2), np.float32), np.arange(3), [], 2, 10)
    assert ids.shape == (0, 2)
    ids, _ = top_k(np.ones((2, 2), np.float32), np.empty((0, 2), np.float32), np.empty(0, np.int64),
                   [np.empty(0, np.int64)] * 2, 3, 10)
    assert ids.shape == (2, 0)
