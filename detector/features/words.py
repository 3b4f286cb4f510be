"""The pieces every family's reason sentences are made of: numbers, percentages and
categories as text, the HS level a reference came from, and "seen K times in N" counts.

Each family words its own features' reasons (its ``sentence`` step, see
:class:`~detector.features.spec.Family`) from what its ``transform`` put in ``det``;
:func:`detector.reasons.reason_texts` prefixes the codes. Everything here works on the
rows that carry the reason only, as object arrays of text.
"""

from __future__ import annotations

import numpy as np

__all__ = ["num", "pct", "shown", "level_label", "hs4", "values", "counted", "seen_times"]


def num(x: np.ndarray) -> np.ndarray:
    """Numbers as short text with 3 significant digits (plain Python formatting: these
    run only on the rows that carry the reason, and pandas would cost more per call)."""
    x = np.asarray(x, dtype=float)
    if len(x) > 64:
        return _num_many(x)
    out = np.empty(len(x), dtype=object)
    for i, v in enumerate(x.tolist()):
        if v != v or v in (float("inf"), float("-inf")):
            out[i] = "n/a"
            continue
        mag = int(np.floor(np.log10(abs(v)))) if v else 0
        out[i] = f"{v:.{min(max(2 - mag, 0), 6)}f}"
    return out


def _num_many(x: np.ndarray) -> np.ndarray:
    """The same text as ``num``, formatted per decimal count in bulk."""
    finite = np.isfinite(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(np.where(finite & (x != 0), x, 1.0))))
    dec = np.clip(2 - mag, 0, 6).astype(int)
    out = np.full(len(x), "n/a", dtype=object)
    for d in np.unique(dec[finite]):
        m = finite & (dec == d)
        fmt = "{:." + str(int(d)) + "f}"
        out[m] = [fmt.format(v) for v in x[m].tolist()]
    return out


def pct(x: np.ndarray) -> np.ndarray:
    """Shares as percentages: 3 significant digits under 1%, whole percents above."""
    x = np.asarray(x, dtype=float) * 100
    small = np.abs(x) < 1
    # num is elementwise: one call on the chosen values gives the same text as two.
    return num(np.where(small, x, np.round(x))).astype(object) + "%"


def shown(a) -> np.ndarray:
    """Declared values as text, '?' where missing."""
    return np.array(["?" if v is None or v != v else str(v) for v in np.asarray(a, dtype=object)
                     .tolist()], dtype=object)


def level_label(det, lvl: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which reference the rows were compared with: 'hs 690721', 'hs 69' or 'all goods'."""
    hs = det["hs_text"][rows]
    cut = np.array([99, 6, 4, 2, 0])[np.clip(lvl, 0, 4)]
    out = np.full(len(hs), "all goods", dtype=object)
    # One slice per HS level, not per row.
    for c in np.unique(cut[cut > 0]).tolist():
        m = cut == c
        out[m] = [("hs " + h[:c]) for h in hs[m].tolist()]
    return out


def hs4(det, rows: np.ndarray) -> np.ndarray:
    """The rows' commodity codes cut to 4 digits (made only by sentences that quote them)."""
    return np.array([h[:4] for h in det["hs_text"][rows]], dtype=object)


def values(det, name: str, rows: np.ndarray) -> np.ndarray:
    """The feature ``name``'s values on the rows (from the matrix in ``det``)."""
    return det["X"][rows, det["names"].index(name)]


def counted(det, name: str, rows: np.ndarray, what) -> np.ndarray:
    """'``what`` never seen in N training declarations of X' / 'in K of N ... (p%)', from
    the counts :func:`~detector.features.lookup.put_counted` left for feature ``name``."""
    seen = det[f"{name}|seen"][rows]
    among = det[f"{name}|among"][rows]
    lvl = det.get(f"{name}|level")
    scope = (" of " + level_label(det, lvl[rows], rows)) if lvl is not None else ""
    what = np.broadcast_to(np.asarray(what, dtype=object), seen.shape)
    scope = np.broadcast_to(np.asarray(scope, dtype=object), seen.shape)
    k, n_ = seen.astype(np.int64), among.astype(np.int64)
    # One f-string per row (each row gets only its own wording), not a chain of
    # object-array additions that makes every intermediate string.
    out = np.empty(len(seen), dtype=object)
    is_never = seen <= 0
    never = np.flatnonzero(is_never)
    out[never] = [f"{w} never seen in {b} training declarations{c}" for w, b, c in zip(
        what[never].tolist(), n_[never].tolist(), scope[never].tolist(), strict=True)]
    met = np.flatnonzero(~is_never)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = pct(np.where(among[met] > 0, seen[met] / among[met], 0.0))
    out[met] = [f"{w} in {a} of {b} training declarations{c} ({p})"
                for w, a, b, c, p in zip(what[met].tolist(), k[met].tolist(),
                                         n_[met].tolist(), scope[met].tolist(),
                                         share.tolist(), strict=True)]
    return out


def seen_times(v: np.ndarray, what) -> np.ndarray:
    """'``what`` never seen in training' / 'seen only N times in training', from a history
    feature's value 1 / (1 + times seen)."""
    seen = np.round(1.0 / np.maximum(v, 1e-9) - 1.0).astype(int)
    return np.where(seen == 0, what + " never seen in training",
                    what + " seen only " + seen.astype(str).astype(object) + " times in training")
