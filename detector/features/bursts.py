"""Parcel bursts: post/courier items from one sender on one day against its usual daily
count (splitting a consignment into many small parcels to stay under thresholds).

Fitted statistics: the count table ``burst|day`` per (sender, day) (additive), from which
``burst|{key,typical}`` (a sender's median daily count) is derived. A batch's own counts
(:func:`burst_context`) are computed over the whole input, so that chunks score alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .lookup import count_table, days, pair_key
from .spec import Family, FeatureSpec
from .words import num, shown, values

__all__ = ["FAMILY", "SPECS", "SMALL_MODES", "burst_context", "merge_contexts"]

SPECS = (
    FeatureSpec("parcel_burst", "traders", ("exporter_id", "date", "transport_mode"), "z",
                "post/courier items from this sender that day against its usual daily count",
                reason_codes=("PARCEL_BURST", "PARCEL_BURST")),
)
SMALL_MODES = ("post", "courier")
# (sender, day) pairs: days since 1970 stay below this up to the year 9999.
_DAY_SPAN = 1 << 22


def _small_modes(r: dict) -> np.ndarray:
    """Rows sent by post or courier (modes as ``prepare_rows`` made them: trimmed, lower case)."""
    mode = r.get("transport_mode|s")
    if mode is not None:  # a frame's column as read (Arrow strings): tested in C
        return mode.isin(SMALL_MODES).to_numpy(dtype=bool)
    return np.isin(np.asarray(r["transport_mode_raw"], dtype=str), SMALL_MODES)


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
    small_u = pd.Series(uniq, dtype="str").str.strip().str.lower().isin(SMALL_MODES)
    small = np.append(small_u.to_numpy(dtype=bool), False)[codes]  # -1: missing
    rows = np.flatnonzero(small)
    day = days(df["date"].iloc[rows].to_numpy())
    exp = pd.Series(df["exporter_id"].iloc[rows], dtype="str").str.strip()
    ok = (day >= 0) & exp.notna().to_numpy()
    if not ok.any():
        return pd.Series(dtype="int64")
    key = pd.DataFrame({"e": exp[ok].to_numpy(), "d": day[ok]})
    return key.groupby(["e", "d"]).size().astype("int64")

def merge_contexts(parts: list[pd.Series]) -> pd.Series:
    """The burst context of a whole made of parts: counts per (exporter, day) added."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.Series(dtype="int64")
    return pd.concat(parts).groupby(level=[0, 1]).sum().astype("int64")


def _fit(f, r, t) -> None:
    # Post/courier items per (sender, day): a count table; the usual daily count per
    # sender is derived from it once the whole dataset's counts are in.
    small = _small_modes(r)
    key = np.where(small & (r["day"] >= 0),
                   pair_key(r["exporter_id"], r["day"], _DAY_SPAN), -1)
    t["burst|day|key"], t["burst|day|n"] = count_table(key)


def _bursts(f, r, context) -> np.ndarray:
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
    typical = f.table_get("burst", "typical", r["exporter_id"][ok], 1.0)
    out[ok] = np.maximum(0.0, np.log(cnt) - np.log(np.maximum(typical, 1.0)))
    return out


def _finish(t: dict, n_rows: int) -> None:
    # A sender's usual daily count of post/courier items: the median over its days.
    key, n = t.pop("burst|day|key"), t.pop("burst|day|n")
    daily = pd.Series(n).groupby(key // (_DAY_SPAN + 1), sort=True).median()
    t["burst|key"] = daily.index.to_numpy(np.int64)
    t["burst|typical"] = daily.to_numpy(float)


def _transform(f, r, context, loo: bool, cols: dict, det: dict) -> None:
    cols["parcel_burst"] = _bursts(f, r, context)


def _sentence(name: str, high, det: dict, rows: np.ndarray) -> np.ndarray | None:
    """The day's post/courier count against the sender's usual daily count."""
    if name != "parcel_burst":
        return None
    return ("post/courier items from exporter " + shown(det["r"]["exporter_id_raw"][rows])
            + " that day: " + num(np.exp(values(det, name, rows))) + "x its usual daily count")


FAMILY = Family("bursts", SPECS, _transform, fit=_fit, finish=_finish, sentence=_sentence)
