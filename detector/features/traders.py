"""Trader history: how new the exporter and importer are, how rare the origin and the
heading are in the exporter's own history, and the declared value per kg against the
exporter's own prices for the code.

Fitted statistics: counts ``cnt|exp``, ``cnt|imp``, ``cnt|exp|origin``, ``cnt|exp|hs4``
(additive); the exporters' price levels ``hist|{key,n,med}`` per (exporter, full code) and
one pooled price scale ``hist|scale`` (grouped).
"""

from __future__ import annotations

import numpy as np

from .lookup import (
    HISTORY_MIN_ROWS,
    MAD_TO_SD,
    MIN_LOG_SCALE,
    Z_CLIP,
    count_table,
    pair_key,
    put_counted,
    signed_log,
)
from .ratios import ratio
from .spec import Family, FeatureSpec
from .words import counted, hs4, num, seen_times, shown, values

__all__ = ["FAMILY", "SPECS"]

SPECS = (
    FeatureSpec("exporter_origin_rarity", "route", ("exporter_id",), "surprisal",
                "how rare this origin is in the exporter's history",
                reason_codes=("ORIGIN_NEW_FOR_EXPORTER", "ORIGIN_NEW_FOR_EXPORTER")),
    FeatureSpec("exporter_commodity_rarity", "route", ("exporter_id",), "surprisal",
                "how rare this commodity (4-digit heading) is in the exporter's history",
                reason_codes=("COMMODITY_NEW_FOR_EXPORTER", "COMMODITY_NEW_FOR_EXPORTER")),
    FeatureSpec("exporter_history", "traders", ("exporter_id",), "history",
                "novelty of the exporter: 1 / (1 + its declarations seen in training)",
                reason_codes=("NEW_EXPORTER", "ESTABLISHED_EXPORTER")),
    FeatureSpec("importer_history", "traders", ("importer_id",), "history",
                "novelty of the importer: 1 / (1 + its declarations seen in training)",
                reason_codes=("NEW_IMPORTER", "ESTABLISHED_IMPORTER")),
    FeatureSpec("value_vs_history_z", "traders", ("exporter_id",), "z",
                "value per kg against this exporter's own prices for this commodity",
                reason_codes=("VALUE_ABOVE_OWN_HISTORY", "VALUE_BELOW_OWN_HISTORY")),
)
_HISTORY_MIN_SCALE = 0.05


def _fit(f, r, t) -> None:
    for who, col in (("exp", "exporter_id"), ("imp", "importer_id")):
        t[f"cnt|{who}|key"], t[f"cnt|{who}|n"] = count_table(r[col])
    t["cnt|exp|origin|key"], t["cnt|exp|origin|n"] = count_table(
        pair_key(r["exporter_id"], r["origin_country"], len(t["vocab_origin_country"])))
    t["cnt|exp|hs4|key"], t["cnt|exp|hs4|n"] = count_table(
        pair_key(r["exporter_id"], r["hs4"], len(t["vocab_hs4"])))


def _value_groups(f) -> list:
    # The exporters' own price levels per full code.
    return [("hist", "hist", MIN_LOG_SCALE, "value_per_kg", "exporter_hs")]


def _group_input(f, r, spec, cache: dict):
    return (pair_key(r["exporter_id"], r["hs"], len(f.tables_["vocab_hs"])),
            ratio("value_per_kg", r))


def _finish(t: dict, n_rows: int) -> None:
    # One price scale pooled over all sellers with enough history: a seller's own
    # spread, estimated from five lots, would be too noisy to divide by.
    dev = t.pop("hist|dev")
    scale = float(np.median(dev)) * MAD_TO_SD if len(dev) else 1.0
    t["hist|scale"] = np.array([max(scale, _HISTORY_MIN_SCALE)])


def _history_surprisal(f, r, what: str, loo: bool):
    """-log P(origin or heading | exporter) from its history (NaN for a new exporter),
    with the counts behind it."""
    if len(r["hs"]) == 1 and not loo:
        other = r["origin_country"] if what == "origin" else r["hs4"]
        key = ("h", what, int(r["exporter_id"][0]), int(other[0]))
        return f.memoized(key, lambda: _history_surprisal_rows(f, r, what, loo))
    return _history_surprisal_rows(f, r, what, loo)


