"""Row-level validation: every input row comes out either valid or rejected with a reason.

:func:`validate` takes a frame with canonical column names and raw values (as read by
:mod:`detector.io`: strings, numbers, junk) and returns the valid rows with canonical
dtypes plus one reject row per invalid input row. The invariant, for any input, is::

    len(df) == len(result.valid) + len(result.rejects)

Every check is a vectorized boolean mask per column; reason strings are built only for
the failing rows. Reasons have the shape ``"<rule>: <what was seen>"`` (e.g.
``"net_mass_kg is not a number: 'abc'"``) so that :func:`summarise_rejects` can group them
by rule.

Canonical dtypes of ``valid``:

* text / code columns: pandas ``str`` dtype, stripped, missing as NaN
  (hs_code digits only; countries, currency, package_type upper-case; transport_mode
  lower-case; unit folded by :func:`detector.schema.normalise_unit`);
* float columns: ``float64`` (NaN when an optional value is missing); packages: ``Int64``;
* date: ``datetime64[ns]`` at midnight (NaT when missing);
* labels (is_fraud ``Int64`` 0/1, revenue ``float64``, fraud_scheme ``str``) are parsed
  leniently and never reject a row: labels are inspection outcomes, not inputs, and a bad
  label becomes missing;
* extra (non-canonical) columns are passed through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import SchemaError
from .schema import (
    COUNTRIES,
    DATE_MAX,
    DATE_MIN,
    MAX_MASS_KG,
    MAX_PACKAGES,
    MAX_QUANTITY,
    MAX_VALUE,
    REQUIRED,
    UNKNOWN_COUNTRY,
    UNKNOWN_COUNTRY_SPELLINGS,
    normalise_unit,
)

__all__ = [
    "as_text",
    "REJECT_COLUMNS",
    "ValidationResult",
    "IdTracker",
    "validate",
    "summarise_rejects",
    "RejectTally",
    "check_record",
]

REJECT_COLUMNS: tuple[str, ...] = ("row_number", "declaration_id", "column", "reason")

# Relative tolerance of "gross >= net": both are often rounded from the same weighing.
_MASS_TOLERANCE = 1e-9
# How much of a bad value a reason shows: enough to find it, not a whole description.
_SHOW_CHARS = 40
_COUNTRY_LIST = sorted(COUNTRIES | {UNKNOWN_COUNTRY})
_UNKNOWN_SPELLINGS = sorted(UNKNOWN_COUNTRY_SPELLINGS)
_UPPER_CODES = ("package_type", "currency")
_FREE_TEXT = ("description", "exporter_id", "importer_id", "declarant_id", "composition")


@dataclass(frozen=True)
class _NumericRule:
    name: str
    required: bool
    low: float  # lower bound
    low_inclusive: bool
    high: float  # plausible maximum
    unit: str = ""
    integer: bool = False


_NUMERIC_RULES: tuple[_NumericRule, ...] = (
    # 0 kg is legal (goods declared by unit, mass not required): scored with NET_MASS_ZERO.
    _NumericRule("net_mass_kg", True, 0.0, True, MAX_MASS_KG, " kg"),
    _NumericRule("customs_value", True, 0.0, True, MAX_VALUE),
    _NumericRule("gross_mass_kg", False, 0.0, True, MAX_MASS_KG, " kg"),
    _NumericRule("quantity", False, 0.0, True, MAX_QUANTITY),
    _NumericRule("packages", False, 1.0, True, MAX_PACKAGES, integer=True),
    _NumericRule("measured_mass_kg", False, 0.0, False, MAX_MASS_KG, " kg"),
)


@dataclass
class ValidationResult:
    """``valid``: rows that passed, input index kept, canonical dtypes.
    ``rejects``: one row per rejected input row (columns :data:`REJECT_COLUMNS`)."""

    valid: pd.DataFrame
    rejects: pd.DataFrame

    @property
    def n_valid(self) -> int:
        return len(self.valid)

    @property
    def n_rejected(self) -> int:
        return len(self.rejects)


# Hashes moved per step of IdTracker's in-place merge (512 KiB of them).
_MERGE_BLOCK = 1 << 16


class IdTracker:
    """Declaration ids seen so far, for duplicate detection across chunks of a stream.

    Stores 64-bit hashes (``pd.util.hash_array``) in one sorted ``uint64`` array: 8 bytes
    per id instead of a Python string in a set (~60+ bytes), so tens of millions of ids
    fit in memory. The price is a hash collision probability of about n**2 / 2**65
    (~3e-6 for ten million ids), i.e. a negligible chance of a false "duplicate".
    """

    def __init__(self, capacity: int = 0) -> None:
        # ``capacity``: the ids expected (a stream's row count, when a pre-pass knows it).
        # The hashes live in one buffer of that size, filled in place: a stream's
        # tracker then never holds its hashes twice (a merge into a new array did, at
        # every chunk) and never frees a growing array (which raised glibc's mmap
        # threshold). Unused capacity costs no memory: untouched pages are not resident.
        self._buf = np.empty(max(int(capacity), 0), dtype=np.uint64)
        self._n = 0

    @property
    def _hashes(self) -> np.ndarray:
        return self._buf[:self._n]

    @staticmethod
    def _hash(ids: Iterable[Any]) -> np.ndarray:
        # Ids are compared as text, like the validated declaration_id column.
        if not isinstance(ids, pd.Series | pd.Index):
            ids = pd.Series(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object))
        values = ids.astype("str").to_numpy(dtype=object)
        if len(values) == 0:
            return np.empty(0, dtype=np.uint64)
        # Ids are nearly all distinct: hashing them directly gives the same hashes as
        # factorizing first (categorize=True), several times faster.
        return pd.util.hash_array(values, categorize=False)

    def _member_sorted(self, hs: np.ndarray) -> np.ndarray:
        """Membership of sorted hashes: in sorted order, neighbouring binary searches
        share their path through the (large) table, a few times faster than random."""
        if len(self._hashes) == 0:
            return np.zeros(len(hs), dtype=bool)
        pos = np.searchsorted(self._hashes, hs)
        pos[pos == len(self._hashes)] = 0
        return self._hashes[pos] == hs

    def check_and_add(self, ids: Iterable[Any]) -> np.ndarray:
        """Mask of ids already seen (earlier calls, or earlier in ``ids``); adds the rest."""
        h = self._hash(ids)
        # One stable sort serves the lookup, the duplicates within ``ids`` (equal hashes
        # stay in input order, so the first of a run is the first occurrence) and the
        # merge of the new hashes, which come out sorted and distinct.
        order = np.argsort(h, kind="stable")
        hs = h[order]
        dup_sorted = self._member_sorted(hs)
        dup_sorted[1:] |= hs[1:] == hs[:-1]
        self._insert(hs[~dup_sorted])
        dup = np.empty(len(h), dtype=bool)
        dup[order] = dup_sorted
        return dup

    def _insert(self, new: np.ndarray) -> None:
        """Merge sorted hashes, none of them present yet, into the sorted buffer in
        place: O(n) per chunk, no re-sort of everything seen and no full-size temporary."""
        n, m = self._n, len(new)
        if n + m > len(self._buf):  # no (or too small a) capacity: grow by doubling
            grown = np.empty(max(n + m, 2 * len(self._buf)), dtype=np.uint64)
            grown[:n] = self._buf[:n]
            self._buf = grown
        buf = self._buf
        cut = np.searchsorted(buf[:n], new)  # new[j] goes before old[cut[j]]
        # Old hash i moves up by the new ones before it, #{j: cut[j] <= i}. From the top
        # down, a block at a time: a block's destinations lie above every hash not yet
        # moved and below every one already moved.
        for hi in range(n, 0, -_MERGE_BLOCK):
            lo = max(0, hi - _MERGE_BLOCK)
            a, b = np.searchsorted(cut, [lo, hi])
            shift = a + np.cumsum(np.bincount(cut[a:b] - lo, minlength=hi - lo))
            buf[np.arange(lo, hi) + shift] = buf[lo:hi].copy()
        buf[cut + np.arange(m)] = new
        self._n = n + m

    def __contains__(self, item: Any) -> bool:
        return bool(self._member_sorted(self._hash([item]))[0])

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self._hashes.nbytes)


# --------------------------------------------------------------------------- helpers


class _Failures:
    """Per-column failure masks collected during validation, turned into rejects once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.any = np.zeros(n, dtype=bool)

    def add(self, column: str, mask: np.ndarray, reasons: Any) -> None:
        """``reasons``: a string, or a Series/array aligned with the failing rows only."""
        mask = np.asarray(mask, dtype=bool)
        pos = np.flatnonzero(mask)
        if len(pos) == 0:
            return
        if isinstance(reasons, str):
            text = np.full(len(pos), reasons, dtype=object)
        else:
            text = np.asarray(reasons, dtype=object)
        self.items.append((column, pos, text))
        self.any |= mask


