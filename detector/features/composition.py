"""Composition and description: the declared composition against what the heading's
declarations usually contain (components foreign to the heading, rare earths beyond the
heading's usual share, a composition declared where not customary or missing where it
is), and the share of description words never used for the heading.

Fitted statistics: counts ``comp|<level>|{decl,item}``, ``comp|all|item``,
``desc|<level|all>|{has,tok}`` (additive); the mean rare-earth share ``comp|<level>|re``
and ``comp|all`` (grouped); vocabularies ``vocab_comp`` and ``vocab_tok``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .lookup import LEVELS, count_table, encode_against, expand, explode, factorize, pair_key
from .spec import Family, FeatureSpec
from .words import hs4, pct, shown, values

__all__ = ["FAMILY", "SPECS", "RARE_EARTHS", "composition_items", "parse_composition", "tokens"]

SPECS = (
    FeatureSpec("composition_foreign", "composition", ("composition",), "share",
                "share of the declared composition made of components foreign to the heading",
                reason_codes=("COMPOSITION_FOREIGN_TO_HEADING", "COMPOSITION_FOREIGN_TO_HEADING")),
    FeatureSpec("rare_earth_excess", "composition", ("composition",), "share",
                "rare-earth share of the declared composition beyond the heading's usual",
                reason_codes=("RARE_EARTH_IN_COMPOSITION", "RARE_EARTH_IN_COMPOSITION")),
    FeatureSpec("composition_surprise", "composition", ("composition",), "surprisal",
                "composition declared where not customary, or missing where customary",
                reason_codes=("COMPOSITION_UNEXPECTED", "COMPOSITION_MISSING")),
    FeatureSpec("description_foreign", "composition", ("description",), "share",
                "share of description words never used for the heading",
                reason_codes=("DESCRIPTION_WORDS_FOREIGN", "DESCRIPTION_WORDS_FOREIGN")),
)
RARE_EARTHS = ("La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm",
               "Yb", "Lu", "Sc", "Y")
# A component counts as rare earth when its formula starts with the element symbol and the
# symbol is not the prefix of a longer one (Y vs Yb, Ce vs ... no clash; Sc vs S is fine).
_RE_PATTERN = re.compile(r"^(?:" + "|".join(sorted(RARE_EARTHS, key=len, reverse=True))
                         + r")(?![a-z])")
_TOKEN = re.compile(r"[a-z]{3,}")
_COMPONENT = re.compile(r"([^:;]+):\s*([-+0-9.eE]+)\s*%?\s*(?:;|$)")


def parse_composition(text: str) -> list[tuple[str, float]]:
    """'SiO2:68;Al2O3:20' -> [('SiO2', 68.0), ('Al2O3', 20.0)]; malformed parts dropped.

    >>> parse_composition("SiO2:68; Al2O3: 20% ;junk;Nd2O3:x")
    [('SiO2', 68.0), ('Al2O3', 20.0)]
    """
    out = []
    for name, amount in _COMPONENT.findall(text):
        name = name.strip()
        try:
            v = float(amount)
        except ValueError:
            continue
        if name and 0 <= v < float("inf"):
            out.append((name, v))
    return out


# Declared compositions nearly always come as plain "SiO2:62.5;Al2O3:20": for those,
# splitting at ";" and ":" gives exactly what parse_composition finds, and Arrow's string
# kernels do it for all of them at once (RE2 anchors: "$" is the very end of the text).
_PLAIN_COMPOSITION = (r"^[A-Za-z0-9]+:[0-9]+(?:\.[0-9]+)?"
                      r"(?:;[A-Za-z0-9]+:[0-9]+(?:\.[0-9]+)?)*$")


_ARROW_MIN_TEXTS = 64


def composition_items(uniq: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(owner, name code, distinct names, percentage) of the unique composition texts'
    items: the same items, in the same order, as ``explode(uniq, parse_composition)``,
    each name given as ``names[code]``. A few dozen distinct component names make up the
    tens of thousands of items of a chunk: they become Python strings once each."""
    if len(uniq) < _ARROW_MIN_TEXTS:
        # Arrow's kernels cost ~0.4 ms to set up: a single record (score_one) or a few
        # texts are quicker through the parser, which gives the same items.
        owner, items = explode(uniq, parse_composition)
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
        o, items = explode(uniq[slow], parse_composition)
        owner.append(slow[o])
        at = {name: i for i, name in enumerate(names)}
        codes.append(np.asarray([at.setdefault(c, len(at)) for c, _ in items], dtype=np.int64))
        names = list(at)
        pct.append(np.asarray([v for _, v in items], dtype=float))
    owner_, codes_, pct_ = np.concatenate(owner), np.concatenate(codes), np.concatenate(pct)
    order = np.argsort(owner_, kind="stable")  # items grouped by owner, in text order
    return owner_[order], codes_[order], np.asarray(names, dtype=str), pct_[order]


