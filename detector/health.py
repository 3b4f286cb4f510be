"""Batch health: does a scored batch look like the training data?

Two checks, both in the ``health`` section of every score summary (``detector score``'s
JSON, ``DeclarationModel.score(df).attrs["health"]``):

**Flagged and lane shares against the budget.** The thresholds are quantiles of the
training scores, so a batch like the training data flags about ``budget`` of its rows.
How far off is still chance? The flagged count is binomial, and the threshold is itself
estimated from ``n_train`` rows, so the rule is::

    |share - expected| > NOISE_SE * sqrt(expected * (1 - expected) * (1/n + 1/n_train))

with ``NOISE_SE = 4`` standard errors (a false alarm about once in 16,000 batches under
the normal approximation) and only from ``MIN_HEALTH_ROWS = 500`` scored rows on (fewer
rows say too little). Each lane is checked against its own share the same way (the first
lane also receives the random selections that would have been green). Lane shares are
the model's verdicts before any ``--capacity`` cap: the cap is a decision, not a symptom.

**Drift per feature: the population stability index (PSI).** At fit, each model
feature's training values are cut into reference bins: the deciles of the values
(repeated deciles merge, so a feature that is mostly 0 has a bin for exactly 0), one
bin for exactly 1 on the novelty features (``1 / (1 + declarations seen in training)``:
1 means never seen), and one for non-finite values. The training share ``q_b`` of each
bin is stored in the model. A batch's share ``p_b`` per bin gives::

    PSI = sum_b (p_b - q_b) * ln(p_b / q_b)        (shares floored at PSI_FLOOR = 1e-4)

PSI below ``PSI_MODERATE = 0.1`` is stable, 0.1 to ``PSI_SIGNIFICANT = 0.25`` a moderate
shift, above 0.25 a significant one: the usual credit-scoring thresholds. A feature
above 0.25 (in a batch of at least ``MIN_HEALTH_ROWS`` rows) is a warning. Sampling alone
gives a PSI of about ``(bins - 1) * (1/n + 1/n_train)``: 0.03 at 500 rows.

Bin counts are integers added chunk by chunk (:func:`bin_counts`), so a file streamed in
chunks of any size gives the same numbers, in bounded memory.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["PSI_MODERATE", "PSI_SIGNIFICANT", "PSI_FLOOR", "NOISE_SE", "MIN_HEALTH_ROWS",
           "reference_bins", "bin_counts", "psi", "share_check", "batch_health",
           "NO_REFERENCE"]

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
# An empty bin on one side would make ln(p/q) infinite; the floor keeps PSI finite and
# is below any share a batch of a few thousand rows can measure.
PSI_FLOOR = 1e-4
NOISE_SE = 4.0
MIN_HEALTH_ROWS = 500
_DECILES = np.linspace(0.1, 0.9, 9)
_TOP = 5
# Novelty features: 1 / (1 + count seen in training); exactly 1 is "never seen".
_NEVER_SEEN = {"exporter_history": "an exporter", "importer_history": "an importer",
               "commodity_novelty": "a commodity code"}
_HISTORY_KIND = "history"
NO_REFERENCE = ("this model file holds no drift references (trained before they were "
                "stored, or on another engine): retrain it to get the drift section")


def reference_bins(X: np.ndarray, names: Sequence[str],
                   kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Reference bins of each column of the training matrix ``X`` and their counts.

    Returns plain arrays (a data-only model file holds them): ``edges`` (features x
    width, padded with +inf), ``counts`` (features x width + 2: bin ``k`` holds values
    in ``(edges[k-1], edges[k]]``, the last column the non-finite ones) and ``rows``.
    ``kinds`` (feature -> FeatureSpec.kind) gives the novelty features their own bin
    for exactly 1.
    """
    X = np.asarray(X, dtype=np.float64)
    kinds = kinds or {}
    cuts = []
    for j, name in enumerate(names):
        col = X[:, j]
        col = col[np.isfinite(col)]
        e = np.unique(np.quantile(col, _DECILES)) if len(col) else np.zeros(0)
        if kinds.get(name) == _HISTORY_KIND:
            e = np.unique(np.append(e, np.nextafter(1.0, 0.0)))
        cuts.append(e)
    width = max((len(e) for e in cuts), default=0)
    edges = np.full((len(cuts), width), np.inf)
    for j, e in enumerate(cuts):
        edges[j, :len(e)] = e
    ref = {"features": [str(n) for n in names], "edges": edges,
           "counts": np.zeros((len(cuts), width + 2), dtype=np.int64), "rows": int(len(X))}
    ref["counts"] = bin_counts(ref, X)
    return ref