# "12,5" in a numeric column: a file written with decimal commas, read without --decimal.
_DECIMAL_COMMA = r"\s*[-+]?\d+,\d+\s*"
_COMMA_HINT = " (a decimal comma? read the file with --decimal ,)"


def _show(values: Any) -> pd.Series:
    """Bad values as a reason shows them: quoted, short, one line, no '; ' separators."""
    s = pd.Series(np.asarray(values, dtype=object), dtype=object).astype(str)
    long = s.str.len() > _SHOW_CHARS
    s = s.str.slice(0, _SHOW_CHARS).where(~long, s.str.slice(0, _SHOW_CHARS) + "...")
    # ";" separates several reasons of one row, and newlines would break CSV/log lines.
    s = s.str.replace(";", ",", regex=False).str.replace(r"[\r\n\t]", " ", regex=True)
    return "'" + s + "'"


def _num_show(values: np.ndarray) -> pd.Series:
    # numpy's float -> str is the shortest repr ("12.0", "inf", "1e+23") and much faster
    # than going through pandas' string dtype.
    return pd.Series(np.asarray(values, dtype="float64").astype(str).astype(object), dtype=object)


def as_text(s: pd.Series) -> pd.Series:
    """Any column as ``str`` dtype, stripped, with empty/blank as missing."""
    if pd.api.types.is_float_dtype(s.dtype):
        # 123.0 (an id stored as float because of a missing value) should read "123".
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(v) & (np.abs(v) < 2**53) & (v == np.trunc(v))
        t = s.astype("str")
        if whole.any():
            t = t.where(~whole, pd.Series(v, index=s.index).where(whole, 0).astype("int64").astype("str"))
    else:
        t = s.astype("str")
    t = t.str.strip()
    return t.mask(t == "")


