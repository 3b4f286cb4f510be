"""Learning from inspection outcomes: forest alone vs ranker alone vs combined score.

Run:  python benchmarks/bench_outcomes.py [--quick] [--out PATH] [--holdout NAME ...]

Train on ``detector.generate(rows=200_000, seed=1)``, test on ``generate(rows=100_000,
seed=2)`` (1% fraud). The forest is the current unsupervised ``detector.train`` model;
the ranker and the combined score come from ``detector.supervised.OutcomeModel``.

Targets checked (test set): combined precision@1% >= 0.9, recall@5% >= 0.97, and no
scheme's recall@5% worse than the forest's by more than 0.05. Hold-out runs zero the
training labels of one scheme (as if no one had ever caught it) and report that
scheme's recall@5% for combined vs forest vs ranker alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json_atomic

import detector
from detector.evaluate import budget_metrics, scheme_recall
from detector.features import DeclarationFeatures
from detector.supervised import OutcomeModel
from detector.validate import validate

TARGET_PRECISION_1 = 0.90
TARGET_RECALL_5 = 0.97
SCHEME_SLACK = 0.05
DEFAULT_HOLDOUTS = ("tile_concealment", "postal_splitting")


def _features(model, df, train: bool):
    valid = validate(df).valid
    X = None
    if train:
        X = getattr(model.features_, "_X_train_", None)
        if X is not None and len(X) != len(valid):
            X = None
    if X is None:
        X, _ = model.features_.transform_details(valid, DeclarationFeatures.burst_context(valid))
    return valid, X, model.forest_.anomaly_score(X)


def _summary(y, scheme, revenue, scores) -> dict:
    b = budget_metrics(y, scores, revenue)
    return {"metrics": b, "scheme_recall@5%": scheme_recall(y, scheme, scores, 0.05)}


def _row(name: str, s: dict) -> str:
    m = s["metrics"]
    return (f"{name:<10} {m['precision@1%']:>6.3f} {m['recall@1%']:>6.3f} {m['recall@5%']:>6.3f} "
            f"{m.get('revenue@5%', float('nan')):>6.3f} {m['roc_auc']:>7.4f} "
            f"{m['average_precision']:>6.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40k/20k rows (a smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                          / "bench_outcomes.json"))
    ap.add_argument("--holdout", nargs="*", default=list(DEFAULT_HOLDOUTS))
    args = ap.parse_args(argv)
    n_train, n_test = (40_000, 20_000) if args.quick else (200_000, 100_000)
    t0 = time.time()
    train_df = detector.generate(rows=n_train, seed=1)
    test_df = detector.generate(rows=n_test, seed=2)
    forest_model = detector.train(train_df)
    tr, Xtr, s_tr = _features(forest_model, train_df, train=True)
    te, Xte, s_te = _features(forest_model, test_df, train=False)
    y_tr = tr["is_fraud"].to_numpy(dtype=float)
    y_te = te["is_fraud"].to_numpy(dtype=float)
    sch_tr = tr["fraud_scheme"].to_numpy(dtype=object)
    sch_te = te["fraud_scheme"].to_numpy(dtype=object)
    rev_tr = tr["revenue"].to_numpy(dtype=float)
    rev_te = te["revenue"].to_numpy(dtype=float)
    prep_s = time.time() - t0
    print(f"data + forest: {prep_s:.1f}s  train {len(tr)} rows ({int(y_tr.sum())} frauds), "
          f"test {len(te)} rows ({int(y_te.sum())} frauds)")

    def run(y_fit):
        start = time.time()
        m = OutcomeModel().fit(tr, Xtr, s_tr, y_fit, revenue=rev_tr, seed=0)
        fit_s = time.time() - start
        start = time.time()
        out = m.predict(te, Xte, s_te)
        pred_s = time.time() - start
        return m, out, fit_s, pred_s

    m, out, fit_s, pred_s = run(y_tr)
    results = {
        "forest": _summary(y_te, sch_te, rev_te, s_te),
        "ranker": _summary(y_te, sch_te, rev_te, out["fraud_probability"]),
        "combined": _summary(y_te, sch_te, rev_te, out["risk_score"]),
    }
    head = f"{'score':<10} {'p@1%':>6} {'r@1%':>6} {'r@5%':>6} {'rev@5%':>6} {'auc':>7} {'ap':>6}"
    print("\n== all labels, test set ==")
    print(head)
    for k, v in results.items():
        print(_row(k, v))
    schemes = sorted(results["forest"]["scheme_recall@5%"])
    print(f"\nrecall@5% per scheme\n{'scheme':<22} {'forest':>7} {'ranker':>7} {'combined':>8}")
    worst_gap = -np.inf
    for name in schemes:
        f, r, c = (results[k]["scheme_recall@5%"][name] for k in ("forest", "ranker", "combined"))
        worst_gap = max(worst_gap, f - c)
        print(f"{name:<22} {f:>7.3f} {r:>7.3f} {c:>8.3f}")
    comb = results["combined"]["metrics"]
    targets = {
        "precision@1%": {"value": comb["precision@1%"], "target": TARGET_PRECISION_1,
                         "met": comb["precision@1%"] >= TARGET_PRECISION_1},
        "recall@5%": {"value": comb["recall@5%"], "target": TARGET_RECALL_5,
                      "met": comb["recall@5%"] >= TARGET_RECALL_5},
        "max_scheme_gap_vs_forest@5%": {"value": float(worst_gap), "target": SCHEME_SLACK,
                                        "met": bool(worst_gap <= SCHEME_SLACK)},
    }
    print("\ntargets: " + ", ".join(f"{k} {v['value']:.3f} ({'met' if v['met'] else 'NOT met'})"
                                    for k, v in targets.items()))
    print(f"stack: intercept {m.stack_intercept_:.4f}, coef [ranker logit, forest tail, "
          f"forest pct] = {np.round(m.stack_coef_, 4).tolist()}; fit {fit_s:.1f}s, "
          f"predict {pred_s:.2f}s for {len(te)} rows")
    reasons = m.reasons(te.iloc[np.argsort(-out["risk_score"])[:3]])
    print("reasons of the 3 top-ranked test rows:", reasons)

    holdouts = {}
    for name in args.holdout:
        y_fit = np.where(sch_tr == name, 0.0, y_tr)
        mh, oh, fit_h, _ = run(y_fit)
        scores = {"forest": s_te, "ranker": oh["fraud_probability"], "combined": oh["risk_score"]}
        rec = {k: scheme_recall(y_te, sch_te, v, 0.05).get(name, float("nan"))
               for k, v in scores.items()}
        overall = {k: budget_metrics(y_te, v) for k, v in scores.items()}
        holdouts[name] = {"held_out_recall@5%": rec,
                          "overall": {k: {m_: v[m_] for m_ in ("precision@1%", "recall@5%")}
                                      for k, v in overall.items()},
                          "stack_coef": mh.stack_coef_.tolist(), "fit_seconds": fit_h}
        print(f"\n== hold-out {name}: its training labels set to 0 ==")
        print(f"{'score':<10} {'held-out r@5%':>13} {'all p@1%':>9} {'all r@5%':>9}")
        for k in scores:
            print(f"{k:<10} {rec[k]:>13.3f} {overall[k]['precision@1%']:>9.3f} "
                  f"{overall[k]['recall@5%']:>9.3f}")

    payload = {"rows": {"train": int(len(tr)), "test": int(len(te))}, "quick": args.quick,
               "results": results, "targets": targets, "holdouts": holdouts,
               "stack": {"intercept": m.stack_intercept_, "coef": m.stack_coef_.tolist(),
                         "inputs": ["ranker_logit", "forest_tail", "forest_pct"]},
               "params": m.to_state()["params"],
               "seconds": {"data_and_forest": prep_s, "outcome_fit": fit_s,
                           "outcome_predict": pred_s, "total": time.time() - t0}}
    write_json_atomic(Path(args.out), payload)
    print(f"\nwrote {args.out} ({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