def _history_surprisal_rows(f, r, what: str, loo: bool):
    t = f.tables_
    trader = r["exporter_id"]
    other, vocab = (r["origin_country"], "origin_country") if what == "origin" else \
        (r["hs4"], "hs4")
    n_tr = f.table_val("cnt|exp", "n", f.table_pos("cnt|exp", trader), 0).astype(float)
    pair = pair_key(trader, other, len(t[f"vocab_{vocab}"]))
    pre = f"cnt|exp|{what}"
    n_pair = f.table_val(pre, "n", f.table_pos(pre, pair), 0).astype(float)
    if loo:
        n_tr, n_pair = n_tr - 1, np.maximum(n_pair - (pair >= 0), 0)
    # n_tr is -1 for a missing exporter under leave-one-out: clip before dividing.
    out = np.where(n_tr > 0, -np.log((n_pair + 0.5) / (np.maximum(n_tr, 0) + 1.0)), np.nan)
    return out, n_pair, np.maximum(n_tr, 0)


def _price_history(f, r, loo: bool):
    t = f.tables_
    key = pair_key(r["exporter_id"], r["hs"], len(t["vocab_hs"]))
    pos = f.table_pos("hist", key)
    cnt = f.table_val("hist", "n", pos, 0).astype(float) - (1 if loo else 0)
    med = f.table_val("hist", "med", pos, np.nan)
    x = ratio("value_per_kg", r)
    z = np.clip((x - med) / t["hist|scale"][0], -Z_CLIP, Z_CLIP)
    return np.where(cnt >= HISTORY_MIN_ROWS, z, np.nan), med


def _transform(f, r, context, loo: bool, cols: dict, det: dict) -> None:
    put_counted(cols, det, "exporter_origin_rarity", _history_surprisal(f, r, "origin", loo))
    put_counted(cols, det, "exporter_commodity_rarity", _history_surprisal(f, r, "hs4", loo))
    for name, who, col in (("exporter_history", "exp", "exporter_id"),
                           ("importer_history", "imp", "importer_id")):
        c = f.table_val(f"cnt|{who}", "n", f.table_pos(f"cnt|{who}", r[col]), 0).astype(float)
        if loo:
            c = np.maximum(c - 1, 0)
        # Novelty, not volume: 1 for a trader never seen, 1/2 seen once, near 0 for an
        # established one. On log counts the forest would spend its cuts telling big
        # shippers from middling ones, which says nothing about fraud.
        cols[name] = np.where(r[f"{col}_raw"] != None, 1.0 / (1.0 + c), np.nan)  # noqa: E711
    z, det["history|med"] = _price_history(f, r, loo)
    det["history|z"] = z
    cols["value_vs_history_z"] = signed_log(z)


def _sentence(name: str, high, det: dict, rows: np.ndarray) -> np.ndarray | None:
    """What training knew of the trader: how often seen, with this origin or code, and
    at what price."""
    r = det["r"]
    if name == "value_vs_history_z":
        x = det["value_per_kg|x"][rows]
        return ("value " + num(np.exp(x)) + " per kg vs " + num(np.exp(det["history|med"][rows]))
                + " usual for exporter " + shown(r["exporter_id_raw"][rows]) + " on this code")
    exporter = "exporter " + shown(r["exporter_id_raw"][rows])
    if name == "exporter_origin_rarity":
        return counted(det, name, rows, exporter + ": origin "
                       + shown(r["origin_country_raw"][rows])) + " by this exporter"
    if name == "exporter_commodity_rarity":
        return counted(det, name, rows, exporter + ": hs " + hs4(det, rows)) + " by this exporter"
    if name in ("exporter_history", "importer_history"):
        who = "exporter" if name == "exporter_history" else "importer"
        return seen_times(values(det, name, rows),
                          who + " " + shown(r[f"{who}_id_raw"][rows]))
    return None


FAMILY = Family("traders", SPECS, _transform, fit=_fit, value_groups=_value_groups,
                group_input=_group_input, finish=_finish, sentence=_sentence)
