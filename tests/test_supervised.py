"""Learning from inspection outcomes: out-of-fold profiles, exact packed boosting, the stack."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.supervised import OutcomeModel, PackedBoosting, RiskProfiles

sklearn_ensemble = pytest.importorskip("sklearn.ensemble")


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "declaration_id": [f"D{i:06d}" for i in range(n)],
        "hs_code": rng.choice(["69072100", "28469000", "84879090", "85051110"], n),
        "origin_country": rng.choice(["CN", "VN", "DE", "MY"], n),
        "dispatch_country": rng.choice(["CN", "HK", "DE"], n),
        "exporter_id": [f"E{v:04d}" for v in rng.integers(0, 200, n)],
        "importer_id": [f"I{v:04d}" for v in rng.integers(0, 300, n)],
        "declarant_id": [f"A{v:02d}" for v in rng.integers(0, 20, n)],
        "net_mass_kg": rng.lognormal(5, 1, n),
        "customs_value": rng.lognormal(7, 1, n),
    })


# --- out-of-fold profiles ----------------------------------------------------------------------

def test_oof_once_seen_all_fraud_ids_get_the_prior_not_one():
    df = _frame(2000)
    y = np.zeros(len(df))
    planted = np.arange(0, 2000, 40)                      # 50 rows, each a unique importer
    df.loc[planted, "importer_id"] = [f"X{i}" for i in range(len(planted))]
    y[planted] = 1
    y[np.arange(7, 2000, 97)] = 1                         # some other fraud
    prof = RiskProfiles(smoothing=20, n_folds=5, seed=3)
    P = prof.fit_transform(df, y)
    j = prof.feature_names_.index("risk_importer_id")
    jn = prof.feature_names_.index("logn_importer_id")
    fold = prof.fold_
    # The prior each row sees is the fraud rate of the OTHER folds (its label excluded).
    other_prior = np.array([y[fold != f].mean() for f in range(5)])[fold]
    np.testing.assert_allclose(P[planted, j], other_prior[planted], rtol=0, atol=1e-15)
    assert (P[planted, j] < 0.05).all()
    assert (P[planted, jn] == 0).all()                    # never seen out of fold
    # At score time the full table knows them: (1 + 20 p) / 21, well above the prior.
    full = prof.transform(df.iloc[planted])[:, j]
    assert (full > 2 * prof.prior_).all()


def test_oof_many_times_all_fraud_id_only_learns_from_other_rows():
    df = _frame(3000, seed=1)
    y = np.zeros(len(df))
    rows = np.arange(5, 3000, 30)                         # 100 rows of importer 'X', all fraud
    df.loc[rows, "importer_id"] = "X"
    y[rows] = 1
    prof = RiskProfiles(smoothing=20, n_folds=5, seed=0)
    P = prof.fit_transform(df, y)
    j = prof.feature_names_.index("risk_importer_id")
    fold = prof.fold_
    for i in rows:
        others = (fold != fold[i])
        n_other = int((others & (df["importer_id"] == "X").to_numpy()).sum())
        prior = y[others].mean()
        expect = (n_other + 20 * prior) / (n_other + 20)  # all other X rows are frauds
        assert P[i, j] == pytest.approx(expect, abs=1e-12)
    assert (P[rows, j] > 0.7).all()
    # Changing one X row's own label does not change its own feature.
    y2 = y.copy()
    y2[rows[0]] = 0
    P2 = RiskProfiles(smoothing=20, n_folds=5, seed=0).fit_transform(df, y2)
    assert P2[rows[0], j] == P[rows[0], j]


def test_profiles_unseen_and_missing_keys_get_prior_and_state_round_trip():
    df = _frame(500)
    y = (np.arange(500) % 10 == 0).astype(float)
    prof = RiskProfiles().fit(df, y)
    new = df.iloc[:3].copy()
    new["importer_id"] = ["NEVER", None, ""]
    P = prof.transform(new)
    j = prof.feature_names_.index("risk_importer_id")
    assert np.all(P[:, j] == prof.prior_)
    assert np.all(P[:, j + 1] == 0)
    again = RiskProfiles.from_state(prof.to_state())
    assert np.array_equal(again.transform(df), prof.transform(df))


# --- packed boosting -----------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_features=st.integers(1, 6),
       nan_share=st.sampled_from([0.0, 0.05, 0.3]), leaves=st.integers(2, 31))
def test_packed_boosting_equals_sklearn(seed, n_features, nan_share, leaves):
    rng = np.random.default_rng(seed)
    n = 400
    X = rng.normal(size=(n, n_features)) * rng.choice([1e-3, 1.0, 1e4], n_features)
    X[rng.random(X.shape) < nan_share] = np.nan
    # Repeated values exercise ties with the learned thresholds.
    X[:, 0] = np.round(X[:, 0], 1)
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=n) > 0.5).astype(int)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    hgb = sklearn_ensemble.HistGradientBoostingClassifier(
        max_iter=8, max_leaf_nodes=leaves, random_state=seed % 1000, early_stopping=False,
        min_samples_leaf=5).fit(X, y)
    packed = PackedBoosting.from_state(PackedBoosting.from_sklearn(hgb).to_state())
    Xt = np.vstack([X, rng.normal(size=(200, n_features)) * 3])
    Xt[rng.random(Xt.shape) < 0.2] = np.nan
    Xt[-1] = np.inf
    Xt[-2] = -np.inf
    assert np.array_equal(packed.raw_predict(Xt), hgb._raw_predict(Xt)[:, 0])
    diff = np.abs(packed.predict_proba(Xt) - hgb.predict_proba(Xt)[:, 1]).max()
    assert diff <= 1e-12


def test_packed_boosting_rejects_wrong_width():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    hgb = sklearn_ensemble.HistGradientBoostingClassifier(max_iter=3).fit(X, y)
    with pytest.raises(ValueError):
        PackedBoosting.from_sklearn(hgb).predict_proba(X[:, :2])


# --- the outcome model -------------------------------------------------------------------------

def _outcome_data(n: int = 3000, seed: int = 0):
    df = _frame(n, seed)
    rng = np.random.default_rng(seed + 100)
    X = rng.normal(size=(n, 4))
    forest = 1 / (1 + np.exp(-X[:, 1]))
    bad_importers = {f"I{v:04d}" for v in range(10)}
    p = 0.01 + 0.5 * df["importer_id"].isin(bad_importers).to_numpy() + 0.3 * (X[:, 0] > 2)
    y = (rng.random(n) < p).astype(float)
    df["weight_extra"] = rng.normal(size=n)
    df.loc[df.index[::7], "weight_extra"] = np.nan
    return df, X, forest, y


def _fit(seed=0):
    df, X, forest, y = _outcome_data()
    m = OutcomeModel(max_iter=15, n_folds=3).fit(df, X, forest, y, revenue=y * 100.0,
                                                 extra_numeric=("weight_extra",), seed=seed)
    return m, df, X, forest, y


@pytest.fixture(scope="module")
def fitted():
    return _fit()


def test_outcome_model_scores_and_round_trip(fitted):
    m, df, X, forest, y = fitted
    out = m.predict(df, X, forest)
    for k in ("fraud_probability", "risk_score"):
        assert out[k].shape == (len(df),)
        assert ((out[k] >= 0) & (out[k] <= 1)).all()
    # Learnt the planted signal.
    from detector.evaluate import roc_auc

    assert roc_auc(y, out["risk_score"]) > 0.75
    again = OutcomeModel.from_state(m.to_state())
    out2 = again.predict(df, X, forest)
    for k in out:
        assert np.array_equal(out[k], out2[k])
    assert again.reasons(df.iloc[:50]) == m.reasons(df.iloc[:50])


def test_outcome_model_through_artifact_file(fitted, tmp_path):
    from detector.artifact import load_artifact, save_artifact

    m, df, X, forest, _ = fitted
    path = tmp_path / "outcome.joblib"
    save_artifact(path, {"outcome": m.to_state()}, {"model": "test"})
    _, payload = load_artifact(path)
    again = OutcomeModel.from_state(payload["outcome"])
    a, b = m.predict(df, X, forest), again.predict(df, X, forest)
    assert np.array_equal(a["risk_score"], b["risk_score"])


def test_outcome_model_is_deterministic(fitted):
    m, df, X, forest, _ = fitted
    m2 = _fit()[0]
    a, b = m.predict(df, X, forest), m2.predict(df, X, forest)
    assert np.array_equal(a["risk_score"], b["risk_score"])
    assert np.array_equal(a["fraud_probability"], b["fraud_probability"])


def test_reasons_name_the_history(fitted):
    m, df, X, forest, y = fitted
    bad = df.index[df["importer_id"] == "I0003"][:3]
    reasons = m.reasons(df.loc[bad])
    assert all(any(r.startswith("RISK_HISTORY_IMPORTER: importer I0003 had ") for r in rs)
               for rs in reasons), reasons
    assert "inspected declarations" in reasons[0][0] and "overall" in reasons[0][0]
    # An unseen importer (and otherwise ordinary keys) gives no importer history reason.
    new = df.iloc[:1].copy()
    new["importer_id"] = "NEVER-SEEN"
    assert not any(r.startswith("RISK_HISTORY_IMPORTER") for r in m.reasons(new)[0])


def test_scoring_from_state_does_not_import_sklearn(fitted, tmp_path):
    from detector.artifact import save_artifact

    m, df, X, forest, _ = fitted
    path = tmp_path / "outcome.joblib"
    save_artifact(path, {"outcome": m.to_state()}, {"model": "test"})
    df.iloc[:200].to_pickle(tmp_path / "df.pkl")
    np.save(tmp_path / "X.npy", X[:200])
    np.save(tmp_path / "f.npy", forest[:200])
    expect = m.predict(df.iloc[:200], X[:200], forest[:200])["risk_score"]
    np.save(tmp_path / "expect.npy", expect)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, pandas as pd
        from detector.artifact import load_artifact
        from detector.supervised import OutcomeModel
        _, payload = load_artifact({str(path)!r})
        m = OutcomeModel.from_state(payload["outcome"])
        df = pd.read_pickle({str(tmp_path / "df.pkl")!r})
        out = m.predict(df, np.load({str(tmp_path / "X.npy")!r}),
                        np.load({str(tmp_path / "f.npy")!r}))
        m.reasons(df)
        same = bool(np.array_equal(out["risk_score"], np.load({str(tmp_path / "expect.npy")!r})))
        print(json.dumps({{"sklearn": any(k == "sklearn" or k.startswith("sklearn.")
                                          for k in sys.modules), "same": same}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"sklearn": False, "same": True}


def test_fit_refuses_bad_inputs():
    df, X, forest, y = _outcome_data(300)
    with pytest.raises(ValueError):
        OutcomeModel(max_iter=5).fit(df, X[:10], forest, y)
    with pytest.raises(ValueError):
        OutcomeModel(max_iter=5).fit(df, X, forest, np.zeros(len(df)))
