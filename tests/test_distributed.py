"""The Dask engine on real clusters bound to 127.0.0.1 (no mocks).

Every result is compared with the local engine (detector.jobs.score_file) on the
concatenation of the same input files: same ids, bit-identical anomaly_score, same rank,
lane, flags, reasons, and the same rejects file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")

import numpy as np
import pandas as pd

import detector
from detector.errors import InputError
from detector.io import rejects_path
from detector.jobs import score_file, train_file

N_FILES = 3
ROWS = 6000


def _cluster(**kw):
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                        dashboard_address=":0", **kw)


@pytest.fixture(scope="module")
def cluster():
    with _cluster(processes=True) as c:
        yield c


@pytest.fixture(scope="module")
def model():
    return detector.train(detector.generate(rows=20_000, seed=1), trees=50)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A test set with planted bad rows, split into Parquet and CSV files."""
    d = tmp_path_factory.mktemp("dask")
    test = detector.generate(rows=ROWS, seed=2)
    test = test.astype({"net_mass_kg": object, "hs_code": object})
    test.loc[5, "net_mass_kg"] = "abc"
    test.loc[7, "hs_code"] = "12"
    test.loc[2500, "origin_country"] = "Z1"
    ids = test["declaration_id"].to_numpy(dtype=object)
    test.loc[4000, "declaration_id"] = ids[10]  # duplicate in another file
    test.loc[4001, "declaration_id"] = ids[10]  # ... twice, and with another problem
    test.loc[4001, "hs_code"] = "x"
    test.loc[1500, "declaration_id"] = ids[1200]  # duplicate within one file
    (d / "pq").mkdir()
    (d / "csv").mkdir()
    per = ROWS // N_FILES
    for i in range(N_FILES):
        part = test.iloc[i * per:(i + 1) * per]
        part.astype(str).to_parquet(d / "pq" / f"f{i}.parquet", row_group_size=400)
        part.to_csv(d / "csv" / f"f{i}.csv", index=False)
    test.to_csv(d / "all.csv", index=False)
    return d


@pytest.fixture(scope="module")
def local(data, model):
    summary = score_file(model, data / "all.csv", data / "local.parquet")
    return (summary, pd.read_parquet(data / "local.parquet"),
            pd.read_csv(data / "local.rejects.csv", dtype=str, keep_default_na=False))