def _numbers(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN for missing/junk, mask of non-missing junk)."""
    if pd.api.types.is_numeric_dtype(s.dtype):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        return values, np.zeros(len(s), dtype=bool)
    t = as_text(s)
    parsed = pd.to_numeric(t, errors="coerce")
    values = pd.Series(parsed).to_numpy(dtype="float64", na_value=np.nan)
    junk = t.notna().to_numpy() & np.isnan(values)
    return values, junk


def _row_numbers(index: pd.Index) -> np.ndarray:
    # The index from io is the 0-based data-row position; anything else falls back to the
    # position in this frame.
    if (
        pd.api.types.is_integer_dtype(index.dtype)
        and index.is_unique
        and (len(index) == 0 or index.min() >= 0)
    ):
        return index.to_numpy(dtype="int64") + 1
    return np.arange(1, len(index) + 1, dtype="int64")


# --------------------------------------------------------------------------- checks


def _check_ids(
    df: pd.DataFrame, fails: _Failures, rows: np.ndarray, seen_ids: IdTracker | None
) -> pd.Series:
    ids = as_text(df["declaration_id"])
    missing = ids.isna().to_numpy()
    fails.add("declaration_id", missing, "declaration_id is missing")
    present = ~missing
    dup = ids.duplicated(keep="first").to_numpy() & present
    if dup.any():
        firsts = ~dup & present
        first_row = pd.Series(rows[firsts], index=ids[firsts].to_numpy())
        seen_at = ids[dup].map(first_row).astype("int64").astype(str)
        fails.add("declaration_id", dup, "duplicate declaration_id: first seen at row " + seen_at)
    if seen_ids is not None:
        earlier = np.zeros(len(ids), dtype=bool)
        earlier[present] = seen_ids.check_and_add(ids[present])
        fails.add(
            "declaration_id",
            earlier & ~dup,
            "duplicate declaration_id: already seen in an earlier chunk",
        )
    return ids


def _check_hs(s: pd.Series, fails: _Failures) -> pd.Series:
    n = len(s)
    # Numbers lose the leading zero of chapters 01-09 (30490.0 was "030490"): such values
    # take the numeric path, as do strings like "30490.0" written by a spreadsheet.
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        numeric = s.notna().to_numpy()
        text = pd.Series(np.nan, index=s.index, dtype="str")
    else:
        if pd.api.types.is_object_dtype(s.dtype):
            kinds = s.map(type)
            numeric = kinds.isin((int, float, np.integer, np.floating, np.int64, np.float64)).to_numpy()
        else:
            numeric = np.zeros(n, dtype=bool)
        text = as_text(s.where(~numeric) if numeric.any() else s)
        float_like = text.str.fullmatch(r"[0-9]+\.0").to_numpy(dtype=bool, na_value=False)
        numeric = numeric | float_like
    missing = ~numeric & text.isna().to_numpy()
    fails.add("hs_code", missing, "hs_code is missing")

    # Codes repeat (a few thousand distinct in millions of rows): clean the distinct
    # values once and map back, rather than run a regex per row.
    codes, uniq = pd.factorize(text)
    cleaned = pd.Series(uniq, dtype="str").str.replace(r"[\s.]", "", regex=True)
    # Back to one value per row by an Arrow take (-1 = missing), not per Python object.
    out = pd.Series(cleaned.array.take(codes, allow_fill=True), index=s.index, dtype="str")
    if numeric.any():
        if pd.api.types.is_numeric_dtype(s.dtype):
            v = s.to_numpy(dtype="float64", na_value=np.nan)
        else:
            parsed = pd.to_numeric(s.where(numeric).astype("str"), errors="coerce")
            v = pd.Series(parsed).to_numpy(dtype="float64", na_value=np.nan)
        whole = numeric & np.isfinite(v) & (v > 0) & (v < 1e10)
        whole &= np.trunc(np.where(whole, v, 0)) == np.where(whole, v, 0)
        digits = pd.Series(np.where(whole, v, 0).astype("int64"), index=s.index).astype("str")
        odd = (digits.str.len() % 2 == 1).to_numpy()
        digits = digits.where(~odd, "0" + digits)
        bad_num = numeric & ~whole
        fails.add(
            "hs_code",
            bad_num,
            "hs_code must be 6-10 digits: got " + _num_show(v[bad_num]) + " (not a whole number)",
        )
        out = out.where(~whole, digits)
        out = out.mask(bad_num)
    else:
        bad_num = np.zeros(n, dtype=bool)
    ok = out.str.fullmatch(r"[0-9]{6,10}").to_numpy(dtype=bool, na_value=False)
    bad = ~ok & ~missing & ~bad_num
    if bad.any():
        shown = out.where(numeric, text)[bad]
        hint = np.where(
            shown.str.fullmatch(r"[0-9]{5}").to_numpy(dtype=bool, na_value=False),
            " (a leading zero lost in a spreadsheet? write it as text)",
            "",
        )
        fails.add("hs_code", bad, "hs_code must be 6-10 digits: got " + _show(shown) + hint)
    return out.where(ok).astype("str")


def _check_country(df: pd.DataFrame, name: str, required: bool, fails: _Failures) -> pd.Series:
    t = as_text(df[name]).str.upper()
    t = t.mask(t.isin(_UNKNOWN_SPELLINGS), UNKNOWN_COUNTRY)
    missing = t.isna().to_numpy()
    if required:
        fails.add(name, missing, f"{name} is missing")
    bad = ~missing & ~t.isin(_COUNTRY_LIST).to_numpy()
    if bad.any():
        fails.add(name, bad, f"{name} is not an ISO 3166-1 alpha-2 code: " + _show(t[bad]))
    return t.where(~bad)


def _check_number(
    df: pd.DataFrame, rule: _NumericRule, fails: _Failures
) -> tuple[np.ndarray, np.ndarray]:
    """Values and a mask of rows that failed on this column."""
    name = rule.name
    s = df[name]
    v, junk = _numbers(s)
    failed = junk.copy()
    if junk.any():
        text = as_text(s)[junk]
        hint = np.where(text.str.fullmatch(_DECIMAL_COMMA).fillna(False).to_numpy(bool),
                        _COMMA_HINT, "")
        fails.add(name, junk, (f"{name} is not a number: " + _show(text)).to_numpy() + hint)
    missing = np.isnan(v) & ~junk
    if rule.required:
        fails.add(name, missing, f"{name} is missing")
        failed |= missing
    inf = np.isinf(v)
    fails.add(name, inf, f"{name} must be finite: got " + _num_show(v[inf]))
    failed |= inf
    finite = np.isfinite(v)
    low = (v < rule.low) if rule.low_inclusive else (v <= rule.low)
    low &= finite
    op = ">=" if rule.low_inclusive else ">"
    fails.add(name, low, f"{name} must be {op} {rule.low:g}: got " + _num_show(v[low]))
    high = finite & (v > rule.high) & ~low
    fails.add(
        name,
        high,
        f"{name} exceeds the plausible maximum {rule.high:g}{rule.unit}: got " + _num_show(v[high]),
    )
    failed |= low | high
    if rule.integer:
        frac = finite & ~failed & (v != np.trunc(np.where(finite, v, 0)))
        fails.add(name, frac, f"{name} must be a whole number: got " + _num_show(v[frac]))
        failed |= frac
    return v, failed


def _check_date(s: pd.Series, fails: _Failures) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        dt = s.dt.tz_convert(None)
        shown = s.astype("str")
        bad = np.zeros(len(s), dtype=bool)
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        dt = s
        shown = s.astype("str")
        bad = np.zeros(len(s), dtype=bool)
    else:
        t = as_text(s)
        shown = t
        # Dates repeat (a few hundred distinct in a chunk): parse each distinct text once.
        codes, uniq = pd.factorize(t)
        u = pd.Series(uniq, dtype="str")
        # "2026-03-01" or an ISO datetime "2026-03-01T10:00:00" (the time is dropped).
        iso = u.str.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:$|[T ])").to_numpy(dtype=bool, na_value=False)
        parsed = pd.to_datetime(u.str.slice(0, 10).where(iso), format="%Y-%m-%d",
                                errors="coerce").to_numpy()
        dt = pd.Series(np.append(parsed, np.array(["NaT"], dtype=parsed.dtype))[codes],
                       index=s.index)
        bad = t.notna().to_numpy() & dt.isna().to_numpy()
        fails.add("date", bad, "date is not a valid YYYY-MM-DD date: " + _show(t[bad]))
    dt = dt.dt.normalize()
    present = dt.notna().to_numpy()
    out_of_range = present & ~(
        (dt >= pd.Timestamp(DATE_MIN)) & (dt <= pd.Timestamp(DATE_MAX))
    ).to_numpy()
    fails.add(
        "date",
        out_of_range,
        f"date is outside {DATE_MIN}..{DATE_MAX}: got " + _show(shown[out_of_range]),
    )
    # Masked before the cast: a year 9999 does not fit datetime64[ns].
    return dt.mask(out_of_range | bad).astype("datetime64[ns]")


def _labels(df: pd.DataFrame) -> dict[str, pd.Series]:
    out: dict[str, pd.Series] = {}
    if "is_fraud" in df.columns:
        s = df["is_fraud"]
        if pd.api.types.is_numeric_dtype(s.dtype):
            v = s.to_numpy(dtype="float64", na_value=np.nan)
        else:
            t = as_text(s).str.lower()
            words = t.map({"true": 1.0, "yes": 1.0, "y": 1.0, "false": 0.0, "no": 0.0, "n": 0.0})
            v = pd.Series(pd.to_numeric(t, errors="coerce")).to_numpy("float64", na_value=np.nan)
            w = words.to_numpy(dtype="float64", na_value=np.nan)
            v = np.where(np.isnan(w), v, w)
        ok = (v == 0) | (v == 1)
        out["is_fraud"] = pd.Series(np.where(ok, v, 0), index=s.index).astype("Int64").where(ok)
    if "revenue" in df.columns:
        v, _ = _numbers(df["revenue"])
        out["revenue"] = pd.Series(np.where(np.isfinite(v), v, np.nan), index=df.index)
    if "fraud_scheme" in df.columns:
        out["fraud_scheme"] = as_text(df["fraud_scheme"])
    return out


def _rejects(fails: _Failures, rows: np.ndarray, ids: pd.Series) -> pd.DataFrame:
    if not fails.items:
        return pd.DataFrame(
            {
                "row_number": pd.Series([], dtype="int64"),
                "declaration_id": pd.Series([], dtype="str"),
                "column": pd.Series([], dtype="str"),
                "reason": pd.Series([], dtype="str"),
            }
        )
    pos = np.flatnonzero(fails.any)
    column = pd.Series(np.full(len(pos), None, dtype=object))
    reason = pd.Series(np.full(len(pos), None, dtype=object))
    # One vectorized pass per check (a few dozen), never one per row.
    for name, fpos, text in fails.items:
        ix = np.searchsorted(pos, fpos)
        cur_c = column.iloc[ix].reset_index(drop=True)
        cur_r = reason.iloc[ix].reset_index(drop=True)
        new_r = pd.Series(text, dtype=object)
        first = cur_c.isna().to_numpy()
        column.iloc[ix] = np.where(first, name, (cur_c.fillna("") + ";" + name).to_numpy())
        reason.iloc[ix] = np.where(first, new_r, (cur_r.fillna("") + "; " + new_r).to_numpy())
    return pd.DataFrame(
        {
            "row_number": rows[pos],
            "declaration_id": ids.iloc[pos].fillna("").astype("str").to_numpy(),
            "column": column.astype("str").to_numpy(),
            "reason": reason.astype("str").to_numpy(),
        }
    ).astype({"declaration_id": "str", "column": "str", "reason": "str"})


# --------------------------------------------------------------------------- public


def _check_frame(df: pd.DataFrame) -> None:
    """Whole-frame problems: duplicate column names, a required column absent."""
    names = [str(c) for c in df.columns]
    dups = sorted({c for c in names if names.count(c) > 1})
    if dups:
        raise SchemaError(f"duplicate column names in the input: {dups}; each column must be unique")
    missing_cols = [c for c in REQUIRED if c not in df.columns]
    if missing_cols:
        raise SchemaError(
            f"missing required column(s) {missing_cols}; required: {list(REQUIRED)}; "
            f"got: {names[:20]}"
        )



def _check_numbers(df: pd.DataFrame, fails: _Failures) -> dict[str, pd.Series]:
    """The numeric columns converted (bad values NaN), with their rules and the mass check."""
    conv: dict[str, pd.Series] = {}
    numbers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for rule in _NUMERIC_RULES:
        if rule.name in df.columns:
            numbers[rule.name] = _check_number(df, rule, fails)
    if "gross_mass_kg" in numbers:
        net, net_bad = numbers["net_mass_kg"]
        gross, gross_bad = numbers["gross_mass_kg"]
        both = ~net_bad & ~gross_bad & np.isfinite(net) & np.isfinite(gross)
        below = both & (gross < net * (1 - _MASS_TOLERANCE))
        fails.add(
            "gross_mass_kg",
            below,
            "gross_mass_kg must be >= net_mass_kg: net_mass_kg "
            + _num_show(net[below])
            + " > gross_mass_kg "
            + _num_show(gross[below]),
        )
    for name, (v, _) in numbers.items():
        col = pd.Series(np.where(np.isfinite(v), v, np.nan), index=df.index)
        conv[name] = col
    if "packages" in numbers:
        v, bad = numbers["packages"]
        keep = np.isfinite(v) & ~bad
        conv["packages"] = (
            pd.Series(np.where(keep, v, 0), index=df.index).astype("int64").astype("Int64").where(keep)
        )
    return conv


def _fold_text(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Units folded to their canonical spelling, codes upper-cased, mode lower-cased."""
    conv: dict[str, pd.Series] = {}
    if "unit" in df.columns:
        t = as_text(df["unit"])
        # normalise_unit is a Python function: call it once per distinct value only.
        folded = {u: normalise_unit(u) for u in t.dropna().unique()}
        conv["unit"] = t.map(folded).astype("str")
    if "transport_mode" in df.columns:
        conv["transport_mode"] = as_text(df["transport_mode"]).str.lower()
    for name in _UPPER_CODES:
        if name in df.columns:
            conv[name] = as_text(df[name]).str.upper()
    for name in _FREE_TEXT:
        if name in df.columns:
            conv[name] = as_text(df[name])
    return conv


