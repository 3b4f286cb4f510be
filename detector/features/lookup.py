"""Lookup structures shared by the feature families: plain arrays, so that they serialise
as data.

Categorical values become integer codes once (on the unique values), pairs of codes become
int64 keys, count and statistics tables are sorted key arrays with aligned fields, and a
transformer reads them through :class:`TableReader` (dense position indexes built on
first use, single-row memos for the latency path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["LEVELS", "LEVEL_LEN", "MAD_TO_SD", "MIN_LOG_SCALE", "Z_CLIP", "HISTORY_MIN_ROWS",
           "TableReader", "codes_against", "count_table", "days", "encode_against", "expand",
           "explode", "factorize", "group_stats", "log_ratio", "missing_value", "objects",
           "pair_key", "put_counted", "robust_stats", "signed_log", "sorted_means", "vocab_of"]

LEVELS = ("hs", "hs6", "hs4", "hs2")
LEVEL_LEN = {"hs6": 6, "hs4": 4, "hs2": 2}
MAD_TO_SD = 1.4826
# Log-ratios such as kg per kg are exactly constant for some codes; a floor on the scale
# keeps a 2% difference from becoming an infinite z-score.
MIN_LOG_SCALE = 0.02
Z_CLIP = 50.0
# A trader's own reference (its prices for a code) needs this many of its declarations.
HISTORY_MIN_ROWS = 5


def missing_value(v) -> bool:
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
            if len(values) == 0 or missing_value(values[0]):
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


def vocab_of(values: np.ndarray) -> np.ndarray:
    return np.sort(np.unique(factorize(values)[1]))


def encode_against(vocab: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted vocabulary; -1 when never seen."""
    if len(vocab) == 0 or len(uniq) == 0:
        return np.full(len(uniq), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(vocab, uniq), len(vocab) - 1)
    return np.where(vocab[pos] == uniq, pos, -1).astype(np.int64)


