"""The engine's summary side, shared by the local file job and Dask (detector.engine).

Real files, real clusters on 127.0.0.1: reject counts are exact beyond the examples kept
per chunk, and the Dask summary has the local one's health section and capacity cap.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import detector
from detector.io import rejects_path
from detector.jobs import score_file
from detector.validate import summarise_rejects

N_BAD_MASS = 1500  # more than the 1,000 rejects a chunk the summaries used to look at
N_NO_ID = 1100


@pytest.fixture(scope="module")
def engine_model():
    return detector.train(detector.generate(rows=20_000, seed=11), trees=40)


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """4,000 declarations, 2,600 of them rejected, in one CSV and one Parquet file."""
    d = tmp_path_factory.mktemp("engine")
    df = detector.generate(rows=4000, seed=12).astype({"net_mass_kg": object})
    df.loc[: N_BAD_MASS - 1, "net_mass_kg"] = "abc"
    df.loc[N_BAD_MASS: N_BAD_MASS + N_NO_ID - 1, "declaration_id"] = ""
    df.to_csv(d / "heavy.csv", index=False)
    df.astype(str).to_parquet(d / "heavy.parquet")
    return d


def _expected_lines(summary: str) -> None:
    lines = summary.splitlines()
    assert lines[0].startswith(f"net_mass_kg: {N_BAD_MASS} rows - net_mass_kg is not a number")
    assert lines[1].startswith(f"declaration_id: {N_NO_ID} rows - declaration_id is missing")


def test_file_summary_counts_every_reject_of_a_large_chunk(engine_model, heavy, tmp_path):
    one = score_file(engine_model, heavy / "heavy.csv", tmp_path / "one.csv")
    assert one["rejected"] == N_BAD_MASS + N_NO_ID
    _expected_lines(one["rejects_summary"])
    # The same text as a summary of the whole rejects file at once, whatever the chunks.
    rejects = pd.read_csv(rejects_path(tmp_path / "one.csv"), dtype=str, keep_default_na=False)
    assert one["rejects_summary"] == summarise_rejects(rejects)
    small = score_file(engine_model, heavy / "heavy.csv", tmp_path / "small.csv", chunk_rows=700)
    assert small["rejects_summary"] == one["rejects_summary"]


dask = pytest.importorskip("dask")
pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tcp://", dashboard_address=":0") as c:
        yield c


def test_dask_summary_counts_every_reject(engine_model, heavy, cluster, tmp_path):
    from detector.distributed import score_dask

    s = score_dask(engine_model, heavy / "heavy.parquet", tmp_path / "dask",
                   scheduler=cluster.scheduler_address)
    assert s["partitions"] == 1 and s["rejected"] == N_BAD_MASS + N_NO_ID
    _expected_lines(s["rejects_summary"])
    local = score_file(engine_model, heavy / "heavy.csv", tmp_path / "local.csv")
    assert s["rejects_summary"] == local["rejects_summary"]
    # One summary shape: the same keys apart from what only one engine has.
    engine_only = {"files", "partitions", "engine", "workers", "threads"}
    assert set(s) - engine_only == set(local) - engine_only
    # Rejected rows are in the output in lane manual, counted alike on both engines.
    assert s["manual"] == local["manual"] == s["rejected"] == s["lanes"]["manual"]


def test_train_dask_summary_counts_every_reject(heavy, cluster, tmp_path):
    """train_dask's summary once kept the first 1,000 rejects of each partition."""
    from detector.distributed import train_dask
    from detector.jobs import train_file

    s = train_dask(heavy / "heavy.parquet", tmp_path / "dask.joblib", trees=10,
                   scheduler=cluster.scheduler_address)
    assert s["partitions"] == 1 and s["rejected"] == N_BAD_MASS + N_NO_ID
    _expected_lines(s["rejects_summary"])
    local = train_file(heavy / "heavy.csv", tmp_path / "local.joblib", trees=10)
    assert s["rejects_summary"] == local["rejects_summary"]


