"""KCS real-shaped declarations: the outcome-trained detector beside a plain
HistGradientBoosting on ordinal-coded raw fields, in the same run.

(a) train on train+valid with labels Fraud, score test: precision@1%, @5%, AUC, rejects.
(b) backtest over all three files from 2021-01-01, 7-day periods, budget 10% with 1%
    random: the detector's strategies beside the HGB retrained weekly on revealed outcomes.

    python benchmarks/bench_kcs.py [--strategies hybrid,random] [--refit outcomes,all]
                                   [--skip-backtest | --skip-static]

Prints a table; writes benchmarks/results/bench_kcs.json. Needs ../shared/data/kcs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
KCS = ROOT.parent / "shared" / "data" / "kcs"
MAPPING = ROOT / "data" / "mappings" / "kcs.json"
FILES = [KCS / f for f in ("train.csv", "valid.csv", "test.csv")]
RAW_NUMERIC = ["Tax Rate", "Net Mass", "Item Price"]
RAW_CODES = ["Office ID", "Process Type", "Import Type", "Import Use", "Payment Type",
             "Mode of Transport", "Declarant ID", "Importer ID", "Seller ID", "Courier ID",
             "HS6 Code", "Country of Departure", "Country of Origin", "Tax Type",
             "Country of Origin Indicator"]


def _raw(df: pd.DataFrame, categories: dict | None = None):
    """Ordinal codes learned on the training rows (unseen codes -> NaN), numbers as is."""
    cats = categories or {c: pd.Index(df[c].astype("str").unique()) for c in RAW_CODES}
    cols = [cats[c].get_indexer(df[c].astype("str")).astype(float) for c in RAW_CODES]
    cols = [np.where(v < 0, np.nan, v) for v in cols]
    cols += [pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in RAW_NUMERIC]
    return np.column_stack(cols), cats


def _hgb(seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Codes as ordinal numbers (trader ids have > 255 values: too many for HGB's
    # native categorical support).
    return HistGradientBoostingClassifier(max_iter=200, random_state=seed)


def _metrics(y: np.ndarray, s: np.ndarray) -> dict:
    from detector.evaluate import budget_metrics

    m = budget_metrics(y, s)
    return {k: float(m[k]) for k in ("precision@1%", "precision@5%", "roc_auc")}


def static(seed: int = 0) -> dict:
    from detector.io import read_table
    from detector.model import DeclarationModel
    from detector.schema import load_column_mapping
    from detector.validate import validate

    mapping = load_column_mapping(MAPPING)
    train = pd.concat([read_table(f, mapping) for f in FILES[:2]], ignore_index=True)
    test = read_table(FILES[2], mapping)
    t0 = time.time()
    rt, rs = validate(train), validate(test)
    model = DeclarationModel(seed=seed, extra_categorical=mapping.extra_categorical,
                             extra_numeric=mapping.extra_numeric)
    model.fit(rt.valid, validated=True, labels="is_fraud")
    scored = model.score_valid(rs.valid)
    det_s = time.time() - t0
    y = rs.valid["is_fraud"].to_numpy(float).astype(int)
    out = {"test_rows": int(len(test)), "test_rejected": int(len(rs.rejects)),
           "train_rejected": int(len(rt.rejects)), "detector_seconds": round(det_s, 1)}
    out["detector_hybrid"] = _metrics(y, scored["risk_score"].to_numpy())
    out["detector_forest"] = _metrics(y, scored["anomaly_score"].to_numpy())
    # The baseline on the raw files (it needs no validation: it scores every row).
    raw_train = pd.concat([pd.read_csv(f, dtype="str") for f in FILES[:2]], ignore_index=True)
    raw_test = pd.read_csv(FILES[2], dtype="str")
    t0 = time.time()
    Xtr, cats = _raw(raw_train)
    Xte, _ = _raw(raw_test, cats)
    hgb = _hgb(seed).fit(Xtr, raw_train["Fraud"].astype(int).to_numpy())
    p = hgb.predict_proba(Xte)[:, 1]
    out["hgb_raw_seconds"] = round(time.time() - t0, 1)
    yb = raw_test["Fraud"].astype(int).to_numpy()
    out["hgb_raw_all_rows"] = _metrics(yb, p)
    # Same rows as the detector, for a like-for-like comparison.
    keep = raw_test["Declaration ID"].isin(rs.valid["declaration_id"].astype("str")).to_numpy()
    out["hgb_raw_valid_rows"] = _metrics(yb[keep], p[keep])
    return out


def hgb_backtest(start="2021-01-01", days=7, budget=0.10, random_share=0.01, seed=0) -> dict:
    """The issue's baseline: HGB on ordinal-coded raw fields, retrained weekly on the
    revealed outcomes, 9% by rank and 1% at random."""
    from detector.backtest import period_counts, select

    raw = pd.concat([pd.read_csv(f, dtype="str") for f in FILES], ignore_index=True)
    dates = pd.to_datetime(raw["Date"])
    t0, t_start = time.time(), pd.Timestamp(start)
    before = (dates < t_start).to_numpy()
    X, _ = _raw(raw)  # codes only: the order of a code carries no label
    y = raw["Fraud"].astype(int).to_numpy()
    known_X, known_y = X[before], y[before]
    k = ((dates - t_start).dt.days // days).to_numpy()
    sel_total = found_total = frauds_total = 0
    for i in range(int(k[~before].max()) + 1):
        rows = np.flatnonzero(~before & (k == i))
        if not len(rows):
            continue
        model = _hgb(seed).fit(known_X, known_y)
        s = model.predict_proba(X[rows])[:, 1]
        n_rank, n_rand = period_counts(len(rows), budget, random_share)
        _, selected, _ = select(s, raw["Declaration ID"].to_numpy()[rows], n_rank, n_rand,
                                np.random.default_rng([seed, i]))
        sel_total += int(selected.sum())
        found_total += int(y[rows][selected].sum())
        frauds_total += int(y[rows].sum())
        known_X = np.vstack([known_X, X[rows][selected]])
        known_y = np.concatenate([known_y, y[rows][selected]])
    return {"precision": found_total / sel_total, "recall": found_total / frauds_total,
            "selected": sel_total, "frauds_found": found_total,
            "seconds": round(time.time() - t0, 1)}


def detector_backtest(strategies: list[str], seed: int = 0, refit: str = "outcomes") -> dict:
    from detector.backtest import run_backtest

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        s = run_backtest(FILES, tmp, labels="Fraud", columns=MAPPING, start="2021-01-01",
                         period="7d", budget=0.10, random_share=0.01, strategies=strategies,
                         seed=seed, refit=refit,
                         progress=lambda line: print(line, file=sys.stderr))
        s["wall_seconds"] = round(time.time() - t0, 1)
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategies", default="hybrid,random")
    ap.add_argument("--skip-backtest", action="store_true")
    ap.add_argument("--skip-static", action="store_true", help="backtests only")
    ap.add_argument("--refit", default="outcomes",
                    help="comma list of backtest refit modes: outcomes (refit only the outcome "
                         "part per period), all (retrain everything per period)")
    args = ap.parse_args()
    if not FILES[0].exists():
        sys.exit(f"KCS data not found at {KCS}")
    result: dict = {}
    if not args.skip_static:
        result["static"] = st = static()
        print(f"(a) train on train+valid, score test ({st['test_rows']} rows, "
              f"{st['test_rejected']} rejected by validation)")
        print(f"{'system':24s}{'p@1%':>8s}{'p@5%':>8s}{'AUC':>8s}")
        for name in ("detector_hybrid", "detector_forest", "hgb_raw_valid_rows",
                     "hgb_raw_all_rows"):
            m = st[name]
            print(f"{name:24s}{m['precision@1%']:8.3f}{m['precision@5%']:8.3f}"
                  f"{m['roc_auc']:8.3f}")
    if not args.skip_backtest:
        result["backtest_hgb_weekly"] = h = hgb_backtest()
        print("\n(b) backtest from 2021-01-01, 7d periods, budget 10% (1% random)")
        print(f"{'strategy':32s}{'precision':>10s}{'recall':>10s}{'fit s':>10s}")
        print(f"{'hgb_raw_weekly':32s}{h['precision']:10.3f}{h['recall']:10.3f}"
              f"{h['seconds']:10.1f}")
        for refit in args.refit.split(","):
            result[f"backtest_detector_refit_{refit}"] = d = detector_backtest(
                args.strategies.split(","), refit=refit)
            for name, s in d["strategies"].items():
                print(f"{name + ' (refit ' + refit + ')':32s}{s['precision']:10.3f}"
                      f"{s['recall']:10.3f}{d['fit_seconds'][name]:10.1f}")
            print(f"detector replay wall time, refit {refit}: {d['wall_seconds']:.0f} s "
                  f"(all strategies)")
    write_json_atomic(ROOT / "benchmarks" / "results" / "bench_kcs.json", result)


if __name__ == "__main__":
    main()
