"""How the golden outputs beside the scored CSVs were made (issue 17's guard: run once,
from the code BEFORE the feature-family and engine redesign, main at 2026-12-06 19:45).

    python tests/data/golden/make_golden_outputs.py

Same model and inputs as make_golden.py (the suite's fixture model; 4,000 generated rows,
seed 2). Kept: the JSON-lines and Parquet outputs of `detector score` (default reasons
mode), its JSON summary without the fields that name paths or time the run, and the
`detector explain --json` output of a few declarations of every kind (the best ranked,
a random selection, each lane, a green one with reasons). tests/test_golden.py compares.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import BUDGET, LANES, RANDOM_SHARE, TEST_ROWS, TRAIN_ROWS, TREES  # noqa: E402

# Summary fields that depend on where and how fast the run was, not on what it decided.
VOLATILE = ("input", "output", "rejects", "seconds", "rows_per_second", "threads", "workers")


def explain_ids(scored) -> list[str]:
    """A few declarations of every kind, from a scored frame (strings)."""
    ranked = scored[scored["rank"] != ""].assign(r=lambda d: d["rank"].astype(int))
    ids = list(ranked.nsmallest(3, "r")["declaration_id"])
    ids += list(scored.loc[scored["random_selected"] == "True", "declaration_id"].head(2))
    for lane in sorted(set(scored["lane"])):
        ids += list(scored.loc[scored["lane"] == lane, "declaration_id"].tail(1))
    green = scored[(scored["lane"] == "green") & (scored["reasons"] != "")]
    ids += list(green["declaration_id"].head(2))
    return list(dict.fromkeys(ids))


def parquet_rows(table) -> str:
    """A Parquet output's rows as JSON lines, floats as their exact hex form."""
    rows = table.copy()
    for c in rows.columns[[t.kind == "f" for t in rows.dtypes]]:
        rows[c] = rows[c].map(lambda v: None if v != v else float(v).hex()).astype(object)
    return rows.to_json(orient="records", lines=True)


def summary_of(text: str) -> dict:
    s = json.loads(text)
    return {k: v for k, v in s.items() if k not in VOLATILE}


def main() -> None:
    import pandas as pd

    import detector
    from detector.synth import generate

    model = detector.train(generate(rows=TRAIN_ROWS, seed=1, fraud_rate=0.01), trees=TREES,
                           seed=0, budget=BUDGET, lanes=LANES, random_share=RANDOM_SHARE)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "m.joblib")
        src = tmp / "gen.csv"
        generate(rows=TEST_ROWS, seed=2, fraud_rate=0.03).to_csv(src, index=False)
        run = [sys.executable, "-m", "detector.cli"]
        r = subprocess.run([*run, "score", str(tmp / "m.joblib"), str(src), "-o",
                            str(tmp / "g.jsonl")], check=True, capture_output=True, text=True)
        (HERE / "generated.summary.json").write_text(
            json.dumps(summary_of(r.stdout), indent=1, sort_keys=True) + "\n")
        (HERE / "generated.scored.jsonl.gz").write_bytes(
            gzip.compress((tmp / "g.jsonl").read_bytes(), mtime=0))
        subprocess.run([*run, "score", str(tmp / "m.joblib"), str(src), "-o",
                        str(tmp / "g.parquet"), "--force"], check=True, capture_output=True)
        # Parquet bytes name the writer's version: the table is kept as JSON lines of its
        # rows, with the Arrow schema as text.
        table = pd.read_parquet(tmp / "g.parquet")
        import pyarrow.parquet as pq

        schema = str(pq.read_schema(tmp / "g.parquet").remove_metadata())
        (HERE / "generated.parquet_schema.txt").write_text(schema + "\n")
        (HERE / "generated.parquet_rows.jsonl.gz").write_bytes(
            gzip.compress(parquet_rows(table).encode(), mtime=0))
        subprocess.run([*run, "score", str(tmp / "m.joblib"), str(src), "-o",
                        str(tmp / "g.csv"), "--force"], check=True, capture_output=True)
        scored = pd.read_csv(tmp / "g.csv", dtype=str, keep_default_na=False)
        assert len(table) == len(scored)
        explained = {}
        for i in explain_ids(scored):
            r = subprocess.run([*run, "explain", str(tmp / "m.joblib"), str(src), "--id", i,
                                "--json"], check=True, capture_output=True, text=True)
            explained[i] = json.loads(r.stdout)
        (HERE / "generated.explain.json").write_text(
            json.dumps(explained, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
