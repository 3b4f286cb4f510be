"""Learning from inspection outcomes: risk profiles, a packed boosted ranker, a combined score.

Customs administrations record what inspections found (``is_fraud`` 0/1 and the revenue
raised). A supervised ranker on those labels ranks the schemes already caught very well;
the isolation forest stays because it finds schemes nobody has caught yet. This module
adds the supervised half and one combined score:

* :class:`RiskProfiles` - smoothed fraud rates (and log counts) per trader, commodity,
  origin and route, computed OUT OF FOLD on the training rows so that a row's own label
  never enters its own feature.
* :class:`PackedBoosting` - a fitted scikit-learn ``HistGradientBoostingClassifier`` as
  plain arrays, predicted in numpy without sklearn and equal to
  ``hgb.predict_proba(X)[:, 1]`` (the raw sums are bit-identical; the final sigmoid is
  within an ulp of scipy's ``expit``).
* :class:`OutcomeModel` - profiles + ranker + a logistic stack over [the ranker's
  out-of-fold logit, the forest's tail surprisal] learned on out-of-fold predictions.

Everything fitted is kept as numpy arrays, strings and numbers (``to_state``), and scoring
never imports scikit-learn: sklearn is imported inside ``fit`` only.

Smoothing
---------
A key's rate is ``(frauds + m * prior) / (n + m)`` with ``m = 20`` by default: a trader
with 20 inspected declarations sits half-way between its own rate and the overall rate,
so one lucky catch on a trader seen twice (1/2 raw) becomes (1 + 20 * 0.01) / 22 = 5.5%,
not 50%, while 7 frauds in 40 stays high (7.2 / 60 = 12%). ``m`` is the number of
declarations' worth of belief put in the overall rate.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import NotFittedError, SchemaError
from .features import encode_against, factorize

__all__ = ["RiskProfiles", "PackedBoosting", "OutcomeModel", "BASE_KEYS", "BASE_PAIRS",
           "default_pairs", "DEFAULT_SMOOTHING", "DEFAULT_FOLDS"]

_STATE_FORMAT = 1
DEFAULT_SMOOTHING = 20.0
DEFAULT_FOLDS = 5
# Keys of the agency's own fields: traders, commodity at each HS level, origin, route.
BASE_KEYS: tuple[str, ...] = ("importer_id", "declarant_id", "exporter_id", "hs", "hs6", "hs4",
                              "hs2", "origin_country", "route")
# Pairs profiled by default: each trader within a commodity, traders with each other, and
# origin within commodity (a trader clean on one HS code may be the fraud on another).
BASE_PAIRS: tuple[str, ...] = ("importer_id*hs6", "declarant_id*hs6", "exporter_id*hs6",
                               "importer_id*declarant_id", "importer_id*exporter_id",
                               "origin_country*hs6", "route*hs4")
_HS_LEN = {"hs6": 6, "hs4": 4, "hs2": 2}
_REASON_NAME = {"importer_id": ("IMPORTER", "importer"), "declarant_id": ("DECLARANT", "declarant"),
                "exporter_id": ("EXPORTER", "exporter"), "hs": ("HS", "hs code"),
                "hs6": ("HS6", "hs6"), "hs4": ("HS4", "hs4"), "hs2": ("HS2", "hs2"),
                "origin_country": ("ORIGIN", "origin"), "route": ("ROUTE", "route")}
# Tail of the forest's score distribution, as a probability floor: 1 / (sample size + 1).
_EPS = 1e-12


# --- keys ------------------------------------------------------------------------------------

def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), None, dtype=object)
    return df[name].to_numpy()


def _pair_codes(a_codes: np.ndarray, a_uniq: np.ndarray, b_codes: np.ndarray,
                b_uniq: np.ndarray, sep: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the (a, b) pairs present (-1 where either is missing) and their texts
    ``a<sep>b``, numbered in the order of the pairs' keys."""
    ok = (a_codes >= 0) & (b_codes >= 0)
    if not ok.any():
        return np.full(len(a_codes), -1, np.int64), np.array([], dtype=str)
    w = len(b_uniq) + 1
    pair = np.where(ok, a_codes * w + b_codes, -1)
    up, inv = np.unique(pair[ok], return_inverse=True)
    codes = np.full(len(a_codes), -1, np.int64)
    codes[ok] = inv
    text = np.asarray([f"{a_uniq[q // w]}{sep}{b_uniq[q % w]}" for q in up.tolist()], dtype=str)
    return codes, text


