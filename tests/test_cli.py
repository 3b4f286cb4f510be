"""The real CLI on real files: train -> score -> evaluate -> explain, formats, chunking,
column mappings, error exits, and a lean --help."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.model import OUTPUT_COLUMNS

DETECTOR = shutil.which("detector")


def _run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, (res.output, res.exception)
    return res


def _json(res) -> dict:
    out = res.stdout
    return json.loads(out[out.index("{"):])


@pytest.fixture(scope="module")
def trained(small_model):
    d = small_model["dir"]
    model = d / "m.joblib"
    res = _run("train", small_model["train"], "-o", model, "--trees", 20, "--seed", 3,
               "--budget", 0.02, "--lanes", "red=0.01,yellow=0.04", "--random", 0.01)
    summary = _json(res)
    assert summary["trained_on"] == 5000 and summary["rejected"] == 0
    return model


@pytest.fixture(scope="module")
def dirty_input(small_model, tmp_path_factory):
    """The test file as CSV with three broken rows planted."""
    df = pd.read_parquet(small_model["test"])
    df.loc[3, "net_mass_kg"] = -1.0
    df.loc[10, "origin_country"] = "Z1"
    df.loc[11, "declaration_id"] = df.loc[12, "declaration_id"]  # duplicate id
    p = tmp_path_factory.mktemp("dirty") / "dirty.csv"
    df.to_csv(p, index=False)
    return p, len(df)


def _check_output(out: pd.DataFrame, n_scored: int, n_rows: int | None = None):
    """Every input row is in the output: the scored ones ranked 1..n_scored, the
    rejected ones in lane "manual" with no score and no rank."""
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == (n_scored if n_rows is None else n_rows)
    manual = (out["lane"] == "manual").to_numpy()
    assert int((~manual).sum()) == n_scored
    assert out.loc[manual, "rank"].isna().all() and out.loc[manual, "anomaly_score"].isna().all()
    assert not out.loc[manual, "flagged"].astype(bool).any()
    out = out[~manual]
    assert sorted(out["rank"].astype(int)) == list(range(1, n_scored + 1))
    s = out["anomaly_score"].astype(float).to_numpy()
    assert ((s > 0) & (s <= 1)).all()
    order = np.argsort(out["rank"].astype(int).to_numpy())
    assert (np.diff(s[order]) <= 0).all()
    assert set(out["lane"]) <= {"red", "yellow", "green"}


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl"])
def test_score_formats_rejects_and_counts(trained, dirty_input, tmp_path, ext):
    src, n = dirty_input
    out_path = tmp_path / f"scored.{ext}"
    summary = _json(_run("score", trained, src, "-o", out_path))
    rej_path = tmp_path / "scored.rejects.csv"
    assert out_path.exists() and rej_path.exists()
    assert summary["rows"] == n == summary["scored"] + summary["rejected"]
    rejects = pd.read_csv(rej_path)
    assert summary["rejected"] == len(rejects) >= 3
    assert {"row_number", "declaration_id", "column", "reason"} <= set(rejects.columns)
    assert {"net_mass_kg", "origin_country", "declaration_id"} <= set(
        c for cols in rejects["column"] for c in cols.split(";"))
    if ext == "csv":
        out = pd.read_csv(out_path, dtype={"declaration_id": "str"})
    elif ext == "parquet":
        out = pd.read_parquet(out_path)
    else:
        out = pd.read_json(out_path, lines=True, dtype={"declaration_id": "str"})
    _check_output(out, summary["scored"], n)
    src_df = pd.read_csv(src, dtype={"declaration_id": "str"})
    assert out["declaration_id"].tolist() == src_df["declaration_id"].tolist()  # input order
    for row in (3, 10):  # negative mass, bad country: lane manual with the reason, rejected
        assert out.loc[row, "lane"] == "manual"
        reasons = out.loc[row, "reasons"]
        assert "REJECTED" in (reasons if isinstance(reasons, str) else " ".join(reasons))
        assert row + 1 in set(rejects["row_number"])
    if ext == "csv":
        text = out_path.read_text(encoding="utf-8")
        assert " | " in text  # reasons joined
    else:
        assert any(len(list(r)) > 1 for r in out["reasons"])


def test_score_chunked_equals_one_chunk(trained, small_model, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _run("score", trained, small_model["test"], "-o", a)
    _run("score", trained, small_model["test"], "-o", b, "--chunk-rows", 1000)
    da, db = pd.read_parquet(a), pd.read_parquet(b)
    np.testing.assert_array_equal(da["anomaly_score"].to_numpy(), db["anomaly_score"].to_numpy())
    np.testing.assert_array_equal(da["rank"].to_numpy(), db["rank"].to_numpy())
    assert da["declaration_id"].tolist() == db["declaration_id"].tolist()
    assert da["random_selected"].tolist() == db["random_selected"].tolist()
    assert [list(x) for x in da["reasons"]] == [list(x) for x in db["reasons"]]


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_score_threads_and_worker_processes_equal_one_thread(trained, dirty_input, tmp_path,
                                                             ext):
    """Scoring threads and real spawned worker processes give the same file, byte for
    byte, as one thread (CSV: the Arrow spill; Parquet: the generic spill), rejects and
    a duplicate id three chunks after its first occurrence included."""
    df = pd.read_csv(dirty_input[0], dtype="str", keep_default_na=False)
    df.loc[2100, "declaration_id"] = df.loc[5, "declaration_id"]
    src = tmp_path / "input.csv"
    df.to_csv(src, index=False)
    one, two, procs = (tmp_path / f"{n}.{ext}" for n in ("one", "two", "procs"))
    res = _json(_run("score", trained, src, "-o", one, "--chunk-rows", 700, "--threads", 1))
    assert res["threads"] == 1 and res["rejected"] >= 4
    rejects = pd.read_csv(one.with_name("one.rejects.csv"), dtype="str")
    dup = rejects[rejects["row_number"].astype(int) == 2101]  # 1-based data row
    assert dup["declaration_id"].tolist() == [df.loc[5, "declaration_id"]]
    assert "declaration_id" in dup["column"].iloc[0]
    res = _json(_run("score", trained, src, "-o", two, "--chunk-rows", 700, "--threads", 2))
    assert res["threads"] == 2
    res = _json(_run("score", trained, src, "-o", procs, "--chunk-rows", 700, "--workers", 2))
    assert res["workers"] == 2
    for other in (two, procs):
        assert one.read_bytes() == other.read_bytes()
        assert one.with_name("one.rejects.csv").read_bytes() == \
            other.with_name(f"{other.stem}.rejects.csv").read_bytes()


def test_cli_scores_equal_python_api(trained, small_model, tmp_path):
    import detector

    out = tmp_path / "s.parquet"
    _run("score", trained, small_model["test"], "-o", out)
    api = detector.load_model(trained).score(pd.read_parquet(small_model["test"]))
    cli = pd.read_parquet(out)
    np.testing.assert_array_equal(cli["anomaly_score"].to_numpy(),
                                  api["anomaly_score"].to_numpy())
    np.testing.assert_array_equal(cli["rank"].to_numpy(), api["rank"].astype(int).to_numpy())


def test_evaluate_json(trained, small_model):
    rep = _json(_run("evaluate", trained, small_model["test"], "--json"))
    assert set(rep["systems"]) == {"detector", "raw_fields_iforest", "value_per_kg_only"}
    assert rep["budgets"] == [0.01, 0.02, 0.05, 0.1]
    for sysname, m in rep["systems"].items():
        for b in ("1%", "2%", "5%", "10%"):
            assert 0 <= m[f"precision@{b}"] <= 1, sysname
            assert 0 <= m[f"recall@{b}"] <= 1
        assert 0 <= m["roc_auc"] <= 1
    assert rep["frauds"] == 75
    assert rep["systems"]["detector"]["roc_auc"] > 0.7
    table = _run("evaluate", trained, small_model["test"], "--no-baselines").stdout
    assert "precision@1%" in table and "detector" in table


def test_explain(trained, small_model):
    df = pd.read_parquet(small_model["test"])
    did = df.loc[df["is_fraud"] == 1, "declaration_id"].iloc[0]
    ex = _json(_run("explain", trained, small_model["test"], "--id", did, "--json"))
    assert ex["declaration_id"] == did and ex["status"] == "scored"
    assert 0 < ex["anomaly_score"] <= 1
    text = _run("explain", trained, small_model["test"], "--id", did).stdout
    assert did in text and "anomaly score" in text
    res = _run("explain", trained, small_model["test"], "--id", "NOPE", ok=False)
    assert res.exit_code == 1 and "NOPE" in res.output
    assert "Traceback" not in res.output


def test_flat_column_mapping_for_train_and_score(small_model, tmp_path):
    df = pd.read_csv(small_model["train"], dtype={"hs_code": "str"}).head(2500)
    ren = {"declaration_id": "Item ID", "hs_code": "Commodity", "origin_country": "Origin",
           "net_mass_kg": "Net kg", "customs_value": "Value USD"}
    theirs = df.rename(columns=ren)
    src = tmp_path / "theirs.csv"
    theirs.to_csv(src, index=False)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({v: k for k, v in ren.items()}), encoding="utf-8")
    model = tmp_path / "m.joblib"
    summary = _json(_run("train", src, "-o", model, "--trees", 10, "--columns", mapping))
    assert summary["trained_on"] == 2500
    out = tmp_path / "o.csv"
    s = _json(_run("score", model, src, "-o", out, "--columns", mapping))
    assert s["scored"] == 2500 and s["rejected"] == 0
    # without the mapping: a clear error naming the missing columns
    res = _run("score", model, src, "-o", tmp_path / "o2.csv", ok=False)
    assert res.exit_code == 1
    assert "hs_code" in res.output and "Traceback" not in res.output


def test_missing_required_column_exit_1(trained, small_model, tmp_path):
    df = pd.read_parquet(small_model["test"]).drop(columns=["customs_value"])
    src = tmp_path / "nocv.csv"
    df.to_csv(src, index=False)
    for args in (["score", trained, src, "-o", tmp_path / "o.csv"],
                 ["train", src, "-o", tmp_path / "m.joblib"]):
        res = _run(*args, ok=False)
        assert res.exit_code == 1, res.output
        assert "customs_value" in res.output
        assert "Traceback" not in res.output
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("args", [
    ["score"],
    ["train"],
    ["train", "x.csv", "--budget", "2"],
    ["train", "x.csv", "--lanes", "red=abc"],
    ["train", "x.csv", "--random", "1.5"],
    ["score", "m.joblib", "x.csv", "-o", "y.csv", "--chunk-rows", "0"],
    ["nosuchcommand"],
])
def test_usage_errors_exit_2(args, tmp_path):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output


def test_existing_output_needs_force(trained, small_model, tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("keep me", encoding="utf-8")
    res = _run("score", trained, small_model["test"], "-o", out, ok=False)
    assert res.exit_code == 1 and "--force" in res.output
    assert out.read_text(encoding="utf-8") == "keep me"
    gen = tmp_path / "g.csv"
    gen.write_text("keep", encoding="utf-8")
    res = _run("generate", "--rows", 10, "-o", gen, ok=False)
    assert res.exit_code == 1 and gen.read_text(encoding="utf-8") == "keep"
    _run("score", trained, small_model["test"], "-o", out, "--force")
    assert len(pd.read_csv(out)) == 2500


def test_missing_input_file_exit_1(trained, tmp_path):
    res = _run("score", trained, tmp_path / "nope.csv", "-o", tmp_path / "o.csv", ok=False)
    assert res.exit_code == 1 and "nope.csv" in res.output


@pytest.mark.skipif(DETECTOR is None, reason="detector console script not installed")
def test_console_script_subprocess(trained, small_model, tmp_path):
    out = tmp_path / "sub.parquet"
    proc = subprocess.run([DETECTOR, "score", str(trained), str(small_model["test"]), "-o",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["scored"] == 2500
    assert len(pd.read_parquet(out)) == 2500
    bad = subprocess.run([DETECTOR, "score", str(trained), str(tmp_path / "missing.csv"), "-o",
                          str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr and "missing.csv" in bad.stderr


def test_help_does_not_import_pandas_or_sklearn():
    code = (
        "import sys\n"
        "from detector.cli import main\n"
        "for args in (['--help'], ['score', '--help'], ['train', '--help']):\n"
        "    try:\n"
        "        main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pandas', 'sklearn', 'numpy', 'pyarrow', 'numba'))\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY=")][-1]
    heavy = line[len("HEAVY="):]
    assert "pandas" not in heavy and "sklearn" not in heavy, heavy


@pytest.mark.skipif(DETECTOR is None, reason="detector console script not installed")
def test_help_console_script_importtime():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import sys; sys.argv=['detector','--help']; "
                           "from detector.cli import main; main()"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = {ln.split("|")[-1].strip().split(".")[0] for ln in proc.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "click" in imported
    assert "pandas" not in imported and "sklearn" not in imported
