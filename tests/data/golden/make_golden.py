"""How the golden files here were made (run once, from the code BEFORE the reasons modes).

    python tests/data/golden/make_golden.py

Model: the test suite's fixture model (conftest: 15,000 generated rows, seed 1, 50 trees).
Inputs: 4,000 generated rows (seed 2, 3% frauds) and data/sample.csv, scored with
`detector score`; the whole output CSV is kept (gzip) so that `--reasons all` can be
compared byte for byte, and flagged rows' reasons are kept as JSON for reading.
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


def main() -> None:
    import detector
    from detector.synth import generate

    model = detector.train(generate(rows=TRAIN_ROWS, seed=1, fraud_rate=0.01), trees=TREES,
                           seed=0, budget=BUDGET, lanes=LANES, random_share=RANDOM_SHARE)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "m.joblib")
        generate(rows=TEST_ROWS, seed=2, fraud_rate=0.03).to_csv(tmp / "gen.csv", index=False)
        for name, src in (("generated", tmp / "gen.csv"), ("sample", ROOT / "data/sample.csv")):
            out = tmp / f"{name}.scored.csv"
            subprocess.run(["detector", "score", str(tmp / "m.joblib"), str(src), "-o", str(out)],
                           check=True, stdout=subprocess.DEVNULL)
            (HERE / f"{name}.scored.csv.gz").write_bytes(gzip.compress(out.read_bytes(), mtime=0))
            import pandas as pd

            df = pd.read_csv(out, dtype=str, keep_default_na=False)
            keep = df[(df["lane"] != "green") | (df["random_selected"] == "True")]
            (HERE / f"{name}.flagged_reasons.json").write_text(json.dumps(
                {r.declaration_id: r.reasons for r in keep.itertuples()}, indent=0,
                ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
