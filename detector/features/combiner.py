"""Declaration features: reference tables learned at fit, applied unchanged at transform.

Every feature is a number where the training population's typical value means "nothing
unusual": robust z-scores of physical and value ratios against the commodity's own
reference, surprisal (-log probability) of categorical pairs, shares of declared
composition or description that do not belong to the heading, and trader history.

References back off along the HS hierarchy (full code -> 6 -> 4 -> 2 digits -> all):
a code with fewer than ``min_rows`` training rows borrows its parent's reference, so a
rare code is still compared with something sensible. Categories never seen in training
are information (high surprisal, zero history), never an error. Labels are never read.

All work is vectorized: categorical values are turned into integer codes once (on the
unique values), pairs become int64 keys, and lookups are ``searchsorted`` on sorted
key arrays. The fitted state is plain numpy arrays (``to_state``) so that the model
artifact stays a data-only file.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import NotFittedError, SchemaError
from . import bursts, composition, ratios, summary, surprisal, traders
from .lookup import (
    LEVEL_LEN,
    LEVELS,
    TableReader,
    encode_against,
    factorize,
    group_stats,
    vocab_of,
)
from .rows import CATEGORICALS, hs_digits, prepare_rows
from .spec import EXTRA_RARITY, EXTRA_Z, FeatureSpec

__all__ = ["DeclarationFeatures", "FEATURES", "FAMILIES", "FeatureSpec", "DERIVED_FROM",
           "encode_against", "factorize", "EXTRA_RARITY", "EXTRA_Z", "feature_spec",
           "coverage_summary", "sentence_of", "THIN_COVERAGE_SHARE"]

# The families, in the order they fit their tables and list their grouped references (a
# group's position is its id in partial_tables). Summaries stay last: they are derived
# from the others' columns.
FAMILIES = (ratios.FAMILY, surprisal.FAMILY, traders.FAMILY, composition.FAMILY,
            bursts.FAMILY, summary.FAMILY)
# The matrix's column order, fixed when the families were one module: a model's forest
# was grown on these columns in this order, so retraining on the same data gives the same
# model only if it stays. A feature added to a family (not named here) comes after these,
# in family order, before the summaries.
_COLUMN_ORDER = (
    "mass_per_unit_z", "mass_per_package_z", "tare_per_package_z", "measured_mass_z",
    "value_per_kg_z", "value_per_unit_z", "composition_foreign", "rare_earth_excess",
    "composition_surprise", "description_foreign", "origin_rarity", "origin_dispatch_rarity",
    "origin_differs", "exporter_origin_rarity", "exporter_commodity_rarity", "mode_rarity",
    "package_rarity", "unit_rarity", "exporter_history", "importer_history", "parcel_burst",
    "commodity_novelty", "value_vs_history_z")
_BASE_FEATURES = tuple(sorted(
    (s for fam in FAMILIES if fam is not summary.FAMILY for s in fam.specs),
    key=lambda s: _COLUMN_ORDER.index(s.name) if s.name in _COLUMN_ORDER
    else len(_COLUMN_ORDER)))  # sorted() is stable: new features keep family order
FEATURES: tuple[FeatureSpec, ...] = (*_BASE_FEATURES, *summary.SPECS)
DERIVED_FROM = summary.DERIVED_FROM
_SPEC = {f.name: f for f in FEATURES}
# Tables that are sums over rows (counts): a dataset's parts, summed, give the whole's.
_ADDITIVE = re.compile(
    r"^(cnt\|.*|comp\|[^|]+\|(decl|item)|desc\|[^|]+\|(has|tok)|burst\|day)\|(key|n)$")
# The fields of a keyed group table, aligned with its keys.
_GROUP_FIELDS = ("key", "n", "med", "scale", "mean")
_REQUIRED = ("hs_code", "origin_country", "net_mass_kg", "customs_value")
# Thin coverage: more than this share of the HS codes seen in training have fewer than
# min_rows rows, so most codes are judged against a broader code's reference.
THIN_COVERAGE_SHARE = 0.5


def _additive(name: str) -> bool:
    return _ADDITIVE.match(name) is not None


def _known(name: str) -> bool:
    return name in _SPEC or name.startswith((EXTRA_RARITY, EXTRA_Z))


def feature_spec(name: str) -> FeatureSpec:
    """The spec of a feature, including the per-column extra features."""
    if name in _SPEC:
        return _SPEC[name]
    if name.startswith(EXTRA_RARITY):
        col = name[len(EXTRA_RARITY):]
        return FeatureSpec(name, "extra", (col,), "surprisal",
                           f"how rare this '{col}' value is for the commodity")
    if name.startswith(EXTRA_Z):
        col = name[len(EXTRA_Z):]
        return FeatureSpec(name, "extra", (col,), "z",
                           f"'{col}' against the commodity's reference")
    raise KeyError(name)


# Which family words each feature's reason (agency columns: the family that computes them).
_SENTENCE_OF = {s.name: fam.sentence for fam in FAMILIES for s in fam.specs}


def sentence_of(name: str):
    """The ``sentence`` step of the family that owns feature ``name`` (see
    :class:`~detector.features.spec.Family`), None for a name no family owns."""
    if name in _SENTENCE_OF:
        return _SENTENCE_OF[name]
    if name.startswith(EXTRA_RARITY):
        return surprisal.FAMILY.sentence
    if name.startswith(EXTRA_Z):
        return ratios.FAMILY.sentence
    return None


def _counts_of(table_keys: np.ndarray, table_n: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(table_keys) == 0:
        return np.zeros(len(keys), np.int64)
    pos = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return np.where((keys >= 0) & (table_keys[pos] == keys), table_n[pos], 0)


def coverage_summary(tables: dict, min_rows: int) -> dict:
    """How much of the training data has HS statistics of its own.

    Per HS code seen in training, the finest level (full code, 6, 4, 2 digits, all goods)
    whose row count reaches ``min_rows``: the share of training rows at each level, the
    number of codes below ``min_rows``, and a warning when most codes are (their
    references are then mostly a broader code's, and rare-code fraud is judged loosely).
    """
    keys, n = tables["cnt|hs|key"], tables["cnt|hs|n"].astype(np.int64)
    codes = tables["vocab_hs"][keys] if len(keys) else np.array([], dtype=str)
    level = np.full(len(keys), len(LEVELS), dtype=np.int64)
    for i in range(len(LEVELS) - 1, -1, -1):
        lvl = LEVELS[i]
        own = keys if lvl == "hs" else encode_against(
            tables[f"vocab_{lvl}"], np.asarray([c[:LEVEL_LEN[lvl]] for c in codes.tolist()],
                                               dtype=str))
        cnt = _counts_of(tables[f"cnt|{lvl}|key"], tables[f"cnt|{lvl}|n"], own)
        level = np.where(cnt >= min_rows, i, level)
    rows = int(n.sum())
    by_level = np.bincount(level, weights=n, minlength=len(LEVELS) + 1)
    shares = {name: round(float(v) / rows, 4) if rows else 0.0
              for name, v in zip((*LEVELS, "all"), by_level, strict=True)}
    below = int((n < min_rows).sum())
    share_below = below / len(n) if len(n) else 0.0
    warning = None
    if share_below > THIN_COVERAGE_SHARE:
        warning = (f"thin coverage: {below} of {len(n)} HS codes ({share_below:.0%}) have fewer "
                   f"than min_rows={min_rows} training rows; {1 - shares['hs']:.0%} of the "
                   "training rows are compared with a broader code's statistics (more rows "
                   "per code, or a lower min_rows, gives codes statistics of their own)")
    return {"min_rows": int(min_rows), "hs_codes": int(len(n)), "hs_codes_below_min_rows": below,
            "share_of_codes_below_min_rows": round(share_below, 4),
            "rows_falling_back": round(1.0 - shares["hs"], 4) if rows else 0.0,
            "rows_by_reference_level": shares, "warning": warning}


class DeclarationFeatures(TableReader):
    """Learns commodity, route and trader references; turns declarations into features.

    A combiner in the spirit of scikit-learn's FeatureUnion: every family in
    :data:`FAMILIES` fits its own tables and puts its own columns; this class prepares the
    rows once, runs the families and lays their columns out as one matrix.

    Parameters
    ----------
    min_rows : int
        A reference (a code's median, a category's frequency) is used only when it was
        learned from at least this many rows; otherwise the next HS level up is used.
    foreign_share : float
        A composition component or description word used by fewer than this share of
        the heading's declarations counts as foreign to the heading.
    """

    def __init__(self, min_rows: int = 30, foreign_share: float = 0.01,
                 extra_categorical: tuple[str, ...] = (), extra_numeric: tuple[str, ...] = ()):
        self.min_rows = min_rows
        self.foreign_share = foreign_share
        self.extra_categorical = extra_categorical
        self.extra_numeric = extra_numeric

    # ---- public API --------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, *, whole: dict | None = None) -> DeclarationFeatures:
        """Learn the reference tables from ``df``.

        ``whole`` (``{"vocabs", "counts", "stats", "rows", "context"}`` from
        :meth:`vocabularies`, :meth:`partial_tables`, :meth:`merge_counts`,
        :meth:`value_stats`, :meth:`merge_value_stats` and :meth:`merge_contexts` of
        :meth:`burst_context` over a dataset too large for memory) gives every reference
        table, the row count and the parcel-burst counts of the whole dataset, ``df``
        being a sample of it: only the typical feature values then come from the sample.
        """
        self._fit(df, whole)
        return self

    def fit_transform(self, df: pd.DataFrame, *, whole: dict | None = None) -> np.ndarray:
        """Fit, then transform the training rows with leave-one-out history counts.

        A training row always finds itself in the frequency tables; without removing
        it, a trader seen once in training would look familiar while the same kind of
        trader at score time looks new, and the forest would learn a wrong picture of
        novelty.
        """
        self._fit(df, whole)
        return self._X_train_

    def transform(self, df: pd.DataFrame, context=None) -> np.ndarray:
        """Feature matrix (rows x ``feature_names_``), float64, no NaN."""
        return self.transform_details(df, context)[0]

    def transform_details(self, df: pd.DataFrame, context=None):
        """Feature matrix and, per row, the references used (for reasons)."""
        self._check_fitted()
        return self._transform(prepare_rows(self, df), context, loo=False)

    def transform_record(self, record: dict, context: dict | None = None):
        """One declaration given as a dict, without pandas (the latency path)."""
        self._check_fitted()
        return self._transform(prepare_rows(self, record, single=True), context, loo=False)

    def refresh_derived(self, X: np.ndarray) -> np.ndarray:
        """Recompute summary columns from the base columns of X, in place.

        Counterfactual reasons change one base feature at a time; the summary must follow.
        """
        return summary.refresh_derived(self.feature_names_, X)

    def get_feature_names_out(self) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.feature_names_, dtype=object)

    @staticmethod
    def burst_context(df: pd.DataFrame) -> pd.Series:
        """Counts of post/courier items per (exporter, day) in a batch.

        Scoring a file in chunks must give the same features as scoring it whole, so
        the CLI computes this over the whole input first (cheap: three columns) and
        passes it to every chunk; contexts of several chunks add up with ``add``.
        """
        return bursts.burst_context(df)

    @staticmethod
    def merge_contexts(parts: list[pd.Series]) -> pd.Series:
        """The burst context of a whole made of parts: counts per (exporter, day) added."""
        return bursts.merge_contexts(parts)

    # ---- state (plain data for the artifact) ---------------------------------------------
    def to_state(self) -> dict:
        self._check_fitted()
        return {"params": {"min_rows": int(self.min_rows),
                           "foreign_share": float(self.foreign_share),
                           "extra_categorical": list(self.extra_categorical),
                           "extra_numeric": list(self.extra_numeric)},
                "feature_names": list(self.feature_names_),
                "disabled": {k: list(v) for k, v in self.disabled_.items()},
                "input_columns": list(self.input_columns_),
                "neutral": self.neutral_, "spread": self.spread_, "n_rows": int(self.n_rows_),
                "tables": dict(self.tables_)}

    @classmethod
    def from_state(cls, state: dict) -> DeclarationFeatures:
        params = dict(state["params"])
        params["extra_categorical"] = tuple(params.get("extra_categorical", ()))
        params["extra_numeric"] = tuple(params.get("extra_numeric", ()))
        self = cls(**params)
        self.feature_names_ = list(state["feature_names"])
        unknown = [f for f in self.feature_names_ if not _known(f)]
        if unknown:
            raise SchemaError(f"model uses features this version does not know: {unknown}")
        self.disabled_ = {k: list(v) for k, v in state["disabled"].items()}
        self.input_columns_ = list(state["input_columns"])
        self.neutral_ = np.asarray(state["neutral"], dtype=float)
        self.spread_ = np.asarray(state["spread"], dtype=float)
        self.n_rows_ = int(state["n_rows"])
        self.tables_ = dict(state["tables"])
        self.coverage_ = coverage_summary(self.tables_, int(self.min_rows))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tables_"):
            raise NotFittedError("DeclarationFeatures is not fitted; call fit(df) first")


    # ---- whole-dataset statistics, part by part ----------------------------------------
    def vocabularies(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """The sorted distinct values (codes, countries, traders, components, words) of a
        part of a dataset; the union over parts gives the whole dataset's."""
        v: dict[str, np.ndarray] = {}
        hs_uniq = hs_digits(factorize(df["hs_code"].to_numpy())[1])
        v["vocab_hs"] = np.sort(np.unique(hs_uniq))
        for lvl, n in LEVEL_LEN.items():
            v[f"vocab_{lvl}"] = np.sort(np.unique([h[:n] for h in hs_uniq.tolist()])).astype(str)
        for c in CATEGORICALS:
            col = df[c].to_numpy() if c in df.columns else np.full(len(df), None, dtype=object)
            if c in ("transport_mode", "unit"):
                col = pd.Series(col, dtype="str").str.lower().to_numpy(dtype=object,
                                                                        na_value=None)
            v[f"vocab_{c}"] = vocab_of(col)
        for c in self.extra_categorical:
            v[f"vocab_x:{c}"] = vocab_of(df[c])
        for fam in FAMILIES:
            v.update(fam.vocabularies(self, df))
        return v

    @staticmethod
    def merge_vocabularies(parts: list[dict]) -> dict[str, np.ndarray]:
        return {k: np.sort(np.unique(np.concatenate([p[k] for p in parts]))).astype(str)
                for k in parts[0]}

    def partial_tables(self, df: pd.DataFrame, vocabs: dict) -> tuple[dict, pd.DataFrame]:
        """A part of a dataset's share of the reference tables, on the whole dataset's
        vocabularies.

        Returns its additive tables (counts: summed over parts by :meth:`merge_counts`
        they equal the whole dataset's) and its grouped values, one row per (group, key,
        value): the inputs of the medians, MADs and means. Shuffled by group and key so
        that every (group, key) lies whole in one partition, :meth:`value_stats` of each
        partition merged by :meth:`merge_value_stats` gives those statistics for the whole
        dataset exactly, as a local fit on all rows would.
        """
        t, r = self._build_tables(df, vocabs)
        counts = {k: v for k, v in t.items() if _additive(k)}
        parts = list(self._grouped_values(r))
        values = pd.DataFrame({
            "group": np.concatenate([np.full(len(k), i, np.int32)
                                     for i, (_, k, _) in enumerate(parts)]),
            "key": np.concatenate([k for _, k, _ in parts]).astype(np.int64),
            "value": np.concatenate([x for _, _, x in parts]).astype(np.float64)})
        return counts, values

    def value_stats(self, values: pd.DataFrame) -> dict[str, np.ndarray]:
        """The statistics of the groups in ``values`` (rows of :meth:`partial_tables`;
        each (group, key) must be whole here)."""
        specs = self._value_groups()
        out: dict[str, np.ndarray] = {}
        g = values["group"].to_numpy()
        k, x = values["key"].to_numpy(np.int64), values["value"].to_numpy(np.float64)
        for i in np.unique(g).tolist():
            m = g == i
            out.update(group_stats(specs[i], k[m], x[m]))
        return out

    @staticmethod
    def merge_value_stats(parts: list[dict]) -> dict[str, np.ndarray]:
        """Join the statistics of partitions holding disjoint (group, key) sets: keyed
        tables are concatenated and put in key order, as a local fit leaves them."""
        out: dict[str, np.ndarray] = {}
        for name in sorted(set().union(*parts)):
            arrs = [p[name] for p in parts if name in p]
            out[name] = np.concatenate(arrs) if len(arrs) > 1 else arrs[0]
        for name in [n for n in out if n.endswith("|key")]:
            base = name[: -len("|key")]
            order = np.argsort(out[name], kind="stable")
            for field in _GROUP_FIELDS:
                if f"{base}|{field}" in out:
                    out[f"{base}|{field}"] = out[f"{base}|{field}"][order]
        return out

    @staticmethod
    def merge_counts(parts: list[dict]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k in parts[0]:
            if not k.endswith("|key"):
                continue
            base = k[: -len("|key")]
            keys = np.concatenate([p[k] for p in parts]).astype(np.int64)
            n = np.concatenate([p[base + "|n"] for p in parts]).astype(np.int64)
            uniq, inv = np.unique(keys, return_inverse=True)
            out[k] = uniq.astype(np.int64)
            out[base + "|n"] = np.bincount(inv, n, minlength=len(uniq)).astype(np.int64)
        return out


    # ---- fit -------------------------------------------------------------------------------
    def _fit(self, df: pd.DataFrame, whole: dict | None = None) -> None:
        t, r = self._build_tables(df, None if whole is None else whole["vocabs"])
        if whole is None:
            for spec, keys, x in self._grouped_values(r):
                t.update(group_stats(spec, keys, x))
            n_rows = len(df)
        else:
            t.update(whole["counts"])
            t.update(whole["stats"])
            n_rows = int(whole["rows"])
        self._finish_tables(t, n_rows)
        self.n_rows_ = n_rows
        self.coverage_ = coverage_summary(t, int(self.min_rows))
        # A sample's parcel bursts are counted in the whole dataset, as scoring counts
        # them in the whole input: a sample alone would see a fraction of each burst.
        context = self.burst_context(df) if whole is None else whole["context"]
        X, _ = self._transform(r, context, loo=True)
        # A feature's neutral value (used for missing inputs and counterfactual reasons) is
        # its training median: what a typical declaration shows.
        self.neutral_ = np.median(X, axis=0)
        q = np.percentile(X, [25, 75], axis=0)
        self.spread_ = np.maximum(q[1] - q[0], 1e-6)
        self._X_train_ = X

    def _check_fit_input(self, df: pd.DataFrame) -> None:
        if not isinstance(self.min_rows, (int, np.integer)) or self.min_rows < 1:
            raise ValueError(f"min_rows must be a positive integer, got {self.min_rows!r}")
        if not 0.0 <= self.foreign_share < 1.0:
            raise ValueError(f"foreign_share must be in [0, 1), got {self.foreign_share!r}")
        missing = [c for c in _REQUIRED if c not in df.columns]
        if missing:
            raise SchemaError(f"cannot fit features: missing required column(s) {missing}")
        if len(df) == 0:
            raise SchemaError("cannot fit features on 0 rows")
        extras = [*self.extra_categorical, *self.extra_numeric]
        absent = [c for c in extras if c not in df.columns]
        if absent:
            raise SchemaError(f"extra column(s) {absent} named in the column mapping are not in "
                              f"the training data; columns: {list(df.columns)[:20]}")

    def _choose_features(self, df: pd.DataFrame) -> None:
        """The features the training data can support (their input columns are present)."""
        present = {c for c in df.columns if df[c].notna().any()}
        specs = [*_BASE_FEATURES,
                 *(feature_spec(EXTRA_RARITY + c) for c in self.extra_categorical),
                 *(feature_spec(EXTRA_Z + c) for c in self.extra_numeric),
                 *summary.SPECS]  # summaries stay last
        self.feature_names_ = [f.name for f in specs if all(n in present for n in f.needs)]
        self.disabled_ = {f.name: [n for n in f.needs if n not in present]
                          for f in specs if f.name not in self.feature_names_}
        self.input_columns_ = sorted(
            set(_REQUIRED) | {n for f in specs if f.name in self.feature_names_ for n in f.needs})

    def _build_tables(self, df: pd.DataFrame, vocabs: dict | None):
        self._check_fit_input(df)
        self._choose_features(df)
        t: dict[str, np.ndarray] = {}
        self.tables_ = t
        # Lookup indexes, single-row memos and the typical values all belong to the
        # tables they were built from: a refit starts from none of them.
        for stale in ("_index_cache", "_memo", "neutral_", "spread_", "_X_train_"):
            self.__dict__.pop(stale, None)
        t.update(self.vocabularies(df) if vocabs is None else vocabs)
        r = prepare_rows(self, df)
        # The training dates, for the note on a declaration dated far outside them.
        days = r["day"][r["day"] != -1]
        if len(days):
            t["day_range"] = np.array([days.min(), days.max()], dtype=np.int64)
        for fam in FAMILIES:
            fam.fit(self, r, t)
        return t, r

    # ---- non-additive references: statistics of grouped values ----------------------------
    def _value_groups(self) -> list[tuple[str, str, float, str, str | None]]:
        """Every non-additive reference as (table, kind, scale floor, values, grouping),
        in a fixed order: a group's position is its id in :meth:`partial_tables`.

        Each is a function of every key's multiset of values alone (a median, a MAD, a
        mean over sorted values), which is what lets a shuffled dataset give it exactly.
        """
        return [spec for fam in FAMILIES for spec in fam.value_groups(self)]

    def _grouped_values(self, r):
        """(group, keys, values) of every group over the rows ``r``: rows without a key or
        a finite value left out."""
        for fam in FAMILIES:
            cache: dict = {}  # a family's groups share their values (one per level)
            for spec in fam.value_groups(self):
                keys, x = fam.group_input(self, r, spec, cache)
                ok = (keys >= 0) & np.isfinite(x)
                yield spec, keys[ok], x[ok]

    def _finish_tables(self, t: dict, n_rows: int) -> None:
        """The references derived from group statistics and counts; a group no row fell
        in gets its empty statistics (what a local fit of such data gives)."""
        empty_k, empty_x = np.array([], np.int64), np.array([], np.float64)
        for spec in self._value_groups():
            name, kind = spec[0], spec[1]
            if (name if kind == "all" else f"{name}|key") not in t:
                t.update(group_stats(spec, empty_k, empty_x))
        for fam in FAMILIES:
            fam.finish(t, n_rows)

    # ---- transform -------------------------------------------------------------------------
    def _transform(self, r, context, loo: bool):
        cols: dict[str, np.ndarray] = {}
        det: dict = {}
        for fam in FAMILIES:
            fam.transform(self, r, context, loo, cols, det)
        X = self._matrix(cols, len(r["hs"]))
        hs_u, hs_uniq = r["hs_u"], r["hs_uniq"]
        det["hs_text"] = (hs_uniq.astype(object)[np.maximum(hs_u, 0)] if len(hs_uniq)
                          else np.full(len(hs_u), "", dtype=object))
        det["hs_text"] = np.where(hs_u >= 0, det["hs_text"], "")
        det["r"] = r
        det["day_range"] = self.tables_.get("day_range")
        return X, det

    def _matrix(self, cols: dict, n: int) -> np.ndarray:
        """The families' columns as one row-major matrix, missing values filled."""
        # Filled feature by feature into rows of the transpose (contiguous writes), then
        # laid out row-major once, as the forest reads it.
        Xt = np.empty((len(self.feature_names_), n), dtype=np.float64)
        neutral = getattr(self, "neutral_", None)
        for j, name in enumerate(self.feature_names_):
            Xt[j] = cols[name]
        # Missing inputs get the feature's typical value: absence alone is not evidence
        # (where it is, a dedicated feature says so). One masked copy over the whole
        # matrix: per-column fills cost more than the values for a single declaration.
        missing = ~np.isfinite(Xt)
        if missing.any():
            fill = np.nan if neutral is None else np.broadcast_to(
                np.asarray(neutral, dtype=np.float64)[:, None], Xt.shape)
            np.copyto(Xt, fill, where=missing)
        X = np.ascontiguousarray(Xt.T)
        del Xt
        if neutral is None:
            # During fit: neutral values are not known yet; use the column median.
            # Per column, over its finite values; a column with none (an input that is
            # all missing in a small training file) gets 0 without an all-NaN warning.
            med = np.array([np.median(col[np.isfinite(col)]) if np.isfinite(col).any()
                            else 0.0 for col in X.T])
            X = np.where(np.isfinite(X), X, med[None, :])
        self.refresh_derived(X)
        return X