def _check_same(out: Path, local) -> None:
    summary, L, LR = local
    D = pd.read_parquet(out)
    assert list(D.columns) == list(L.columns)
    assert len(D) == len(L)  # every input row, rejected ones in lane "manual", in input order
    assert (D["declaration_id"].to_numpy() == L["declaration_id"].to_numpy()).all()
    np.testing.assert_array_equal(D["anomaly_score"].to_numpy(), L["anomaly_score"].to_numpy())
    assert (L["lane"] == "manual").sum() == summary["rejected"] > 0
    pd.testing.assert_series_equal(D["rank"], L["rank"])
    for c in ("lane", "flagged", "random_selected"):
        assert (D[c].to_numpy() == L[c].to_numpy()).all(), c
    assert all(list(a) == list(b) for a, b in zip(D["reasons"], L["reasons"], strict=True))
    R = pd.read_csv(rejects_path(out), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(R, LR)


def test_matches_local_any_partitioning(cluster, data, model, local, tmp_path):
    from detector.distributed import score_dask

    addr = cluster.scheduler_address
    for src, rows in (("pq", 400), ("pq", 1300), ("csv", 700), ("csv", 10**6)):
        out = tmp_path / f"out_{src}_{rows}"
        s = score_dask(model, data / src, out, scheduler=addr, partition_rows=rows)
        assert s["engine"] == "dask"
        assert s["rows"] == ROWS == s["scored"] + s["rejected"]
        assert (s["scored"], s["rejected"], s["flagged"], s["lanes"]) == (
            local[0]["scored"], local[0]["rejected"], local[0]["flagged"], local[0]["lanes"])
        _check_same(out, local)
        if src == "pq" and rows == 400:
            assert s["partitions"] >= 15
    # The planted rows are all there, with the local reasons (incl. the duplicates).
    rej = local[2]
    assert set(rej["row_number"].astype(int)) == {6, 8, 1501, 2501, 4001, 4002}
    assert rej.loc[rej["row_number"] == "4002", "reason"].iloc[0].startswith(
        "duplicate declaration_id: first seen at row 11; hs_code must be 6-10 digits")


def test_glob_and_single_file_and_force(cluster, data, model, local, tmp_path):
    from detector.distributed import score_dask

    addr = cluster.scheduler_address
    out = tmp_path / "glob_out"
    score_dask(model, str(data / "pq" / "f*.parquet"), out, scheduler=addr)
    _check_same(out, local)
    with pytest.raises(InputError, match="exists"):
        score_dask(model, data / "pq", out, scheduler=addr)
    s = score_dask(model, data / "all.csv", out, scheduler=addr, force=True,
                   partition_rows=2000)
    assert s["partitions"] >= 3
    _check_same(out, local)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_own_local_cluster_processes(data, model, local, tmp_path):
    from detector.distributed import score_dask

    out = tmp_path / "own.parquet"
    s = score_dask(model, data / "pq", out, partition_rows=1000)
    assert s["rows"] == ROWS
    _check_same(out, local)


def test_threads_cluster(data, model, local, tmp_path):
    from detector.distributed import score_dask

    out = tmp_path / "threads"
    score_dask(model, data / "csv", out, processes=False, partition_rows=1500)
    _check_same(out, local)


def test_worker_killed_mid_run_loses_no_row(data, model, local, tmp_path):
    from distributed import Client

    from detector.distributed import score_dask

    with _cluster(processes=True) as c, Client(c) as client:
        pids = list(client.run(os.getpid).values())
        box: dict = {}

        def run():
            try:
                box["summary"] = score_dask(model, data / "pq", tmp_path / "killed",
                                            scheduler=c.scheduler_address, partition_rows=200)
            except BaseException as exc:
                box["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        deadline = time.time() + 60
        killed = False
        while time.time() < deadline and t.is_alive():
            busy = [k for keys in client.processing().values() for k in keys
                    if "score_partition" in str(k)]
            if busy:
                os.kill(pids[0], signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
        t.join(120)
        assert killed, "scoring finished before a worker could be killed"
        assert "error" not in box, box.get("error")
    assert box["summary"]["rows"] == ROWS
    _check_same(tmp_path / "killed", local)


def test_train_dask_equals_local_when_it_fits(cluster, data, model, tmp_path):
    from detector.distributed import train_dask

    addr = cluster.scheduler_address
    train_file(data / "all.csv", tmp_path / "local.joblib", trees=30, seed=3)
    s = train_dask(data / "pq", tmp_path / "dask.joblib", trees=30, seed=3, scheduler=addr,
                   partition_rows=700)
    assert not s["sampled"] and s["rows"] == ROWS and s["rejected"] == 6
    a = detector.load_model(tmp_path / "local.joblib")
    b = detector.load_model(tmp_path / "dask.joblib")
    assert a.metadata_["training"]["sha256"] == b.metadata_["training"]["sha256"]
    df = detector.generate(rows=2000, seed=9)
    assert (a.score(df)["anomaly_score"].to_numpy() == b.score(df)["anomaly_score"].to_numpy()
            ).all()
    # Sampled: deterministic for a seed, whatever the partitioning.
    s1 = train_dask(data / "pq", tmp_path / "s1.joblib", trees=30, seed=3, scheduler=addr,
                    sample_rows=2500, partition_rows=400)
    s2 = train_dask(data / "csv", tmp_path / "s2.joblib", trees=30, seed=3, scheduler=addr,
                    sample_rows=2500, partition_rows=1500)
    assert s1["sampled"] and 2000 < s1["trained_on"] < 3000
    assert s2["trained_on"] == s1["trained_on"]
    m1, m2 = (detector.load_model(tmp_path / f"s{i}.joblib") for i in (1, 2))
    assert m1.metadata_["training"]["sha256"] == m2.metadata_["training"]["sha256"]
    assert (m1.score(df)["anomaly_score"].to_numpy() == m2.score(df)["anomaly_score"].to_numpy()
            ).all()
    # Sampled, but every reference table (vocabularies, counts, medians, MADs, price
    # levels, means) is the whole dataset's: the same as the model trained locally on
    # everything, bit for bit. Only the typical feature values come from the sample.
    whole = a.features_.tables_
    assert m1.features_.n_rows_ == a.features_.n_rows_
    assert sorted(m1.features_.tables_) == sorted(whole)
    for k, v in whole.items():
        np.testing.assert_array_equal(m1.features_.tables_[k], v, err_msg=k)
    assert any(k.endswith("|med") for k in whole) and "hist|scale" in whole
    assert not np.array_equal(m1.features_.neutral_, a.features_.neutral_)


def test_core_does_not_import_dask():
    code = ("import sys, detector, detector.model, detector.jobs, detector.cli; "
            "bad = [m for m in sys.modules if m == 'dask' or m.startswith(('dask.', "
            "'distributed'))]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_global_duplicates_first_occurrence_wins():
    from detector.distributed import _global_duplicates

    facts = [{"id_pos": np.array([0, 1, 2]), "id_hash": np.array([5, 6, 5], np.uint64)},
             {"id_pos": np.array([0, 1]), "id_hash": np.array([6, 7], np.uint64)}]
    dups = _global_duplicates(facts, np.array([0, 3]))
    assert dups[0][0].tolist() == [2] and dups[0][1].tolist() == [1]
    assert dups[1][0].tolist() == [0] and dups[1][1].tolist() == [2]


def test_labelled_model_ranks_by_risk_like_local(tmp_path):
    """A model trained with outcomes: same risk scores, ranks and columns as locally."""
    from detector.distributed import score_dask
    from detector.jobs import score_file

    train = detector.generate(rows=6_000, seed=1, fraud_rate=0.03)
    model = detector.train(train, trees=30, labels="is_fraud")
    test = detector.generate(rows=3_000, seed=2, fraud_rate=0.03)
    src = tmp_path / "in"
    src.mkdir()
    test.iloc[:1500].to_parquet(src / "a.parquet")
    test.iloc[1500:].to_parquet(src / "b.parquet")
    local_in = tmp_path / "all.parquet"
    test.to_parquet(local_in)
    score_file(model, local_in, tmp_path / "local.parquet")
    score_dask(model, src, tmp_path / "dask", partition_rows=700, processes=False)
    a = pd.read_parquet(tmp_path / "local.parquet").set_index("declaration_id")
    b = pd.read_parquet(tmp_path / "dask").set_index("declaration_id").loc[a.index]
    assert {"risk_score", "fraud_probability"} <= set(b.columns)
    np.testing.assert_array_equal(a["risk_score"].to_numpy(), b["risk_score"].to_numpy())
    np.testing.assert_array_equal(a["rank"].to_numpy(), b["rank"].to_numpy())
    assert (a["lane"] == b["lane"]).all()


def test_train_dask_with_agency_columns_matches_local_tables(cluster, tmp_path):
    """Agency columns named in a mapping file (renamed, extra categorical and numeric):
    trained with Dask on a sample, every reference table still equals a local fit on all
    rows, the extra columns' medians included."""
    import json

    from detector.distributed import train_dask

    df = detector.generate(rows=5_000, seed=6)
    rng = np.random.default_rng(1)
    df["Tax Rate"] = np.round(rng.gamma(2.0, 0.05, len(df)), 4)
    df["Office ID"] = rng.choice(["O1", "O2", "O3"], len(df))
    df = df.rename(columns={"hs_code": "HS"})
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"columns": {"HS": "hs_code"},
                                   "extra_categorical": ["Office ID"],
                                   "extra_numeric": ["Tax Rate"]}))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        df.iloc[i * 1700:(i + 1) * 1700].to_parquet(src / f"p{i}.parquet")
    df.to_parquet(tmp_path / "all.parquet")
    train_file(tmp_path / "all.parquet", tmp_path / "local.joblib", columns=mapping, trees=20)
    s = train_dask(src, tmp_path / "dask.joblib", columns=mapping, trees=20, sample_rows=2_000,
                   partition_rows=900, scheduler=cluster.scheduler_address)
    assert s["sampled"]
    a = detector.load_model(tmp_path / "local.joblib").features_.tables_
    b = detector.load_model(tmp_path / "dask.joblib").features_.tables_
    assert any(k.startswith("xz:Tax Rate|") for k in a) and "vocab_x:Office ID" in a
    assert sorted(a) == sorted(b)
    for k, v in a.items():
        np.testing.assert_array_equal(b[k], v, err_msg=k)