def tokens(text: str) -> list[str]:
    return sorted(set(_TOKEN.findall(text.lower())))


def _fit_composition(f, r, t) -> None:
    comp_codes, comp_uniq = r["composition|f"]
    owner, items = explode(comp_uniq, parse_composition)
    names = np.asarray([n for n, _ in items], dtype=str)
    declares = comp_codes >= 0
    n_comp = len(t["vocab_comp"])
    for lvl in LEVELS:
        t[f"comp|{lvl}|decl|key"], t[f"comp|{lvl}|decl|n"] = count_table(
            np.where(declares, r[lvl], -1))
        # Rows of a level code that name each component: count unique (row-group)
        # pairs weighted by how many rows carry that composition text.
        if len(owner):
            grp = pd.DataFrame({"u": comp_codes[declares], "l": r[lvl][declares]})
            grp = grp.groupby(["u", "l"]).size().reset_index(name="m")
            items_df = pd.DataFrame({"u": owner, "c": encode_against(t["vocab_comp"], names)})
            items_df = items_df.drop_duplicates()
            j = grp.merge(items_df, on="u")
            key = pair_key(j["l"].to_numpy(), j["c"].to_numpy(), n_comp)
            t[f"comp|{lvl}|item|key"], t[f"comp|{lvl}|item|n"] = count_table(
                key, j["m"].to_numpy(float))
        else:
            t[f"comp|{lvl}|item|key"] = np.array([], np.int64)
            t[f"comp|{lvl}|item|n"] = np.array([], np.int64)
    # Rare-earth share of each row's declared composition (NaN when none is declared):
    # its mean per level code is a grouped statistic (see this family's value groups).
    re_share_u = _re_share(comp_uniq, owner, names, items)
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


def _re_share(uniq, owner, names, items) -> np.ndarray:
    if len(uniq) == 0:
        return np.zeros(0)
    pct = np.asarray([p for _, p in items], dtype=float)
    is_re = np.asarray([bool(_RE_PATTERN.match(n)) for n in names.tolist()], dtype=bool)
    tot = np.bincount(owner, pct, minlength=len(uniq)) if len(owner) else np.zeros(len(uniq))
    re = np.bincount(owner, pct * is_re, minlength=len(uniq)) if len(owner) else tot * 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, re / tot, 0.0)


def _fit_description(f, r, t) -> None:
    d_codes, d_uniq = r["description|f"]
    owner, toks = explode(d_uniq, tokens)
    has = d_codes >= 0
    tok_code = encode_against(t["vocab_tok"], np.asarray(toks, dtype=str)) if toks else \
        np.array([], np.int64)
    n_tok = len(t["vocab_tok"])
    items = pd.DataFrame({"u": owner, "c": tok_code})
    for lvl in (*LEVELS, "all"):
        lv = np.zeros(len(has), np.int64) if lvl == "all" else r[lvl]
        t[f"desc|{lvl}|has|key"], t[f"desc|{lvl}|has|n"] = count_table(np.where(has, lv, -1))
        grp = pd.DataFrame({"u": d_codes[has], "l": lv[has]})
        grp = grp.groupby(["u", "l"]).size().reset_index(name="m")
        j = grp.merge(items, on="u")
        key = pair_key(j["l"].to_numpy(np.int64), j["c"].to_numpy(np.int64), n_tok)
        t[f"desc|{lvl}|tok|key"], t[f"desc|{lvl}|tok|n"] = count_table(
            key, j["m"].to_numpy(float))


