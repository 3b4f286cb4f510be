"""End-to-end model benchmark: generator, training, score_one latency, process start.

    python benchmarks/bench_model.py            # 1M rows (issue targets)
    python benchmarks/bench_model.py --quick    # 100k rows (smoke)

Prints a table and writes benchmarks/results/bench_model.json. Targets (2 cores):
generating 1,000,000 rows well under a minute; training on 1,000,000 rows under a
minute; DeclarationModel.score_one p50 <= 1 ms end to end (validation, features,
forest, reasons); a warm process start to first score under 1 s.

score_one is timed twice: in this process, where training has loaded numba, and in a
fresh "service" process that only loads the model file and scores single declarations
(numba stays unloaded there: a few rows go through the numpy path, same bits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import latency_percentiles_us, write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "bench_model.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows = 100_000 if args.quick else 1_000_000

    import detector
    from detector.validate import validate

    t = time.perf_counter()
    df = detector.generate(rows=rows, seed=1)
    gen_s = time.perf_counter() - t

    t = time.perf_counter()
    valid = validate(df).valid
    validate_s = time.perf_counter() - t
    t = time.perf_counter()
    model = detector.DeclarationModel().fit(valid, validated=True)
    train_s = time.perf_counter() - t

    test = detector.generate(rows=5_000, seed=2)
    records = [test.iloc[i].to_dict() for i in range(2_000)]
    it = iter(records * 2)
    lat = latency_percentiles_us(lambda: model.score_one(next(it)), calls=2_000, warmup=50)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.joblib"
        model.save(path)
        rec = json.dumps(records[0], default=float)
        recs_path = Path(tmp) / "records.json"
        recs_path.write_text(json.dumps(records, default=float))
        code = (
            "import time, json; t=time.perf_counter(); import detector; "
            f"m=detector.load_model({str(path)!r}); r=m.score_one(json.loads({rec!r})); "
            "print(time.perf_counter()-t); import sys; print('sklearn' in sys.modules)\n"
            "import numpy as np\n"
            f"recs = json.load(open({str(recs_path)!r}))\n"
            "for r in recs[:50]: m.score_one(r)\n"
            "ts = []\n"
            "for r in recs:\n"
            "    t = time.perf_counter(); m.score_one(r); ts.append(time.perf_counter() - t)\n"
            "print(np.percentile(ts, 50) * 1e6, np.percentile(ts, 90) * 1e6, "
            "'numba' in sys.modules)"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # warm
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True).stdout.split()
        start_s, sklearn_loaded = float(out[0]), out[1] == "True"
        svc_p50, svc_p90, svc_numba = float(out[2]), float(out[3]), out[4] == "True"

    result = {
        "rows": rows,
        "generate_seconds": round(gen_s, 3),
        "generate_rows_per_second": round(rows / gen_s),
        "validate_seconds": round(validate_s, 3),
        "train_seconds": round(train_s, 3),
        "train_rows_per_second": round(rows / train_s),
        "score_one_us": {k: round(v, 1) if isinstance(v, float) else v for k, v in lat.items()},
        "warm_start_to_first_score_seconds": round(start_s, 3),
        "service_process_score_one_us": {"p50_us": round(svc_p50, 1),
                                         "p90_us": round(svc_p90, 1),
                                         "numba_loaded": svc_numba},
        "sklearn_imported_by_load_and_score": sklearn_loaded,
    }
    print(f"{'measure':44s}{'value':>14s}")
    print(f"{'generate ' + format(rows, ',') + ' rows (s)':44s}{gen_s:14.2f}")
    print(f"{'validate (s)':44s}{validate_s:14.2f}")
    print(f"{'train on ' + format(rows, ',') + ' rows (s)':44s}{train_s:14.2f}")
    for k in ("p50_us", "p90_us", "p99_us"):
        print(f"{'score_one ' + k:44s}{lat[k]:14.1f}")
    print(f"{'score_one p50_us, fresh service process':44s}{svc_p50:14.1f}")
    print(f"{'score_one p90_us, fresh service process':44s}{svc_p90:14.1f}")
    print(f"{'numba loaded in the service process':44s}{svc_numba!s:>14s}")
    print(f"{'warm start to first score (s)':44s}{start_s:14.3f}")
    print(f"{'sklearn imported by load + score':44s}{sklearn_loaded!s:>14s}")
    write_json_atomic(args.out, result)
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
