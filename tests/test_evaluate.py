"""detector.evaluate against scikit-learn's metrics (with ties) and hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from detector.evaluate import (
    BUDGETS,
    average_precision,
    budget_metrics,
    roc_auc,
    scheme_recall,
    top_mask,
)


@st.composite
def labelled(draw):
    n = draw(st.integers(2, 120))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    # few distinct values: many ties
    levels = draw(st.integers(1, 8))
    s = np.array(draw(st.lists(st.integers(0, levels), min_size=n, max_size=n)), dtype=float)
    scale = draw(st.sampled_from([1.0, 0.1, 1e-3]))
    return y, s * scale


@settings(max_examples=80, deadline=None)
@given(labelled())
def test_roc_auc_matches_sklearn(data):
    y, s = data
    if y.min() == y.max():
        assert np.isnan(roc_auc(y, s))
        return
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(labelled())
def test_average_precision_matches_sklearn(data):
    y, s = data
    if y.sum() == 0:
        assert np.isnan(average_precision(y, s))
        return
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labelled(), st.sampled_from(BUDGETS + (0.5, 0.333)))
def test_top_mask_never_exceeds_budget(data, budget):
    y, s = data
    m = top_mask(s, budget)
    k = int(np.ceil(budget * len(s) - 1e-9))
    assert m.sum() == k
    if 0 < k < len(s):
        assert s[m].min() >= s[~m].max()


@settings(max_examples=60, deadline=None)
@given(labelled())
def test_budget_metrics_match_definitions(data):
    y, s = data
    rev = np.linspace(1, 2, len(y)) * y
    out = budget_metrics(y, s, rev)
    assert out["rows"] == len(y) and out["frauds"] == int(y.sum())
    for b in BUDGETS:
        tag = f"{b * 100:g}%"
        m = top_mask(s, b)
        if m.any():
            assert out[f"precision@{tag}"] == pytest.approx(y[m].mean())
        if y.any():
            assert out[f"recall@{tag}"] == pytest.approx(y[m].sum() / y.sum())
            assert out[f"revenue@{tag}"] == pytest.approx(rev[m].sum() / rev.sum())
            assert 0.0 <= out[f"recall@{tag}"] <= 1.0


def test_budget_metrics_hand_made():
    # 100 declarations, 4 frauds; frauds at ranks 1, 3, 7 and 50.
    n = 100
    s = np.linspace(1.0, 0.01, n)          # strictly decreasing: rank i+1 at position i
    y = np.zeros(n, int)
    y[[0, 2, 6, 49]] = 1
    rev = np.zeros(n)
    rev[[0, 2, 6, 49]] = [100.0, 50.0, 25.0, 25.0]
    rng = np.random.default_rng(0)
    p = rng.permutation(n)                # order of rows must not matter
    out = budget_metrics(y[p], s[p], rev[p])
    assert out["precision@1%"] == 1.0 and out["recall@1%"] == 0.25
    assert out["revenue@1%"] == 0.5
    assert out["precision@2%"] == 0.5 and out["recall@2%"] == 0.25
    assert out["precision@5%"] == pytest.approx(2 / 5) and out["recall@5%"] == 0.5
    assert out["revenue@5%"] == pytest.approx(0.75)
    assert out["precision@10%"] == pytest.approx(3 / 10) and out["recall@10%"] == 0.75
    assert out["revenue@10%"] == pytest.approx(0.875)
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert out["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 7 + 4 / 50) / 4)


def test_budget_ties_broken_by_position_within_budget():
    s = np.ones(10)
    m = top_mask(s, 0.2)
    assert m.tolist() == [True, True] + [False] * 8


def test_perfect_and_reversed_rankings():
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([5, 4, 3, 2, 1], float)
    assert roc_auc(y, s) == 1.0 and average_precision(y, s) == 1.0
    assert roc_auc(y, -s) == 0.0


def test_scheme_recall():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    scheme = np.array(["a", "b", "b"] + [None] * 17, dtype=object)
    s = np.array([10, 9, 0] + list(range(-1, -18, -1)), float)
    out = scheme_recall(y, scheme, s, budget=0.1)   # top 2 rows
    assert out == {"a": 1.0, "b": 0.5}