def test_reject_tallies_merge_as_one():
    from detector.validate import RejectTally

    rejects = pd.DataFrame({"row_number": range(7), "declaration_id": [f"D{i}" for i in range(7)],
                            "column": ["net_mass_kg"] * 5 + ["hs_code"] * 2,
                            "reason": ["net_mass_kg is not a number: 'x'"] * 5
                            + ["hs_code is malformed: '1'"] * 2})
    merged = RejectTally().add(rejects.iloc[:2]).merge(RejectTally().add(rejects.iloc[2:]))
    assert merged.summary() == summarise_rejects(rejects)
    assert "net_mass_kg: 5 rows" in merged.summary() and "(e.g. D0, D1, D2)" in merged.summary()


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A batch from another generated world (other traders and routes): it drifts and
    floods the red lane, so the health warnings fire and a capacity moves rows."""
    d = tmp_path_factory.mktemp("shifted")
    df = detector.generate(rows=6000, seed=13, world=1)
    df.to_csv(d / "batch.csv", index=False)
    for i in range(3):
        part = df.iloc[i * 2000:(i + 1) * 2000]
        part.astype(str).to_parquet(d / f"batch{i}.parquet", row_group_size=500)
    return d


@pytest.mark.parametrize("capacity", [None, 7, "0.5%"])
def test_dask_health_and_capacity_equal_local(engine_model, shifted, cluster, tmp_path,
                                              capacity):
    from detector.distributed import score_dask

    pq_files = str(shifted / "batch*.parquet")
    local = score_file(engine_model, shifted / "batch.csv", tmp_path / "local.parquet",
                       capacity=capacity, chunk_rows=1700)
    s = score_dask(engine_model, pq_files, tmp_path / "dask", capacity=capacity,
                   scheduler=cluster.scheduler_address, partition_rows=1000)
    assert s["partitions"] > 1
    assert s["health"] == local["health"]
    assert s["health"]["drift"]["available"]
    assert s.get("capacity") == local.get("capacity")
    assert s["lanes"] == local["lanes"]
    L = pd.read_parquet(tmp_path / "local.parquet")
    D = pd.read_parquet(tmp_path / "dask")
    assert (D["declaration_id"].to_numpy() == L["declaration_id"].to_numpy()).all()
    for c in ("lane", "rank", "flagged", "random_selected"):
        assert (D[c].to_numpy() == L[c].to_numpy()).all(), c
    if capacity is not None:
        first = s["capacity"]["lane"]
        assert s["capacity"]["moved"] > 0
        assert (D["lane"] == first).sum() == s["capacity"]["limit"] == s["lanes"][first]
    else:
        assert "capacity" not in s


def test_cli_dask_capacity(engine_model, shifted, tmp_path):
    model_path = tmp_path / "m.joblib"
    engine_model.save(model_path)
    r = subprocess.run([sys.executable, "-m", "detector.cli", "score", str(model_path),
                        str(shifted / "batch*.parquet"), "-o", str(tmp_path / "out"),
                        "--engine", "dask", "--capacity", "5"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["capacity"]["limit"] == 5 and summary["capacity"]["moved"] > 0
    assert "capacity: lane" in r.stderr
    assert (pd.read_parquet(tmp_path / "out")["lane"] == summary["capacity"]["lane"]).sum() == 5


def test_score_spill_gives_the_scores_back_bit_for_bit(tmp_path):
    from detector.engine import ScoreSpill

    parts = [np.array([0.5, -0.0, np.nan, 1e-300]), np.zeros(0), np.arange(5) / 3.0,
             np.array([np.inf, -np.inf])]
    spill = ScoreSpill(tmp_path / "scores.f8")
    for p in parts:
        spill.add(p)
    got = spill.read()
    want = np.concatenate(parts)
    assert got.dtype == np.float64 and got.flags.writeable
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    assert len(ScoreSpill(tmp_path / "none.f8").read()) == 0  # no part, no file
