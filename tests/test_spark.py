"""docs/spark_score.py on a real local Spark (a JVM, local[2]): the same model file scores
the same rows to the same bits as the local engine, with the same ranks, lanes and
reasons, and every row is either scored or rejected. Skipped when pyspark or Java is
missing (scripts/test.sh installs pyspark through the [test] extra; Java comes from the
machine)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java: no java on PATH and no JAVA_HOME", allow_module_level=True)

import numpy as np
import pandas as pd

import detector
from detector.io import rejects_path
from detector.jobs import score_file

ROOT = Path(__file__).resolve().parents[1]
# pyspark's own pandas conversions use a keyword pandas 3 deprecates; not ours to fix.
# PySpark also warns that it does not fully support pandas 3 yet: this test is how we know
# that what we use of it works.
pytestmark = [pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")]


def _snippet():
    spec = importlib.util.spec_from_file_location("spark_score", ROOT / "docs" / "spark_score.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    s = (SparkSession.builder.master("local[2]").appName("detector-test")
         .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module", params=["forest", "outcomes"])
def case(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("spark")
    train = detector.generate(rows=20_000, seed=1)
    model = (detector.train(train, trees=50) if request.param == "forest" else
             detector.train(train, trees=50, labels="is_fraud"))
    model.save(d / "model.joblib")
    test = detector.generate(rows=4_000, seed=2)
    test = test.astype({"net_mass_kg": object, "hs_code": object})
    test.loc[5, "net_mass_kg"] = "abc"
    test.loc[7, "hs_code"] = "12"
    test.loc[1500, "declaration_id"] = test.loc[1200, "declaration_id"]
    (d / "pq").mkdir()
    for i in range(3):
        test.iloc[i * 1400:(i + 1) * 1400].astype(str).to_parquet(d / "pq" / f"f{i}.parquet")
    test.to_csv(d / "all.csv", index=False)
    score_file(model, d / "all.csv", d / "local.parquet")
    local = pd.read_parquet(d / "local.parquet")
    # The Spark snippet writes scored rows and rejects apart (the local engine's output
    # also lists the rejected rows, in lane "manual"): compare it with the scored ones.
    local = local[local["lane"] != "manual"].reset_index(drop=True)
    return d, local, pd.read_csv(
        rejects_path(d / "local.parquet"), dtype=str, keep_default_na=False)


def test_spark_scores_like_the_local_engine(spark, case):
    d, local, local_rejects = case
    mod = _snippet()
    got = mod.score_spark(spark, str(d / "model.joblib"), str(d / "pq")).toPandas()
    assert list(got.columns) == list(local.columns)
    assert len(got) == len(local)
    got = got.set_index("declaration_id").loc[local["declaration_id"]].reset_index()
    assert (got["anomaly_score"].to_numpy() == local["anomaly_score"].to_numpy()).all()
    for c in ("rank", "lane", "flagged", "random_selected"):
        assert (got[c].to_numpy() == local[c].to_numpy()).all(), c
    assert all(list(a) == list(b) for a, b in zip(got["reasons"], local["reasons"],
                                                   strict=True))
    rej = mod.reject_spark(spark, str(d / "pq")).toPandas()
    # Nothing lost: every input row is scored or rejected, the same rows as locally.
    assert len(got) + len(rej) == 4_000
    assert sorted(rej["declaration_id"]) == sorted(local_rejects["declaration_id"])
    assert sorted(rej["column"]) == sorted(local_rejects["column"])
    assert np.all(rej["reason"].str.len() > 0)
