"""Reasons: planted causes come out as the planted reason codes; format and limits."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from detector.reasons import NOTE_CODES, REASON_CODES, counterfactual_reasons

CODES = {c for pair in REASON_CODES.values() for c in pair}
_REASON = re.compile(r"^([A-Z_]+)(?: \([a-z_;]+\))?: \S.*$")


def _legit(test_df: pd.DataFrame) -> pd.DataFrame:
    return test_df[test_df["is_fraud"] == 0]


def _top_codes(reasons: list[str]) -> list[str]:
    return [r.split(":", 1)[0] for r in reasons]


@pytest.fixture(scope="module")
def planted(model, test_df):
    leg = _legit(test_df)
    tiles = leg[leg["hs_code"] == "69072100"].head(6).copy()
    for c in ("net_mass_kg", "gross_mass_kg", "measured_mass_kg"):
        tiles[c] = tiles[c] * 2
    glaze = leg[leg["hs_code"] == "32072000"].head(6).copy()
    glaze["composition"] = "Nd2O3:70;SiO2:20;Al2O3:10"
    cheap = leg[leg["transport_mode"] == "sea"].head(6).copy()
    cheap["customs_value"] = cheap["customs_value"] * 0.05
    out = {}
    for name, d in (("tiles", tiles), ("glaze", glaze), ("cheap", cheap)):
        assert len(d) >= 3, name
        out[name] = (d, model.score(d))
    return out


def test_heavy_tiles_give_mass_per_unit_high(planted):
    _, res = planted["tiles"]
    for reasons in res["reasons"]:
        assert "MASS_PER_UNIT_HIGH" in _top_codes(reasons), reasons
        text = next(r for r in reasons if r.startswith("MASS_PER_UNIT_HIGH"))
        assert "kg per m2" in text and "69072100" in text


def test_rare_earth_glaze_gives_rare_earth_reason(planted):
    _, res = planted["glaze"]
    for reasons in res["reasons"]:
        assert "RARE_EARTH_IN_COMPOSITION" in _top_codes(reasons), reasons
        assert any("Nd2O3" in r for r in reasons)


def test_undervaluation_gives_value_reason(planted):
    _, res = planted["cheap"]
    for reasons in res["reasons"]:
        codes = set(_top_codes(reasons))
        assert codes & {"VALUE_PER_KG_LOW", "VALUE_BELOW_OWN_HISTORY", "VALUE_PER_UNIT_LOW"}, \
            reasons


def test_planted_rows_score_above_median(planted, scored_test):
    median = scored_test["anomaly_score"].median()
    for name in ("tiles", "cheap"):
        _, res = planted[name]
        assert (res["anomaly_score"] > median).all(), name


def test_planting_raises_the_score(model, planted):
    for name in ("tiles", "glaze", "cheap"):
        d, res = planted[name]
        idx = d.index
        orig = model.score(_original_rows(model, d, name))
        assert (res["anomaly_score"].to_numpy() > orig["anomaly_score"].to_numpy()).mean() >= 0.8, \
            (name, idx)


def _original_rows(model, d, name):
    # Undo the planting from the generator's arithmetic (exact for the ratios used).
    d = d.copy()
    if name == "tiles":
        for c in ("net_mass_kg", "gross_mass_kg", "measured_mass_kg"):
            d[c] = d[c] / 2
    elif name == "glaze":
        d["composition"] = "SiO2:55;B2O3:12;Al2O3:8;Na2O:6;ZrO2:8;ZnO:5;CaO:6"
    else:
        d["customs_value"] = d["customs_value"] / 0.05
    return d


def test_reason_format_and_limit(model, test_df):
    scored_test = model.score(test_df, reasons="all")  # sentences on every row
    n_with = 0
    for reasons in scored_test["reasons"]:
        assert isinstance(reasons, list)
        notes = [r for r in reasons if r.split(":")[0] in NOTE_CODES]
        non_random = [r for r in reasons if not r.startswith("RANDOM_SELECTION")
                      and r not in notes]
        assert len(non_random) <= 3
        assert len(reasons) <= 4 + len(notes)
        for r in reasons:
            m = _REASON.match(r)
            assert m, r
            assert m.group(1) in CODES | NOTE_CODES | {"RANDOM_SELECTION", "REJECTED"}, r
        n_with += bool(reasons)
    assert n_with > 0.1 * len(scored_test)
    # Codes only: the same codes, nothing after them.
    codes = model.score(test_df, reasons="codes")["reasons"]
    assert [[r.split(":")[0] for r in rs] for rs in scored_test["reasons"]] == \
        [list(rs) for rs in codes]


def test_flagged_rows_have_reasons(scored_test):
    flagged = scored_test[scored_test["flagged"]]
    assert len(flagged) > 0
    has = flagged["reasons"].map(lambda rs: any(not r.startswith("RANDOM") for r in rs))
    assert has.mean() > 0.9


def test_counterfactual_reasons_shape_and_drops(model, test_df):
    from detector.validate import validate

    valid = validate(test_df.head(300)).valid
    X = model.features_.transform(valid)
    s = model.forest_.anomaly_score(X)
    idx, drops = counterfactual_reasons(model.features_, model.forest_, X, s, top=3)
    assert idx.shape == (300, 3) and drops.shape == (300, 3)
    assert ((idx == -1) | (drops >= 0.005)).all()
    # drops are sorted, best first, and -1 only trails
    assert (np.diff(drops, axis=1) <= 1e-12).all()
    for row in idx:
        seen = row[row >= 0]
        assert len(set(seen)) == len(seen)
        assert (row[len(seen):] == -1).all()
    # a reason is never a summary column
    derived = {model.features_.feature_names_.index(n) for n in
               ("strongest_deviation", "strongest_mass_deviation", "strongest_value_deviation")}
    assert not (set(idx[idx >= 0].tolist()) & derived)


def test_explain_lists_every_feature(model, test_df):
    fraud = test_df[test_df["is_fraud"] == 1].iloc[0]
    ex = model.explain(test_df, fraud["declaration_id"])
    assert ex["status"] == "scored"
    assert {f["feature"] for f in ex["features"]} == set(model.features_.feature_names_)
    drops = [f["score_drop_if_typical"] for f in ex["features"]]
    assert drops == sorted(drops, reverse=True)
    with pytest.raises(KeyError):
        model.explain(test_df, "NO-SUCH-ID")


@pytest.mark.parametrize("n", [5, 500])
def test_pct_formats_each_value_once_as_before(n: int) -> None:
    """pct picks the value (rounded or not) first and formats it once: the text is what
    formatting both versions and picking per row gave."""
    from detector.features.words import num as _num
    from detector.features.words import pct as _pct

    rng = np.random.default_rng(n)
    x = np.concatenate([rng.uniform(-0.02, 0.02, n), rng.lognormal(0, 3, n) / 100,
                        [0.0, np.nan, np.inf, -np.inf, 0.005, 0.0049999, 1e-9]])
    y = x * 100
    want = np.where(np.abs(y) < 1, _num(y), _num(np.round(y))).astype(object) + "%"
    assert _pct(x).tolist() == want.tolist()


def test_every_feature_has_a_sentence(model, test_df):
    """Each feature's reason sentence builds for any rows (a branch that used a value
    made only for other branches would fail here, not on the first file that needs it)."""
    from detector.reasons import feature_sentences

    X, det = model.features_.transform_details(test_df.head(40), None)
    names = model.features_.feature_names_
    full = dict(det, X=X, names=names)
    rows = np.arange(len(X))
    for j, name in enumerate(names):
        out = feature_sentences(name, X[rows, j] > model.features_.neutral_[j], full, rows)
        assert len(out) == len(rows), name
        assert all(isinstance(t, str) and t for t in out), name