def codes_against(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    codes, uniq = factorize(values)
    enc = encode_against(vocab, uniq)
    return np.where(codes >= 0, enc[np.maximum(codes, 0)] if len(enc) else -1, -1)


def pair_key(a: np.ndarray, b: np.ndarray, nb: int) -> np.ndarray:
    """int64 key of a pair of codes; -1 when either side is unseen or missing."""
    return np.where((a >= 0) & (b >= 0), a * (nb + 1) + b, -1)


def count_table(keys: np.ndarray, weights: np.ndarray | None = None):
    ok = keys >= 0
    if weights is None:
        uniq, counts = np.unique(keys[ok], return_counts=True)
        return uniq.astype(np.int64), counts.astype(np.int64)
    uniq, inv = np.unique(keys[ok], return_inverse=True)
    return uniq.astype(np.int64), np.bincount(inv, weights[ok]).astype(np.int64)


def robust_stats(keys: np.ndarray, x: np.ndarray, floor: float = MIN_LOG_SCALE):
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
    scale = np.maximum(mad.to_numpy() * MAD_TO_SD, floor)
    return (med.index.to_numpy(np.int64), g.size().to_numpy(np.int64), med.to_numpy(float),
            scale)


def sorted_means(keys: np.ndarray, x: np.ndarray):
    """Per key: row count and mean, summed in value order so that the result depends on
    the multiset of values only, not on the order rows came in (partitions, shuffles)."""
    if len(x) == 0:
        e = np.array([], dtype=np.int64)
        return e, e, np.array([])
    order = np.lexsort((x, keys))
    k, v = keys[order], x[order]
    uniq, start, n = np.unique(k, return_index=True, return_counts=True)
    return uniq.astype(np.int64), n.astype(np.int64), np.add.reduceat(v, start) / n


def group_stats(spec, keys: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """The tables of one non-additive group (a Family.value_groups spec) from
    its rows' keys and finite values."""
    name, kind, floor = spec[0], spec[1], spec[2]
    if kind == "all":
        med = float(np.median(x)) if len(x) else 0.0
        mad = float(np.median(np.abs(x - med))) if len(x) else 0.0
        return {name: np.array([len(x), med, max(mad * MAD_TO_SD, floor)])}
    if kind == "mean":
        k, n, mean = sorted_means(keys, x)
        return {f"{name}|key": k, f"{name}|n": n, f"{name}|mean": mean}
    k, n, med, scale = robust_stats(keys, x, floor=floor)
    if kind == "robust":
        return {f"{name}|key": k, f"{name}|n": n, f"{name}|med": med, f"{name}|scale": scale}
    # "hist": the deviations of rows whose key has enough history feed one pooled scale.
    pos = np.searchsorted(k, keys)
    enough = n[pos] >= HISTORY_MIN_ROWS if len(k) else np.zeros(0, bool)
    return {f"{name}|key": k, f"{name}|n": n, f"{name}|med": med,
            f"{name}|dev": np.abs(x - med[pos])[enough] if len(k) else np.array([])}


def log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Valid but extreme values (5e-324 kg) overflow the ratio: that is a missing ratio.
    with np.errstate(all="ignore"):
        r = np.log(a / b)
    return np.where(np.isfinite(r), r, np.nan)


def explode(uniq: np.ndarray, split) -> tuple[np.ndarray, list]:
    """Apply ``split`` to each unique string: (owner index per item, items)."""
    owner: list[int] = []
    items: list = []
    for i, text in enumerate(uniq.tolist()):
        got = split(text)
        owner.extend([i] * len(got))
        items.extend(got)
    return np.asarray(owner, dtype=np.int64), items


def expand(owner: np.ndarray, n_uniq: int, row_u: np.ndarray):
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


def objects(values) -> np.ndarray:
    """A column as a numpy object array with None for missing (what reasons quote)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        # Text repeats (countries, traders): make one Python string per distinct value.
        codes, uniq = pd.factorize(values)
        return np.append(np.asarray(uniq, dtype=object), None)[codes]
    if isinstance(values, pd.Series):
        return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)
    return np.asarray(values, dtype=object)


def days(values) -> np.ndarray:
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


def signed_log(z: np.ndarray) -> np.ndarray:
    """sign(z) * log(1 + |z|): keeps the order, brings moderate outliers into a forest's reach."""
    return np.sign(z) * np.log1p(np.abs(z))


def put_counted(cols: dict, det: dict, name: str, result) -> None:
    """Store a counted feature (value, seen, among[, level]) in the columns and details."""
    cols[name] = result[0]
    det[f"{name}|seen"], det[f"{name}|among"] = result[1], result[2]
    if len(result) > 3:
        det[f"{name}|level"] = result[3]


class TableReader:
    """Reads a transformer's fitted tables (``self.tables_``, ``self.min_rows``).

    Indexes and memos are kept in the instance's ``_index_cache`` and ``_memo``; a refit
    drops them (they belong to the tables they were built from).
    """

    def code_of(self, vocab: str, value: str) -> int:
        """Code of one value in a vocabulary (-1 when never seen), as ``encode_against`` gives it.

        A single declaration would pay a numpy binary search over strings (~10 us) per
        column; a dict built once per vocabulary on first use answers in a fraction.
        """
        cache = self.__dict__.setdefault("_index_cache", {})
        index = cache.get(vocab)
        if index is None:
            index = cache[vocab] = {v: i for i, v in enumerate(self.tables_[vocab].tolist())}
        return index.get(value, -1)

    def table_pos(self, prefix: str, keys: np.ndarray) -> np.ndarray:
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

    def table_get(self, prefix: str, field: str, keys: np.ndarray, default) -> np.ndarray:
        """The ``field`` of table ``prefix`` for each key (``default`` when absent)."""
        return self.table_val(prefix, field, self.table_pos(prefix, keys), default)

    def table_val(self, prefix: str, field: str, pos: np.ndarray, default) -> np.ndarray:
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

    def memo_key(self, r, extra: str):
        """Cache key of a single-row lookup that depends only on the row's codes."""
        return (extra, int(r["hs"][0]), int(r["hs6"][0]), int(r["hs4"][0]), int(r["hs2"][0]))

    def memoized(self, key, compute):
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


    def level_choice(self, r, prefix: str, loo_self: np.ndarray | None) -> np.ndarray:
        """Finest HS level whose ``prefix`` row count reaches min_rows (4 = all goods)."""
        n = len(r["hs"])
        level = np.full(n, len(LEVELS), dtype=np.int64)
        for i in range(len(LEVELS) - 1, -1, -1):
            lvl = LEVELS[i]
            pre = prefix.format(lvl=lvl)
            cnt = self.table_val(pre, "n", self.table_pos(pre, r[lvl]), 0).astype(float)
            if loo_self is not None:
                cnt = cnt - loo_self
            level = np.where(cnt >= self.min_rows, i, level)
        return level

