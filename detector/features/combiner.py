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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import NotFittedError, SchemaError

__all__ = ["DeclarationFeatures", "FEATURES", "FeatureSpec", "DERIVED_FROM", "encode_against",
           "factorize", "EXTRA_RARITY", "EXTRA_Z", "feature_spec"]

LEVELS = ("hs", "hs6", "hs4", "hs2")
_LEVEL_LEN = {"hs6": 6, "hs4": 4, "hs2": 2}
RARE_EARTHS = ("La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm",
               "Yb", "Lu", "Sc", "Y")
# A component counts as rare earth when its formula starts with the element symbol and the
# symbol is not the prefix of a longer one (Y vs Yb, Ce vs ... no clash; Sc vs S is fine).
_RE_PATTERN = re.compile(r"^(?:" + "|".join(sorted(RARE_EARTHS, key=len, reverse=True))
                         + r")(?![a-z])")
_TOKEN = re.compile(r"[a-z]{3,}")
_SMALL_MODES = ("post", "courier")
_MAD_TO_SD = 1.4826
# Log-ratios such as kg per kg are exactly constant for some codes; a floor on the scale
# keeps a 2% difference from becoming an infinite z-score.
_MIN_LOG_SCALE = 0.02
_Z_CLIP = 50.0


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    family: str
    needs: tuple[str, ...]   # optional input columns this feature cannot do without
    kind: str                # "z" (signed robust z), "surprisal", "share", "history", "flag"
    meaning: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("mass_per_unit_z", "weight", ("quantity", "unit"), "z",
                "net mass per supplementary unit against the commodity's reference"),
    FeatureSpec("mass_per_package_z", "weight", ("packages", "package_type"), "z",
                "net mass per package against the reference for this commodity and package"),
    FeatureSpec("tare_per_package_z", "weight", ("gross_mass_kg", "packages"), "z",
                "packaging mass (gross - net) per package against the reference for this "
                "commodity and package type"),
    FeatureSpec("measured_mass_z", "weight", ("measured_mass_kg",), "z",
                "mass weighed at the border against the declared mass"),
    FeatureSpec("value_per_kg_z", "value", (), "z",
                "customs value per kg against the commodity's reference"),
    FeatureSpec("value_per_unit_z", "value", ("quantity", "unit"), "z",
                "customs value per supplementary unit against the commodity's reference"),
    FeatureSpec("composition_foreign", "composition", ("composition",), "share",
                "share of the declared composition made of components foreign to the heading"),
    FeatureSpec("rare_earth_excess", "composition", ("composition",), "share",
                "rare-earth share of the declared composition beyond the heading's usual"),
    FeatureSpec("composition_surprise", "composition", ("composition",), "surprisal",
                "composition declared where not customary, or missing where customary"),
    FeatureSpec("description_foreign", "composition", ("description",), "share",
                "share of description words never used for the heading"),
    FeatureSpec("origin_rarity", "route", (), "surprisal",
                "how rare this origin is for the commodity"),
    FeatureSpec("origin_dispatch_rarity", "route", ("dispatch_country",), "surprisal",
                "how rare this dispatch country is for this origin"),
    FeatureSpec("origin_differs", "route", ("dispatch_country",), "flag",
                "origin differs from the country of dispatch"),
    FeatureSpec("exporter_origin_rarity", "route", ("exporter_id",), "surprisal",
                "how rare this origin is in the exporter's history"),
    FeatureSpec("exporter_commodity_rarity", "route", ("exporter_id",), "surprisal",
                "how rare this commodity (4-digit heading) is in the exporter's history"),
    FeatureSpec("mode_rarity", "route", ("transport_mode",), "surprisal",
                "how rare this transport mode is for the commodity"),
    FeatureSpec("package_rarity", "route", ("package_type",), "surprisal",
                "how rare this package type is for the commodity"),
    FeatureSpec("unit_rarity", "route", ("unit",), "surprisal",
                "how rare this supplementary unit is for the commodity"),
    FeatureSpec("exporter_history", "traders", ("exporter_id",), "history",
                "novelty of the exporter: 1 / (1 + its declarations seen in training)"),
    FeatureSpec("importer_history", "traders", ("importer_id",), "history",
                "novelty of the importer: 1 / (1 + its declarations seen in training)"),
    FeatureSpec("parcel_burst", "traders", ("exporter_id", "date", "transport_mode"), "z",
                "post/courier items from this sender that day against its usual daily count"),
    FeatureSpec("commodity_novelty", "route", (), "history",
                "novelty of the declared code: 1 / (1 + its declarations seen in training)"),
    FeatureSpec("value_vs_history_z", "traders", ("exporter_id",), "z",
                "value per kg against this exporter's own prices for this commodity"),
    FeatureSpec("strongest_deviation", "summary", (), "derived",
                "the largest of this declaration's mass and value deviations"),
    FeatureSpec("strongest_mass_deviation", "summary", (), "derived",
                "the largest of this declaration's mass deviations"),
    FeatureSpec("strongest_value_deviation", "summary", (), "derived",
                "the largest of this declaration's value deviations"),
)
# The forest cuts one feature at a time, so a declaration that is wildly off on a single
# ratio (a 90% undervaluation) is isolated less readily than one mildly off on several.
# Summary columns give such single strong deviations their own axes, one for mass and
# one for value, so that both kinds of lie are cut often.
DERIVED_FROM = {
    "strongest_mass_deviation": ("mass_per_unit_z", "mass_per_package_z", "tare_per_package_z",
                                 "measured_mass_z"),
    "strongest_value_deviation": ("value_per_kg_z", "value_per_unit_z", "value_vs_history_z"),
}
DERIVED_FROM["strongest_deviation"] = (DERIVED_FROM["strongest_mass_deviation"]
                                        + DERIVED_FROM["strongest_value_deviation"])
# Document lies (rare earths in a glaze's composition, foreign words) are zero for nearly
# every honest declaration, so a forest almost never finds a subsample where it can cut
# on them. Folded into the overall summary, on the same scale as the z-scores (a 5% share
# counts like z = 1, 50% like z = 10), they get an axis that honest trade does spread.
_SHARES_IN_SUMMARY = ("composition_foreign", "rare_earth_excess", "description_foreign")
_SHARE_TO_Z = 20.0
_HISTORY_MIN_ROWS = 5
# Tables that are sums over rows (counts): a dataset's parts, summed, give the whole's.
_ADDITIVE = re.compile(
    r"^(cnt\|.*|comp\|[^|]+\|(decl|item)|desc\|[^|]+\|(has|tok)|burst\|day)\|(key|n)$")
# The fields of a keyed group table, aligned with its keys.
_GROUP_FIELDS = ("key", "n", "med", "scale", "mean")
# (sender, day) pairs: days since 1970 stay below this up to the year 9999.
_DAY_SPAN = 1 << 22


def _additive(name: str) -> bool:
    return _ADDITIVE.match(name) is not None
# Agency numeric columns come in any unit (a tax rate of 0.05, a fee of 1,200): no
# relative floor fits them all, only one against division by zero.
_EXTRA_MIN_SCALE = 1e-6
_HISTORY_MIN_SCALE = 0.05
_SPEC = {f.name: f for f in FEATURES}
# Agency-specific columns named in the column mapping become features of their own:
# a categorical one its rarity for the commodity, a numeric one its robust deviation from
# the commodity's reference. Their names carry the column: "extra_rarity:Office ID".
EXTRA_RARITY, EXTRA_Z = "extra_rarity:", "extra_z:"


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


# --- small lookup structures (plain arrays, so that they serialise as data) -----------------

def _missing(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float) and v != v:
        return True
    return isinstance(v, str) and not v.strip()


def factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes into the unique non-missing values (-1 when missing), and those values.

    Work on unique values is what makes the string features fast: descriptions, codes
    and trader ids repeat. Values are compared stripped, and blanks are missing. A single
    declaration takes a pandas-free path, because a service scoring one row at a time
    cannot afford pandas' per-call overhead.
    """
    if not isinstance(values, pd.Series):
        if len(values) <= 1:
            if len(values) == 0 or _missing(values[0]):
                return np.full(len(values), -1, np.int64), np.array([], dtype=str)
            return np.zeros(1, np.int64), np.array([str(values[0]).strip()])
        values = pd.Series(values, dtype=object)
    s = values if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object \
        else values.astype("str")
    codes, uniq = s.factorize()
    codes = np.asarray(codes, dtype=np.int64)
    uniq = np.asarray(uniq, dtype=str)
    if len(uniq) == 0:
        return codes, uniq
    # Normalise on the unique values only: " CN" and "CN" are one value, "" is missing.
    clean = np.char.strip(uniq)
    if (clean != uniq).any() or (clean == "").any():
        merged, inv = np.unique(clean, return_inverse=True)
        remap = np.where(merged[inv] == "", -1, inv)
        keep = merged != ""
        renum = np.cumsum(keep) - 1
        remap = np.where(remap >= 0, renum[np.maximum(remap, 0)], -1)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        uniq = merged[keep]
    return codes, uniq


def _vocab(values: np.ndarray) -> np.ndarray:
    return np.sort(np.unique(factorize(values)[1]))


def encode_against(vocab: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted vocabulary; -1 when never seen."""
    if len(vocab) == 0 or len(uniq) == 0:
        return np.full(len(uniq), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(vocab, uniq), len(vocab) - 1)
    return np.where(vocab[pos] == uniq, pos, -1).astype(np.int64)