def validate(df: pd.DataFrame, *, seen_ids: IdTracker | None = None) -> ValidationResult:
    """Split ``df`` (canonical names, raw values) into valid rows and rejects.

    ``seen_ids``: an :class:`IdTracker` shared across the chunks of one stream, so that a
    declaration_id repeated in a later chunk is rejected too (it is updated in place).
    Raises :class:`SchemaError` only for whole-frame problems (a required column absent,
    duplicate column names); everything row-level becomes a reject.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate expects a pandas DataFrame, got {type(df).__name__}")
    if seen_ids is not None and not isinstance(seen_ids, IdTracker):
        raise TypeError(f"seen_ids must be an IdTracker, got {type(seen_ids).__name__}")
    _check_frame(df)
    n = len(df)
    rows = _row_numbers(df.index)
    fails = _Failures(n)
    conv: dict[str, pd.Series] = {}

    ids = _check_ids(df, fails, rows, seen_ids)
    conv["declaration_id"] = ids
    conv["hs_code"] = _check_hs(df["hs_code"], fails)
    conv["origin_country"] = _check_country(df, "origin_country", True, fails)
    if "dispatch_country" in df.columns:
        conv["dispatch_country"] = _check_country(df, "dispatch_country", False, fails)

    conv.update(_check_numbers(df, fails))
    if "date" in df.columns:
        conv["date"] = _check_date(df["date"], fails)
    conv.update(_fold_text(df))
    conv.update(_labels(df))

    rejects = _rejects(fails, rows, ids)
    # A shallow copy: converted columns replace the input's, which stays untouched.
    out = df.copy(deep=False)
    for name, series in conv.items():
        out.isetitem(out.columns.get_loc(name), series.set_axis(out.index))
    # The usual chunk has no rejects: no row selection, no copy of every column.
    valid = out.iloc[np.flatnonzero(~fails.any)] if fails.any.any() else out
    return ValidationResult(valid=valid, rejects=rejects)


class RejectTally:
    """Counts and first examples of rejects per (column, rule), added up chunk by chunk,
    so that a summary of a streamed file counts every reject, not the first of each
    chunk. :func:`summarise_rejects` is one tally of one frame."""

    def __init__(self, max_examples: int = 3) -> None:
        self.max_examples = max_examples
        self._counts: dict[tuple[str, str], int] = {}
        self._examples: dict[tuple[str, str], list[str]] = {}
        self._comma = False

    def add(self, rejects: pd.DataFrame | None) -> RejectTally:
        if rejects is None or len(rejects) == 0:
            return self
        r = pd.DataFrame(
            {
                "column": rejects["column"].astype("str").str.split(";"),
                "reason": rejects["reason"].astype("str").str.split("; "),
                "example": rejects["declaration_id"].fillna("").astype("str"),
            }
        )
        empty = (r["example"] == "").to_numpy()
        r.loc[empty, "example"] = "row " + rejects["row_number"].astype("str")[empty].to_numpy()
        # A hand-edited rejects file may not pair columns and reasons: keep such rows whole.
        same = (r["column"].str.len() == r["reason"].str.len()).to_numpy()
        if not same.all():
            r.loc[~same, "column"] = rejects["column"].astype("str")[~same].map(lambda c: [c])
            r.loc[~same, "reason"] = rejects["reason"].astype("str")[~same].map(lambda c: [c])
        e = r.explode(["column", "reason"], ignore_index=True)
        e["kind"] = e["reason"].astype("str").str.split(": ", n=1).str[0]
        groups = e.groupby(["column", "kind"], sort=False)
        heads = groups.head(self.max_examples).groupby(["column", "kind"], sort=False)["example"]
        for key, count in groups.size().items():
            self._counts[key] = self._counts.get(key, 0) + int(count)
        for key, ex in heads.agg(list).items():
            have = self._examples.setdefault(key, [])
            have.extend(ex[: self.max_examples - len(have)])
        self._comma = self._comma or bool(
            rejects["reason"].astype("str").str.contains(_COMMA_HINT, regex=False).any())
        return self

    def merge(self, other: RejectTally) -> RejectTally:
        """Add ``other``'s counts and examples (a later part of the same input: its
        examples come after ours), as a tally of both parts at once would have them."""
        for key, count in other._counts.items():
            self._counts[key] = self._counts.get(key, 0) + count
            have = self._examples.setdefault(key, [])
            have.extend(other._examples[key][: self.max_examples - len(have)])
        self._comma = self._comma or other._comma
        return self

    def summary(self) -> str:
        """One line per (column, rule) with the count and a few example ids, most common
        first (ties in the order first seen)."""
        order = sorted(self._counts, key=lambda k: -self._counts[k])  # stable
        lines = []
        for column, kind in order:
            count = self._counts[(column, kind)]
            lines.append(f"{column}: {count} row{'s' if count != 1 else ''} - {kind} "
                         f"(e.g. {', '.join(self._examples[(column, kind)])})")
        if self._comma:
            lines.append("numbers are written with a decimal comma (12,5): read the file with "
                         "--decimal , (and --sep if needed)")
        return "\n".join(lines)


def summarise_rejects(rejects: pd.DataFrame, max_examples: int = 3) -> str:
    """One line per (column, rule) with the count and a few example ids, most common first.

    >>> print(summarise_rejects(validate(frame).rejects))  # doctest: +SKIP
    net_mass_kg: 12 rows - net_mass_kg is not a number (e.g. D001, D017, D230)
    """
    return RejectTally(max_examples).add(rejects).summary()


# --------------------------------------------------------------------------- one record
# The single-declaration path (DeclarationModel.score_one) cannot afford pandas' per-call
# overhead; it applies the same rules as `validate` to one dict with plain Python. A test
# checks both give the same verdict on generated and damaged records.

_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:$|[T ])")
_HS_DIGITS = re.compile(r"^[0-9]{6,10}$")


def _blank(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float) and v != v:
        return True
    return isinstance(v, str) and not v.strip()


def _record_text(v: Any) -> str | None:
    if _blank(v):
        return None
    if isinstance(v, float) and np.isfinite(v) and v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return str(v).strip() or None


def check_record(record: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Validate one declaration given as a mapping: (clean values, [(column, reason)]).

    Clean values use the same canonical forms as :func:`validate` (floats, stripped and
    case-folded codes, folded units, dates as 'YYYY-MM-DD'); problems use its wording.
    """
    if not hasattr(record, "get"):
        return {}, [("declaration_id", f"a declaration must be a mapping, got "
                     f"{type(record).__name__}")]
    problems: list[tuple[str, str]] = []
    clean: dict[str, Any] = {}
    did = _record_text(record.get("declaration_id"))
    clean["declaration_id"] = did
    if did is None:
        problems.append(("declaration_id", "declaration_id is missing"))
    clean["hs_code"] = _record_hs(record.get("hs_code"), problems)
    for name, required in (("origin_country", True), ("dispatch_country", False)):
        clean[name] = _record_country(name, record.get(name), required, problems)
    for rule in _NUMERIC_RULES:
        clean[rule.name] = _record_number(rule, record.get(rule.name), problems)
    net, gross = clean.get("net_mass_kg"), clean.get("gross_mass_kg")
    if net == net and gross == gross and gross < net * (1 - _MASS_TOLERANCE):
        problems.append(("gross_mass_kg", f"gross_mass_kg must be >= net_mass_kg: net_mass_kg "
                         f"{net} > gross_mass_kg {gross}"))
    clean["date"] = _record_date(record.get("date"), problems)
    unit = _record_text(record.get("unit"))
    clean["unit"] = normalise_unit(unit) if unit is not None else None
    mode = _record_text(record.get("transport_mode"))
    clean["transport_mode"] = mode.lower() if mode is not None else None
    for name in _UPPER_CODES:
        t = _record_text(record.get(name))
        clean[name] = t.upper() if t is not None else None
    for name in _FREE_TEXT:
        clean[name] = _record_text(record.get(name))
    return clean, problems


