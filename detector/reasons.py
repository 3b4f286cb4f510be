"""Per-declaration reasons: which features drove *this* row's isolation, in words.

A reason is found by counterfactual: put one feature back to its typical (training
median) value, rescore, and see how much the anomaly score falls. The features whose
return to normal lowers the score most are the reasons, in that order. Only the few
features that deviate most from typical (``candidates``) are tried per row, which
keeps the cost at a few extra forest passes however many features there are.

Each reason is a stable code and a sentence with the numbers, e.g.
``MASS_PER_UNIT_HIGH: 41.3 kg per m2 vs 18-22 typical for hs 690721``.
"""

from __future__ import annotations

import functools

import numpy as np

from .features import (
    DERIVED_FROM,
    EXTRA_RARITY,
    EXTRA_Z,
    FEATURES,
    feature_spec,
    sentence_of,
)
from .schema import UNKNOWN_COUNTRY

__all__ = ["counterfactual_reasons", "reason_texts", "soft_notes", "MIN_DROP", "REASON_CODES",
           "NOTE_CODES", "REASON_MODES", "DEFAULT_EXPLAIN_TOP", "check_reasons_mode",
           "explained_rows", "as_codes", "RANDOM_CODE", "DATE_MARGIN_DAYS", "feature_sentences",
           "FEATURE_MEANING"]

# What a scored row carries (see README, "Reasons"):
#   "all"     the full sentence of every reason, on every row (the pre-1.x behaviour);
#   "codes"   the reasons' codes only (``MASS_PER_UNIT_HIGH;...`` in the sense of the
#             sentence's prefix before ':'), on every row;
#   "officer" full sentences where an officer reads them (every row outside the green
#             lane, every random selection, the top ``explain_top`` of the ranking) and
#             codes on every other row. The default: sentences are most of the text cost.
REASON_MODES = ("officer", "all", "codes")
DEFAULT_EXPLAIN_TOP = 2000
RANDOM_CODE = "RANDOM_SELECTION"


def check_reasons_mode(mode: str, explain_top: int = DEFAULT_EXPLAIN_TOP) -> str:
    """The mode, checked (a clear error for anything else)."""
    if mode not in REASON_MODES:
        raise ValueError(f"reasons must be one of {', '.join(REASON_MODES)}; got {mode!r}")
    if int(explain_top) < 0:
        raise ValueError(f"explain_top must be >= 0, got {explain_top}")
    return mode


def explained_rows(mode: str, green: np.ndarray, picked: np.ndarray, ranking: np.ndarray,
                   explain_top: int = DEFAULT_EXPLAIN_TOP) -> tuple[np.ndarray, np.ndarray]:
    """Which rows get full sentences: ``(full, by_top)`` boolean masks.

    ``by_top`` marks the green, unselected rows that get sentences only for being in the
    top ``explain_top`` of ``ranking`` among these rows (descending, ties by position, as
    the rank is given). A file scored in chunks gives each chunk's top: the file's top is
    within the union, and the writer turns the others back into codes (see
    :func:`as_codes`) once the file's rank is known, so the output is the same whatever
    the chunking.
    """
    n = len(green)
    if mode == "all":
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    if mode == "codes":
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    full = ~np.asarray(green, dtype=bool) | np.asarray(picked, dtype=bool)
    by_top = np.zeros(n, dtype=bool)
    k = min(int(explain_top), n)
    if k > 0:
        # Rows outside the green lane rank above every green row (lanes are cut on the
        # same score), so the top is theirs first; only when fewer than k does it reach
        # into the green rows.
        s = np.where(np.isnan(ranking), -np.inf, ranking)
        top = np.argsort(-s, kind="stable")[:k] if k < n else np.arange(n)
        by_top[top] = True
        by_top &= ~full
        full = full | by_top
    return full, by_top


def as_codes(reasons: list[str]) -> list[str]:
    """A row's reasons as codes: each reason's prefix before ':' (its stable code)."""
    return [r.split(":", 1)[0] for r in reasons]

# A reason must lower the anomaly score by at least this much when undone; smaller
# effects are noise of the forest, not an explanation.
MIN_DROP = 0.005

# feature -> (code if high, code if low): each family names its features' codes.
REASON_CODES: dict[str, tuple[str, str]] = {f.name: f.reason_codes for f in FEATURES
                                            if f.reason_codes is not None}