def _codes(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    codes, uniq = factorize(values)
    enc = encode_against(vocab, uniq)
    return np.where(codes >= 0, enc[np.maximum(codes, 0)] if len(enc) else -1, -1)


def _pair(a: np.ndarray, b: np.ndarray, nb: int) -> np.ndarray:
    """int64 key of a pair of codes; -1 when either side is unseen or missing."""
    return np.where((a >= 0) & (b >= 0), a * (nb + 1) + b, -1)


def _count_table(keys: np.ndarray, weights: np.ndarray | None = None):
    ok = keys >= 0
    if weights is None:
        uniq, counts = np.unique(keys[ok], return_counts=True)
        return uniq.astype(np.int64), counts.astype(np.int64)
    uniq, inv = np.unique(keys[ok], return_inverse=True)
    return uniq.astype(np.int64), np.bincount(inv, weights[ok]).astype(np.int64)


def _robust_stats(keys: np.ndarray, x: np.ndarray, floor: float = _MIN_LOG_SCALE):
    """Per key: row count, median and robust scale (MAD as a standard deviation)."""
    ok = (keys >= 0) & np.isfinite(x)
    if not ok.any():
        e = np.array([], dtype=np.int64)
        return e, e, np.array([]), np.array([])
    df = pd.DataFrame({"k": keys[ok], "x": x[ok]})
    g = df.groupby("k", sort=True)["x"]
    med = g.median()
    dev = (df["x"] - df["k"].map(med)).abs()
    mad = dev.groupby(df["k"], sort=True).median()
    scale = np.maximum(mad.to_numpy() * _MAD_TO_SD, floor)
    return (med.index.to_numpy(np.int64), g.size().to_numpy(np.int64), med.to_numpy(float),
            scale)


def _sorted_means(keys: np.ndarray, x: np.ndarray):
    """Per key: row count and mean, summed in value order so that the result depends on
    the multiset of values only, not on the order rows came in (partitions, shuffles)."""
    if len(x) == 0:
        e = np.array([], dtype=np.int64)
        return e, e, np.array([])
    order = np.lexsort((x, keys))
    k, v = keys[order], x[order]
    uniq, start, n = np.unique(k, return_index=True, return_counts=True)
    return uniq.astype(np.int64), n.astype(np.int64), np.add.reduceat(v, start) / n


def _group_stats(spec, keys: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """The tables of one non-additive group (see DeclarationFeatures._value_groups) from
    its rows' keys and finite values."""
    name, kind, floor = spec[0], spec[1], spec[2]
    if kind == "all":
        med = float(np.median(x)) if len(x) else 0.0
        mad = float(np.median(np.abs(x - med))) if len(x) else 0.0
        return {name: np.array([len(x), med, max(mad * _MAD_TO_SD, floor)])}
    if kind == "mean":
        k, n, mean = _sorted_means(keys, x)
        return {f"{name}|key": k, f"{name}|n": n, f"{name}|mean": mean}
    k, n, med, scale = _robust_stats(keys, x, floor=floor)
    if kind == "robust":
        return {f"{name}|key": k, f"{name}|n": n, f"{name}|med": med, f"{name}|scale": scale}
    # "hist": the deviations of rows whose key has enough history feed one pooled scale.
    pos = np.searchsorted(k, keys)
    enough = n[pos] >= _HISTORY_MIN_ROWS if len(k) else np.zeros(0, bool)
    return {f"{name}|key": k, f"{name}|n": n, f"{name}|med": med,
            f"{name}|dev": np.abs(x - med[pos])[enough] if len(k) else np.array([])}


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Valid but extreme values (5e-324 kg) overflow the ratio: that is a missing ratio.
    with np.errstate(all="ignore"):
        r = np.log(a / b)
    return np.where(np.isfinite(r), r, np.nan)


_COMPONENT = re.compile(r"([^:;]+):\s*([-+0-9.eE]+)\s*%?\s*(?:;|$)")


def _parse_composition(text: str) -> list[tuple[str, float]]:
    """'SiO2:68;Al2O3:20' -> [('SiO2', 68.0), ('Al2O3', 20.0)]; malformed parts dropped.

    >>> _parse_composition("SiO2:68; Al2O3: 20% ;junk;Nd2O3:x")
    [('SiO2', 68.0), ('Al2O3', 20.0)]
    """
    out = []
    for name, pct in _COMPONENT.findall(text):
        name = name.strip()
        try:
            v = float(pct)
        except ValueError:
            continue
        if name and 0 <= v < float("inf"):
            out.append((name, v))
    return out


def _explode(uniq: np.ndarray, split) -> tuple[np.ndarray, list]:
    """Apply ``split`` to each unique string: (owner index per item, items)."""
    owner: list[int] = []
    items: list = []
    for i, text in enumerate(uniq.tolist()):
        got = split(text)
        owner.extend([i] * len(got))
        items.extend(got)
    return np.asarray(owner, dtype=np.int64), items


# Declared compositions nearly always come as plain "SiO2:62.5;Al2O3:20": for those,
# splitting at ";" and ":" gives exactly what _parse_composition finds, and Arrow's string
# kernels do it for all of them at once (RE2 anchors: "$" is the very end of the text).
_PLAIN_COMPOSITION = (r"^[A-Za-z0-9]+:[0-9]+(?:\.[0-9]+)?"
                      r"(?:;[A-Za-z0-9]+:[0-9]+(?:\.[0-9]+)?)*$")


_ARROW_MIN_TEXTS = 64


def _composition_items(uniq: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(owner, name code, distinct names, percentage) of the unique composition texts'
    items: the same items, in the same order, as ``_explode(uniq, _parse_composition)``,
    each name given as ``names[code]``. A few dozen distinct component names make up the
    tens of thousands of items of a chunk: they become Python strings once each."""
    if len(uniq) < _ARROW_MIN_TEXTS:
        # Arrow's kernels cost ~0.4 ms to set up: a single record (score_one) or a few
        # texts are quicker through the parser, which gives the same items.
        owner, items = _explode(uniq, _parse_composition)
        codes, names = pd.factorize(np.asarray([c for c, _ in items], dtype=object))
        return (owner, codes.astype(np.int64), np.asarray(names, dtype=str),
                np.asarray([v for _, v in items], dtype=float))
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pa.array(uniq.tolist(), type=pa.string())
    plain = pc.match_substring_regex(texts, _PLAIN_COMPOSITION).to_numpy(zero_copy_only=False)
    fast = np.flatnonzero(plain)
    parts = pc.split_pattern(texts.take(pa.array(fast)), ";")
    pairs = pc.split_pattern(pc.list_flatten(parts), ":")
    first = pc.dictionary_encode(pc.list_element(pairs, 0))
    names: list[str] = first.dictionary.to_pylist()
    owner = [np.repeat(fast, pc.list_value_length(parts).to_numpy(zero_copy_only=False))]
    codes = [first.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    pct = [pc.cast(pc.list_element(pairs, 1), pa.float64()).to_numpy(zero_copy_only=False)]
    slow = np.flatnonzero(~plain)
    if len(slow):
        o, items = _explode(uniq[slow], _parse_composition)
        owner.append(slow[o])
        at = {name: i for i, name in enumerate(names)}
        codes.append(np.asarray([at.setdefault(c, len(at)) for c, _ in items], dtype=np.int64))
        names = list(at)
        pct.append(np.asarray([v for _, v in items], dtype=float))
    owner_, codes_, pct_ = np.concatenate(owner), np.concatenate(codes), np.concatenate(pct)
    order = np.argsort(owner_, kind="stable")  # items grouped by owner, in text order
    return owner_[order], codes_[order], np.asarray(names, dtype=str), pct_[order]


def _expand(owner: np.ndarray, n_uniq: int, row_u: np.ndarray):
    """Join rows to the items of their unique text, in numpy (no pandas merge).

    ``owner`` gives each item's unique-text index (items grouped by owner, ascending),
    ``row_u`` each row's unique-text index (-1 for none). Returns (row per pair, item
    index per pair): the rows x items expansion of a join on the text.
    """
    cnt = np.bincount(owner, minlength=n_uniq)
    start = np.concatenate(([0], np.cumsum(cnt)[:-1]))
    rows = np.flatnonzero(row_u >= 0)
    u = row_u[rows]
    k = cnt[u]
    rows_rep = np.repeat(rows, k)
    within = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    return rows_rep, np.repeat(start[u], k) + within


def _small_modes(r: dict) -> np.ndarray:
    """Rows sent by post or courier (modes as ``_rows`` made them: trimmed, lower case)."""
    mode = r.get("transport_mode|s")
    if mode is not None:  # a frame's column as read (Arrow strings): tested in C
        return mode.isin(_SMALL_MODES).to_numpy(dtype=bool)
    return np.isin(np.asarray(r["transport_mode_raw"], dtype=str), _SMALL_MODES)


def _tokens(text: str) -> list[str]:
    return sorted(set(_TOKEN.findall(text.lower())))


def _objects(values) -> np.ndarray:
    """A column as a numpy object array with None for missing (what reasons quote)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        # Text repeats (countries, traders): make one Python string per distinct value.
        codes, uniq = pd.factorize(values)
        return np.append(np.asarray(uniq, dtype=object), None)[codes]
    if isinstance(values, pd.Series):
        return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)
    return np.asarray(values, dtype=object)


def _days(values) -> np.ndarray:
    """Dates as int64 days since 1970 (-1 when missing or unparseable)."""
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    if np.issubdtype(getattr(values, "dtype", np.dtype(object)), np.datetime64):
        d = values.astype("datetime64[D]")
        return np.where(np.isnat(d), -1, d.astype(np.int64))
    codes, uniq = factorize(values)
    if len(uniq) == 0:
        return np.full(len(values), -1, np.int64)
    parsed = np.full(len(uniq), -1, np.int64)
    for i, t in enumerate(uniq.tolist()):
        try:
            parsed[i] = np.datetime64(t[:10], "D").astype(np.int64)
        except ValueError:
            pass
    return np.where(codes >= 0, parsed[np.maximum(codes, 0)], -1)


# --- the transformer -------------------------------------------------------------------------

_CATS = ("origin_country", "dispatch_country", "exporter_id", "importer_id", "transport_mode",
         "package_type", "unit")
_NUMS = ("net_mass_kg", "gross_mass_kg", "quantity", "packages", "customs_value",
         "measured_mass_kg")
_RATIOS = ("mass_per_unit", "mass_per_package", "tare_per_package", "measured_mass",
           "value_per_kg", "value_per_unit")
# Some references are per (commodity, unit) or per (commodity, package type): kg per m2 and
# kg per litre are different quantities, and a drum weighs more than a carton.
_SUBKEY = {"mass_per_unit": "unit", "value_per_unit": "unit", "tare_per_package": "package_type",
           "mass_per_package": "package_type"}


class DeclarationFeatures:
    """Learns commodity, route and trader references; turns declarations into features.

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
        return self._transform(self._rows(df), context, loo=False)

    def transform_record(self, record: dict, context: dict | None = None):
        """One declaration given as a dict, without pandas (the latency path)."""
        self._check_fitted()
        return self._transform(self._rows(record, single=True), context, loo=False)

    def refresh_derived(self, X: np.ndarray) -> np.ndarray:
        """Recompute summary columns from the base columns of X, in place.

        Counterfactual reasons change one base feature at a time; the summary must follow.
        """
        names = self.feature_names_
        for derived, parts in DERIVED_FROM.items():
            if derived in names:
                base = [names.index(f) for f in parts if f in names]
                # take(): one pass over the rows (fancy indexing on axis 1 is far slower).
                v = np.abs(X.take(base, axis=1)).max(axis=1) if base else np.zeros(len(X))
                if derived == "strongest_deviation":
                    shares = [names.index(f) for f in _SHARES_IN_SUMMARY if f in names]
                    if shares:
                        doc = np.log1p(_SHARE_TO_Z * np.maximum(X.take(shares, axis=1), 0.0)
                                       ).max(axis=1)
                        v = np.maximum(v, doc)
                X[:, names.index(derived)] = v
        return X

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
        need = ("exporter_id", "date", "transport_mode")
        if any(c not in df.columns for c in need) or len(df) == 0:
            return pd.Series(dtype="int64")
        # Post and courier items are a small share of a file: the mode is tested on its
        # few distinct values, and dates and exporters are read only for those rows.
        codes, uniq = pd.factorize(pd.Series(df["transport_mode"], dtype="str"))
        small_u = pd.Series(uniq, dtype="str").str.strip().str.lower().isin(_SMALL_MODES)
        small = np.append(small_u.to_numpy(dtype=bool), False)[codes]  # -1: missing
        rows = np.flatnonzero(small)
        day = _days(df["date"].iloc[rows].to_numpy())
        exp = pd.Series(df["exporter_id"].iloc[rows], dtype="str").str.strip()
        ok = (day >= 0) & exp.notna().to_numpy()
        if not ok.any():
            return pd.Series(dtype="int64")
        key = pd.DataFrame({"e": exp[ok].to_numpy(), "d": day[ok]})
        return key.groupby(["e", "d"]).size().astype("int64")

    @staticmethod
    def merge_contexts(parts: list[pd.Series]) -> pd.Series:
        """The burst context of a whole made of parts: counts per (exporter, day) added."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.Series(dtype="int64")
        return pd.concat(parts).groupby(level=[0, 1]).sum().astype("int64")

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
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tables_"):
            raise NotFittedError("DeclarationFeatures is not fitted; call fit(df) first")

    # ---- preparation: columns -> codes and numbers -----------------------------------------
    def _rows(self, data, single: bool = False) -> dict[str, np.ndarray]:
        if single:
            def get(c):
                v = data.get(c)
                return np.array([None if _missing(v) else v], dtype=object)
        else:
            n = len(data)

            def get(c):
                if c not in data.columns:
                    return np.full(n, None, dtype=object)
                return data[c]
        t = self.tables_
        r: dict[str, np.ndarray] = {}
        hs_codes, hs_uniq = factorize(get("hs_code"))
        hs_uniq = np.asarray([u.replace(".", "").replace(" ", "") for u in hs_uniq.tolist()],
                             dtype=str) if len(hs_uniq) else hs_uniq
        r["hs_u"], r["hs_uniq"] = hs_codes, hs_uniq
        for lvl in LEVELS:
            u = hs_uniq if lvl == "hs" else np.asarray([h[:_LEVEL_LEN[lvl]] for h in
                                                        hs_uniq.tolist()], dtype=str)
            if single:
                r[lvl] = np.array([self._code_of(f"vocab_{lvl}", u[0]) if len(u) else -1])
                continue
            enc = encode_against(t[f"vocab_{lvl}"], u)
            r[lvl] = np.where(hs_codes >= 0, enc[np.maximum(hs_codes, 0)] if len(enc) else -1,
                              -1)
        for c in _CATS:
            raw = get(c)
            if c == "transport_mode" or c == "unit":
                if single:
                    raw = np.asarray([None if _missing(v) else str(v).strip().lower()
                                      for v in raw], dtype=object)
                else:  # as one record is read: trimmed, any case
                    raw = pd.Series(raw).astype("str").str.strip().str.lower()
            if single:
                v = raw[0]
                r[c] = np.array([-1 if v is None else self._code_of(f"vocab_{c}",
                                                                    str(v).strip())])
            else:
                r[c] = _codes(t[f"vocab_{c}"], raw)
            r[f"{c}_raw"] = _objects(raw)
            if c in ("origin_country", "dispatch_country", "transport_mode") and \
                    isinstance(raw, pd.Series):
                r[f"{c}|s"] = raw
        for c in _NUMS:
            raw = get(c)
            if single:
                v = raw[0]
                try:
                    f = float(v) if v is not None else np.nan
                except (TypeError, ValueError):
                    f = np.nan
                r[c] = np.array([f])
            else:
                r[c] = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(
                    dtype=float, na_value=np.nan)
        # A net mass of 0 (goods declared by unit) is legal but says nothing about mass:
        # it is a missing mass for every mass-based ratio (neutral), and a note says so.
        r["net_mass_zero"] = r["net_mass_kg"] == 0
        if r["net_mass_zero"].any():
            r["net_mass_kg"] = np.where(r["net_mass_zero"], np.nan, r["net_mass_kg"])
        for c in (*self.extra_categorical, *self.extra_numeric):
            present = (c in data) if single else (c in data.columns)
            if not present:
                raise SchemaError(f"column {c!r} is required: the model was trained with it as "
                                  f"an extra {'categorical' if c in self.extra_categorical else 'numeric'}"
                                  " column (see the column mapping)")
        for c in self.extra_categorical:
            raw = get(c)
            r[f"x:{c}"] = _codes(t[f"vocab_x:{c}"], raw)
            r[f"x:{c}_raw"] = _objects(raw)
        for c in self.extra_numeric:
            raw = get(c)
            if single:
                try:
                    v = float(raw[0]) if raw[0] is not None else np.nan
                except (TypeError, ValueError):
                    v = np.nan
                r[f"n:{c}"] = np.array([v])
            else:
                r[f"n:{c}"] = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(
                    dtype=float, na_value=np.nan)
            r[f"n:{c}"] = np.where(np.isfinite(r[f"n:{c}"]), r[f"n:{c}"], np.nan)
        for c in ("composition", "description"):
            raw = get(c)
            # Factorised from the column itself: from the object array below, pandas
            # would first rebuild Arrow strings value by value.
            r[f"{c}|f"] = factorize(raw)
            r[c] = _objects(raw)
        r["day"] = _days(get("date"))
        return r

    def _ratio(self, name: str, r) -> np.ndarray:
        net, qty = r["net_mass_kg"], np.where(r["quantity"] > 0, r["quantity"], np.nan)
        if name == "mass_per_unit":
            return _log_ratio(net, qty)
        if name == "mass_per_package":
            return _log_ratio(net, r["packages"])
        if name == "tare_per_package":
            # Gross minus net is the packaging; per package it is a physical constant of
            # the packaging (a drum, a carton, a parcel box), whatever the lot size, where
            # a gross/net ratio would swing with it. log1p keeps unpacked goods (0 kg) finite.
            tare = np.maximum(r["gross_mass_kg"] - net, 0.0)
            with np.errstate(all="ignore"):
                v = np.log1p(tare / r["packages"])
            return np.where(np.isfinite(v) & (r["packages"] > 0), v, np.nan)
        if name == "measured_mass":
            # What a scale weighs is the package: compare with gross mass when declared,
            # else with net; the learned reference absorbs either convention.
            base = np.where(np.isfinite(r["gross_mass_kg"]), r["gross_mass_kg"], net)
            return _log_ratio(r["measured_mass_kg"], base)
        if name == "value_per_kg":
            return _log_ratio(r["customs_value"], net)
        return _log_ratio(r["customs_value"], qty)

    def _key(self, name: str, r, lvl: str) -> np.ndarray:
        sub = _SUBKEY.get(name)
        if sub is not None:
            return _pair(r[lvl], r[sub], len(self.tables_[f"vocab_{sub}"]))
        return r[lvl]

    # ---- fit -------------------------------------------------------------------------------
    # ---- whole-dataset statistics, part by part ----------------------------------------
    def vocabularies(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """The sorted distinct values (codes, countries, traders, components, words) of a
        part of a dataset; the union over parts gives the whole dataset's."""
        v: dict[str, np.ndarray] = {}
        _, hs_uniq = factorize(df["hs_code"].to_numpy())
        hs_uniq = np.asarray([u.replace(".", "").replace(" ", "") for u in hs_uniq.tolist()],
                             dtype=str)
        v["vocab_hs"] = np.sort(np.unique(hs_uniq))
        for lvl, n in _LEVEL_LEN.items():
            v[f"vocab_{lvl}"] = np.sort(np.unique([h[:n] for h in hs_uniq.tolist()])).astype(str)
        for c in _CATS:
            col = df[c].to_numpy() if c in df.columns else np.full(len(df), None, dtype=object)
            if c in ("transport_mode", "unit"):
                col = pd.Series(col, dtype="str").str.lower().to_numpy(dtype=object,
                                                                        na_value=None)
            v[f"vocab_{c}"] = _vocab(col)
        for c in self.extra_categorical:
            v[f"vocab_x:{c}"] = _vocab(df[c])
        comp = df["composition"] if "composition" in df.columns else pd.Series([], dtype=object)
        _, items = _explode(factorize(comp)[1], _parse_composition)
        v["vocab_comp"] = np.sort(np.unique(np.asarray([n for n, _ in items], dtype=str)))
        desc = df["description"] if "description" in df.columns else pd.Series([], dtype=object)
        _, toks = _explode(factorize(desc)[1], _tokens)
        v["vocab_tok"] = np.sort(np.unique(np.asarray(toks, dtype=str)))
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
            out.update(_group_stats(specs[i], k[m], x[m]))
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

    def _fit(self, df: pd.DataFrame, whole: dict | None = None) -> None:
        t, r = self._build_tables(df, None if whole is None else whole["vocabs"])
        if whole is None:
            for spec, keys, x in self._grouped_values(r):
                t.update(_group_stats(spec, keys, x))
            n_rows = len(df)
        else:
            t.update(whole["counts"])
            t.update(whole["stats"])
            n_rows = int(whole["rows"])
        self._finish_tables(t, n_rows)
        self.n_rows_ = n_rows
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

    def _build_tables(self, df: pd.DataFrame, vocabs: dict | None):
        if not isinstance(self.min_rows, (int, np.integer)) or self.min_rows < 1:
            raise ValueError(f"min_rows must be a positive integer, got {self.min_rows!r}")
        if not 0.0 <= self.foreign_share < 1.0:
            raise ValueError(f"foreign_share must be in [0, 1), got {self.foreign_share!r}")
        missing = [c for c in ("hs_code", "origin_country", "net_mass_kg", "customs_value")
                   if c not in df.columns]
        if missing:
            raise SchemaError(f"cannot fit features: missing required column(s) {missing}")
        if len(df) == 0:
            raise SchemaError("cannot fit features on 0 rows")
        extras = [*self.extra_categorical, *self.extra_numeric]
        absent = [c for c in extras if c not in df.columns]
        if absent:
            raise SchemaError(f"extra column(s) {absent} named in the column mapping are not in "
                              f"the training data; columns: {list(df.columns)[:20]}")
        present = {c for c in df.columns if df[c].notna().any()}
        specs = [*FEATURES[:-3],
                 *(feature_spec(EXTRA_RARITY + c) for c in self.extra_categorical),
                 *(feature_spec(EXTRA_Z + c) for c in self.extra_numeric),
                 *FEATURES[-3:]]  # summaries stay last
        self.feature_names_ = [f.name for f in specs if all(n in present for n in f.needs)]
        self.disabled_ = {f.name: [n for n in f.needs if n not in present]
                          for f in specs if f.name not in self.feature_names_}
        self.input_columns_ = sorted(
            {"hs_code", "origin_country", "net_mass_kg", "customs_value"}
            | {n for f in specs if f.name in self.feature_names_ for n in f.needs})
        t: dict[str, np.ndarray] = {}
        self.tables_ = t
        # Lookup indexes, single-row memos and the typical values all belong to the
        # tables they were built from: a refit starts from none of them.
        for stale in ("_index_cache", "_memo", "neutral_", "spread_", "_X_train_"):
            self.__dict__.pop(stale, None)
        t.update(self.vocabularies(df) if vocabs is None else vocabs)
        r = self._rows(df)
        # The training dates, for the note on a declaration dated far outside them.
        days = r["day"][r["day"] != -1]
        if len(days):
            t["day_range"] = np.array([days.min(), days.max()], dtype=np.int64)
        extra_cats = tuple(f"x:{c}" for c in self.extra_categorical)
        for lvl in LEVELS:
            t[f"cnt|{lvl}|key"], t[f"cnt|{lvl}|n"] = _count_table(r[lvl])
            for cat in ("origin_country", "transport_mode", "package_type", "unit", *extra_cats):
                nb = len(t[f"vocab_{cat}"])
                t[f"cnt|{lvl}|{cat}|key"], t[f"cnt|{lvl}|{cat}|n"] = _count_table(
                    _pair(r[lvl], r[cat], nb))
        for cat in ("origin_country", "transport_mode", "package_type", "unit", *extra_cats):
            t[f"cnt|all|{cat}|key"], t[f"cnt|all|{cat}|n"] = _count_table(r[cat])
        t["cnt|origin|key"], t["cnt|origin|n"] = _count_table(r["origin_country"])
        t["cnt|origin|dispatch|key"], t["cnt|origin|dispatch|n"] = _count_table(
            _pair(r["origin_country"], r["dispatch_country"], len(t["vocab_dispatch_country"])))
        for who, col in (("exp", "exporter_id"), ("imp", "importer_id")):
            t[f"cnt|{who}|key"], t[f"cnt|{who}|n"] = _count_table(r[col])
        t["cnt|exp|origin|key"], t["cnt|exp|origin|n"] = _count_table(
            _pair(r["exporter_id"], r["origin_country"], len(t["vocab_origin_country"])))
        t["cnt|exp|hs4|key"], t["cnt|exp|hs4|n"] = _count_table(
            _pair(r["exporter_id"], r["hs4"], len(t["vocab_hs4"])))
        self._fit_composition(r, t)
        self._fit_description(r, t)
        self._fit_bursts(r, t)
        return t, r

    # ---- non-additive references: statistics of grouped values ----------------------------
    def _value_groups(self) -> list[tuple[str, str, float, str, str | None]]:
        """Every non-additive reference as (table, kind, scale floor, values, grouping),
        in a fixed order: a group's position is its id in :meth:`partial_tables`.

        Each is a function of every key's multiset of values alone (a median, a MAD, a
        mean over sorted values), which is what lets a shuffled dataset give it exactly.
        """
        g: list[tuple[str, str, float, str, str | None]] = []
        refs = [*((n, _MIN_LOG_SCALE) for n in _RATIOS),
                *((f"xz:{c}", _EXTRA_MIN_SCALE) for c in self.extra_numeric)]
        for name, floor in refs:
            g += [(f"{name}|{lvl}", "robust", floor, name, lvl) for lvl in LEVELS]
            g.append((f"{name}|all", "all", floor, name, None))
        # The exporters' own price levels per full code.
        g.append(("hist", "hist", _MIN_LOG_SCALE, "value_per_kg", "exporter_hs"))
        g += [(f"comp|{lvl}|re", "mean", 0.0, "re_share", lvl) for lvl in LEVELS]
        g.append(("comp|all|re", "mean", 0.0, "re_share", None))
        return g

    def _grouped_values(self, r):
        """(group, keys, values) of every group over the rows ``r``: rows without a key or
        a finite value left out."""
        values: dict[str, np.ndarray] = {}
        for spec in self._value_groups():
            _, _, _, source, level = spec
            if source not in values:
                values[source] = (r["re_share"] if source == "re_share"
                                  else r[f"n:{source[3:]}"] if source.startswith("xz:")
                                  else self._ratio(source, r))
            x = values[source]
            if level is None:
                keys = np.zeros(len(x), np.int64)
            elif level == "exporter_hs":
                keys = _pair(r["exporter_id"], r["hs"], len(self.tables_["vocab_hs"]))
            elif source == "re_share":
                keys = r[level]
            else:
                keys = self._key(source, r, level)
            ok = (keys >= 0) & np.isfinite(x)
            yield spec, keys[ok], x[ok]

    def _finish_tables(self, t: dict, n_rows: int) -> None:
        """The references derived from group statistics and counts; a group no row fell
        in gets its empty statistics (what a local fit of such data gives)."""
        empty_k, empty_x = np.array([], np.int64), np.array([], np.float64)
        for spec in self._value_groups():
            name, kind = spec[0], spec[1]
            if (name if kind == "all" else f"{name}|key") not in t:
                t.update(_group_stats(spec, empty_k, empty_x))
        # One price scale pooled over all sellers with enough history: a seller's own
        # spread, estimated from five lots, would be too noisy to divide by.
        dev = t.pop("hist|dev")
        scale = float(np.median(dev)) * _MAD_TO_SD if len(dev) else 1.0
        t["hist|scale"] = np.array([max(scale, _HISTORY_MIN_SCALE)])
        n_decl, mean = t.pop("comp|all|re|n"), t.pop("comp|all|re|mean")
        t.pop("comp|all|re|key")
        t["comp|all"] = np.array([n_decl.sum(), n_rows, mean[0] if len(mean) else 0.0])
        # A sender's usual daily count of post/courier items: the median over its days.
        key, n = t.pop("burst|day|key"), t.pop("burst|day|n")
        daily = pd.Series(n).groupby(key // (_DAY_SPAN + 1), sort=True).median()
        t["burst|key"] = daily.index.to_numpy(np.int64)
        t["burst|typical"] = daily.to_numpy(float)

    def _fit_composition(self, r, t) -> None:
        comp_codes, comp_uniq = r["composition|f"]
        owner, items = _explode(comp_uniq, _parse_composition)
        names = np.asarray([n for n, _ in items], dtype=str)
        declares = comp_codes >= 0
        n_comp = len(t["vocab_comp"])
        for lvl in LEVELS:
            t[f"comp|{lvl}|decl|key"], t[f"comp|{lvl}|decl|n"] = _count_table(
                np.where(declares, r[lvl], -1))
            # Rows of a level code that name each component: count unique (row-group)
            # pairs weighted by how many rows carry that composition text.
            if len(owner):
                grp = pd.DataFrame({"u": comp_codes[declares], "l": r[lvl][declares]})
                grp = grp.groupby(["u", "l"]).size().reset_index(name="m")
                items_df = pd.DataFrame({"u": owner, "c": encode_against(t["vocab_comp"], names)})
                items_df = items_df.drop_duplicates()
                j = grp.merge(items_df, on="u")
                key = _pair(j["l"].to_numpy(), j["c"].to_numpy(), n_comp)
                t[f"comp|{lvl}|item|key"], t[f"comp|{lvl}|item|n"] = _count_table(
                    key, j["m"].to_numpy(float))
            else:
                t[f"comp|{lvl}|item|key"] = np.array([], np.int64)
                t[f"comp|{lvl}|item|n"] = np.array([], np.int64)
        # Rare-earth share of each row's declared composition (NaN when none is declared):
        # its mean per level code is a grouped statistic (see _value_groups).
        re_share_u = self._re_share(comp_uniq, owner, names, items)
        r["re_share"] = np.where(declares, re_share_u[np.maximum(comp_codes, 0)] if len(
            re_share_u) else 0.0, np.nan)
        if declares.any():
            comp_all = pd.Series(np.asarray(encode_against(t["vocab_comp"], names)))
            mult = np.bincount(comp_codes[declares], minlength=len(comp_uniq))
            w = pd.DataFrame({"u": owner, "c": comp_all.to_numpy()}).drop_duplicates()
            w["m"] = mult[w["u"].to_numpy()]
            tot = w.groupby("c")["m"].sum()
            t["comp|all|item|key"] = tot.index.to_numpy(np.int64)
            t["comp|all|item|n"] = tot.to_numpy(np.int64)
        else:
            t["comp|all|item|key"] = np.array([], np.int64)
            t["comp|all|item|n"] = np.array([], np.int64)

    @staticmethod
    def _re_share(uniq, owner, names, items) -> np.ndarray:
        if len(uniq) == 0:
            return np.zeros(0)
        pct = np.asarray([p for _, p in items], dtype=float)
        is_re = np.asarray([bool(_RE_PATTERN.match(n)) for n in names.tolist()], dtype=bool)
        tot = np.bincount(owner, pct, minlength=len(uniq)) if len(owner) else np.zeros(len(uniq))
        re = np.bincount(owner, pct * is_re, minlength=len(uniq)) if len(owner) else tot * 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, re / tot, 0.0)

    def _fit_description(self, r, t) -> None:
        d_codes, d_uniq = r["description|f"]
        owner, toks = _explode(d_uniq, _tokens)
        has = d_codes >= 0
        tok_code = encode_against(t["vocab_tok"], np.asarray(toks, dtype=str)) if toks else \
            np.array([], np.int64)
        n_tok = len(t["vocab_tok"])
        items = pd.DataFrame({"u": owner, "c": tok_code})
        for lvl in (*LEVELS, "all"):
            lv = np.zeros(len(has), np.int64) if lvl == "all" else r[lvl]
            t[f"desc|{lvl}|has|key"], t[f"desc|{lvl}|has|n"] = _count_table(np.where(has, lv, -1))
            grp = pd.DataFrame({"u": d_codes[has], "l": lv[has]})
            grp = grp.groupby(["u", "l"]).size().reset_index(name="m")
            j = grp.merge(items, on="u")
            key = _pair(j["l"].to_numpy(np.int64), j["c"].to_numpy(np.int64), n_tok)
            t[f"desc|{lvl}|tok|key"], t[f"desc|{lvl}|tok|n"] = _count_table(
                key, j["m"].to_numpy(float))

    def _price_history(self, r, loo: bool):
        t = self.tables_
        key = _pair(r["exporter_id"], r["hs"], len(t["vocab_hs"]))
        pos = self._pos("hist", key)
        cnt = self._val("hist", "n", pos, 0).astype(float) - (1 if loo else 0)
        med = self._val("hist", "med", pos, np.nan)
        x = self._ratio("value_per_kg", r)
        z = np.clip((x - med) / t["hist|scale"][0], -_Z_CLIP, _Z_CLIP)
        return np.where(cnt >= _HISTORY_MIN_ROWS, z, np.nan), med

    def _fit_bursts(self, r, t) -> None:
        # Post/courier items per (sender, day): a count table; the usual daily count per
        # sender is derived from it once the whole dataset's counts are in.
        small = _small_modes(r)
        key = np.where(small & (r["day"] >= 0),
                       _pair(r["exporter_id"], r["day"], _DAY_SPAN), -1)
        t["burst|day|key"], t["burst|day|n"] = _count_table(key)

    # ---- transform -------------------------------------------------------------------------
    def _code_of(self, vocab: str, value: str) -> int:
        """Code of one value in a vocabulary (-1 when never seen), as ``encode_against`` gives it.

        A single declaration would pay a numpy binary search over strings (~10 us) per
        column; a dict built once per vocabulary on first use answers in a fraction.
        """
        cache = self.__dict__.setdefault("_index_cache", {})
        index = cache.get(vocab)
        if index is None:
            index = cache[vocab] = {v: i for i, v in enumerate(self.tables_[vocab].tolist())}
        return index.get(value, -1)

    def _pos(self, prefix: str, keys: np.ndarray) -> np.ndarray:
        """Row positions of ``keys`` in the table ``prefix`` (-1 when absent).

        Keys are small integers (codes, or pairs of codes), so a dense position index
        makes each lookup one array access instead of a binary search; it is built once
        per table on first use (not stored in the artifact) and skipped for tables whose
        key space is too large to index densely.
        """
        tk = self.tables_[f"{prefix}|key"]
        cache = self.__dict__.setdefault("_index_cache", {})
        dense = cache.get(prefix)
        if dense is None:
            top = int(tk.max()) + 1 if len(tk) else 0
            if top <= 4_000_000:
                dense = np.full(top + 1, -1, dtype=np.int64)
                dense[tk] = np.arange(len(tk))
            else:
                dense = False
            cache[prefix] = dense
        if len(keys) == 1 and dense is not False:
            # One declaration: plain indexing, not four array operations on one element.
            k = int(keys[0])
            return np.array([dense[k] if 0 <= k < len(dense) - 1 else -1], dtype=np.int64)
        if dense is False:
            if len(tk) == 0:
                return np.full(len(keys), -1, dtype=np.int64)
            pos = np.minimum(np.searchsorted(tk, keys), len(tk) - 1)
            return np.where((tk[pos] == keys) & (keys >= 0), pos, -1)
        inside = (keys >= 0) & (keys < len(dense) - 1)
        return np.where(inside, dense[np.where(inside, keys, len(dense) - 1)], -1)

    def _get(self, prefix: str, field: str, keys: np.ndarray, default) -> np.ndarray:
        """The ``field`` of table ``prefix`` for each key (``default`` when absent)."""
        return self._val(prefix, field, self._pos(prefix, keys), default)

    def _val(self, prefix: str, field: str, pos: np.ndarray, default) -> np.ndarray:
        vals = self.tables_[f"{prefix}|{field}"]
        if len(vals) == 0:
            return np.full(len(pos), default, dtype=float if isinstance(default, float)
                           else np.asarray(default).dtype)
        if len(pos) == 1:
            # One declaration; the dtype is the one np.where would give.
            p = int(pos[0])
            return np.array([vals[p] if p >= 0 else np.asarray(default).reshape(-1)[0]],
                            dtype=np.result_type(vals.dtype, default))
        return np.where(pos >= 0, vals[np.maximum(pos, 0)], default)

    def _memo_key(self, r, extra: str):
        """Cache key of a single-row lookup that depends only on the row's codes."""
        return (extra, int(r["hs"][0]), int(r["hs6"][0]), int(r["hs4"][0]), int(r["hs2"][0]))

    def _memoized(self, key, compute):
        # One declaration at a time repeats the same few hundred codes: remembering their
        # reference lookups takes the latency path from many small numpy calls to a dict
        # hit. Bounded, and a plain dict is safe to share between threads in CPython.
        memo = self.__dict__.setdefault("_memo", {})
        hit = memo.get(key)
        if hit is None:
            hit = compute()
            if len(memo) < 100_000:
                memo[key] = hit
        return hit

    def _backoff(self, name: str, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Median, scale and HS level (0=full .. 3=hs2, 4=all) of the finest reference
        learned from at least ``min_rows`` rows."""
        if len(r["hs"]) == 1:
            sub = _SUBKEY.get(name)
            key = self._memo_key(r, f"b|{name}|{int(r[sub][0]) if sub else -1}")
            return self._memoized(key, lambda: self._backoff_rows(name, r))
        return self._backoff_rows(name, r)

    def _backoff_rows(self, name: str, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.tables_
        _, med_all, sc_all = t[f"{name}|all"]
        n = len(r["hs"])
        med, scale = np.full(n, med_all), np.full(n, sc_all)
        level = np.full(n, len(LEVELS), dtype=np.int64)
        for i in range(len(LEVELS) - 1, -1, -1):  # coarse to fine: finer overwrites
            lvl = LEVELS[i]
            pos = self._pos(f"{name}|{lvl}", self._key(name, r, lvl))
            ok = self._val(f"{name}|{lvl}", "n", pos, 0) >= self.min_rows
            med = np.where(ok, self._val(f"{name}|{lvl}", "med", pos, 0.0), med)
            scale = np.where(ok, self._val(f"{name}|{lvl}", "scale", pos, 1.0), scale)
            level = np.where(ok, i, level)
        return med, scale, level

    def _level_choice(self, r, prefix: str, loo_self: np.ndarray | None) -> np.ndarray:
        """Finest HS level whose ``prefix`` row count reaches min_rows (4 = all goods)."""
        n = len(r["hs"])
        level = np.full(n, len(LEVELS), dtype=np.int64)
        for i in range(len(LEVELS) - 1, -1, -1):
            lvl = LEVELS[i]
            pre = prefix.format(lvl=lvl)
            cnt = self._val(pre, "n", self._pos(pre, r[lvl]), 0).astype(float)
            if loo_self is not None:
                cnt = cnt - loo_self
            level = np.where(cnt >= self.min_rows, i, level)
        return level

    def _cond_surprisal(self, r, cat: str, loo: bool):
        """-log P(category | commodity) at the finest HS level with enough rows."""
        if len(r["hs"]) == 1 and not loo:
            key = self._memo_key(r, f"s|{cat}|{int(r[cat][0])}|{r[f'{cat}_raw'][0] is None}")
            return self._memoized(key, lambda: self._cond_surprisal_rows(r, cat, loo))
        return self._cond_surprisal_rows(r, cat, loo)

    def _cond_surprisal_rows(self, r, cat: str, loo: bool):
        t = self.tables_
        nb = len(t[f"vocab_{cat}"])
        # A commodity too rare at every HS level is compared with all goods: how common
        # the category is overall (an unseen origin is still rare there).
        n_all = float(self.n_rows_) - (1 if loo else 0) if hasattr(self, "n_rows_") else None
        counts = t.get(f"cnt|all|{cat}|n")
        n = len(r["hs"])
        if counts is not None and n_all:
            n_c = self._val(f"cnt|all|{cat}", "n", self._pos(f"cnt|all|{cat}", r[cat]), 0)
            n_c = np.maximum(n_c.astype(float) - ((r[cat] >= 0) if loo else 0), 0)
            out = -np.log((n_c + 0.5) / (n_all + 1.0))
            seen, among = n_c, np.full(n, n_all)
        else:
            out = np.full(n, np.nan)
            seen, among = np.zeros(n), np.zeros(n)
        level = np.full(n, len(LEVELS), dtype=np.int64)
        for lvl in reversed(LEVELS):
            n_key = self._val(f"cnt|{lvl}", "n", self._pos(f"cnt|{lvl}", r[lvl]), 0)
            n_key = n_key.astype(float)
            pair = _pair(r[lvl], r[cat], nb)
            pre = f"cnt|{lvl}|{cat}"
            n_pair = self._val(pre, "n", self._pos(pre, pair), 0).astype(float)
            if loo:
                n_key, n_pair = n_key - 1, np.maximum(n_pair - (pair >= 0), 0)
            ok = n_key >= self.min_rows
            out = np.where(ok, -np.log((n_pair + 0.5) / (np.maximum(n_key, 0) + 1.0)), out)
            seen, among = np.where(ok, n_pair, seen), np.where(ok, n_key, among)
            level = np.where(ok, LEVELS.index(lvl), level)
        missing = r[f"{cat}_raw"] == None  # noqa: E711 - elementwise on an object array
        # The counts behind the smoothed probability, for reasons that quote them.
        return np.where(missing, np.nan, out), seen, among, level

    def _history_surprisal(self, r, what: str, loo: bool):
        """-log P(origin or heading | exporter) from its history (NaN for a new exporter),
        with the counts behind it."""
        if len(r["hs"]) == 1 and not loo:
            other = r["origin_country"] if what == "origin" else r["hs4"]
            key = ("h", what, int(r["exporter_id"][0]), int(other[0]))
            return self._memoized(key, lambda: self._history_surprisal_rows(r, what, loo))
        return self._history_surprisal_rows(r, what, loo)

    def _history_surprisal_rows(self, r, what: str, loo: bool):
        t = self.tables_
        trader = r["exporter_id"]
        other, vocab = (r["origin_country"], "origin_country") if what == "origin" else \
            (r["hs4"], "hs4")
        n_tr = self._val("cnt|exp", "n", self._pos("cnt|exp", trader), 0).astype(float)
        pair = _pair(trader, other, len(t[f"vocab_{vocab}"]))
        pre = f"cnt|exp|{what}"
        n_pair = self._val(pre, "n", self._pos(pre, pair), 0).astype(float)
        if loo:
            n_tr, n_pair = n_tr - 1, np.maximum(n_pair - (pair >= 0), 0)
        # n_tr is -1 for a missing exporter under leave-one-out: clip before dividing.
        out = np.where(n_tr > 0, -np.log((n_pair + 0.5) / (np.maximum(n_tr, 0) + 1.0)), np.nan)
        return out, n_pair, np.maximum(n_tr, 0)

    def _composition_features(self, r, loo: bool):
        if len(r["hs"]) == 1 and not loo:
            key = self._memo_key(r, f"c|{r['composition'][0]}")
            return self._memoized(key, lambda: self._composition_features_rows(r, loo))
        return self._composition_features_rows(r, loo)

    def _composition_features_rows(self, r, loo: bool):
        t = self.tables_
        n = len(r["hs"])
        comp_codes, comp_uniq = r["composition|f"]
        declares = comp_codes >= 0
        owner, name_codes, name_uniq, pct = _composition_items(comp_uniq)
        # Presence surprisal: declaring where it is not customary, or not where it is.
        lvl_i = self._level_choice(r, "cnt|{lvl}", np.ones(n) if loo else None)
        p_decl = np.full(n, (t["comp|all"][0] + 0.5) / (t["comp|all"][1] + 1.0))
        re_ref = np.full(n, t["comp|all"][2])
        for i, lvl in enumerate(LEVELS):
            m = lvl_i == i
            if not m.any():
                continue
            nd = self._get(f"comp|{lvl}|decl", "n", r[lvl][m], 0)
            nt = self._get(f"cnt|{lvl}", "n", r[lvl][m], 0).astype(float)
            nd = nd.astype(float)
            if loo:
                nd, nt = nd - declares[m], nt - 1
            p_decl[m] = (nd + 0.5) / (nt + 1.0)
            re_ref[m] = self._get(f"comp|{lvl}|re", "mean", r[lvl][m],
                                re_ref[m])
        surprise = np.where(declares, -np.log(p_decl), -np.log1p(-np.minimum(p_decl, 0.999)))
        foreign = np.full(n, np.nan)
        re_excess = np.full(n, np.nan)
        if len(owner):
            # Items belong to unique texts; expand to rows (texts repeat across rows).
            rows, item = _expand(owner, len(comp_uniq), comp_codes)
            c = encode_against(t["vocab_comp"], name_uniq)[name_codes[item]]
            p = pct[item]
            lvl_rows = self._level_choice(r, "comp|{lvl}|decl",
                                          declares.astype(float) if loo else None)
            freq = np.zeros(len(rows))
            for i, lvl in enumerate((*LEVELS, "all")):
                m = lvl_rows[rows] == i
                if not m.any():
                    continue
                if lvl == "all":
                    nd = np.full(m.sum(), float(t["comp|all"][0]))
                    ni = self._get("comp|all|item", "n", c[m], 0)
                else:
                    lc = r[lvl][rows[m]]
                    nd = self._get(f"comp|{lvl}|decl", "n", lc, 0)
                    nd = nd.astype(float)
                    ni = self._get(f"comp|{lvl}|item", "n",
                                   _pair(lc, c[m], len(t["vocab_comp"])), 0)
                ni = ni.astype(float)
                if loo:
                    nd, ni = nd - 1, np.maximum(ni - (c[m] >= 0), 0)
                freq[m] = ni / np.maximum(nd, 1.0)
            is_foreign = freq < max(self.foreign_share, 0.02)
            tot = np.bincount(rows, p, minlength=n)
            fsum = np.bincount(rows, p * is_foreign, minlength=n)
            # A few dozen distinct component names: match each once.
            is_re_u = np.asarray([bool(_RE_PATTERN.match(x)) for x in name_uniq.tolist()],
                                 dtype=bool)[name_codes]
            is_re = is_re_u[item] if len(item) else np.zeros(0, bool)
            resum = np.bincount(rows, p * is_re, minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                has = tot > 0
                foreign = np.where(has, fsum / tot, np.nan)
                re_excess = np.where(has, np.maximum(resum / tot - re_ref, 0.0), np.nan)
        return surprise, foreign, re_excess, p_decl

    def _description_foreign(self, r, loo: bool) -> np.ndarray:
        if len(r["hs"]) == 1 and not loo:
            key = self._memo_key(r, f"d|{r['description'][0]}")
            return self._memoized(key, lambda: self._description_foreign_rows(r, loo))
        return self._description_foreign_rows(r, loo)

    def _description_foreign_rows(self, r, loo: bool) -> np.ndarray:
        t = self.tables_
        n = len(r["hs"])
        d_codes, d_uniq = r["description|f"]
        has = d_codes >= 0
        out = np.full(n, np.nan)
        if not has.any():
            return out
        owner, toks = _explode(d_uniq, _tokens)
        if not toks:
            return out
        lvl_rows = self._level_choice(r, "desc|{lvl}|has", has.astype(float) if loo else None)
        lv_code = np.full(n, 0, np.int64)
        for i, lvl in enumerate(LEVELS):
            lv_code = np.where(lvl_rows == i, r[lvl], lv_code)
        rows, item = _expand(owner, len(d_uniq), d_codes)
        c = encode_against(t["vocab_tok"], np.asarray(toks, str))[item]
        li = lvl_rows[rows]
        lc = lv_code[rows]
        freq = np.zeros(len(rows))
        for i, lvl in enumerate((*LEVELS, "all")):
            m = li == i
            if not m.any():
                continue
            code = np.zeros(m.sum(), np.int64) if lvl == "all" else lc[m]
            nd = self._get(f"desc|{lvl}|has", "n", code, 0).astype(float)
            ni = self._get(f"desc|{lvl}|tok", "n",
                           _pair(code, c[m], len(t["vocab_tok"])), 0).astype(float)
            if loo:
                nd, ni = nd - 1, np.maximum(ni - (c[m] >= 0), 0)
            freq[m] = ni / np.maximum(nd, 1.0)
        foreign = (freq < self.foreign_share).astype(float)
        cnt = np.bincount(rows, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.bincount(rows, foreign, minlength=n) / cnt
        return np.where(cnt > 0, share, np.nan)

    def _bursts(self, r, context) -> np.ndarray:
        n = len(r["hs"])
        ok = _small_modes(r) & (r["day"] >= 0) & (r["exporter_id_raw"] != None)  # noqa: E711
        out = np.zeros(n)
        if not ok.any():
            return out
        exp = np.asarray(r["exporter_id_raw"], dtype=object)[ok]
        exp = np.asarray([str(e).strip() for e in exp], dtype=object)
        day = r["day"][ok]
        if context is None and len(exp) == 1:
            cnt = np.ones(1)  # one declaration on its own is no burst
        elif context is None:
            cnt = pd.DataFrame({"e": exp, "d": day}).groupby(["e", "d"])["e"].transform("size")
            cnt = cnt.to_numpy(float)
        elif isinstance(context, dict):
            cnt = np.asarray([float(context.get((e, int(d)), 1)) for e, d in zip(exp, day,
                                                                                   strict=True)])
        elif len(context) == 0:
            cnt = np.ones(len(exp))
        else:
            idx = pd.MultiIndex.from_arrays([exp, day])
            cnt = context.reindex(idx).to_numpy(dtype=float, na_value=1.0)
            cnt = np.maximum(cnt, 1.0)
        typical = self._get("burst", "typical", r["exporter_id"][ok], 1.0)
        out[ok] = np.maximum(0.0, np.log(cnt) - np.log(np.maximum(typical, 1.0)))
        return out

    @staticmethod
    def _counted(cols, det, name, result) -> None:
        cols[name] = result[0]
        det[f"{name}|seen"], det[f"{name}|among"] = result[1], result[2]
        if len(result) > 3:
            det[f"{name}|level"] = result[3]

    def _transform(self, r, context, loo: bool):
        n = len(r["hs"])
        cols: dict[str, np.ndarray] = {}
        det: dict = {}
        for name in _RATIOS:
            fname = f"{name}_z"
            if fname not in self.feature_names_:
                continue
            x = self._ratio(name, r)
            med, scale, level = self._backoff(name, r)
            z = np.clip((x - med) / scale, -_Z_CLIP, _Z_CLIP)
            # The forest splits uniformly between a node's min and max: on raw z-scores a
            # few keying errors at |z| = 50 stretch the range so that a z of -5 is rarely
            # cut off. A signed log keeps the order and brings moderate outliers into reach.
            cols[fname] = np.sign(z) * np.log1p(np.abs(z))
            det[f"{name}|x"], det[f"{name}|med"], det[f"{name}|scale"] = x, med, scale
            det[f"{name}|level"] = level
        surprise, foreign, re_excess, p_decl = self._composition_features(r, loo)
        cols["composition_surprise"], det["composition|p_decl"] = surprise, p_decl
        cols["composition_foreign"], cols["rare_earth_excess"] = foreign, re_excess
        cols["description_foreign"] = self._description_foreign(r, loo)
        t = self.tables_
        self._counted(cols, det, "origin_rarity", self._cond_surprisal(r, "origin_country", loo))
        o, d = r["origin_country"], r["dispatch_country"]
        n_o = self._val("cnt|origin", "n", self._pos("cnt|origin", o), 0).astype(float)
        pair = _pair(o, d, len(t["vocab_dispatch_country"]))
        n_od = self._val("cnt|origin|dispatch", "n", self._pos("cnt|origin|dispatch", pair), 0)
        n_od = n_od.astype(float)
        if loo:
            n_o, n_od = n_o - 1, np.maximum(n_od - (pair >= 0), 0)
        has_d = r["dispatch_country_raw"] != None  # noqa: E711
        cols["origin_dispatch_rarity"] = np.where(
            has_d, -np.log((n_od + 0.5) / (np.maximum(n_o, 0) + 1.0)), np.nan)
        det["origin_dispatch_rarity|seen"] = n_od
        det["origin_dispatch_rarity|among"] = np.maximum(n_o, 0)
        if n == 1:
            same = np.asarray([str(a).strip().upper() == str(b).strip().upper() for a, b in zip(
                r["origin_country_raw"], r["dispatch_country_raw"], strict=True)])
        else:
            # From the columns as read (Arrow strings): compared in C, missing never equal.
            o, d = (pd.Series(r.get(f"{c}|s", r[f"{c}_raw"]), dtype="str").str.strip()
                    .str.upper() for c in ("origin_country", "dispatch_country"))
            same = (o.reset_index(drop=True) == d.reset_index(drop=True)).to_numpy(
                dtype=bool, na_value=False)
        cols["origin_differs"] = np.where(has_d, (~same.astype(bool)).astype(float), np.nan)
        self._counted(cols, det, "exporter_origin_rarity", self._history_surprisal(r, "origin", loo))
        self._counted(cols, det, "exporter_commodity_rarity", self._history_surprisal(r, "hs4", loo))
        self._counted(cols, det, "mode_rarity", self._cond_surprisal(r, "transport_mode", loo))
        self._counted(cols, det, "package_rarity", self._cond_surprisal(r, "package_type", loo))
        self._counted(cols, det, "unit_rarity", self._cond_surprisal(r, "unit", loo))
        for name, who, col in (("exporter_history", "exp", "exporter_id"),
                               ("importer_history", "imp", "importer_id")):
            c = self._val(f"cnt|{who}", "n", self._pos(f"cnt|{who}", r[col]), 0).astype(float)
            if loo:
                c = np.maximum(c - 1, 0)
            # Novelty, not volume: 1 for a trader never seen, 1/2 seen once, near 0 for an
            # established one. On log counts the forest would spend its cuts telling big
            # shippers from middling ones, which says nothing about fraud.
            cols[name] = np.where(r[f"{col}_raw"] != None, 1.0 / (1.0 + c), np.nan)  # noqa: E711
        for c in self.extra_categorical:
            self._counted(cols, det, EXTRA_RARITY + c, self._cond_surprisal(r, f"x:{c}", loo))
        for c in self.extra_numeric:
            if EXTRA_Z + c not in self.feature_names_:
                continue
            med, scale, level = self._backoff(f"xz:{c}", r)
            x = r[f"n:{c}"]
            z = np.clip((x - med) / scale, -_Z_CLIP, _Z_CLIP)
            det[f"xz:{c}|x"], det[f"xz:{c}|med"], det[f"xz:{c}|scale"] = x, med, scale
            det[f"xz:{c}|level"] = level
            cols[EXTRA_Z + c] = np.sign(z) * np.log1p(np.abs(z))
        c = self._val("cnt|hs", "n", self._pos("cnt|hs", r["hs"]), 0).astype(float)
        if loo:
            c = np.maximum(c - 1, 0)
        cols["commodity_novelty"] = 1.0 / (1.0 + c)
        cols["parcel_burst"] = self._bursts(r, context)
        z, det["history|med"] = self._price_history(r, loo)
        det["history|z"] = z
        cols["value_vs_history_z"] = np.sign(z) * np.log1p(np.abs(z))
        for derived in DERIVED_FROM:
            cols[derived] = np.zeros(n)
        # Filled feature by feature into rows of the transpose (contiguous writes), then
        # laid out row-major once, as the forest reads it.
        Xt = np.empty((len(self.feature_names_), n), dtype=np.float64)
        neutral = getattr(self, "neutral_", None)
        for j, name in enumerate(self.feature_names_):
            v = np.asarray(cols[name], dtype=np.float64)
            # Missing inputs get the feature's typical value: absence alone is not
            # evidence (where it is, a dedicated feature says so).
            fill = neutral[j] if neutral is not None else np.nan
            Xt[j] = np.where(np.isfinite(v), v, fill)
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
        hs_u, hs_uniq = r["hs_u"], r["hs_uniq"]
        det["hs_text"] = (hs_uniq.astype(object)[np.maximum(hs_u, 0)] if len(hs_uniq)
                          else np.full(n, "", dtype=object))
        det["hs_text"] = np.where(hs_u >= 0, det["hs_text"], "")
        det["r"] = r
        det["day_range"] = self.tables_.get("day_range")
        return X, det
