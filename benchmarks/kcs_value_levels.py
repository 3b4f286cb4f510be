"""Experiment (issue 15): value per kg against its HS reference at EVERY backoff level
(full code, HS6, HS4, HS2, with each level's row count) as extra inputs of the outcome
ranker, beside the shipped model, on KCS train -> valid (test is kept for reported
figures). The shipped model sees value per kg at the finest level with enough rows only.

    python benchmarks/kcs_value_levels.py [--seeds 0,1,2]

The extra columns are made from the fitted feature tables of the shipped model (the
same seed gives the same tables) and appended to the ranker's agency numeric inputs for
this run only. Prints a table; writes benchmarks/results/kcs_value_levels.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json_atomic
from bench_kcs import FILES, MAPPING

OUT = Path(__file__).resolve().parent / "results" / "kcs_value_levels.json"


def _metrics(y: np.ndarray, s: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    o = np.argsort(-s, kind="stable")
    return {"roc_auc": float(roc_auc_score(y, s)),
            "precision@1%": float(y[o[:int(len(s) * 0.01)]].mean()),
            "precision@5%": float(y[o[:int(len(s) * 0.05)]].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    import detector.supervised as sup
    from detector.features.lookup import LEVELS
    from detector.features.ratios import ratio
    from detector.features.rows import prepare_rows
    from detector.io import read_table
    from detector.model import DeclarationModel
    from detector.schema import load_column_mapping
    from detector.validate import validate

    mapping = load_column_mapping(MAPPING)
    train = validate(read_table(FILES[0], mapping)).valid
    valid = validate(read_table(FILES[1], mapping)).valid
    y = valid["is_fraud"].astype(int).to_numpy()

    def fit(seed: int) -> DeclarationModel:
        m = DeclarationModel(seed=seed, extra_categorical=mapping.extra_categorical,
                             extra_numeric=mapping.extra_numeric)
        return m.fit(train, validated=True, labels="is_fraud")

    shipped_extra = sup.OutcomeModel._extra
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        base = fit(seed)
        f = base.features_

        def levels(df, f=f):
            r = prepare_rows(f, df)
            x = ratio("value_per_kg", r)
            cols = [x]
            for lvl in LEVELS:
                pos = f.table_pos(f"value_per_kg|{lvl}", r[lvl])
                med = f.table_val(f"value_per_kg|{lvl}", "med", pos, np.nan)
                scale = f.table_val(f"value_per_kg|{lvl}", "scale", pos, np.nan)
                n = f.table_val(f"value_per_kg|{lvl}", "n", pos, 0)
                cols += [np.where(n >= 5, (x - med) / scale, np.nan), np.log1p(n)]
            return np.column_stack(cols)

        sup.OutcomeModel._extra = lambda self, df, lv=levels: np.hstack(
            [shipped_extra(self, df), lv(df)])
        try:  # the wider ranker is fitted and scored with its extra columns in place
            wider = _metrics(y, fit(seed).score_valid(valid)["risk_score"].to_numpy())
        finally:
            sup.OutcomeModel._extra = shipped_extra
        rows.append({"seed": seed, "model": "shipped",
                     **_metrics(y, base.score_valid(valid)["risk_score"].to_numpy())})
        rows.append({"seed": seed, "model": "every level", **wider})
        print(f"seed {seed}: {time.time() - t0:.0f} s", file=sys.stderr)
    print(f"{'seed':>4}  {'model':12s} {'AUC':>7} {'p@1%':>6} {'p@5%':>6}")
    for r in rows:
        print(f"{r['seed']:>4}  {r['model']:12s} {r['roc_auc']:7.4f} {r['precision@1%']:6.3f} "
              f"{r['precision@5%']:6.3f}")
    gain = [b["roc_auc"] - a["roc_auc"] for a, b in zip(rows[::2], rows[1::2], strict=True)]
    print(f"AUC gain of every level: {min(gain):+.4f} .. {max(gain):+.4f}")
    write_json_atomic(OUT, {"benchmark": "kcs_value_levels", "train": str(FILES[0]),
                            "valid": str(FILES[1]), "rows": rows, "auc_gain": gain})


if __name__ == "__main__":
    main()