def _even_digits(digits: str) -> str:
    """An HS code read as a number lost its leading zero: codes have an even length."""
    return "0" + digits if len(digits) % 2 else digits


def _record_hs(hs: Any, problems: list[tuple[str, str]]) -> str | None:
    """The commodity code as 6-10 digits (None, with a problem, when it is not one)."""
    if _blank(hs):
        problems.append(("hs_code", "hs_code is missing"))
        return None
    if isinstance(hs, (int, float, np.integer, np.floating)) and not isinstance(hs, bool):
        try:
            f = float(hs)
        except OverflowError:  # an integer beyond float range
            f = float("inf")
        if np.isfinite(f) and 0 < f < 1e10 and f == int(f):
            hs_s = _even_digits(str(int(f)))
        else:
            problems.append(("hs_code", f"hs_code must be 6-10 digits: got {f!r} "
                             "(not a whole number)"))
            return None
    else:
        raw = str(hs).strip()
        if re.fullmatch(r"[0-9]+\.0", raw):  # a number written by a spreadsheet
            hs_s = _even_digits(raw[:-2])
        else:
            hs_s = re.sub(r"[\s.]", "", raw)
    if not _HS_DIGITS.match(hs_s):
        problems.append(("hs_code", f"hs_code must be 6-10 digits: got '{hs_s[:40]}'"))
        return None
    return hs_s