# Notes say that a declaration carries something training never saw: it is scored (an
# unseen category is information, not an error) and the officer is told, whatever its
# score. They come after the (at most 3) reasons.
NOTE_CODES = frozenset({"UNSEEN_COMMODITY", "UNSEEN_ORIGIN", "NET_MASS_ZERO", "VALUE_ZERO",
                        "QUANTITY_ZERO", "ORIGIN_UNKNOWN", "DISPATCH_UNKNOWN", "DATE_OUTSIDE_TRAINING"})
# A declaration dated more than this many days before the first or after the last training
# date is noted: the references describe another period.
DATE_MARGIN_DAYS = 365
_DERIVED = frozenset(DERIVED_FROM)
class _Kinds(dict):
    def __missing__(self, name):  # extra agency columns get their kind from their prefix
        return feature_spec(name).kind


_KIND = _Kinds({f.name: f.kind for f in FEATURES})
_ONE_SIDED = frozenset({"surprisal", "share", "history", "flag"})
# What "unusual on its own" means per kind of feature (in the feature's own units):
# z-scores beyond 3 (signed-log scale), categories under 5% likely, any foreign share,
# traders seen at most twice. A flag (origin differs from dispatch: every transhipment)
# is never a reason alone; the rarity of the route, with its counts, says it better.
_UNUSUAL = {"z": float(np.log1p(3.0)), "surprisal": float(-np.log(0.05)), "share": 1e-9,
            "history": 1.0 / 3.0, "flag": np.inf, "derived": np.inf}


# Rows per block: every row's reasons are its own, and a block's temporaries (a few
# copies of the block, one per candidate: ~7 MB each at 26 features) stay small.
_COUNTERFACTUAL_BLOCK = 1 << 15