def _keys_of(df: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row: code into ``uniq`` (-1 when missing), and the unique key strings.

    ``"a*b"`` is the pair of keys a and b (e.g. ``importer_id*hs6``), missing when either is.
    """
    if "*" in key:
        a, b = key.split("*", 1)
        return _pair_codes(*_keys_of(df, a), *_keys_of(df, b), "|")
    if key in ("hs", "hs6", "hs4", "hs2"):
        codes, uniq = factorize(_col(df, "hs_code"))
        uniq = np.asarray([u.replace(".", "").replace(" ", "") for u in uniq.tolist()], dtype=str)
        if key != "hs":
            uniq = np.asarray([u[:_HS_LEN[key]] for u in uniq.tolist()], dtype=str)
        if len(uniq) == 0:
            return codes, uniq
        # Several raw codes map to one level code: renumber on the level's unique strings.
        lvl_uniq, inv = np.unique(uniq, return_inverse=True)
        return np.where(codes >= 0, inv[np.maximum(codes, 0)], -1), lvl_uniq.astype(str)
    if key == "route":
        return _pair_codes(*factorize(_col(df, "origin_country")),
                           *factorize(_col(df, "dispatch_country")), ">")
    return factorize(_col(df, key))


def default_pairs(extra_categorical: Sequence[str] = (), level: str = "hs4") -> tuple[str, ...]:
    """``BASE_PAIRS`` plus every agency column within HS ``level`` (tax type per HS code,
    origin indicator or import type per commodity, a courier per commodity, ...).

    >>> default_pairs(("Tax Type",))[-1]
    'Tax Type*hs4'
    """
    return BASE_PAIRS + tuple(f"{c}*{level}" for c in extra_categorical)


# --- risk profiles -------------------------------------------------------------------------

class RiskProfiles:
    """Smoothed fraud rates and log counts per categorical key, out of fold at fit.

    Parameters
    ----------
    smoothing : m in ``(frauds + m * prior) / (n + m)`` (declarations' worth of prior).
    n_folds : K; training rows get profiles from the other K - 1 folds only.
    seed : seeds the fold assignment (a permutation of the rows), so fits are repeatable.
    extra_categorical : further column names profiled like the base keys.
    pairs : further keys ``"a*b"`` (two keys or column names): a trader's history within
        a commodity, a tax type within an HS code, ...; profiled like the others.

    Features, per key in ``keys_``: ``risk_<key>`` (smoothed rate) and ``logn_<key>``
    (log1p of the inspected declarations with that key). A missing or unseen key gets
    the prior and a count of 0.
    """

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING, n_folds: int = DEFAULT_FOLDS,
                 seed: int = 0, extra_categorical: Sequence[str] = (), pairs: Sequence[str] = ()):
        self.smoothing = smoothing
        self.n_folds = n_folds
        self.seed = seed
        self.extra_categorical = tuple(extra_categorical)
        self.pairs = tuple(pairs)

    # ---- fit -----------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, y, revenue=None) -> RiskProfiles:
        self._fit(df, y, revenue)
        return self

    def fit_transform(self, df: pd.DataFrame, y, revenue=None) -> np.ndarray:
        """Fit, and return each training row's OUT-OF-FOLD profile."""
        self._fit(df, y, revenue)
        return self.oof_transform()

    def _fit(self, df: pd.DataFrame, y, revenue) -> None:
        if not float(self.smoothing) > 0:
            raise ValueError(f"smoothing must be > 0, got {self.smoothing!r}")
        if int(self.n_folds) < 2:
            raise ValueError(f"n_folds must be >= 2, got {self.n_folds!r}")
        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(df):
            raise ValueError(f"{len(y)} labels for {len(df)} rows")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("labels must be 0 or 1 (inspection found fraud: yes / no)")
        rev = (np.zeros(len(df)) if revenue is None
               else np.nan_to_num(np.asarray(revenue, dtype=np.float64)))
        keys = list(BASE_KEYS) + [c for c in self.extra_categorical if c not in BASE_KEYS]
        keys += [c for c in self.pairs if c not in keys]
        self.keys_ = keys
        n, k = len(df), int(self.n_folds)
        self.fold_ = (np.random.default_rng(int(self.seed)).permutation(n) % k).astype(np.int64)
        self.prior_ = float(y.mean()) if n else 0.0
        fold_n = np.bincount(self.fold_, minlength=k).astype(np.float64)
        fold_f = np.bincount(self.fold_, y, minlength=k)
        self._fold_n, self._fold_f = fold_n, fold_f
        self.tables_: dict[str, dict[str, np.ndarray]] = {}
        self._train_codes: dict[str, np.ndarray] = {}
        self._train_nk: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in keys:
            codes, uniq = _keys_of(df, key)
            ok = codes >= 0
            u = len(uniq)
            # Per (key value, fold): rows and frauds; the full tables are their sums.
            cell = codes[ok] * k + self.fold_[ok]
            nk = np.bincount(cell, minlength=u * k).reshape(u, k).astype(np.float64)
            fk = np.bincount(cell, y[ok], minlength=u * k).reshape(u, k)
            order = np.argsort(uniq, kind="stable")
            rank = np.empty(u, np.int64)
            rank[order] = np.arange(u)
            self.tables_[key] = {
                "values": uniq[order].astype(str),
                "n": nk.sum(axis=1)[order].astype(np.int64),
                "frauds": np.rint(fk.sum(axis=1)[order]).astype(np.int64),
                "revenue": np.bincount(codes[ok], rev[ok], minlength=u)[order],
            }
            self._train_codes[key] = np.where(ok, rank[np.maximum(codes, 0)], -1)
            self._train_nk[key] = (nk[order], fk[order])
        self.feature_names_ = [f"{p}_{key}" for key in keys for p in ("risk", "logn")]

    def oof_transform(self, holdout: int | None = None) -> np.ndarray:
        """Training rows' profiles, each from folds other than its own.

        With ``holdout = h`` (a fold number) the profiles are what a model trained
        without fold ``h`` would see: rows of fold h use the tables of the other folds,
        rows of another fold j use the folds other than j and h. This is what the
        out-of-fold ranker for the stack is trained and evaluated on, so that fold h's
        labels reach neither its features nor the ranker that scores it.
        """
        self._check_fitted()
        fold = self.fold_
        n = len(fold)
        ex_n = self._fold_n[fold].copy()
        ex_f = self._fold_f[fold].copy()
        also = None
        if holdout is not None:
            also = fold != int(holdout)
            ex_n += np.where(also, self._fold_n[int(holdout)], 0.0)
            ex_f += np.where(also, self._fold_f[int(holdout)], 0.0)
        tot_n, tot_f = float(self._fold_n.sum()), float(self._fold_f.sum())
        prior = (tot_f - ex_f) / np.maximum(tot_n - ex_n, 1.0)
        out = np.empty((n, 2 * len(self.keys_)), dtype=np.float64)
        m = float(self.smoothing)
        for j, key in enumerate(self.keys_):
            codes = self._train_codes[key]
            nk, fk = self._train_nk[key]
            ok = codes >= 0
            c = np.maximum(codes, 0)
            cnt = np.where(ok, nk.sum(axis=1)[c] - nk[c, fold], 0.0) if len(nk) else np.zeros(n)
            frd = np.where(ok, fk.sum(axis=1)[c] - fk[c, fold], 0.0) if len(fk) else np.zeros(n)
            if holdout is not None and len(nk):
                cnt -= np.where(ok & also, nk[c, int(holdout)], 0.0)
                frd -= np.where(ok & also, fk[c, int(holdout)], 0.0)
            cnt = np.maximum(cnt, 0.0)
            frd = np.clip(frd, 0.0, cnt)
            out[:, 2 * j] = (frd + m * prior) / (cnt + m)
            out[:, 2 * j + 1] = np.log1p(cnt)
        return out

    # ---- transform ---------------------------------------------------------------------
    def lookup(self, df: pd.DataFrame, key: str):
        """Per row: (key text or '', inspected count, frauds, smoothed rate) from the full
        training tables."""
        self._check_fitted()
        t = self.tables_[key]
        codes, uniq = _keys_of(df, key)
        enc = encode_against(t["values"], uniq) if len(uniq) else np.array([], np.int64)
        pos = np.where(codes >= 0, enc[np.maximum(codes, 0)] if len(enc) else -1, -1)
        hit = pos >= 0
        p = np.maximum(pos, 0)
        cnt = np.where(hit, t["n"][p] if len(t["n"]) else 0, 0).astype(np.float64)
        frd = np.where(hit, t["frauds"][p] if len(t["frauds"]) else 0, 0).astype(np.float64)
        m = float(self.smoothing)
        rate = (frd + m * self.prior_) / (cnt + m)
        text = (uniq.astype(object)[np.maximum(codes, 0)] if len(uniq)
                else np.full(len(df), "", dtype=object))
        text = np.where(codes >= 0, text, "")
        return text, cnt, frd, rate

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Profiles of new rows from the full training tables (rows x ``feature_names_``)."""
        self._check_fitted()
        out = np.empty((len(df), 2 * len(self.keys_)), dtype=np.float64)
        for j, key in enumerate(self.keys_):
            _, cnt, _, rate = self.lookup(df, key)
            out[:, 2 * j] = rate
            out[:, 2 * j + 1] = np.log1p(cnt)
        return out

    # ---- state ---------------------------------------------------------------------------
    def to_state(self) -> dict:
        self._check_fitted()
        return {"params": {"smoothing": float(self.smoothing), "n_folds": int(self.n_folds),
                           "seed": int(self.seed),
                           "extra_categorical": list(self.extra_categorical),
                           "pairs": list(self.pairs)},
                "keys": list(self.keys_), "prior": float(self.prior_),
                "tables": {k: dict(v) for k, v in self.tables_.items()}}

    @classmethod
    def from_state(cls, state: dict) -> RiskProfiles:
        p = state["params"]
        self = cls(smoothing=float(p["smoothing"]), n_folds=int(p["n_folds"]),
                   seed=int(p["seed"]), extra_categorical=tuple(p["extra_categorical"]),
                   pairs=tuple(p.get("pairs", ())))
        self.keys_ = [str(k) for k in state["keys"]]
        self.prior_ = float(state["prior"])
        self.tables_ = {str(k): {f: np.asarray(a) for f, a in v.items()}
                        for k, v in state["tables"].items()}
        missing = [k for k in self.keys_ if k not in self.tables_]
        if missing:
            raise SchemaError(f"risk profile state lacks tables for {missing}")
        self.feature_names_ = [f"{p}_{key}" for key in self.keys_ for p in ("risk", "logn")]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tables_"):
            raise NotFittedError("RiskProfiles is not fitted; call fit(df, y) first")


# --- packed gradient boosting -------------------------------------------------------------------

class PackedBoosting:
    """A fitted binary ``HistGradientBoostingClassifier`` as plain arrays.

    All trees' nodes are concatenated; ``left``/``right`` are global node indices and
    leaves point to themselves, so every row can take exactly ``tree_depth[t]`` steps in
    tree ``t`` with no leaf test, which lets numpy advance all rows one level at a time.
    The decision per step is sklearn's (``_predict_one_from_raw_data``): NaN follows
    ``missing_go_to_left``; otherwise ``x <= num_threshold`` goes left, both float64.
    Raw sums start from ``_baseline_prediction`` and add trees in iteration order, as
    sklearn's ``raw_predictions += predict(X)``, so they round identically.
    """

    _FIELDS = {"feature": np.int64, "threshold": np.float64, "missing_left": np.uint8,
               "left": np.int64, "right": np.int64, "value": np.float64,
               "roots": np.int64, "tree_depth": np.int64}

    def __init__(self, *, feature, threshold, missing_left, left, right, value, roots,
                 tree_depth, baseline: float, n_features: int):
        self.feature = np.ascontiguousarray(feature, dtype=np.int64)
        self.threshold = np.ascontiguousarray(threshold, dtype=np.float64)
        self.missing_left = np.ascontiguousarray(missing_left, dtype=np.uint8)
        self.left = np.ascontiguousarray(left, dtype=np.int64)
        self.right = np.ascontiguousarray(right, dtype=np.int64)
        self.value = np.ascontiguousarray(value, dtype=np.float64)
        self.roots = np.ascontiguousarray(roots, dtype=np.int64)
        self.tree_depth = np.ascontiguousarray(tree_depth, dtype=np.int64)
        self.baseline = float(baseline)
        self.n_features_in_ = int(n_features)
        self._validate()

    @classmethod
    def from_sklearn(cls, hgb: Any) -> PackedBoosting:
        """Pack a fitted binary ``HistGradientBoostingClassifier`` (reads attributes only)."""
        if getattr(hgb, "n_trees_per_iteration_", None) != 1:
            raise ValueError("PackedBoosting packs binary classifiers only "
                             "(n_trees_per_iteration_ == 1)")
        if getattr(hgb, "is_categorical_", None) is not None and np.any(hgb.is_categorical_):
            raise ValueError("PackedBoosting does not pack native categorical features; encode "
                             "categories numerically (risk profiles) instead")
        # scikit-learn has no public access to a fitted booster's trees: its private
        # _baseline_prediction and _predictors are what its own predict reads. Pinned by
        # tests/test_supervised.py (packed predictions equal predict_proba), so a change
        # in scikit-learn fails there, not silently.
        base = np.asarray(hgb._baseline_prediction, dtype=np.float64).reshape(-1)
        feats, thr, miss, left, right, value, roots, depth = [], [], [], [], [], [], [], []
        offset = 0
        for it in hgb._predictors:
            (pred,) = it
            nodes = pred.nodes
            if np.any(nodes["is_categorical"]):
                raise ValueError("tree has categorical splits; not supported")
            k = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            idx = np.arange(k, dtype=np.int64) + offset
            feats.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
            thr.append(np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64))
            miss.append(np.where(leaf, 1, nodes["missing_go_to_left"]).astype(np.uint8))
            left.append(np.where(leaf, idx, nodes["left"].astype(np.int64) + offset))
            right.append(np.where(leaf, idx, nodes["right"].astype(np.int64) + offset))
            value.append(nodes["value"].astype(np.float64))
            roots.append(offset)
            # depth of a leaf = number of steps from the root (root depth 0).
            depth.append(int(nodes["depth"][leaf].max()) if leaf.any() else 0)
            offset += k

        def cat(parts, dt):
            return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

        return cls(feature=cat(feats, np.int64), threshold=cat(thr, np.float64),
                   missing_left=cat(miss, np.uint8), left=cat(left, np.int64),
                   right=cat(right, np.int64), value=cat(value, np.float64),
                   roots=np.asarray(roots, np.int64), tree_depth=np.asarray(depth, np.int64),
                   baseline=float(base[0]), n_features=int(hgb.n_features_in_))

    def _validate(self) -> None:
        n = len(self.feature)
        for name in ("threshold", "missing_left", "left", "right", "value"):
            if len(getattr(self, name)) != n:
                raise SchemaError(f"packed boosting is inconsistent: {name} has "
                                  f"{len(getattr(self, name))} entries, feature has {n}")
        if len(self.roots) != len(self.tree_depth):
            raise SchemaError("packed boosting is inconsistent: roots vs tree_depth")
        for name in ("left", "right", "roots"):
            a = getattr(self, name)
            if len(a) and (a.min() < 0 or a.max() >= n):
                raise SchemaError(f"packed boosting is inconsistent: {name} out of range")
        if n and (self.feature.min() < 0 or self.feature.max() >= max(self.n_features_in_, 1)):
            raise SchemaError("packed boosting is inconsistent: feature index out of range")

    def raw_predict(self, X, chunk_rows: int = 32_768) -> np.ndarray:
        """Sum of leaf values plus the baseline (sklearn's ``_raw_predict``), float64."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        n = X.shape[0]
        raw = np.zeros(n, dtype=np.float64)
        raw += self.baseline
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            Xc = np.ascontiguousarray(X[start:stop])
            flat = Xc.reshape(-1)
            base = np.arange(stop - start, dtype=np.int64) * self.n_features_in_
            acc = raw[start:stop]
            for root, depth in zip(self.roots.tolist(), self.tree_depth.tolist(), strict=True):
                node = np.full(stop - start, root, dtype=np.int64)
                for _ in range(depth):
                    x = flat[base + self.feature[node]]
                    go_left = np.where(np.isnan(x), self.missing_left[node] != 0,
                                       x <= self.threshold[node])
                    node = np.where(go_left, self.left[node], self.right[node])
                acc += self.value[node]
            raw[start:stop] = acc
        return raw

    def predict_proba(self, X) -> np.ndarray:
        """P(fraud) per row: equals ``hgb.predict_proba(X)[:, 1]``."""
        return _sigmoid(self.raw_predict(X))

    def to_state(self) -> dict:
        return {"format": _STATE_FORMAT, "baseline": self.baseline,
                "n_features": self.n_features_in_,
                **{k: getattr(self, k) for k in self._FIELDS}}

    @classmethod
    def from_state(cls, state: dict) -> PackedBoosting:
        if int(state.get("format", -1)) != _STATE_FORMAT:
            raise SchemaError(f"packed boosting state format {state.get('format')!r}, this "
                              f"version reads {_STATE_FORMAT}")
        return cls(**{k: np.asarray(state[k]) for k in cls._FIELDS},
                   baseline=float(state["baseline"]), n_features=int(state["n_features"]))

    @property
    def n_trees_(self) -> int:
        return len(self.roots)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


# --- combined model ------------------------------------------------------------------------------

class OutcomeModel:
    """Risk profiles + boosted ranker + an out-of-fold logistic stack with the forest.

    Combination rule (``risk_score``)::

        risk = sigmoid(b0 + b1 * logit(p_ranker) + b2 * tail(forest) + b3 * rank(forest))
        tail(forest) = -log(1 - pct + 1 / (N + 1))    # surprisal of the forest's tail
        rank(forest) = pct                            # pct vs the training forest scores

    where ``pct`` is the forest score's percentile among the training rows' forest
    scores (a stored sorted sample). The stack is fitted with an unweighted logistic
    regression on OUT-OF-FOLD ranker predictions only (K rankers, each trained without
    one fold, with nested out-of-fold profiles), so it learns how far to trust the
    ranker from predictions made on rows it never saw - the situation at score time -
    and ``risk_score`` is a calibrated probability of fraud. Because the forest's tail
    surprisal enters additively in log-odds, a declaration far out in the forest's tail
    climbs the ranking even when the ranker has never seen its scheme (held-out schemes
    in ``benchmarks/bench_outcomes.py``).

    ``fraud_probability`` is the ranker's own probability. The ranker is fitted without
    class weights: its probabilities stay calibrated estimates of P(fraud) and are used
    only to rank (and as a logit input to the stack); reweighting classes would change
    the probabilities, not the order that matters at an inspection budget.
    """

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING, n_folds: int = DEFAULT_FOLDS,
                 max_iter: int = 150, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 20, l2_regularization: float = 1.0,
                 class_weight: str | None = None, forest_sample: int = 4001,
                 reason_lift: float = 3.0, reason_min_frauds: int = 2, max_reasons: int = 3,
                 n_threads: int | None = 1, pairs: Sequence[str] | None = None):
        self.smoothing = smoothing
        self.pairs = None if pairs is None else tuple(pairs)
        self.n_threads = n_threads
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.forest_sample = forest_sample
        self.reason_lift = reason_lift
        self.reason_min_frauds = reason_min_frauds
        self.max_reasons = max_reasons

    # ---- fit -----------------------------------------------------------------------------
    def _hgb(self, seed: int):
        from sklearn.ensemble import HistGradientBoostingClassifier  # training only

        return HistGradientBoostingClassifier(
            loss="log_loss", learning_rate=float(self.learning_rate),
            max_iter=int(self.max_iter), max_leaf_nodes=int(self.max_leaf_nodes),
            min_samples_leaf=int(self.min_samples_leaf),
            l2_regularization=float(self.l2_regularization), early_stopping=False,
            class_weight=self.class_weight, random_state=int(seed))

    def fit(self, valid_df: pd.DataFrame, X, forest_scores, y, *, revenue=None,
            extra_categorical: Sequence[str] = (), extra_numeric: Sequence[str] = (),
            seed: int = 0) -> OutcomeModel:
        """Learn profiles, the ranker and the stack from inspected declarations.

        ``valid_df``: validated rows (the agency's fields); ``X``: the detector's feature
        matrix for those rows (for training rows, the leave-one-out matrix of
        ``DeclarationFeatures.fit_transform``); ``forest_scores``: the forest's
        ``anomaly_score`` of X; ``y``: inspection outcome 0/1; ``revenue``: revenue
        raised (kept per key for reasons and metrics, not a training weight).
        """
        from threadpoolctl import threadpool_limits  # training only (a sklearn dependency)

        if self.n_threads is None:
            return self._fit(valid_df, X, forest_scores, y, revenue=revenue,
                             extra_categorical=extra_categorical, extra_numeric=extra_numeric,
                             seed=seed)
        # OpenMP threads: on small machines HGB's per-split thread synchronisation costs
        # more than it saves (5x slower with 2 threads than 1 on a 2-CPU box, 200k rows);
        # results do not depend on the thread count.
        with threadpool_limits(limits=int(self.n_threads), user_api="openmp"):
            return self._fit(valid_df, X, forest_scores, y, revenue=revenue,
                             extra_categorical=extra_categorical, extra_numeric=extra_numeric,
                             seed=seed)

    def _fit(self, valid_df, X, forest_scores, y, *, revenue, extra_categorical, extra_numeric,
             seed) -> OutcomeModel:
        from sklearn.linear_model import LogisticRegression  # training only

        X = np.asarray(X, dtype=np.float64)
        s = np.asarray(forest_scores, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n = len(valid_df)
        if X.ndim != 2 or X.shape[0] != n or len(s) != n or len(y) != n:
            raise ValueError(f"valid_df ({n} rows), X {X.shape}, forest_scores ({len(s)}) and "
                             f"y ({len(y)}) must describe the same rows")
        if y.sum() < int(self.n_folds) or (1 - y).sum() < int(self.n_folds):
            raise ValueError(f"need at least {self.n_folds} frauds and non-frauds to learn from "
                             f"outcomes, got {int(y.sum())} frauds in {n} rows")
        missing = [c for c in (*extra_categorical, *extra_numeric) if c not in valid_df.columns]
        if missing:
            raise SchemaError(f"extra column(s) {missing} not in the data")
        self.extra_numeric_ = [str(c) for c in extra_numeric]
        self.n_x_features_ = int(X.shape[1])
        self.seed_ = int(seed)
        pairs = default_pairs(extra_categorical) if self.pairs is None else self.pairs
        prof = RiskProfiles(smoothing=self.smoothing, n_folds=self.n_folds, seed=seed,
                            extra_categorical=extra_categorical, pairs=pairs)
        P_oof = prof.fit_transform(valid_df, y, revenue)
        self.profiles_ = prof
        E = self._extra(valid_df)
        # Forest percentile against the training distribution, from a sorted sample.
        q = np.linspace(0.0, 1.0, int(self.forest_sample))
        self.forest_sample_ = np.quantile(s, q)
        F = self.forest_features(s)
        # Out-of-fold ranker predictions for the stack: ranker h never saw fold h's labels,
        # neither as targets nor inside its profiles.
        fold = prof.fold_
        oof_logit = np.empty(n)
        for h in range(int(self.n_folds)):
            P_h = prof.oof_transform(holdout=h)
            Z = np.hstack([X, P_h, E])
            tr = fold != h
            clf = self._hgb(seed + 1 + h).fit(Z[tr], y[tr])
            oof_logit[~tr] = PackedBoosting.from_sklearn(clf).raw_predict(Z[~tr])
        self.oof_ranker_logit_ = oof_logit
        S = np.column_stack([oof_logit, F])
        lr = LogisticRegression(C=1e4, max_iter=1000)
        lr.fit(S, y)
        self.stack_coef_ = np.asarray(lr.coef_[0], dtype=np.float64)
        self.stack_intercept_ = float(lr.intercept_[0])
        # The deployed ranker: all rows, out-of-fold profiles.
        Z = np.hstack([X, P_oof, E])
        clf = self._hgb(seed).fit(Z, y)
        self.ranker_ = PackedBoosting.from_sklearn(clf)
        self.feature_names_ = ([f"x{j}" for j in range(X.shape[1])] + prof.feature_names_
                               + [f"num_{c}" for c in self.extra_numeric_])
        return self

    def refit_ranker(self, valid_df: pd.DataFrame, X, y, *, revenue=None) -> OutcomeModel:
        """A copy with the risk profiles and the deployed ranker refitted on (more)
        labelled rows; the stack and the forest sample are kept from ``fit``.

        For a replay that learns new outcomes every period: one boosted fit instead of
        ``n_folds + 1`` (the stack only sets how far the ranker's logit is trusted beside
        the forest, which a few more weeks of outcomes barely move). ``X`` comes from the
        same feature builder as at ``fit``.
        """
        from threadpoolctl import threadpool_limits  # training only

        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or X.shape != (len(valid_df), self.n_x_features_) or len(y) != len(X):
            raise ValueError(f"X must have shape ({len(valid_df)}, {self.n_x_features_}) and y "
                             f"{len(valid_df)} labels, got X {X.shape}, y {len(y)}")
        old = self.profiles_
        prof = RiskProfiles(smoothing=old.smoothing, n_folds=old.n_folds, seed=self.seed_,
                            extra_categorical=old.extra_categorical, pairs=old.pairs)
        new = copy.copy(self)
        new.__dict__.pop("oof_ranker_logit_", None)  # belongs to the first fit's rows
        limits = None if self.n_threads is None else int(self.n_threads)
        with threadpool_limits(limits=limits, user_api="openmp"):
            Z = np.hstack([X, prof.fit_transform(valid_df, y, revenue), self._extra(valid_df)])
            clf = self._hgb(self.seed_).fit(Z, y)
        new.profiles_ = prof
        new.ranker_ = PackedBoosting.from_sklearn(clf)
        return new

    def _extra(self, df: pd.DataFrame) -> np.ndarray:
        cols = [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64,
                                                                na_value=np.nan)
                if c in df.columns else np.full(len(df), np.nan)
                for c in self.extra_numeric_]
        return np.column_stack(cols) if cols else np.zeros((len(df), 0))

    def forest_percentile(self, forest_scores) -> np.ndarray:
        """Share of training rows whose forest score is <= this one (0..1)."""
        smp = self.forest_sample_
        s = np.asarray(forest_scores, dtype=np.float64)
        pos = np.searchsorted(smp, s, side="right").astype(np.float64)
        # Linear interpolation between sample quantiles, so ranks stay distinct.
        lo = np.clip(pos - 1, 0, len(smp) - 1).astype(np.int64)
        hi = np.clip(pos, 0, len(smp) - 1).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(smp[hi] > smp[lo], (s - smp[lo]) / (smp[hi] - smp[lo]), 0.0)
        pct = (lo + np.clip(frac, 0.0, 1.0)) / (len(smp) - 1)
        return np.where(pos <= 0, 0.0, np.where(pos >= len(smp), 1.0, pct))

    def forest_features(self, s: np.ndarray) -> np.ndarray:
        """The stacker's forest columns for raw scores ``s``: tail surprisal and percentile."""
        pct = self.forest_percentile(s)
        floor = 1.0 / len(self.forest_sample_)
        return np.column_stack([-np.log(1.0 - pct + floor), pct])

    # ---- predict -----------------------------------------------------------------------
    def _design(self, valid_df: pd.DataFrame, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(valid_df) or X.shape[1] != self.n_x_features_:
            raise ValueError(f"X must have shape ({len(valid_df)}, {self.n_x_features_}), "
                             f"got {X.shape}")
        return np.hstack([X, self.profiles_.transform(valid_df), self._extra(valid_df)])

    def predict(self, valid_df: pd.DataFrame, X, forest_scores) -> dict[str, np.ndarray]:
        """``fraud_probability`` (ranker) and ``risk_score`` (combined, in [0, 1])."""
        self._check_fitted()
        s = np.asarray(forest_scores, dtype=np.float64)
        if len(s) != len(valid_df):
            raise ValueError(f"{len(s)} forest scores for {len(valid_df)} rows")
        raw = self.ranker_.raw_predict(self._design(valid_df, X))
        S = np.column_stack([raw, self.forest_features(s)])
        z = self.stack_intercept_ + S @ self.stack_coef_
        return {"fraud_probability": _sigmoid(raw), "risk_score": _sigmoid(z)}

    def reasons(self, valid_df: pd.DataFrame, top: int | None = None) -> list[list[str]]:
        """Per row, the history keys whose smoothed fraud rate is highest relative to the
        overall rate (lift >= ``reason_lift`` and at least ``reason_min_frauds`` frauds),
        most telling first, e.g. ``RISK_HISTORY_IMPORTER: importer I000123 had 7 frauds in
        40 inspected declarations (17.5%) vs 1.0% overall``."""
        self._check_fitted()
        prof = self.profiles_
        top = int(self.max_reasons if top is None else top)
        n = len(valid_df)
        prior = prof.prior_
        cand_lift, cand_text = [], []
        for key in prof.keys_:
            text, cnt, frd, rate = prof.lookup(valid_df, key)
            lift = rate / max(prior, _EPS)
            ok = (lift >= float(self.reason_lift)) & (frd >= int(self.reason_min_frauds))
            code, label = _REASON_NAME.get(
                key, (key.upper().replace("*", "_IN_").replace(" ", "_"), key.replace("*", " in ")))
            msgs = np.full(n, "", dtype=object)
            for i in np.flatnonzero(ok).tolist():
                msgs[i] = (f"RISK_HISTORY_{code}: {label} {text[i]} had {int(frd[i])} frauds in "
                           f"{int(cnt[i])} inspected declarations ({frd[i] / cnt[i]:.1%}) vs "
                           f"{prior:.1%} overall")
            cand_lift.append(np.where(ok, lift, -np.inf))
            cand_text.append(msgs)
        if not cand_lift:
            return [[] for _ in range(n)]
        L = np.column_stack(cand_lift)
        T = np.column_stack(cand_text)
        order = np.argsort(-L, axis=1, kind="stable")[:, :top]
        out: list[list[str]] = []
        for i in range(n):
            out.append([T[i, j] for j in order[i].tolist() if np.isfinite(L[i, j])])
        return out

    # ---- state ---------------------------------------------------------------------------
    def to_state(self) -> dict:
        self._check_fitted()
        return {"format": _STATE_FORMAT,
                "params": {"smoothing": float(self.smoothing), "n_folds": int(self.n_folds),
                           "max_iter": int(self.max_iter),
                           "learning_rate": float(self.learning_rate),
                           "max_leaf_nodes": int(self.max_leaf_nodes),
                           "min_samples_leaf": int(self.min_samples_leaf),
                           "l2_regularization": float(self.l2_regularization),
                           "class_weight": self.class_weight,
                           "forest_sample": int(self.forest_sample),
                           "reason_lift": float(self.reason_lift),
                           "reason_min_frauds": int(self.reason_min_frauds),
                           "max_reasons": int(self.max_reasons),
                           "n_threads": None if self.n_threads is None else int(self.n_threads),
                           "pairs": None if self.pairs is None else list(self.pairs)},
                "seed": int(self.seed_), "n_x_features": int(self.n_x_features_),
                "extra_numeric": list(self.extra_numeric_),
                "feature_names": list(self.feature_names_),
                "profiles": self.profiles_.to_state(), "ranker": self.ranker_.to_state(),
                "forest_sample": np.asarray(self.forest_sample_, dtype=np.float64),
                "stack": {"intercept": float(self.stack_intercept_),
                          "coef": [float(c) for c in self.stack_coef_]}}

    @classmethod
    def from_state(cls, state: dict) -> OutcomeModel:
        if int(state.get("format", -1)) != _STATE_FORMAT:
            raise SchemaError(f"outcome model state format {state.get('format')!r}, this "
                              f"version reads {_STATE_FORMAT}")
        self = cls(**state["params"])
        self.seed_ = int(state["seed"])
        self.n_x_features_ = int(state["n_x_features"])
        self.extra_numeric_ = [str(c) for c in state["extra_numeric"]]
        self.feature_names_ = [str(c) for c in state["feature_names"]]
        self.profiles_ = RiskProfiles.from_state(state["profiles"])
        self.ranker_ = PackedBoosting.from_state(state["ranker"])
        self.forest_sample_ = np.asarray(state["forest_sample"], dtype=np.float64)
        self.stack_intercept_ = float(state["stack"]["intercept"])
        self.stack_coef_ = np.asarray(state["stack"]["coef"], dtype=np.float64)
        if self.ranker_.n_features_in_ != len(self.feature_names_):
            raise SchemaError(f"outcome model is inconsistent: ranker expects "
                              f"{self.ranker_.n_features_in_} features, names list "
                              f"{len(self.feature_names_)}")
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "ranker_"):
            raise NotFittedError("OutcomeModel is not fitted; call fit(...) or from_state()")
