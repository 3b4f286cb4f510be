"""Thin coverage (issue 16): training on data where most HS codes are too rare for
statistics of their own says so, in the summary, the model's metadata and on stderr;
ordinary data does not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import detector
from detector.features import DeclarationFeatures
from detector.model import load_model
from detector.validate import validate

DETECTOR = shutil.which("detector")
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.csv"


def _rare_codes(rows: int = 3000, seed: int = 4) -> pd.DataFrame:
    """A generated world whose full codes are scattered: the heading kept, the last four
    digits drawn from 1,000, so nearly every code has a handful of rows."""
    df = detector.generate(rows=rows, seed=seed)
    rng = np.random.default_rng(seed)
    tail = rng.integers(0, 1000, len(df))
    df["hs_code"] = [f"{h[:4]}{t:04d}" for h, t in zip(df["hs_code"], tail, strict=True)]
    return df


def _train(tmp_path: Path, data: Path, *extra) -> tuple[dict, str, Path]:
    model = tmp_path / "m.joblib"
    res = subprocess.run([DETECTOR, "train", str(data), "-o", str(model), "--trees", "20",
                          *extra], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), res.stderr, model


def test_rare_codes_warn_in_summary_metadata_and_stderr(tmp_path):
    data = tmp_path / "rare.csv"
    _rare_codes().to_csv(data, index=False)
    summary, stderr, model = _train(tmp_path, data)
    cov = summary["coverage"]
    assert cov["hs_codes_below_min_rows"] > cov["hs_codes"] / 2
    assert cov["share_of_codes_below_min_rows"] > 0.5
    # Codes of ~3 rows each: almost every row is compared with a broader code.
    assert cov["rows_falling_back"] > 0.9
    levels = cov["rows_by_reference_level"]
    assert set(levels) == {"hs", "hs6", "hs4", "hs2", "all"}
    assert sum(levels.values()) == pytest.approx(1.0, abs=1e-3)
    assert levels["hs"] == pytest.approx(1.0 - cov["rows_falling_back"], abs=1e-3)
    assert cov["warning"].startswith("thin coverage:")
    assert f"{cov['hs_codes_below_min_rows']} of {cov['hs_codes']} HS codes" in cov["warning"]
    assert f"WARNING: {cov['warning']}" in stderr
    assert load_model(model).metadata_["coverage"] == cov


@pytest.mark.parametrize("source", ["sample", "generated"])
def test_ordinary_training_data_does_not_warn(tmp_path, source):
    if source == "sample":
        data = SAMPLE
    else:
        data = tmp_path / "gen.csv"
        detector.generate(rows=3000, seed=4).to_csv(data, index=False)
    summary, stderr, _ = _train(tmp_path, data)
    cov = summary["coverage"]
    assert cov["warning"] is None
    assert cov["hs_codes_below_min_rows"] <= cov["hs_codes"] / 2
    assert "thin coverage" not in stderr


def test_a_lower_min_rows_gives_codes_their_own_statistics():
    valid = validate(_rare_codes()).valid
    at30 = DeclarationFeatures(min_rows=30).fit(valid).coverage_
    at2 = DeclarationFeatures(min_rows=2).fit(valid).coverage_
    assert at30["warning"] is not None
    assert at2["rows_falling_back"] < at30["rows_falling_back"]
    assert at2["hs_codes_below_min_rows"] < at30["hs_codes_below_min_rows"]


def test_coverage_levels_follow_the_reference_backoff():
    """The level a code's rows are counted at is the level the features back off to:
    the origin rarity of each training row uses the same row counts."""
    valid = validate(_rare_codes(rows=2000, seed=7)).valid
    f = DeclarationFeatures(min_rows=30).fit(valid)
    _, det = f.transform_details(valid)
    level = det["origin_rarity|level"]
    names = ("hs", "hs6", "hs4", "hs2", "all")
    seen = {name: float(np.mean(level == i)) for i, name in enumerate(names)}
    assert seen == pytest.approx(f.coverage_["rows_by_reference_level"], abs=1e-3)
