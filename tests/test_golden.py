"""Outputs byte for byte (or value for value) against golden files made before the
feature-family and engine redesign (tests/data/golden/make_golden_outputs.py).

The scored CSV in every reasons mode is guarded by tests/test_reasons_modes.py; here the
other outputs of the same run: JSON lines (bytes), Parquet (schema and every value, floats
exactly), the JSON summary (without paths and timings), and `detector explain --json`
for declarations of every kind. A difference here is a changed output: either a bug, or
a deliberate change that must come with regenerated golden files and a reason.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

GOLDEN = Path(__file__).parent / "data" / "golden"
_spec = importlib.util.spec_from_file_location("make_golden_outputs",
                                               GOLDEN / "make_golden_outputs.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


def _cli(*args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "detector.cli", *map(str, args)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def runs(model_path, test_df, tmp_path_factory):
    d = tmp_path_factory.mktemp("golden")
    src = d / "gen.csv"
    test_df.to_csv(src, index=False)
    out = {"src": src, "dir": d}
    out["summary"] = _cli("score", model_path, src, "-o", d / "g.jsonl").stdout
    _cli("score", model_path, src, "-o", d / "g.parquet", "--force")
    _cli("score", model_path, src, "-o", d / "g.csv", "--force")
    return out


def test_jsonl_output_is_golden(runs) -> None:
    want = gzip.decompress((GOLDEN / "generated.scored.jsonl.gz").read_bytes())
    assert (runs["dir"] / "g.jsonl").read_bytes() == want


def test_parquet_output_is_golden(runs) -> None:
    path = runs["dir"] / "g.parquet"
    schema = str(pq.read_schema(path).remove_metadata()) + "\n"
    assert schema == (GOLDEN / "generated.parquet_schema.txt").read_text()
    rows = make.parquet_rows(pd.read_parquet(path))
    assert rows == gzip.decompress((GOLDEN / "generated.parquet_rows.jsonl.gz").read_bytes()
                                   ).decode()


def test_summary_is_golden(runs) -> None:
    want = json.loads((GOLDEN / "generated.summary.json").read_text())
    assert make.summary_of(runs["summary"]) == want


def test_explain_is_golden(runs, model_path) -> None:
    want = json.loads((GOLDEN / "generated.explain.json").read_text())
    scored = pd.read_csv(runs["dir"] / "g.csv", dtype=str, keep_default_na=False)
    assert make.explain_ids(scored) == sorted(want, key=make.explain_ids(scored).index)
    for i, expected in want.items():
        got = json.loads(_cli("explain", model_path, runs["src"], "--id", i, "--json").stdout)
        assert got == expected, i
