"""How customs measures a risk engine: rank quality at an inspection budget.

Officers inspect only a small share of declarations, so the metrics that matter are
those of the top n% of scores: precision (share of the inspected that are fraud),
recall (share of all fraud caught) and revenue (share of recoverable revenue caught),
with ROC-AUC and average precision beside them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BUDGETS", "budget_metrics", "roc_auc", "average_precision", "top_mask",
           "scheme_recall"]

BUDGETS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)


def top_mask(scores: np.ndarray, budget: float) -> np.ndarray:
    """Boolean mask of the ceil(budget * n) highest scores.

    Ties are broken by position (a stable sort), so the result never depends on the
    sort algorithm and an inspection budget is never exceeded.
    """
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    k = int(np.ceil(budget * n - 1e-9))
    mask = np.zeros(n, dtype=bool)
    if k > 0:
        order = np.argsort(-scores, kind="stable")
        mask[order[:k]] = True
    return mask


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, with ties given half credit."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    s = np.asarray(scores, dtype=float)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the step precision-recall curve), as scikit-learn."""
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    # Thresholds at distinct score values: the last index of each run of equal scores.
    distinct = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]
    tp = np.cumsum(ys)[distinct]
    fp = (distinct + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))


def budget_metrics(y, scores, revenue=None, budgets=BUDGETS) -> dict:
    """precision@n, recall@n, revenue@n for each budget, plus ROC-AUC and AP."""
    y = np.asarray(y).astype(bool)
    out: dict = {"rows": int(len(y)), "frauds": int(y.sum())}
    rev = None if revenue is None else np.nan_to_num(np.asarray(revenue, dtype=float))
    for b in budgets:
        m = top_mask(scores, b)
        tag = f"{b * 100:g}%"
        out[f"precision@{tag}"] = float(y[m].mean()) if m.any() else float("nan")
        out[f"recall@{tag}"] = float(y[m].sum() / y.sum()) if y.any() else float("nan")
        if rev is not None:
            total = rev[y].sum()
            out[f"revenue@{tag}"] = float(rev[m & y].sum() / total) if total > 0 else float("nan")
    out["roc_auc"] = roc_auc(y, scores)
    out["average_precision"] = average_precision(y, scores)
    return out


def scheme_recall(y, scheme, scores, budget: float = 0.05) -> dict[str, float]:
    """Recall at ``budget`` for each fraud scheme (share of that scheme's rows caught)."""
    y = np.asarray(y).astype(bool)
    scheme = np.asarray(scheme, dtype=object)
    m = top_mask(scores, budget)
    out = {}
    names = sorted({str(s) for s in scheme[y] if s is not None and s == s})
    for name in names:
        rows = y & (scheme == name)
        out[name] = float(m[rows].mean()) if rows.any() else float("nan")
    return out