def counterfactual_reasons(features, forest, X: np.ndarray, scores: np.ndarray,
                           candidates: int = 4, top: int = 3, require_unusual: bool = True):
    """Feature indices (n, top) of each row's reasons (-1 = none) and their score drops.

    ``scores`` are the rows' anomaly scores (higher = more suspicious) from ``forest``.
    Only features that are unusual on their own count as candidates (unless
    ``require_unusual`` is False, as ``explain`` does to show every feature), so a
    typical declaration costs nothing extra and has no reasons: nothing drove its score.
    """
    if len(X) <= _COUNTERFACTUAL_BLOCK:
        return _counterfactual(features, forest, X, scores, candidates, top, require_unusual)
    parts = [_counterfactual(features, forest, X[i:i + _COUNTERFACTUAL_BLOCK],
                             scores[i:i + _COUNTERFACTUAL_BLOCK], candidates, top,
                             require_unusual)
             for i in range(0, len(X), _COUNTERFACTUAL_BLOCK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@functools.lru_cache(maxsize=16)
def _plan(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature list (made once, not per call: score_one pays it on every record):
    the base features' indices, which are one-sided, and their "unusual" floors."""
    base = np.array([j for j, f in enumerate(names) if f not in _DERIVED], dtype=np.int64)
    one_sided = np.array([_KIND[names[j]] in _ONE_SIDED for j in base], dtype=bool)
    floor = np.array([_UNUSUAL[_KIND[names[j]]] for j in base], dtype=np.float64)
    for a in (base, one_sided, floor):
        a.setflags(write=False)
    return base, one_sided, floor


def _counterfactual(features, forest, X, scores, candidates, top, require_unusual):
    n, p = X.shape
    base, one_sided, floor = _plan(tuple(features.feature_names_))
    k = int(min(candidates, len(base)))
    idx = np.full((n, top), -1, dtype=np.int64)
    drops = np.zeros((n, top))
    if n == 0 or k == 0:
        return idx, drops
    # How far each feature is from typical, in units of its training spread. Rarity,
    # novelty and share features are one-sided: being more common than typical is not a
    # reason for suspicion, so only their upper side counts.
    # take() copies the columns in one pass; fancy indexing on axis 1 is ~10x slower.
    Xb = X.take(base, axis=1)
    diff = Xb - features.neutral_[base]
    diff = np.maximum(diff, np.where(one_sided, 0.0, -np.inf))  # one-sided: upper side
    dev = np.abs(diff) / features.spread_[base]
    if require_unusual:
        # A reason must also be unusual on its own terms (outside the typical range it
        # quotes), however much the forest happens to lean on it.
        dev = np.where(np.abs(Xb) >= floor[None, :], dev, 0.0)
    # Rows with nothing unusual have no candidates, no extra forest pass and no reasons.
    some = np.flatnonzero((dev > 1e-9).any(axis=1))
    if len(some) == 0:
        return idx, drops
    dev = dev[some]
    order = np.argsort(-dev, axis=1, kind="stable")[:, :k]
    live = np.take_along_axis(dev, order, axis=1) > 1e-9     # candidates worth a try
    cand = base[order]                                       # feature indices
    drop = np.full(order.shape, -np.inf)
    rows, slots = np.nonzero(live)
    Xc = X[some[rows]]
    cols = cand[rows, slots]
    Xc[np.arange(len(rows)), cols] = features.neutral_[cols]
    features.refresh_derived(Xc)
    # How much putting this one feature back to typical lowers the score.
    drop[rows, slots] = scores[some[rows]] - forest.anomaly_score(Xc)
    best = np.argsort(-drop, axis=1, kind="stable")[:, :top]
    best_drop = np.take_along_axis(drop, best, axis=1)
    best_idx = np.take_along_axis(cand, best, axis=1)
    ok = best_drop >= MIN_DROP
    m = min(top, best.shape[1])
    idx[some, :m] = np.where(ok, best_idx, -1)
    drops[some, :m] = np.where(ok, best_drop, 0.0)
    return idx, drops


# --- words ---------------------------------------------------------------------------------

def feature_sentences(name: str, high: np.ndarray, det: dict, rows: np.ndarray) -> np.ndarray:
    """The numbers behind one feature's reason for the given rows (``det`` with the
    matrix as ``X`` and the feature names as ``names``; ``high`` where the value is above
    typical), worded by the feature's own family in detector/features/; the feature's
    name where no family words it."""
    say = sentence_of(name)
    out = None if say is None else say(name, high, det, rows)
    return np.full(len(rows), name, dtype=object) if out is None else out


_FEW_ROWS = 64


def _codes_for(name: str) -> tuple[str, str]:
    """(code if the value is above typical, code if below) of one feature's reason."""
    if name.startswith(EXTRA_RARITY):
        return "EXTRA_VALUE_RARE", "EXTRA_VALUE_RARE"
    if name.startswith(EXTRA_Z):
        return "EXTRA_VALUE_HIGH", "EXTRA_VALUE_LOW"
    return REASON_CODES.get(name, (name.upper(), name.upper()))


def reason_texts(features, X: np.ndarray, det: dict, idx: np.ndarray,
                 full: np.ndarray | None = None) -> list[list[str]]:
    """Reason strings per row from the feature indices chosen by counterfactual.

    ``full`` (a boolean mask, default every row) says which rows get sentences
    (``CODE: the numbers``); the others get the same codes alone, without building
    their sentences.
    """
    n, top = idx.shape
    names = features.feature_names_
    det = dict(det, X=X, names=names)
    neutral = features.neutral_
    out = np.empty((n, top), dtype=object)
    # The slots of every feature from one stable sort (row-major order within a feature,
    # as np.nonzero gives), not one full scan of idx per feature.
    flat = idx.ravel()
    order = np.argsort(flat, kind="stable")
    feats, starts = np.unique(flat[order], return_index=True)
    ends = np.append(starts[1:], len(order)) if len(starts) else starts  # no rows
    for j, a, b in zip(feats.tolist(), starts.tolist(), ends.tolist(), strict=True):
        if j < 0:
            continue
        name = names[j]
        rows_k = np.divmod(order[a:b], top)
        rows = rows_k[0]
        high = X[rows, j] > neutral[j]
        hi_code, lo_code = _codes_for(name)
        if full is None:
            # Two possible prefixes: one addition per row, not two.
            prefix = np.where(high, hi_code + ": ", lo_code + ": ").astype(object)
            out[rows_k] = prefix + feature_sentences(name, high, det, rows)
            continue
        say = full[rows]
        out[rows_k[0][~say], rows_k[1][~say]] = np.where(high[~say], hi_code, lo_code)
        if say.any():
            rows_s = rows[say]
            prefix = np.where(high[say], hi_code + ": ", lo_code + ": ").astype(object)
            out[rows_s, rows_k[1][say]] = prefix + feature_sentences(name, high[say], det, rows_s)
    return _row_lists(out, idx >= 0)


def _row_lists(out: np.ndarray, chosen: np.ndarray) -> list[list[str]]:
    """Each row's texts (the non-empty slots of ``out``) as a list."""
    n, top = out.shape
    result: list[list[str]] = [[] for _ in range(n)]
    if n > _FEW_ROWS and (chosen[:, 1:] <= chosen[:, :-1]).all():
        # The usual shape (reasons fill the first slots): rows with k reasons take their
        # first k texts as they are, without a filter per row. (A handful of rows, as
        # score_one has, is quicker through the plain loop below.)
        k = chosen.sum(axis=1)
        for m in range(1, top + 1):
            rows = np.flatnonzero(k == m)
            for i, texts in zip(rows.tolist(), out[rows, :m].tolist(), strict=True):
                result[i] = texts
        return result
    for i, row in zip(np.flatnonzero(chosen.any(axis=1)).tolist(),
                      out[chosen.any(axis=1)].tolist(), strict=True):
        result[i] = [t for t in row if t is not None]
    return result


class _Meanings(dict):
    def __missing__(self, name):
        return feature_spec(name).meaning


FEATURE_MEANING = _Meanings({f.name: f.meaning for f in FEATURES})


def soft_notes(det: dict, reasons: list[list[str]], full: np.ndarray | None = None) -> None:
    """Append notes in place: codes and origins never seen in training (UNSEEN_*), and
    legal but suspicious values that were scored as missing or as their own category
    (the code alone on rows that ``full`` does not mark)."""
    r = det["r"]
    hs_unseen = (r["hs"] < 0) & (det["hs_text"] != "")
    origin_raw = r["origin_country_raw"]
    origin_zz = origin_raw == UNKNOWN_COUNTRY
    origin_unseen = (r["origin_country"] < 0) & (origin_raw != None) & ~origin_zz  # noqa: E711
    _value_notes(det, reasons, origin_zz, full)
    for i in np.flatnonzero(hs_unseen | origin_unseen).tolist():
        if full is not None and not full[i]:
            reasons[i].extend(c for c, u in (("UNSEEN_COMMODITY", hs_unseen[i]),
                                             ("UNSEEN_ORIGIN", origin_unseen[i])) if u)
            continue
        if hs_unseen[i]:
            reasons[i].append(f"UNSEEN_COMMODITY: hs {det['hs_text'][i]} never seen in training;"
                              " compared with its parent codes")
        if origin_unseen[i]:
            reasons[i].append(f"UNSEEN_ORIGIN: origin {r['origin_country_raw'][i]} never seen "
                              "in training")


def _value_notes(det: dict, reasons: list[list[str]], origin_zz: np.ndarray,
                 full: np.ndarray | None = None) -> None:
    r = det["r"]
    n = len(origin_zz)
    mass0 = r.get("net_mass_zero", np.zeros(n, dtype=bool))
    value0 = r["customs_value"] == 0
    qty0 = r["quantity"] == 0  # NaN (not declared) compares False: only a declared 0 is noted
    dispatch_zz = r["dispatch_country_raw"] == UNKNOWN_COUNTRY
    far = np.zeros(n, dtype=bool)
    span = det.get("day_range")
    if span is not None:
        day = r["day"]
        lo, hi = int(span[0]), int(span[1])
        far = (day != -1) & ((day < lo - DATE_MARGIN_DAYS) | (day > hi + DATE_MARGIN_DAYS))
    # In the order they are given; the date's sentence is built per row (it names the date).
    notes = (("NET_MASS_ZERO", mass0, "net mass declared as 0 kg; scored without the "
              "mass-based checks"),
             ("VALUE_ZERO", value0, "customs value declared as 0; scored without the "
              "value-based checks"),
             ("QUANTITY_ZERO", qty0, "supplementary quantity declared as 0; scored without "
              "the per-unit checks"),
             ("ORIGIN_UNKNOWN", origin_zz, "origin declared as unknown or unspecified "
              "(ZZ, XX, QU, QV, QZ, 'unknown'); scored as its own category"),
             ("DISPATCH_UNKNOWN", dispatch_zz, "dispatch country declared as unknown or "
              "unspecified; scored as its own category"),
             ("DATE_OUTSIDE_TRAINING", far, None))
    for i in np.flatnonzero(mass0 | value0 | qty0 | origin_zz | dispatch_zz | far).tolist():
        codes_only = full is not None and not full[i]
        for code, mask, text in notes:
            if not mask[i]:
                continue
            if codes_only:
                reasons[i].append(code)
                continue
            if text is None:
                d = np.datetime64(int(r["day"][i]), "D")
                a, b = np.datetime64(int(span[0]), "D"), np.datetime64(int(span[1]), "D")
                text = f"dated {d}, training covers {a}..{b}; the references may describe " \
                       "another period"
            reasons[i].append(f"{code}: {text}")