def _vocabularies(f, df: pd.DataFrame) -> dict[str, np.ndarray]:
    v: dict[str, np.ndarray] = {}
    comp = df["composition"] if "composition" in df.columns else pd.Series([], dtype=object)
    _, items = explode(factorize(comp)[1], parse_composition)
    v["vocab_comp"] = np.sort(np.unique(np.asarray([n for n, _ in items], dtype=str)))
    desc = df["description"] if "description" in df.columns else pd.Series([], dtype=object)
    _, toks = explode(factorize(desc)[1], tokens)
    v["vocab_tok"] = np.sort(np.unique(np.asarray(toks, dtype=str)))
    return v


def _fit(f, r, t) -> None:
    _fit_composition(f, r, t)
    _fit_description(f, r, t)


def _value_groups(f) -> list:
    g = [(f"comp|{lvl}|re", "mean", 0.0, "re_share", lvl) for lvl in LEVELS]
    g.append(("comp|all|re", "mean", 0.0, "re_share", None))
    return g


def _group_input(f, r, spec, cache: dict):
    x, level = r["re_share"], spec[4]
    return (np.zeros(len(x), np.int64) if level is None else r[level]), x


def _finish(t: dict, n_rows: int) -> None:
    n_decl, mean = t.pop("comp|all|re|n"), t.pop("comp|all|re|mean")
    t.pop("comp|all|re|key")
    t["comp|all"] = np.array([n_decl.sum(), n_rows, mean[0] if len(mean) else 0.0])


def _composition_features(f, r, loo: bool):
    if len(r["hs"]) == 1 and not loo:
        key = f.memo_key(r, f"c|{r['composition'][0]}")
        return f.memoized(key, lambda: _composition_features_rows(f, r, loo))
    return _composition_features_rows(f, r, loo)


def _composition_features_rows(f, r, loo: bool):
    t = f.tables_
    n = len(r["hs"])
    comp_codes, comp_uniq = r["composition|f"]
    declares = comp_codes >= 0
    owner, name_codes, name_uniq, pct = composition_items(comp_uniq)
    # Presence surprisal: declaring where it is not customary, or not where it is.
    lvl_i = f.level_choice(r, "cnt|{lvl}", np.ones(n) if loo else None)
    p_decl = np.full(n, (t["comp|all"][0] + 0.5) / (t["comp|all"][1] + 1.0))
    re_ref = np.full(n, t["comp|all"][2])
    for i, lvl in enumerate(LEVELS):
        m = lvl_i == i
        if not m.any():
            continue
        nd = f.table_get(f"comp|{lvl}|decl", "n", r[lvl][m], 0)
        nt = f.table_get(f"cnt|{lvl}", "n", r[lvl][m], 0).astype(float)
        nd = nd.astype(float)
        if loo:
            nd, nt = nd - declares[m], nt - 1
        p_decl[m] = (nd + 0.5) / (nt + 1.0)
        re_ref[m] = f.table_get(f"comp|{lvl}|re", "mean", r[lvl][m],
                            re_ref[m])
    surprise = np.where(declares, -np.log(p_decl), -np.log1p(-np.minimum(p_decl, 0.999)))
    foreign = np.full(n, np.nan)
    re_excess = np.full(n, np.nan)
    if len(owner):
        # Items belong to unique texts; expand to rows (texts repeat across rows).
        rows, item = expand(owner, len(comp_uniq), comp_codes)
        c = encode_against(t["vocab_comp"], name_uniq)[name_codes[item]]
        p = pct[item]
        lvl_rows = f.level_choice(r, "comp|{lvl}|decl",
                                      declares.astype(float) if loo else None)
        freq = np.zeros(len(rows))
        for i, lvl in enumerate((*LEVELS, "all")):
            m = lvl_rows[rows] == i
            if not m.any():
                continue
            if lvl == "all":
                nd = np.full(m.sum(), float(t["comp|all"][0]))
                ni = f.table_get("comp|all|item", "n", c[m], 0)
            else:
                lc = r[lvl][rows[m]]
                nd = f.table_get(f"comp|{lvl}|decl", "n", lc, 0)
                nd = nd.astype(float)
                ni = f.table_get(f"comp|{lvl}|item", "n",
                               pair_key(lc, c[m], len(t["vocab_comp"])), 0)
            ni = ni.astype(float)
            if loo:
                nd, ni = nd - 1, np.maximum(ni - (c[m] >= 0), 0)
            freq[m] = ni / np.maximum(nd, 1.0)
        is_foreign = freq < max(f.foreign_share, 0.02)
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


