"""DeclarationModel: features + packed isolation forest + thresholds + metadata.

This is the object other services import::

    model = detector.load_model("models/detector.joblib")
    result = model.score(df)            # one row out per row in, scored or rejected
    one = model.score_one({...})        # one declaration as a dict, sub-millisecond

Scores go one way everywhere: ``anomaly_score`` in (0, 1], higher = more suspicious.
The flip from scikit-learn's convention happens once, in ``PackedForest.anomaly_score``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import NotFittedError, SchemaError
from .features import FEATURES, DeclarationFeatures
from .forest import PackedForest
from .health import batch_health, bin_counts, reference_bins
from .reasons import (
    DEFAULT_EXPLAIN_TOP,
    FEATURE_MEANING,
    RANDOM_CODE,
    as_codes,
    check_reasons_mode,
    counterfactual_reasons,
    explained_rows,
    reason_texts,
    soft_notes,
)
from .schema import ColumnMapping, apply_column_mapping
from .validate import validate
from .verdict import (
    MANUAL_LANE,
    Verdict,
    cap_first_lane,
    decide,
    merge_history,
    parse_capacity,
    random_note,
    rank,
)

__all__ = ["DeclarationModel", "train", "build_model", "load_model", "parse_lanes",
           "OUTPUT_COLUMNS", "MIN_TRAINING_ROWS"]

OUTPUT_COLUMNS = ("declaration_id", "anomaly_score", "rank", "flagged", "lane",
                  "random_selected", "reasons")
# Fewer valid rows than this cannot give references or a forest worth scoring with (the
# default commodity references alone want 30 rows a code): training stops and says so.
MIN_TRAINING_ROWS = 100


def parse_lanes(text: str | Mapping[str, float] | None, budget: float) -> dict[str, float]:
    """``"red=0.01,yellow=0.04"`` -> {"red": 0.01, "yellow": 0.04}; default red=budget.

    Shares are of all declarations and stack in the order given: red takes the top 1%,
    yellow the next 4%. Everything else is green.
    """
    if text is None or text == "":
        return {"red": float(budget)}
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            name, sep, share = part.partition("=")
            if not sep:
                raise ValueError(f"lanes must look like 'red=0.01,yellow=0.04', got {text!r}")
            items.append((name.strip().lower(), share.strip()))
    lanes: dict[str, float] = {}
    for name, share in items:
        try:
            v = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"lane {name!r} share must be a number, got {share!r}") from None
        if not name or name == "green" or name in lanes:
            raise ValueError(f"lane names must be unique and not 'green', got {name!r}")
        if not 0.0 < v < 1.0:
            raise ValueError(f"lane {name!r} share must be in (0, 1), got {v}")
        lanes[name] = v
    total = sum(lanes.values())
    if total >= 1.0:
        raise ValueError(f"lane shares must add up to less than 1, got {total:g}")
    return lanes


def _fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the canonical training frame (sorted columns, values only)."""
    cols = sorted(df.columns)
    h = hashlib.sha256()
    h.update(("|".join(cols)).encode())
    if len(df):
        h.update(pd.util.hash_pandas_object(df[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()


class DeclarationModel:
    """Unsupervised declaration risk model.

    Parameters
    ----------
    n_estimators, max_samples : forest size (scikit-learn's IsolationForest).
    budget : share of declarations flagged, set on the training score distribution.
    lanes : lane shares, e.g. ``{"red": 0.01, "yellow": 0.04}``; default red = budget.
    random_share : share of declarations selected at random for inspection whatever
        their score, so that inspection outcomes stay an unbiased sample.
    seed : seeds the forest and the random selection.
    min_rows : reference tables need this many rows before a code gets its own.
    candidates : features tried per row when looking for reasons.
    extra_categorical, extra_numeric : agency-specific columns (by their name in the
        input) that become features; they are then required at score time.
    """

    def __init__(self, n_estimators: int = 200, max_samples: int | str = 256,
                 budget: float = 0.01, lanes: Mapping[str, float] | str | None = None,
                 random_share: float = 0.0, seed: int = 0, min_rows: int = 30,
                 candidates: int = 4, extra_categorical: tuple[str, ...] = (),
                 extra_numeric: tuple[str, ...] = ()):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.budget = budget
        self.lanes = lanes
        self.random_share = random_share
        self.seed = seed
        self.min_rows = min_rows
        self.candidates = candidates
        self.extra_categorical = extra_categorical
        self.extra_numeric = extra_numeric

    # ---- parameters (scikit-learn's estimator contract) ---------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The parameters, read from ``__init__``'s signature: the one list (as
        scikit-learn's BaseEstimator does; inheriting it would import scikit-learn on
        the scoring path, which never needs it)."""
        import inspect

        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameter names mapped to their values (``deep``: no sub-estimators here)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> DeclarationModel:
        """Set parameters by name; unknown names are refused (fitted state is kept until
        the next ``fit``)."""
        names = self._param_names()
        bad = sorted(set(params) - set(names))
        if bad:
            raise ValueError(f"invalid parameter(s) {bad} for DeclarationModel; valid "
                             f"parameters are {names}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    # ---- training -----------------------------------------------------------------------
    def _json_params(self, lanes: dict[str, float]) -> dict[str, Any]:
        """The parameters as the artifact's metadata records them (JSON types; the lanes
        as parsed)."""
        out: dict[str, Any] = {}
        for k, v in self.get_params().items():
            if k == "lanes":
                v = lanes
            elif k in ("extra_categorical", "extra_numeric"):
                v = list(v)
            elif k == "max_samples":
                v = v if isinstance(v, str) else float(v) if isinstance(v, float) else int(v)
            elif k in ("budget", "random_share"):
                v = float(v)
            else:
                v = int(v)
            out[k] = v
        return out

    def _check_params(self) -> None:
        if not 0.0 < float(self.budget) < 1.0:
            raise ValueError(f"budget must be in (0, 1), got {self.budget!r}")
        if not 0.0 <= float(self.random_share) < 1.0:
            raise ValueError(f"random_share must be in [0, 1), got {self.random_share!r}")
        if int(self.n_estimators) < 1:
            raise ValueError(f"n_estimators must be >= 1, got {self.n_estimators!r}")

    def fit(self, df: pd.DataFrame, *, validated: bool = False, labels: str | None = None,
            revenue: str | None = None, _whole: dict | None = None,
            min_training_rows: int = MIN_TRAINING_ROWS) -> DeclarationModel:
        """Validate, learn references, fit the forest and set the budget thresholds.

        With ``labels`` (the name of a 0/1 outcome column, e.g. "is_fraud") the model also
        learns from inspection outcomes: risk profiles, a boosted ranker and a stack with
        the forest (:mod:`detector.supervised`), trained on the rows that have an outcome
        (inspected declarations); flags, lanes and rank then follow ``risk_score``.
        Without labels nothing changes: an unsupervised detector. (``_whole``: the
        whole-dataset statistics when ``df`` is a sample, see :mod:`detector.distributed`.)
        """
        from sklearn.ensemble import IsolationForest  # training only: scoring never needs it

        self._check_params()
        lanes = parse_lanes(self.lanes, self.budget)
        started = time.time()
        self.__dict__.pop("outcome_", None)  # a refit without labels must not keep old ones
        if validated:
            valid, n_rejected = df, 0
        else:
            res = validate(df)
            valid, n_rejected = res.valid, len(res.rejects)
        if len(valid) < int(min_training_rows):
            raise SchemaError(f"training needs at least {int(min_training_rows)} valid "
                              f"declarations, got {len(valid)} ({n_rejected} rejected)")
        features = DeclarationFeatures(min_rows=self.min_rows,
                                       extra_categorical=tuple(self.extra_categorical),
                                       extra_numeric=tuple(self.extra_numeric))
        X = features.fit_transform(valid, whole=_whole)
        iso = IsolationForest(n_estimators=int(self.n_estimators), max_samples=self.max_samples,
                              random_state=int(self.seed))
        iso.fit(X)
        forest = PackedForest.from_sklearn(iso)
        train_scores = forest.anomaly_score(X)
        self.features_ = features
        self.forest_ = forest
        # Drift references (detector.health): where each feature's training values fall.
        self.health_reference_ = reference_bins(
            X, features.feature_names_, {f.name: f.kind for f in FEATURES})
        ranking = train_scores
        outcome_meta = None
        if labels is not None:
            ranking, outcome_meta = self._fit_outcomes(valid, X, train_scores, labels, revenue)
        self.threshold_ = float(np.quantile(ranking, 1.0 - float(self.budget)))
        cum, thresholds = 0.0, {}
        for name, share in lanes.items():
            cum += share
            thresholds[name] = float(np.quantile(ranking, 1.0 - cum))
        self.lane_thresholds_ = thresholds
        import sklearn

        self.metadata_ = {
            "model": "DeclarationModel",
            "features": list(features.feature_names_),
            "disabled_features": features.disabled_,
            "input_columns": features.input_columns_,
            "training": {"rows": int(len(valid)), "rejected": int(n_rejected),
                         "sha256": _fingerprint(valid), "seconds": round(time.time() - started, 3),
                         "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "sklearn_version": sklearn.__version__},
            "params": self._json_params(lanes),
            "threshold": self.threshold_,
            "lane_thresholds": thresholds,
            "train_score_quantiles": {str(q): float(np.quantile(ranking, q))
                                      for q in (0.5, 0.9, 0.95, 0.99, 0.999)},
            "ranked_by": self.rank_column,
            "outcomes": outcome_meta,
            # How many rows have HS statistics of their own (a warning when most codes
            # are too rare for them): see detector.features.coverage_summary.
            "coverage": features.coverage_,
        }
        self._train_scores_sample = np.sort(ranking)[:: max(1, len(ranking) // 2000)]
        return self

    def _fit_outcomes(self, valid, X, train_scores, labels: str, revenue: str | None):
        """Fit the outcome model on labelled rows; return the ranking score of every
        training row (out of fold where labelled) for the budget thresholds."""
        from .supervised import OutcomeModel

        if labels not in valid.columns:
            raise SchemaError(f"label column {labels!r} not in the training data; columns: "
                              f"{list(valid.columns)[:20]}")
        y = pd.to_numeric(valid[labels], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        # Outcomes exist only for inspected declarations: learn from those.
        known = (y == 0) | (y == 1)
        if revenue is not None and revenue not in valid.columns:
            raise SchemaError(f"revenue column {revenue!r} not in the training data")
        rev = None if revenue is None else pd.to_numeric(
            valid[revenue], errors="coerce").to_numpy(dtype=float, na_value=0.0)[known]
        sub = valid.iloc[np.flatnonzero(known)]
        outcome = OutcomeModel().fit(sub, X[known], train_scores[known], y[known],
                                     revenue=rev, extra_categorical=self.extra_categorical,
                                     extra_numeric=self.extra_numeric, seed=int(self.seed))
        self.outcome_ = outcome
        ranking = outcome.predict(valid, X, train_scores)["risk_score"]
        # Labelled rows get their out-of-fold risk: in-sample risk would be overconfident
        # and set the budget thresholds too high.
        oof = outcome.stack_intercept_ + np.column_stack(
            [outcome.oof_ranker_logit_, outcome.forest_features(train_scores[known])]
        ) @ outcome.stack_coef_
        ranking = ranking.copy()
        ranking[known] = 1.0 / (1.0 + np.exp(-oof))
        meta = {"label_column": labels, "revenue_column": revenue,
                "labelled_rows": int(known.sum()), "frauds": int(y[known].sum()),
                "stack_coef": [float(c) for c in outcome.stack_coef_],
                "stack_intercept": float(outcome.stack_intercept_)}
        return ranking, meta

    @property
    def rank_column(self) -> str:
        """The score that flags, lanes and ranks: risk_score when outcomes were learned."""
        return "risk_score" if getattr(self, "outcome_", None) is not None else "anomaly_score"

    def __sklearn_is_fitted__(self) -> bool:
        """What scikit-learn's ``check_is_fitted`` asks (fitted state is ``forest_`` on)."""
        return hasattr(self, "forest_")

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags. The input is a table of declarations (codes,
        dates, text, missing values), never a numeric 2-d array; outcomes are optional.
        scikit-learn is imported only when one of its tools asks."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=False),
                    input_tags=InputTags(two_d_array=False, categorical=True, string=True,
                                         allow_nan=True))

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise NotFittedError("DeclarationModel is not fitted; call fit(df) or load_model()")

    # ---- scoring ------------------------------------------------------------------------
    def _decide(self, ranking: np.ndarray, ids) -> Verdict:
        """Flags, lanes and random selections of these rows (detector.verdict's rules)."""
        return decide(ranking, ids, threshold=self.threshold_,
                      lane_thresholds=self.lane_thresholds_, seed=self.seed,
                      random_share=self.random_share)

    def score_valid(self, valid: pd.DataFrame, context=None, reasons: str = "officer",
                    explain_top: int = DEFAULT_EXPLAIN_TOP,
                    drift: list | None = None) -> pd.DataFrame:
        """Score rows that passed validation; no rank (that needs the whole batch).

        ``context`` carries batch-wide facts (parcel bursts) when a file is scored in
        chunks; ``None`` computes them from ``valid`` itself. ``reasons`` is one of
        :data:`detector.reasons.REASON_MODES` ("officer": sentences outside the green
        lane, on random selections and on the top ``explain_top`` of these rows; codes
        elsewhere. "all": sentences everywhere. "codes": codes everywhere).
        ``drift``: a list to which the rows' drift bin counts are appended
        (:func:`detector.health.bin_counts`; nothing for a model without references).
        """
        self._check_fitted()
        check_reasons_mode(reasons, explain_top)
        if context is None:
            context = DeclarationFeatures.burst_context(valid)
        X, det = self.features_.transform_details(valid, context)
        ref = getattr(self, "health_reference_", None)
        if drift is not None and ref is not None:
            drift.append(bin_counts(ref, X))
        scores = self.forest_.anomaly_score(X)
        extra: dict[str, np.ndarray] = {}
        ranking = scores
        if getattr(self, "outcome_", None) is not None:
            o = self.outcome_.predict(valid, X, scores)
            extra = {"fraud_probability": o["fraud_probability"], "risk_score": o["risk_score"]}
            ranking = o["risk_score"]
        id_col = valid["declaration_id"]
        v = self._decide(ranking, id_col)
        full, _ = explained_rows(reasons, v.codes == 0, v.picked, ranking, explain_top)
        texts = self._reasons(valid, X, det, scores, full)
        if v.picked.any():
            note = random_note(self.random_share)
            for i in np.flatnonzero(v.picked).tolist():
                texts[i] = [*texts[i], note if full[i] else RANDOM_CODE]
        # Text columns straight as Arrow strings (what a frame of Python strings becomes
        # anyway): the lane by one take from its few names, the ids as validated.
        lane = pd.array(v.names, dtype="str").take(v.codes)
        ids = id_col.array if id_col.dtype == "str" else id_col.to_numpy(dtype=object)
        return pd.DataFrame({
            "declaration_id": ids,
            "anomaly_score": scores,
            **extra,
            "flagged": v.flagged,
            "lane": lane,
            "random_selected": v.picked,
            "reasons": texts,
        }, index=valid.index)

    def _reasons(self, valid, X, det, scores, full: np.ndarray) -> list[list[str]]:
        """Each row's reasons (forest, outcome history, notes): sentences where ``full``,
        codes elsewhere. The counterfactual search runs only on rows with something
        unusual; the others get nothing."""
        idx, _ = counterfactual_reasons(self.features_, self.forest_, X, scores,
                                        candidates=int(self.candidates))
        texts = reason_texts(self.features_, X, det, idx, None if full.all() else full)
        if getattr(self, "outcome_", None) is not None:
            history = self.outcome_.reasons(valid)
            merge_history(texts, history)
            for i in np.flatnonzero(~full).tolist():
                if history[i]:
                    texts[i] = as_codes(texts[i])
        soft_notes(det, texts, None if full.all() else full)
        return texts

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Columns of a scored file, in order (with outcome scores when learned)."""
        if self.rank_column == "risk_score":
            return ("declaration_id", "anomaly_score", "fraud_probability", "risk_score",
                    *OUTPUT_COLUMNS[2:])
        return OUTPUT_COLUMNS

    def health(self, drift: np.ndarray | None, *, n_scored: int, flagged: int,
               lanes: Mapping[str, int]) -> dict:
        """The ``health`` section of a batch's summary (:func:`detector.health.batch_health`)
        from its summed drift counts, flagged count and lane counts before any capacity."""
        ref = getattr(self, "health_reference_", None)
        n_train = self.metadata_.get("training", {}).get("rows") if ref is None else None
        return batch_health(ref, drift if ref is not None else None, n_scored=n_scored,
                            flagged=flagged, lanes=lanes, budget=float(self.budget),
                            lane_shares=parse_lanes(self.lanes, self.budget),
                            random_share=float(self.random_share), n_train=n_train,
                            meanings=FEATURE_MEANING)

    def manual_rows(self, rejects: pd.DataFrame) -> pd.DataFrame:
        """Rejected rows as scored rows of lane ``manual``: no score, not flagged, the
        reject reason as their reason; indexed by input position (``row_number - 1``)."""
        n = len(rejects)
        cols = self.output_columns
        nan = np.full(n, np.nan)
        out = {"declaration_id": rejects["declaration_id"].astype("str").to_numpy(dtype=object)}
        for c in cols[1:cols.index("rank")]:
            out[c] = nan
        out.update({
            "flagged": np.zeros(n, dtype=bool),
            "lane": pd.array(np.full(n, MANUAL_LANE, dtype=object), dtype="str"),
            "random_selected": np.zeros(n, dtype=bool),
            "reasons": [[f"REJECTED ({c}): {why}"] for c, why in
                        zip(rejects["column"], rejects["reason"], strict=True)],
        })
        return pd.DataFrame(out, index=pd.Index(
            rejects["row_number"].to_numpy(dtype=np.int64) - 1))

    def score(self, df: pd.DataFrame, columns: ColumnMapping | Mapping | None = None,
              reasons: str = "officer", explain_top: int = DEFAULT_EXPLAIN_TOP,
              capacity: int | str | None = None) -> pd.DataFrame:
        """Score a frame: one output row per input row, in input order.

        Rows that fail validation are not dropped: they come out with ``status``
        "rejected", no score, lane "manual" and the reason in ``reasons``.
        ``reasons`` / ``explain_top``: see :meth:`score_valid` (the top is the frame's).
        ``capacity`` (rows, or "2%" of the scored rows) caps the first lane to its
        best-ranked rows; the rest go to the next lane (``out.attrs["capacity"]`` says how
        many).
        """
        self._check_fitted()
        check_reasons_mode(reasons, explain_top)
        if columns is not None:
            df = apply_column_mapping(df, columns)
        df = df.reset_index(drop=True)
        res = validate(df)
        limit = parse_capacity(capacity, len(res.valid))
        drift: list[np.ndarray] = []
        scored = self.score_valid(res.valid, reasons=reasons, explain_top=explain_top,
                                  drift=drift)
        lane_counts = scored["lane"].value_counts()
        health = self.health(drift[0] if drift else None, n_scored=len(scored),
                             flagged=int(scored["flagged"].sum()),
                             lanes={str(k): int(v) for k, v in lane_counts.items()})
        out = pd.DataFrame(index=df.index)
        ids = df["declaration_id"] if "declaration_id" in df.columns else pd.Series(
            [None] * len(df), index=df.index)
        out["declaration_id"] = pd.Series(ids, dtype="str")
        for c in self.output_columns[1:self.output_columns.index("flagged")]:
            if c == "rank":
                continue
            out[c] = np.nan
            out.loc[scored.index, c] = scored[c].to_numpy()
        s = out[self.rank_column].to_numpy()
        r = rank(s)
        out["rank"] = pd.arrays.IntegerArray(r, np.isnan(s))  # manual rows: no rank
        out["flagged"] = False
        out.loc[scored.index, "flagged"] = scored["flagged"].to_numpy()
        out["lane"] = MANUAL_LANE
        out.loc[scored.index, "lane"] = scored["lane"].to_numpy()
        out["random_selected"] = False
        out.loc[scored.index, "random_selected"] = scored["random_selected"].to_numpy()
        if limit is not None:
            names = list(pd.unique(out["lane"].to_numpy(dtype=object)))
            codes = np.array([names.index(x) for x in out["lane"].to_numpy(dtype=object)],
                             dtype=np.intp)
            order = list(self.lane_thresholds_)
            codes, moved, after = cap_first_lane(codes, names, r, order, limit,
                                                 out["random_selected"].to_numpy(dtype=bool))
            out["lane"] = pd.array(np.asarray(names, dtype=object)[codes], dtype="str")
            out.attrs["capacity"] = {"lane": order[0] if order else "red", "limit": limit,
                                     "moved": moved, "moved_to": after}
        reasons = [[] for _ in range(len(df))]
        for i, rs in zip(scored.index, scored["reasons"], strict=True):
            reasons[i] = rs
        rej = res.rejects
        for rn, col, why in zip(rej["row_number"], rej["column"], rej["reason"], strict=True):
            reasons[int(rn) - 1] = [f"REJECTED ({col}): {why}"]
        out["reasons"] = reasons
        status = np.full(len(df), "scored", dtype=object)
        status[rej["row_number"].to_numpy(dtype=np.int64) - 1] = "rejected"
        out["status"] = status
        out.attrs["health"] = health
        return out

    def score_one(self, record: Mapping[str, Any], context: dict | None = None,
                  reasons: str = "officer") -> dict:
        """Score one declaration given as a dict; the low-latency path (no pandas).

        Returns ``{"declaration_id", "anomaly_score", "flagged", "lane",
        "random_selected", "reasons", "status"}``; a record that breaks the contract
        comes back with status "rejected" and the reasons, never an exception.
        ``reasons``: "officer" gives sentences outside the green lane and on a random
        selection (one record has no ranking to take a top from), codes otherwise;
        "all" sentences, "codes" codes.
        """
        self._check_fitted()
        check_reasons_mode(reasons)
        from .validate import check_record

        clean, problems = check_record(record)
        did = clean.get("declaration_id")
        if problems:
            return {"declaration_id": did, "anomaly_score": None, "flagged": False,
                    "lane": MANUAL_LANE, "random_selected": False, "status": "rejected",
                    "reasons": [f"REJECTED ({c}): {why}" for c, why in problems]}
        missing = [c for c in (*self.extra_categorical, *self.extra_numeric) if c not in record]
        if missing:
            return {"declaration_id": did, "anomaly_score": None, "flagged": False,
                    "lane": MANUAL_LANE, "random_selected": False, "status": "rejected",
                    "reasons": [f"REJECTED ({c}): column {c!r} is required by this model "
                                "(an extra column at training)" for c in missing]}
        clean.update({c: record[c] for c in (*self.extra_categorical, *self.extra_numeric)})
        X, det = self.features_.transform_record(clean, context)
        score = self.forest_.score_one(X[0])
        scores = np.array([score])
        result: dict[str, Any] = {"declaration_id": did, "anomaly_score": score}
        ranking = score
        one = None
        if getattr(self, "outcome_", None) is not None:
            # The outcome model works on frames; a labelled model may take pandas' cost.
            one = pd.DataFrame([clean])
            o = self.outcome_.predict(one, X, scores)
            result["fraud_probability"] = float(o["fraud_probability"][0])
            result["risk_score"] = ranking = float(o["risk_score"][0])
        v = self._decide(np.array([ranking]), np.array([did], dtype=object))
        lane, picked = v.names[int(v.codes[0])], bool(v.picked[0])
        full, _ = explained_rows(reasons, v.codes == 0, v.picked, np.array([ranking]),
                                 explain_top=0)
        texts = self._reasons(one, X, det, scores, full)[0]
        if picked:
            texts.append(random_note(self.random_share) if full[0] else RANDOM_CODE)
        return {**result, "flagged": bool(v.flagged[0]), "lane": lane,
                "random_selected": picked, "reasons": texts, "status": "scored"}

    def explain(self, data: pd.DataFrame | Mapping[str, Any], declaration_id: str | None = None,
                context=None) -> dict:
        """One declaration's score, lane and every feature against its reference.

        ``data`` is a dict (one declaration) or a frame with ``declaration_id``; each
        feature is returned with its value, the typical (training median) value, and
        how much the score would fall if that feature alone were typical.
        """
        self._check_fitted()
        if isinstance(data, Mapping):
            record = dict(data)
        else:
            if declaration_id is None:
                raise ValueError("explain on a frame needs declaration_id")
            ids = data["declaration_id"].astype(str).str.strip()
            hit = data[ids == str(declaration_id).strip()]
            if hit.empty:
                raise KeyError(f"declaration_id {declaration_id!r} not found in the input "
                               f"({len(data)} rows)")
            if context is None:
                context = DeclarationFeatures.burst_context(validate(data).valid)
            record = hit.iloc[0].to_dict()
        if isinstance(context, pd.Series):
            context = {k: int(v) for k, v in context.items()}
        # The verdict and reasons are score_one's (sentences for every reason), so explain
        # never tells another lane or another random selection than scoring does.
        verdict = self.score_one(record, context, reasons="all")
        if verdict["status"] != "scored":
            return verdict
        from .validate import check_record

        clean, _ = check_record(record)
        clean.update({c: record[c] for c in (*self.extra_categorical, *self.extra_numeric)})
        X, _ = self.features_.transform_record(clean, context)
        score = verdict["anomaly_score"]
        names = self.features_.feature_names_
        k = len(names)
        idx, drops = counterfactual_reasons(self.features_, self.forest_, X, np.array([score]),
                                            candidates=k, top=k, require_unusual=False)
        drop_by = {names[j]: float(d) for j, d in zip(idx[0], drops[0], strict=True) if j >= 0}
        # The table shows every feature (the forest's part, also for a labelled model,
        # whose lane follows risk_score).
        rows = [{"feature": name, "meaning": FEATURE_MEANING[name], "value": float(X[0, j]),
                 "typical": float(self.features_.neutral_[j]),
                 "spread": float(self.features_.spread_[j]),
                 "score_drop_if_typical": drop_by.get(name, 0.0)}
                for j, name in enumerate(names)]
        rows.sort(key=lambda r: -r["score_drop_if_typical"])
        return {**verdict, "threshold": self.threshold_, "ranked_by": self.rank_column,
                "features": rows}

    # ---- persistence --------------------------------------------------------------------
    def to_state(self) -> dict:
        self._check_fitted()
        # lanes and the extras have their own entries (the parsed shares; lists).
        p = self.get_params()
        return {"params": {k: p[k] for k in p
                           if k not in ("lanes", "extra_categorical", "extra_numeric")},
                "extras": {"categorical": list(self.extra_categorical),
                           "numeric": list(self.extra_numeric)},
                "lanes": dict(self.lane_thresholds_),
                "lane_shares": parse_lanes(self.lanes, self.budget),
                "threshold": float(self.threshold_),
                "features": self.features_.to_state(),
                "forest": self.forest_.to_state(),
                "train_scores_sample": self._train_scores_sample,
                "health": getattr(self, "health_reference_", None),
                "outcome": (self.outcome_.to_state()
                            if getattr(self, "outcome_", None) is not None else None)}

    @classmethod
    def from_state(cls, state: dict, metadata: dict | None = None) -> DeclarationModel:
        extras = state.get("extras", {})
        self = cls(**state["params"], lanes=dict(state["lane_shares"]),
                   extra_categorical=tuple(extras.get("categorical", ())),
                   extra_numeric=tuple(extras.get("numeric", ())))
        self.lane_thresholds_ = {str(k): float(v) for k, v in state["lanes"].items()}
        self.threshold_ = float(state["threshold"])
        self.features_ = DeclarationFeatures.from_state(state["features"])
        self.forest_ = PackedForest.from_state(state["forest"])
        self._train_scores_sample = np.asarray(state["train_scores_sample"])
        self.metadata_ = dict(metadata or {})
        if state.get("health") is not None:  # older files have none: no drift section
            self.health_reference_ = _checked_reference(state["health"],
                                                        self.features_.feature_names_)
        if state.get("outcome"):
            from .supervised import OutcomeModel

            self.outcome_ = OutcomeModel.from_state(state["outcome"])
            if self.outcome_.n_x_features_ != len(self.features_.feature_names_):
                raise SchemaError("model file is inconsistent: the outcome model expects "
                                  f"{self.outcome_.n_x_features_} features, the feature "
                                  f"builder makes {len(self.features_.feature_names_)}")
        if self.forest_.n_features_in_ != len(self.features_.feature_names_):
            raise SchemaError(f"model file is inconsistent: forest expects "
                              f"{self.forest_.n_features_in_} features, feature builder makes "
                              f"{len(self.features_.feature_names_)}")
        return self

    def save(self, path) -> dict:
        """Write the model artifact atomically; returns the stamped metadata."""
        from .artifact import save_artifact

        meta = save_artifact(path, self.to_state(), self.metadata_)
        self.metadata_ = meta
        return meta

    def __repr__(self) -> str:
        fitted = hasattr(self, "forest_")
        return (f"DeclarationModel(n_estimators={self.n_estimators}, budget={self.budget}, "
                f"seed={self.seed}{', fitted' if fitted else ''})")





def _checked_reference(ref: Mapping, names: list[str]) -> dict:
    """Drift references from a model file, checked against the model's features."""
    edges, counts = np.asarray(ref["edges"], dtype=np.float64), np.asarray(ref["counts"])
    if list(ref["features"]) != list(names) or edges.shape[0] != len(names) or \
            counts.shape != (len(names), edges.shape[1] + 2):
        raise SchemaError(f"model file is inconsistent: drift references for "
                          f"{len(ref['features'])} features with counts of shape "
                          f"{counts.shape}, the feature builder makes {len(names)}")
    return {"features": list(names), "edges": edges, "counts": counts.astype(np.int64),
            "rows": int(ref["rows"])}


def train(df: pd.DataFrame, *, columns: ColumnMapping | Mapping | None = None,
          budget: float = 0.01, lanes: Mapping[str, float] | str | None = None,
          random_share: float = 0.0, trees: int = 200, max_samples: int | str = 256,
          seed: int = 0, min_rows: int = 30, labels: str | None = None,
          revenue: str | None = None) -> DeclarationModel:
    """Validate ``df`` (after an optional column mapping) and fit a DeclarationModel.

    ``labels`` names a 0/1 inspection-outcome column to also learn from outcomes.
    """
    mapping = ColumnMapping.from_obj(columns)
    if columns is not None:
        df = apply_column_mapping(df, mapping)
    model = build_model(mapping, trees=trees, max_samples=max_samples, budget=budget,
                        lanes=lanes, random_share=random_share, seed=seed, min_rows=min_rows)
    return model.fit(df, labels=labels, revenue=revenue)


def build_model(mapping: ColumnMapping | Mapping | None = None, *, trees: int = 200,
                max_samples: int | str = 256, budget: float = 0.01,
                lanes: Mapping[str, float] | str | None = None, random_share: float = 0.0,
                seed: int = 0, min_rows: int = 30) -> DeclarationModel:
    """An unfitted model from the training options as users name them (``trees`` is
    ``n_estimators``) and the column mapping's extra columns: the one place they meet,
    for :func:`train`, ``jobs.train_file``, ``distributed.train_dask`` and the backtest."""
    mapping = ColumnMapping.from_obj(mapping)
    return DeclarationModel(n_estimators=trees, max_samples=max_samples, budget=budget,
                            lanes=lanes, random_share=random_share, seed=seed,
                            min_rows=min_rows,
                            extra_categorical=tuple(mapping.extra_categorical),
                            extra_numeric=tuple(mapping.extra_numeric))






def load_model(path) -> DeclarationModel:
    """Load a model artifact safely (see :mod:`detector.artifact`): data only, checked.

    Imports only the scoring stack: not scikit-learn, not the file readers.
    """
    from .artifact import load_artifact

    meta, payload = load_artifact(path)
    return DeclarationModel.from_state(payload, meta)
