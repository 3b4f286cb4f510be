"""Shared, session-scoped fixtures: small generated data sets and one trained model.

Everything here is real: the generator, the validator, the model and a model file on
disk. Sizes are small (tens of thousands of rows, 50 trees) so that the whole suite
stays fast on two cores; tests that need their own model train a smaller one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

TRAIN_ROWS = 15_000
TEST_ROWS = 4_000
TREES = 50
LANES = "red=0.01,yellow=0.04"
BUDGET = 0.02
RANDOM_SHARE = 0.01


@pytest.fixture(scope="session")
def synth_df() -> pd.DataFrame:
    """A generated frame with many frauds (5%): ~140 rows per scheme."""
    from detector.synth import generate

    return generate(rows=20_000, seed=3, fraud_rate=0.05)


@pytest.fixture(scope="session")
def train_df() -> pd.DataFrame:
    from detector.synth import generate

    return generate(rows=TRAIN_ROWS, seed=1, fraud_rate=0.01)


@pytest.fixture(scope="session")
def test_df() -> pd.DataFrame:
    from detector.synth import generate

    return generate(rows=TEST_ROWS, seed=2, fraud_rate=0.03)


@pytest.fixture(scope="session")
def model(train_df):
    import detector

    return detector.train(train_df, trees=TREES, seed=0, budget=BUDGET, lanes=LANES,
                          random_share=RANDOM_SHARE)


@pytest.fixture(scope="session")
def model_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "detector.joblib"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def scored_test(model, test_df) -> pd.DataFrame:
    return model.score(test_df)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A second, smaller model trained from a file by the real CLI job (for CLI tests)."""
    from detector.synth import generate

    d = tmp_path_factory.mktemp("cli")
    train = d / "train.csv"
    generate(rows=5_000, seed=11, fraud_rate=0.02).to_csv(train, index=False)
    test = d / "test.parquet"
    generate(rows=2_500, seed=12, fraud_rate=0.03).to_parquet(test, index=False)
    return {"dir": d, "train": train, "test": test}


def _record_of(df: pd.DataFrame, i: int) -> dict:
    """Row i of a frame as a plain dict (None for missing), as a service would send it."""
    rec = df.iloc[i].to_dict()
    return {k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in rec.items()}


@pytest.fixture(scope="session")
def record_of():
    return _record_of


@pytest.fixture(scope="session")
def robust_model_files(tmp_path_factory) -> tuple:
    """(model file, training parquet) for the robustness suites: 10k rows, 50 trees,
    unsigned (trained with DETECTOR_MODEL_KEY unset), trained once per session."""
    import os

    import detector

    folder = tmp_path_factory.mktemp("robustness-session-model")
    model_path, train_path = folder / "detector.joblib", folder / "train.parquet"
    df = detector.generate(rows=10_000, seed=1)
    saved_key = os.environ.pop("DETECTOR_MODEL_KEY", None)
    try:
        detector.train(df, trees=50).save(model_path)
    finally:
        if saved_key is not None:
            os.environ["DETECTOR_MODEL_KEY"] = saved_key
    df.to_parquet(train_path)
    return model_path, train_path