def _description_foreign(f, r, loo: bool) -> np.ndarray:
    if len(r["hs"]) == 1 and not loo:
        key = f.memo_key(r, f"d|{r['description'][0]}")
        return f.memoized(key, lambda: _description_foreign_rows(f, r, loo))
    return _description_foreign_rows(f, r, loo)


def _description_foreign_rows(f, r, loo: bool) -> np.ndarray:
    t = f.tables_
    n = len(r["hs"])
    d_codes, d_uniq = r["description|f"]
    has = d_codes >= 0
    out = np.full(n, np.nan)
    if not has.any():
        return out
    owner, toks = explode(d_uniq, tokens)
    if not toks:
        return out
    lvl_rows = f.level_choice(r, "desc|{lvl}|has", has.astype(float) if loo else None)
    lv_code = np.full(n, 0, np.int64)
    for i, lvl in enumerate(LEVELS):
        lv_code = np.where(lvl_rows == i, r[lvl], lv_code)
    rows, item = expand(owner, len(d_uniq), d_codes)
    c = encode_against(t["vocab_tok"], np.asarray(toks, str))[item]
    li = lvl_rows[rows]
    lc = lv_code[rows]
    freq = np.zeros(len(rows))
    for i, lvl in enumerate((*LEVELS, "all")):
        m = li == i
        if not m.any():
            continue
        code = np.zeros(m.sum(), np.int64) if lvl == "all" else lc[m]
        nd = f.table_get(f"desc|{lvl}|has", "n", code, 0).astype(float)
        ni = f.table_get(f"desc|{lvl}|tok", "n",
                       pair_key(code, c[m], len(t["vocab_tok"])), 0).astype(float)
        if loo:
            nd, ni = nd - 1, np.maximum(ni - (c[m] >= 0), 0)
        freq[m] = ni / np.maximum(nd, 1.0)
    foreign = (freq < f.foreign_share).astype(float)
    cnt = np.bincount(rows, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.bincount(rows, foreign, minlength=n) / cnt
    return np.where(cnt > 0, share, np.nan)


def _transform(f, r, context, loo: bool, cols: dict, det: dict) -> None:
    surprise, foreign, re_excess, p_decl = _composition_features(f, r, loo)
    cols["composition_surprise"], det["composition|p_decl"] = surprise, p_decl
    cols["composition_foreign"], cols["rare_earth_excess"] = foreign, re_excess
    cols["description_foreign"] = _description_foreign(f, r, loo)


def _sentence(name: str, high, det: dict, rows: np.ndarray) -> np.ndarray | None:
    """The declared composition or description, and what of it the heading rarely has."""
    r = det["r"]
    if name == "composition_surprise":
        p, codes = det["composition|p_decl"][rows], hs4(det, rows)
        return np.where(high | (r["composition"][rows] != None),  # noqa: E711
                        "composition declared where only " + pct(p) + " of hs " + codes
                        + " declarations state one",
                        "no composition declared where " + pct(p) + " of hs " + codes
                        + " declarations state one")
    v = values(det, name, rows)
    if name == "composition_foreign":
        return (pct(v) + " of the declared composition is made of components rarely "
                "declared under hs " + hs4(det, rows) + " ('" + shown(r["composition"][rows])
                + "')")
    if name == "rare_earth_excess":
        return ("rare-earth compounds make " + pct(v) + " of the declared composition, "
                "unusual under hs " + hs4(det, rows) + " ('" + shown(r["composition"][rows])
                + "')")
    if name == "description_foreign":
        return ("description '" + shown(r["description"][rows]) + "' uses words never seen "
                "for hs " + hs4(det, rows) + " (" + pct(v) + " of its words)")
    return None


FAMILY = Family("composition", SPECS, _transform, fit=_fit, value_groups=_value_groups,
                group_input=_group_input, finish=_finish, vocabularies=_vocabularies,
                sentence=_sentence)
