"""Categorical surprisal with HS backoff: -log P(category | commodity) at the finest HS
level with at least ``min_rows`` training rows (origin, transport mode, package type,
supplementary unit, agency categorical columns as ``extra_rarity:<column>``), the route
(dispatch country for the origin, origin differing from dispatch) and the novelty of the
declared code.

Fitted statistics (counts, additive): ``cnt|<level>`` (rows per code at each HS level,
also read by the composition family and the coverage summary), ``cnt|<level>|<cat>``,
``cnt|all|<cat>``, ``cnt|origin``, ``cnt|origin|dispatch``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .lookup import LEVELS, count_table, pair_key, put_counted
from .spec import EXTRA_RARITY, Family, FeatureSpec
from .words import counted, seen_times, shown, values

__all__ = ["FAMILY", "SPECS", "cond_surprisal"]

SPECS = (
    FeatureSpec("origin_rarity", "route", (), "surprisal",
                "how rare this origin is for the commodity",
                reason_codes=("ORIGIN_RARE_FOR_COMMODITY", "ORIGIN_RARE_FOR_COMMODITY")),
    FeatureSpec("origin_dispatch_rarity", "route", ("dispatch_country",), "surprisal",
                "how rare this dispatch country is for this origin",
                reason_codes=("ROUTE_RARE_FOR_ORIGIN", "ROUTE_RARE_FOR_ORIGIN")),
    FeatureSpec("origin_differs", "route", ("dispatch_country",), "flag",
                "origin differs from the country of dispatch",
                reason_codes=("ORIGIN_DIFFERS_FROM_DISPATCH", "ORIGIN_EQUALS_DISPATCH")),
    FeatureSpec("mode_rarity", "route", ("transport_mode",), "surprisal",
                "how rare this transport mode is for the commodity",
                reason_codes=("TRANSPORT_MODE_RARE", "TRANSPORT_MODE_RARE")),
    FeatureSpec("package_rarity", "route", ("package_type",), "surprisal",
                "how rare this package type is for the commodity",
                reason_codes=("PACKAGE_TYPE_RARE", "PACKAGE_TYPE_RARE")),
    FeatureSpec("unit_rarity", "route", ("unit",), "surprisal",
                "how rare this supplementary unit is for the commodity",
                reason_codes=("UNIT_RARE_FOR_COMMODITY", "UNIT_RARE_FOR_COMMODITY")),
    FeatureSpec("commodity_novelty", "route", (), "history",
                "novelty of the declared code: 1 / (1 + its declarations seen in training)",
                reason_codes=("COMMODITY_RARE_IN_TRAINING", "COMMODITY_COMMON")),
)
_CONDITIONAL = ("origin_country", "transport_mode", "package_type", "unit")


def _fit(f, r, t) -> None:
    cats = (*_CONDITIONAL, *(f"x:{c}" for c in f.extra_categorical))
    for lvl in LEVELS:
        t[f"cnt|{lvl}|key"], t[f"cnt|{lvl}|n"] = count_table(r[lvl])
        for cat in cats:
            nb = len(t[f"vocab_{cat}"])
            t[f"cnt|{lvl}|{cat}|key"], t[f"cnt|{lvl}|{cat}|n"] = count_table(
                pair_key(r[lvl], r[cat], nb))
    for cat in cats:
        t[f"cnt|all|{cat}|key"], t[f"cnt|all|{cat}|n"] = count_table(r[cat])
    t["cnt|origin|key"], t["cnt|origin|n"] = count_table(r["origin_country"])
    t["cnt|origin|dispatch|key"], t["cnt|origin|dispatch|n"] = count_table(
        pair_key(r["origin_country"], r["dispatch_country"], len(t["vocab_dispatch_country"])))


def cond_surprisal(f, r, cat: str, loo: bool):
    """-log P(category | commodity) at the finest HS level with enough rows."""
    if len(r["hs"]) == 1 and not loo:
        key = f.memo_key(r, f"s|{cat}|{int(r[cat][0])}|{r[f'{cat}_raw'][0] is None}")
        return f.memoized(key, lambda: _cond_surprisal_rows(f, r, cat, loo))
    return _cond_surprisal_rows(f, r, cat, loo)


def _cond_surprisal_rows(f, r, cat: str, loo: bool):
    t = f.tables_
    nb = len(t[f"vocab_{cat}"])
    # A commodity too rare at every HS level is compared with all goods: how common
    # the category is overall (an unseen origin is still rare there).
    n_all = float(f.n_rows_) - (1 if loo else 0) if hasattr(f, "n_rows_") else None
    counts = t.get(f"cnt|all|{cat}|n")
    n = len(r["hs"])
    if counts is not None and n_all:
        n_c = f.table_val(f"cnt|all|{cat}", "n", f.table_pos(f"cnt|all|{cat}", r[cat]), 0)
        n_c = np.maximum(n_c.astype(float) - ((r[cat] >= 0) if loo else 0), 0)
        out = -np.log((n_c + 0.5) / (n_all + 1.0))
        seen, among = n_c, np.full(n, n_all)
    else:
        out = np.full(n, np.nan)
        seen, among = np.zeros(n), np.zeros(n)
    level = np.full(n, len(LEVELS), dtype=np.int64)
    for lvl in reversed(LEVELS):
        n_key = f.table_val(f"cnt|{lvl}", "n", f.table_pos(f"cnt|{lvl}", r[lvl]), 0)
        n_key = n_key.astype(float)
        pair = pair_key(r[lvl], r[cat], nb)
        pre = f"cnt|{lvl}|{cat}"
        n_pair = f.table_val(pre, "n", f.table_pos(pre, pair), 0).astype(float)
        if loo:
            n_key, n_pair = n_key - 1, np.maximum(n_pair - (pair >= 0), 0)
        ok = n_key >= f.min_rows
        out = np.where(ok, -np.log((n_pair + 0.5) / (np.maximum(n_key, 0) + 1.0)), out)
        seen, among = np.where(ok, n_pair, seen), np.where(ok, n_key, among)
        level = np.where(ok, LEVELS.index(lvl), level)
    missing = r[f"{cat}_raw"] == None  # noqa: E711 - elementwise on an object array
    # The counts behind the smoothed probability, for reasons that quote them.
    return np.where(missing, np.nan, out), seen, among, level


def _origin_dispatch(f, r, loo: bool, cols: dict, det: dict) -> None:
    t = f.tables_
    o, d = r["origin_country"], r["dispatch_country"]
    n_o = f.table_val("cnt|origin", "n", f.table_pos("cnt|origin", o), 0).astype(float)
    pair = pair_key(o, d, len(t["vocab_dispatch_country"]))
    n_od = f.table_val("cnt|origin|dispatch", "n", f.table_pos("cnt|origin|dispatch", pair), 0)
    n_od = n_od.astype(float)
    if loo:
        n_o, n_od = n_o - 1, np.maximum(n_od - (pair >= 0), 0)
    has_d = r["dispatch_country_raw"] != None  # noqa: E711
    cols["origin_dispatch_rarity"] = np.where(
        has_d, -np.log((n_od + 0.5) / (np.maximum(n_o, 0) + 1.0)), np.nan)
    det["origin_dispatch_rarity|seen"] = n_od
    det["origin_dispatch_rarity|among"] = np.maximum(n_o, 0)
    if len(r["hs"]) == 1:
        same = np.asarray([str(a).strip().upper() == str(b).strip().upper() for a, b in zip(
            r["origin_country_raw"], r["dispatch_country_raw"], strict=True)])
    else:
        # From the columns as read (Arrow strings): compared in C, missing never equal.
        o, d = (pd.Series(r.get(f"{c}|s", r[f"{c}_raw"]), dtype="str").str.strip()
                .str.upper() for c in ("origin_country", "dispatch_country"))
        same = (o.reset_index(drop=True) == d.reset_index(drop=True)).to_numpy(
            dtype=bool, na_value=False)
    cols["origin_differs"] = np.where(has_d, (~same.astype(bool)).astype(float), np.nan)


def _transform(f, r, context, loo: bool, cols: dict, det: dict) -> None:
    put_counted(cols, det, "origin_rarity", cond_surprisal(f, r, "origin_country", loo))
    _origin_dispatch(f, r, loo, cols, det)
    put_counted(cols, det, "mode_rarity", cond_surprisal(f, r, "transport_mode", loo))
    put_counted(cols, det, "package_rarity", cond_surprisal(f, r, "package_type", loo))
    put_counted(cols, det, "unit_rarity", cond_surprisal(f, r, "unit", loo))
    for c in f.extra_categorical:
        put_counted(cols, det, EXTRA_RARITY + c, cond_surprisal(f, r, f"x:{c}", loo))
    c = f.table_val("cnt|hs", "n", f.table_pos("cnt|hs", r["hs"]), 0).astype(float)
    if loo:
        c = np.maximum(c - 1, 0)
    cols["commodity_novelty"] = 1.0 / (1.0 + c)


# What each rarity's sentence counts, from the declaration's own values.
_COUNTED = {"origin_rarity": ("origin ", "origin_country_raw"),
            "mode_rarity": ("transport ", "transport_mode_raw"),
            "package_rarity": ("package type ", "package_type_raw"),
            "unit_rarity": ("unit ", "unit_raw")}


def _sentence(name: str, high, det: dict, rows: np.ndarray) -> np.ndarray | None:
    """How often training saw the declared category (for the commodity or the origin)."""
    r = det["r"]
    if name in _COUNTED:
        what, col = _COUNTED[name]
        return counted(det, name, rows, what + shown(r[col][rows]))
    if name.startswith(EXTRA_RARITY):
        col = name[len(EXTRA_RARITY):]
        return counted(det, name, rows, col + " " + shown(r[f"x:{col}_raw"][rows]))
    if name == "commodity_novelty":
        return seen_times(values(det, name, rows), "hs " + shown(det["hs_text"][rows]))
    origin = "origin " + shown(r["origin_country_raw"][rows])
    if name == "origin_dispatch_rarity":
        return counted(det, name, rows, origin + " dispatched from "
                       + shown(r["dispatch_country_raw"][rows]) + ":") + " with that origin"
    if name == "origin_differs":
        return origin + " but dispatched from " + shown(r["dispatch_country_raw"][rows])
    return None


FAMILY = Family("surprisal", SPECS, _transform, fit=_fit, sentence=_sentence)
