"""Learning from outcomes and agency fields, through the model, the artifact and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import detector
from detector.cli import main
from detector.errors import SchemaError


@pytest.fixture(scope="module")
def data():
    train = detector.generate(rows=15_000, seed=1, fraud_rate=0.02)
    test = detector.generate(rows=5_000, seed=2, fraud_rate=0.02)
    rng = np.random.default_rng(0)
    for df in (train, test):
        df["Office ID"] = rng.choice(["O1", "O2", "O3"], len(df))
        df["Tax Rate"] = np.round(rng.normal(0.1, 0.01, len(df)), 4)
    return train, test


@pytest.fixture(scope="module")
def labelled_model(data):
    train, _ = data
    mapping = {"columns": {}, "extra_categorical": ["Office ID"], "extra_numeric": ["Tax Rate"]}
    return detector.train(train, columns=mapping, trees=50, labels="is_fraud",
                          revenue="revenue")


def test_labelled_model_adds_outcome_scores_and_ranks_by_risk(labelled_model, data):
    _, test = data
    out = labelled_model.score(test)
    assert list(out.columns[:4]) == ["declaration_id", "anomaly_score", "fraud_probability",
                                     "risk_score"]
    scored = out[out["status"] == "scored"]
    assert scored["risk_score"].between(0, 1).all()
    # rank follows risk_score, flagged follows the risk threshold
    top = scored.sort_values("rank").iloc[0]
    assert top["risk_score"] == scored["risk_score"].max()
    assert (scored["flagged"] == (scored["risk_score"] >= labelled_model.threshold_)).all()
    # outcomes help: the combined score ranks frauds at least as well as the forest
    from detector.evaluate import budget_metrics

    y = test.loc[scored.index, "is_fraud"]
    comb = budget_metrics(y, scored["risk_score"])
    forest = budget_metrics(y, scored["anomaly_score"])
    assert comb["recall@5%"] >= forest["recall@5%"] - 0.02
    assert comb["precision@1%"] >= forest["precision@1%"]


def test_history_reasons_name_the_history(labelled_model, data):
    _, test = data
    out = labelled_model.score(test, reasons="all")
    hist = [r for rs in out["reasons"] for r in rs if r.startswith("RISK_HISTORY_")]
    assert hist, "no risk-profile reason in 5,000 declarations"
    assert all(" inspected declarations " in r and "overall" in r for r in hist)
    # The default gives the green rows outside the top their codes alone, history too.
    officer = labelled_model.score(test, explain_top=0)
    green = (officer["lane"] == "green") & ~officer["random_selected"]
    assert [list(rs) for rs in officer["reasons"][green]] == \
        [[r.split(":")[0] for r in rs] for rs in out["reasons"][green]]
    assert any(r.startswith("RISK_HISTORY_") for rs in officer["reasons"][green] for r in rs)
    assert all(len([r for r in rs if not r.startswith(("UNSEEN_", "RANDOM_"))]) <= 3
               for rs in out["reasons"])


def test_labelled_model_round_trip_is_bit_identical(labelled_model, data, tmp_path):
    _, test = data
    path = tmp_path / "m.joblib"
    labelled_model.save(path)
    loaded = detector.load_model(path)
    a, b = labelled_model.score(test), loaded.score(test)
    for c in ("anomaly_score", "fraud_probability", "risk_score"):
        assert np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True)
    assert (a["reasons"] == b["reasons"]).all()
    assert (a["lane"] == b["lane"]).all()
    one = loaded.score_one(test.iloc[3].to_dict())
    assert one["risk_score"] == a.loc[3, "risk_score"]
    assert one["reasons"] == a.loc[3, "reasons"]


def test_extra_columns_are_recorded_and_required(labelled_model, data):
    _, test = data
    names = labelled_model.features_.feature_names_
    assert "extra_rarity:Office ID" in names and "extra_z:Tax Rate" in names
    with pytest.raises(SchemaError, match="Office ID"):
        labelled_model.score(test.drop(columns=["Office ID"]))
    rec = test.iloc[0].to_dict()
    del rec["Tax Rate"]
    one = labelled_model.score_one(rec)
    assert one["status"] == "rejected" and "Tax Rate" in one["reasons"][0]


def test_extra_numeric_deviation_is_a_reason(labelled_model, data):
    _, test = data
    rec = test.iloc[10].to_dict()
    rec["Tax Rate"] = 0.9
    ex = labelled_model.explain(rec)
    row = next(f for f in ex["features"] if f["feature"] == "extra_z:Tax Rate")
    assert row["value"] > 2


def test_unlabelled_model_is_unchanged(data, tmp_path):
    train, test = data
    model = detector.train(train, trees=50)
    assert model.rank_column == "anomaly_score"
    assert getattr(model, "outcome_", None) is None
    out = model.score(test)
    assert "risk_score" not in out.columns and "fraud_probability" not in out.columns
    path = tmp_path / "u.joblib"
    model.save(path)
    code = (
        "import sys, json, detector; m = detector.load_model(sys.argv[1]); "
        "r = m.score_one(json.loads(sys.argv[2])); "
        "print(json.dumps(['sklearn' in k for k in sys.modules].count(True)))"
    )
    rec = json.dumps(test.iloc[0].to_dict(), default=float)
    res = subprocess.run([sys.executable, "-c", code, str(path), rec], capture_output=True,
                         text=True, check=True)
    assert json.loads(res.stdout) == 0


def test_cli_train_with_labels_and_evaluate_side_by_side(data, tmp_path):
    train, test = data
    tr, te = tmp_path / "train.csv", tmp_path / "test.csv"
    train.to_csv(tr, index=False)
    test.to_csv(te, index=False)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"columns": {}, "extra_categorical": ["Office ID"],
                                   "extra_numeric": ["Tax Rate"]}))
    model = tmp_path / "m.joblib"
    r = CliRunner().invoke(main, ["train", str(tr), "-o", str(model), "--trees", "50",
                                  "--labels", "is_fraud", "--revenue", "revenue",
                                  "--columns", str(mapping)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["evaluate", str(model), str(te), "--json", "--columns",
                                  str(mapping)])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert {"combined", "forest", "ranker", "raw_fields_iforest",
            "value_per_kg_only"} <= set(report["systems"])
    assert report["systems"]["combined"]["recall@5%_by_scheme"]
    out = tmp_path / "scored.parquet"
    r = CliRunner().invoke(main, ["score", str(model), str(te), "-o", str(out), "--columns",
                                  str(mapping)])
    assert r.exit_code == 0, r.output
    scored = pd.read_parquet(out)
    assert {"risk_score", "fraud_probability"} <= set(scored.columns)
    assert sorted(scored["rank"]) == list(range(1, len(scored) + 1))
    r = CliRunner().invoke(main, ["train", str(tr), "-o", str(tmp_path / "x.joblib"),
                                  "--revenue", "revenue"])
    assert r.exit_code == 2


def test_label_column_must_exist(data):
    train, _ = data
    with pytest.raises(SchemaError, match="not_there"):
        detector.train(train, trees=10, labels="not_there")


def test_refit_without_labels_drops_the_outcome_part(data):
    train, _ = data
    model = detector.DeclarationModel(n_estimators=20)
    model.fit(train, labels="is_fraud")
    assert model.rank_column == "risk_score"
    model.fit(train)
    assert model.rank_column == "anomaly_score"


def test_explain_of_a_labelled_model_uses_risk_for_the_lane(labelled_model, data):
    _, test = data
    out = labelled_model.score(test)
    i = int(out["rank"].idxmin())
    ex = labelled_model.explain(test.iloc[i].to_dict())
    assert ex["ranked_by"] == "risk_score"
    assert ex["risk_score"] == out.loc[i, "risk_score"]
    assert ex["lane"] == out.loc[i, "lane"] and ex["flagged"] == out.loc[i, "flagged"]
    assert ex["reasons"] == out.loc[i, "reasons"]


def test_scoring_never_reads_the_batch_labels(labelled_model, data):
    # The batch's own is_fraud / revenue columns (present when an agency scores labelled
    # history) must not reach any score: the same rows with the labels removed, or
    # inverted, get the same bits, ranks, lanes and reasons.
    _, test = data
    cols = ["anomaly_score", "fraud_probability", "risk_score", "rank", "lane", "reasons"]
    base = labelled_model.score(test)[cols]
    unlabelled = test.drop(columns=["is_fraud", "revenue"])
    inverted = test.assign(is_fraud=1 - test["is_fraud"].astype(int),
                           revenue=test["revenue"][::-1].to_numpy())
    for other in (unlabelled, inverted):
        pd.testing.assert_frame_equal(labelled_model.score(other)[cols], base)
