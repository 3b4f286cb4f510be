"""DeclarationModel: score contract, direction, score_one, determinism, persistence,
budget and lanes, random selection, metadata."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import BUDGET, RANDOM_SHARE, TREES

import detector
from detector.features import DeclarationFeatures
from detector.model import parse_lanes
from detector.validate import validate
from detector.verdict import random_pick as _random_pick

# --- the score() contract -------------------------------------------------------------------


def test_score_one_row_per_input_row_in_order(scored_test, test_df):
    assert len(scored_test) == len(test_df)
    assert scored_test["declaration_id"].tolist() == test_df["declaration_id"].tolist()
    assert set(scored_test["status"]) == {"scored"}
    for c in ("declaration_id", "anomaly_score", "rank", "flagged", "lane", "random_selected",
              "reasons", "status"):
        assert c in scored_test.columns


def test_scores_in_unit_interval_and_ranks(scored_test):
    s = scored_test["anomaly_score"].to_numpy(float)
    assert ((s > 0) & (s <= 1)).all()
    rank = scored_test["rank"].to_numpy(int)
    assert sorted(rank) == list(range(1, len(s) + 1))
    # rank 1 is the highest score
    order = np.argsort(rank)
    assert (np.diff(s[order]) <= 0).all()


def test_higher_is_more_suspicious(scored_test, test_df):
    s = scored_test["anomaly_score"]
    fraud = test_df["is_fraud"].to_numpy() == 1
    assert s[fraud].median() > s[~fraud].median()
    assert (s[fraud] > s.median()).mean() > 0.75
    from detector.evaluate import roc_auc

    assert roc_auc(fraud, s.to_numpy()) > 0.75


def test_bad_row_rejected_with_reason_others_scored(model, test_df):
    df = test_df.head(50).copy()
    df.loc[7, "net_mass_kg"] = -3.0
    df.loc[20, "hs_code"] = "12AB"
    res = model.score(df)
    assert len(res) == 50
    assert res.loc[7, "status"] == "rejected" and res.loc[20, "status"] == "rejected"
    assert res.loc[7, "lane"] == "manual"
    assert pd.isna(res.loc[7, "anomaly_score"]) and pd.isna(res.loc[7, "rank"])
    assert res.loc[7, "reasons"][0].startswith("REJECTED (net_mass_kg)")
    assert res.loc[20, "reasons"][0].startswith("REJECTED (hs_code)")
    ok = res.drop(index=[7, 20])
    assert (ok["status"] == "scored").all()
    assert sorted(ok["rank"].astype(int)) == list(range(1, 49))
    assert res["declaration_id"].tolist() == df["declaration_id"].tolist()


def test_score_ignores_input_index(model, test_df):
    df = test_df.head(40)
    shifted = df.set_axis(np.arange(1000, 1040))
    a, b = model.score(df), model.score(shifted)
    np.testing.assert_array_equal(a["anomaly_score"], b["anomaly_score"])


def test_score_with_column_mapping(model, test_df):
    df = test_df.head(100)
    ren = {"hs_code": "HS", "origin_country": "Origin", "customs_value": "Value"}
    mapped = df.rename(columns=ren)
    res = model.score(mapped, columns={v: k for k, v in ren.items()})
    ref = model.score(df)
    np.testing.assert_array_equal(res["anomaly_score"], ref["anomaly_score"])


def _non_parcel(test_df) -> np.ndarray:
    return ~test_df["transport_mode"].isin(["post", "courier"]).to_numpy()


def _no_random(reasons):
    return [r for r in reasons if not r.startswith("RANDOM_SELECTION")]


def test_score_one_equals_score(model, test_df, scored_test, record_of):
    # score_one has no batch to take a top from: its default ("officer") is score()'s
    # with explain_top=0 (sentences outside the green lane and on random picks).
    scored_test = model.score(test_df, explain_top=0)
    ok = _non_parcel(test_df)
    rows = list(np.flatnonzero(ok)[:40])
    rows += list(np.flatnonzero(ok & (test_df["is_fraud"] == 1).to_numpy())[:20])
    rows += list(np.flatnonzero(ok & scored_test["random_selected"].to_numpy()))
    assert scored_test["random_selected"].iloc[rows].any()
    for i in rows:
        one = model.score_one(record_of(test_df, int(i)))
        want = scored_test.iloc[i]
        assert one["status"] == "scored"
        assert one["declaration_id"] == want["declaration_id"]
        assert one["anomaly_score"] == want["anomaly_score"], i
        assert one["lane"] == want["lane"]
        assert one["flagged"] == want["flagged"]
        assert one["random_selected"] == want["random_selected"]
        if want["random_selected"]:
            # reasons and the RANDOM_SELECTION note are checked by the next test too
            assert _no_random(one["reasons"]) == _no_random(want["reasons"]), i
        else:
            assert one["reasons"] == want["reasons"], i


def test_score_one_equals_score_for_random_picks_outside_green(model, test_df, scored_test,
                                                                record_of):
    picked = scored_test["random_selected"] & (scored_test["lane"] != "green") & \
        ~test_df["transport_mode"].isin(["post", "courier"])
    rows = np.flatnonzero(picked.to_numpy())
    assert len(rows) > 0
    for i in rows:
        one = model.score_one(record_of(test_df, int(i)))
        assert one["reasons"] == scored_test["reasons"].iloc[i], i


def test_score_one_equals_score_with_missing_optional_values(model, test_df, record_of):
    rows = np.flatnonzero(_non_parcel(test_df))[:12]
    df = test_df.iloc[rows].reset_index(drop=True)
    df.loc[0:3, "exporter_id"] = None
    df.loc[4:7, "dispatch_country"] = None
    df.loc[8:11, "description"] = None
    res = model.score(df, reasons="all")
    for i in range(len(df)):
        one = model.score_one(record_of(df, i), reasons="all")
        assert one["anomaly_score"] == res["anomaly_score"].iloc[i], i
        assert _no_random(one["reasons"]) == _no_random(res["reasons"].iloc[i]), i
        assert not any("?" in r for r in res["reasons"].iloc[i]), res["reasons"].iloc[i]


def test_score_one_rejects_bad_record(model, test_df, record_of):
    rec = record_of(test_df, 0)
    rec["origin_country"] = "XY"
    rec["net_mass_kg"] = -1
    one = model.score_one(rec)
    assert one["status"] == "rejected" and one["anomaly_score"] is None
    assert any(r.startswith("REJECTED (origin_country)") for r in one["reasons"])
    assert any(r.startswith("REJECTED (net_mass_kg)") for r in one["reasons"])


def test_score_one_readme_example(model):
    one = model.score_one({"declaration_id": "X1", "hs_code": "690721", "origin_country": "CN",
                           "net_mass_kg": 820.0, "customs_value": 410.0, "quantity": 20,
                           "unit": "m2"})
    assert one["status"] == "scored"
    assert 0 < one["anomaly_score"] <= 1
    assert any(r.startswith("MASS_PER_UNIT_HIGH") for r in one["reasons"])  # 41 kg per m2


# --- determinism and persistence ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(train_df):
    return train_df.iloc[:4000]


def test_same_seed_bit_identical_other_seed_differs(tiny, test_df):
    probe = test_df.head(500)
    a = detector.train(tiny, trees=20, seed=7).score(probe)
    b = detector.train(tiny, trees=20, seed=7).score(probe)
    c = detector.train(tiny, trees=20, seed=8).score(probe)
    np.testing.assert_array_equal(a["anomaly_score"].to_numpy(), b["anomaly_score"].to_numpy())
    assert a["reasons"].tolist() == b["reasons"].tolist()
    assert not np.array_equal(a["anomaly_score"].to_numpy(), c["anomaly_score"].to_numpy())


def test_save_load_round_trip(model, model_path, test_df, scored_test):
    loaded = detector.load_model(model_path)
    again = loaded.score(test_df)
    pd.testing.assert_frame_equal(again, scored_test, check_exact=True)
    assert loaded.threshold_ == model.threshold_
    assert loaded.lane_thresholds_ == model.lane_thresholds_
    assert loaded.metadata_["training"]["sha256"] == model.metadata_["training"]["sha256"]


def test_load_and_score_never_imports_sklearn(model_path, small_model):
    code = (
        "import sys, json, detector\n"
        f"m = detector.load_model({str(model_path)!r})\n"
        "import pandas as pd\n"
        f"df = pd.read_parquet({str(small_model['test'])!r})\n"
        "r = m.score(df)\n"
        "o = m.score_one(df.iloc[0].to_dict())\n"
        "print(json.dumps({'n': len(r), 'sk': sorted(k for k in sys.modules "
        "if k == 'sklearn' or k.startswith('sklearn.'))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["n"] > 0
    assert got["sk"] == []


# --- budget, lanes, random selection -------------------------------------------------------


def test_training_share_flagged_matches_budget(model):
    X = model.features_._X_train_
    s = model.forest_.anomaly_score(X)
    assert abs((s >= model.threshold_).mean() - BUDGET) < 0.003
    lanes = model.lane_thresholds_
    assert list(lanes) == ["red", "yellow"]
    assert lanes["red"] > lanes["yellow"]
    assert abs((s >= lanes["red"]).mean() - 0.01) < 0.003
    assert abs(((s >= lanes["yellow"]) & (s < lanes["red"])).mean() - 0.04) < 0.005


def test_lane_follows_score(scored_test, model):
    s = scored_test["anomaly_score"]
    not_random = ~scored_test["random_selected"]
    red = scored_test["lane"] == "red"
    assert (s[red & not_random] >= model.lane_thresholds_["red"]).all()
    green = scored_test["lane"] == "green"
    assert (s[green] < model.lane_thresholds_["yellow"]).all()
    assert (scored_test.loc[scored_test["random_selected"], "lane"] != "green").all()


def test_parse_lanes_ok():
    assert parse_lanes("red=0.01,yellow=0.04", 0.01) == {"red": 0.01, "yellow": 0.04}
    assert parse_lanes(" Red = 0.02 ", 0.01) == {"red": 0.02}
    assert parse_lanes(None, 0.03) == {"red": 0.03}
    assert parse_lanes({"red": 0.01}, 0.5) == {"red": 0.01}


@pytest.mark.parametrize("text,words", [
    ("red", "red=0.01"),
    ("red=abc", "number"),
    ("red=0", "(0, 1)"),
    ("red=1.5", "(0, 1)"),
    ("green=0.1", "green"),
    ("red=0.1,red=0.2", "unique"),
    ("red=0.6,yellow=0.5", "less than 1"),
])
def test_parse_lanes_bad_names_problem(text, words):
    with pytest.raises(ValueError) as exc:
        parse_lanes(text, 0.01)
    assert words in str(exc.value)


def test_random_selection_share_and_determinism():
    ids = np.array([f"D{i}" for i in range(200_000)], dtype=object)
    a = _random_pick(ids, 0, 0.01)
    assert abs(a.mean() - 0.01) < 0.001
    np.testing.assert_array_equal(a, _random_pick(ids, 0, 0.01))
    assert not np.array_equal(a, _random_pick(ids, 1, 0.01))
    # depends only on the id: any subset, any order
    perm = np.random.default_rng(0).permutation(len(ids))[:5000]
    np.testing.assert_array_equal(_random_pick(ids[perm], 0, 0.01), a[perm])
    assert not _random_pick(ids, 0, 0.0).any()


def test_random_selection_independent_of_chunking(model, test_df):
    valid = validate(test_df).valid
    ctx = DeclarationFeatures.burst_context(valid)
    # "all": score_valid's officer top is its own batch's (score_file makes it the
    # file's; tests/test_reasons_modes.py checks that whatever the chunking).
    whole = model.score_valid(valid, ctx, reasons="all")
    parts = pd.concat([model.score_valid(valid.iloc[i:i + 1000], ctx, reasons="all")
                       for i in range(0, len(valid), 1000)])
    np.testing.assert_array_equal(whole["random_selected"].to_numpy(),
                                  parts["random_selected"].to_numpy())
    np.testing.assert_array_equal(whole["anomaly_score"].to_numpy(),
                                  parts["anomaly_score"].to_numpy())
    assert whole["reasons"].tolist() == parts["reasons"].tolist()
    assert 0.003 < whole["random_selected"].mean() < 0.02
    sel = whole[whole["random_selected"]]
    assert sel["reasons"].map(lambda r: r[-1].startswith("RANDOM_SELECTION")).all()


def test_random_selection_survives_shuffling(model, test_df):
    shuffled = test_df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = model.score(test_df).set_index("declaration_id")["random_selected"]
    b = model.score(shuffled).set_index("declaration_id")["random_selected"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())


# --- metadata and parameters ---------------------------------------------------------------


def test_metadata(model, train_df):
    md = model.metadata_
    assert md["features"] == model.features_.feature_names_
    assert {"hs_code", "origin_country", "net_mass_kg", "customs_value"} <= set(
        md["input_columns"])
    assert not {"is_fraud", "fraud_scheme", "revenue"} & set(md["input_columns"])
    assert md["training"]["rows"] == len(train_df)
    assert re.fullmatch(r"[0-9a-f]{64}", md["training"]["sha256"])
    assert md["threshold"] == model.threshold_
    assert md["lane_thresholds"] == model.lane_thresholds_
    assert md["params"]["seed"] == 0
    assert md["params"]["n_estimators"] == TREES
    assert md["params"]["budget"] == BUDGET
    assert md["params"]["random_share"] == RANDOM_SHARE


def test_fingerprint_tracks_training_data(tiny):
    a = detector.train(tiny.iloc[:1500], trees=5, seed=0)
    b = detector.train(tiny.iloc[:1500], trees=5, seed=0)
    c = detector.train(tiny.iloc[1:1501], trees=5, seed=0)
    assert a.metadata_["training"]["sha256"] == b.metadata_["training"]["sha256"]
    assert a.metadata_["training"]["sha256"] != c.metadata_["training"]["sha256"]


@pytest.mark.parametrize("kwargs", [{"budget": 0.0}, {"budget": 1.0}, {"random_share": 1.0},
                                    {"trees": 0}, {"lanes": "red=2"}])
def test_bad_train_params_raise(tiny, kwargs):
    with pytest.raises(ValueError):
        detector.train(tiny.iloc[:200], **({"trees": 5} | kwargs))


def test_score_before_fit_raises(test_df):
    from detector.errors import NotFittedError

    with pytest.raises(NotFittedError):
        detector.DeclarationModel().score(test_df)