def _bin_kernel(X, edges, out):  # pragma: no cover - compiled
    n, f = X.shape
    width = edges.shape[1]
    miss = out.shape[1] - 1
    for i in range(n):
        for j in range(f):
            x = X[i, j]
            b = 0
            # Branch-free over the padded edges (+inf never counts): the compiler
            # vectorises it, and no mispredicted branch costs more than the loop.
            for k in range(width):
                b += x > edges[j, k]
            if not abs(x) < np.inf:
                b = miss
            out[j, b] += 1


_kernel = None
_kernel_lock = threading.Lock()


def _compiled():
    """The numba kernel (cached on disk), or None where numba is unavailable or
    ``DETECTOR_NO_NUMBA`` is set (as for the forest's kernel)."""
    global _kernel
    if os.environ.get("DETECTOR_NO_NUMBA", "").strip() in ("1", "true", "yes"):
        return None
    with _kernel_lock:
        if _kernel is None:
            try:
                import numba

                _kernel = numba.njit(cache=True, nogil=True)(_bin_kernel)
            except Exception:  # no numba, or a broken llvmlite: the numpy path
                _kernel = False
    return _kernel or None


# Below this many rows the numpy path is as fast as calling the compiled kernel.
_KERNEL_ROWS = 2048


def bin_counts(reference: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` per reference bin (features x bins, int64); add them up over chunks."""
    edges = reference["edges"]
    out = np.zeros(reference["counts"].shape, dtype=np.int64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.shape[1] != edges.shape[0]:
        raise ValueError(f"drift references have {edges.shape[0]} features, the batch "
                         f"matrix {X.shape[1]}")
    kernel = _compiled() if len(X) >= _KERNEL_ROWS else None
    if kernel is not None:
        kernel(X, edges, out)
        return out
    miss = out.shape[1] - 1
    for j in range(X.shape[1]):
        col = X[:, j]
        fin = np.isfinite(col)
        # side="left": bin k holds (edges[k-1], edges[k]], as the kernel counts.
        b = np.searchsorted(edges[j], col[fin], side="left")
        out[j, :miss] += np.bincount(b, minlength=miss)[:miss]
        out[j, miss] += int((~fin).sum())
    return out


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> np.ndarray:
    """Population stability index per row of two count (or share) arrays.

    >>> float(np.round(psi(np.array([[50, 50]]), np.array([[50, 50]]))[0], 6))
    0.0
    >>> float(np.round(psi(np.array([[90, 10]]), np.array([[50, 50]]))[0], 3))
    0.879
    """
    q = np.asarray(expected, dtype=np.float64)
    p = np.asarray(actual, dtype=np.float64)
    q = q / np.maximum(q.sum(axis=-1, keepdims=True), 1.0)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1.0)
    qf, pf = np.maximum(q, floor), np.maximum(p, floor)
    both_empty = (q == 0) & (p == 0)  # padding bins count for nothing
    return np.where(both_empty, 0.0, (pf - qf) * np.log(pf / qf)).sum(axis=-1)


def share_check(count: int, n: int, expected: float, n_train: int | None) -> dict[str, Any]:
    """``count`` of ``n`` rows against an expected share: the noise band of the module's
    rule and whether the share is inside it (None below ``MIN_HEALTH_ROWS`` rows)."""
    share = count / n if n else None
    var = expected * (1.0 - expected) * ((1.0 / n if n else 0.0)
                                         + (1.0 / n_train if n_train else 0.0))
    half = NOISE_SE * math.sqrt(var)
    low, high = max(0.0, expected - half), min(1.0, expected + half)
    within = None if n < MIN_HEALTH_ROWS or share is None else bool(low <= share <= high)
    return {"count": int(count), "share": share, "expected": expected, "low": low,
            "high": high, "within_noise": within}


def _bin_text(edges: np.ndarray, b: int, miss: int) -> str:
    if b == miss:
        return "no finite value"
    if b == 0:
        return f"a value at or below {edges[0]:.3g}"
    if b >= len(edges) or not np.isfinite(edges[b]):
        return f"a value above {edges[b - 1]:.3g}"
    return f"a value between {edges[b - 1]:.3g} and {edges[b]:.3g}"


def _sentence(name: str, meaning: str, edges: np.ndarray, q: np.ndarray,
              p: np.ndarray) -> str:
    """One plain sentence on a drifting feature: the bin that gained the most rows."""
    miss = len(p) - 1
    b = int(np.argmax(p - q))
    # Novelty features have a bin of exactly 1 (never seen), just above 1 - ulp.
    if name in _NEVER_SEEN and 0 < b < miss and edges[b - 1] == np.nextafter(1.0, 0.0):
        return (f"{p[b]:.0%} of rows have {_NEVER_SEEN[name]} never seen in training "
                f"(training: {q[b]:.0%})")
    return (f"{p[b]:.0%} of rows have {_bin_text(edges, b, miss)} for {name} ({meaning}); "
            f"training: {q[b]:.0%}")


def _drift(reference: Mapping[str, Any], counts: np.ndarray, n: int,
           meanings: Mapping[str, str]) -> dict[str, Any]:
    ref = np.asarray(reference["counts"])
    values = psi(ref, counts)
    names = list(reference["features"])
    q = ref / max(int(reference["rows"]), 1)
    p = counts / max(n, 1)
    order = sorted(range(len(names)), key=lambda j: (-values[j], j))
    top = []
    for j in order[:_TOP]:
        if values[j] < PSI_MODERATE:
            break
        top.append({"feature": names[j], "psi": round(float(values[j]), 4),
                    "level": "significant" if values[j] > PSI_SIGNIFICANT else "moderate",
                    "sentence": _sentence(names[j], meanings.get(names[j], names[j]),
                                          reference["edges"][j], q[j], p[j])})
    return {"available": True, "measure": "population stability index (PSI)",
            "thresholds": {"moderate": PSI_MODERATE, "significant": PSI_SIGNIFICANT},
            "psi": {names[j]: round(float(values[j]), 4) for j in order}, "top": top}


def batch_health(reference: Mapping[str, Any] | None, counts: np.ndarray | None, *,
                 n_scored: int, flagged: int, lanes: Mapping[str, int], budget: float,
                 lane_shares: Mapping[str, float], random_share: float = 0.0,
                 n_train: int | None = None,
                 meanings: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``health`` section of a summary (see the module docstring for the rules).

    ``counts``: the batch's :func:`bin_counts`, summed over its chunks; ``lanes``: rows
    per lane among the scored rows, before any capacity cap.
    """
    if reference is not None and n_train is None:
        n_train = int(reference["rows"])
    total = float(sum(lane_shares.values()))
    expected = {name: float(s) for name, s in lane_shares.items()}
    if expected:  # random selections that would have been green join the first lane
        first = next(iter(expected))
        expected[first] += random_share * (1.0 - total)
    expected["green"] = (1.0 - total) * (1.0 - random_share)
    out: dict[str, Any] = {
        "rows": int(n_scored),
        "rule": (f"a share is outside sampling noise when it differs from the expected share "
                 f"by more than {NOISE_SE:g} standard errors of a binomial share, "
                 f"sqrt(e(1-e)(1/rows + 1/training rows)), in a batch of at least "
                 f"{MIN_HEALTH_ROWS} scored rows; a feature drifts when its PSI exceeds "
                 f"{PSI_SIGNIFICANT}"),
        "training_rows": n_train,
        "flagged": share_check(flagged, n_scored, float(budget), n_train),
        "lanes": {name: share_check(int(lanes.get(name, 0)), n_scored, e, n_train)
                  for name, e in expected.items()},
    }
    if reference is None:
        out["drift"] = {"available": False, "why": NO_REFERENCE}
    elif counts is None or n_scored == 0:
        out["drift"] = {"available": False, "why": "no row of this batch could be scored"}
    else:
        out["drift"] = _drift(reference, counts, n_scored, meanings or {})
    out["warnings"] = _warnings(out)
    return out


def _warnings(h: Mapping[str, Any]) -> list[str]:
    n = h["rows"]
    if n < MIN_HEALTH_ROWS:
        return []
    warn = []
    checks = [("flagged share", h["flagged"])] + [
        (f"lane {name} share", c) for name, c in h["lanes"].items()]
    for what, c in checks:
        if c["within_noise"] is False:
            warn.append(f"{what} {c['share']:.2%} is outside what sampling noise allows for "
                        f"{n:,} rows ({c['low']:.2%} to {c['high']:.2%} around the expected "
                        f"{c['expected']:.2%}): this batch does not score like the training "
                        "data")
    drift = h["drift"]
    if drift.get("available"):
        bad = [t for t in drift["top"] if t["level"] == "significant"]
        warn.extend(f"drift in {t['feature']} (PSI {t['psi']:.2f} > {PSI_SIGNIFICANT}): "
                    f"{t['sentence']}" for t in bad)
        more = sum(1 for v in drift["psi"].values() if v > PSI_SIGNIFICANT) - len(bad)
        if more > 0:
            warn.append(f"drift in {more} more feature(s) with PSI > {PSI_SIGNIFICANT}: "
                        "see the summary's health.drift.psi")
    return warn