def _record_country(name: str, v: Any, required: bool,
                    problems: list[tuple[str, str]]) -> str | None:
    """An ISO 3166-1 alpha-2 code, upper case; the unknown spellings folded to one."""
    t = _record_text(v)
    t = t.upper() if t is not None else None
    if t in UNKNOWN_COUNTRY_SPELLINGS:
        t = UNKNOWN_COUNTRY
    if t is None and required:
        problems.append((name, f"{name} is missing"))
    elif t is not None and t not in COUNTRIES and t != UNKNOWN_COUNTRY:
        problems.append((name, f"{name} is not an ISO 3166-1 alpha-2 code: '{t[:40]}'"))
        t = None
    return t


def _record_number(rule, v: Any, problems: list[tuple[str, str]]) -> float:
    """One numeric field under its rule: the number, or NaN (with a problem unless it is
    an optional field left blank)."""
    name = rule.name
    if _blank(v):
        if rule.required:
            problems.append((name, f"{name} is missing"))
        return float("nan")
    try:
        f = float(v.strip()) if isinstance(v, str) else float(v)
    except OverflowError:  # an integer beyond float range: absurdly large
        problems.append((name, f"{name} exceeds the plausible maximum "
                         f"{rule.high:g}{rule.unit}: got {str(v)[:40]}"))
        return float("nan")
    except (TypeError, ValueError):
        hint = _COMMA_HINT if re.fullmatch(_DECIMAL_COMMA, str(v)) else ""
        problems.append((name, f"{name} is not a number: '{str(v)[:40]}'{hint}"))
        return float("nan")
    if f != f:
        if not rule.required:
            return f
        problem = f"{name} is missing"
    elif f in (float("inf"), float("-inf")):
        problem = f"{name} must be finite: got {f}"
    elif (f < rule.low) if rule.low_inclusive else (f <= rule.low):
        op = ">=" if rule.low_inclusive else ">"
        problem = f"{name} must be {op} {rule.low:g}: got {f}"
    elif f > rule.high:
        problem = f"{name} exceeds the plausible maximum {rule.high:g}{rule.unit}: got {f}"
    elif rule.integer and f != int(f):
        problem = f"{name} must be a whole number: got {f}"
    else:
        return f
    problems.append((name, problem))
    return float("nan")


def _record_date(d: Any, problems: list[tuple[str, str]]) -> str | None:
    """The date as 'YYYY-MM-DD' within DATE_MIN..DATE_MAX (None when blank or invalid)."""
    if _blank(d):
        return None
    text = str(d).strip()
    m = _ISO_DATE.match(text)
    if m is None:
        problems.append(("date", f"date is not a valid YYYY-MM-DD date: '{text[:40]}'"))
        return None
    try:
        day = np.datetime64(text[:10], "D")
    except ValueError:
        problems.append(("date", f"date is not a valid YYYY-MM-DD date: '{text[:40]}'"))
        return None
    if not np.datetime64(DATE_MIN) <= day <= np.datetime64(DATE_MAX):
        problems.append(("date", f"date is outside {DATE_MIN}..{DATE_MAX}: got '{text[:40]}'"))
        return None
    return text[:10]
