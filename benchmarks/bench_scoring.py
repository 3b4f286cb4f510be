"""Benchmark PackedForest against sklearn's IsolationForest.score_samples.

Run:  python benchmarks/bench_scoring.py [--quick] [--out PATH]

Everything is measured in one run on one fitted forest (200 trees, max_samples
256, 24 features) so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import latency_percentiles_us, median_time, write_json_atomic

from detector.forest import PackedForest

N_TREES = 200
MAX_SAMPLES = 256
N_FEATURES = 24
SEED = 20240611

# Child process for the cold/warm start measurement: it loads the forest from a
# plain npz state (as a model artifact would), without sklearn.
_START_SCRIPT = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import json, sys
    import numpy as np
    from detector.forest import PackedForest
    with np.load(sys.argv[1]) as z:
        state = {k: (z[k] if z[k].ndim else z[k].item()) for k in z.files}
    p = PackedForest.from_state(state, backend="numba")
    t1 = time.perf_counter()
    p.anomaly_score(np.load(sys.argv[2]))
    t2 = time.perf_counter()
    p.score_one(np.zeros(p.n_features_in_))
    t3 = time.perf_counter()
    print(json.dumps({"import_and_load_s": t1 - t0, "first_batch_score_s": t2 - t1,
                      "first_score_one_s": t3 - t2, "to_first_score_s": t2 - t0}))
    """
)


def _start_time(state_path: Path, x_path: Path, cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("DETECTOR_NO_NUMBA", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _START_SCRIPT, str(state_path), str(x_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    wall = time.perf_counter() - start
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "bench_scoring.json",
        help="where to write the JSON results",
    )
    args = parser.parse_args(argv)

    if args.quick:
        sizes = [1_000, 20_000]
        repeats = {1_000: 3, 20_000: 2}
        sk_repeats = {1_000: 3, 20_000: 1}
        single_calls, sk_single_calls = 300, 30
    else:
        sizes = [1_000, 100_000, 1_000_000]
        repeats = {1_000: 9, 100_000: 5, 1_000_000: 3}
        sk_repeats = {1_000: 5, 100_000: 3, 1_000_000: 2}
        single_calls, sk_single_calls = 2_000, 200

    rng = np.random.default_rng(SEED)
    train = rng.normal(size=(20_000, N_FEATURES))
    forest = IsolationForest(n_estimators=N_TREES, max_samples=MAX_SAMPLES, random_state=SEED).fit(train)
    t0 = time.perf_counter()
    packed_numba = PackedForest.from_sklearn(forest, backend="numba")
    pack_s = time.perf_counter() - t0
    packed_numpy = PackedForest.from_sklearn(forest, backend="numpy")
    # Compile (or load from cache) outside the timed region; start-up is measured separately.
    packed_numba.anomaly_score(train[:10])
    packed_numba.score_one(train[0])

    def sk_2(X: np.ndarray) -> np.ndarray:
        with joblib.parallel_backend("threading", n_jobs=2):
            return forest.score_samples(X)

    configs = {
        "sklearn_n_jobs_1": forest.score_samples,
        "sklearn_threading_2": sk_2,
        "packed_numba": packed_numba.score_samples,
        "packed_numpy": packed_numpy.score_samples,
    }

    batch: dict[str, dict[str, float]] = {}
    for n in sizes:
        X = rng.normal(scale=1.5, size=(n, N_FEATURES))
        reference = forest.score_samples(X[: min(n, 20_000)])
        for name in ("packed_numba", "packed_numpy"):
            got = configs[name](X)[: len(reference)]
            if not np.array_equal(got, reference):
                raise SystemExit(f"{name} does not reproduce sklearn at n={n}")
        row: dict[str, float] = {}
        for name, fn in configs.items():
            reps = sk_repeats[n] if name.startswith("sklearn") else repeats[n]
            warmup = 0 if (n >= 1_000_000 and name != "packed_numba") else 1
            row[name] = median_time(lambda fn=fn, X=X: fn(X), reps, warmup=warmup)
            print(f"  n={n:>9,} {name:<22} {row[name]:9.4f} s", flush=True)
        batch[str(n)] = row

    single_x = rng.normal(size=N_FEATURES)
    single_2d = single_x[None, :]
    latency = {
        "sklearn_score_samples_1row": latency_percentiles_us(
            lambda: forest.score_samples(single_2d), sk_single_calls, warmup=5
        ),
        "packed_score_one": latency_percentiles_us(lambda: packed_numba.score_one(single_x), single_calls),
        "packed_score_samples_1row": latency_percentiles_us(
            lambda: packed_numba.score_samples(single_2d), single_calls
        ),
    }

    with tempfile.TemporaryDirectory(prefix="bench_numba_") as tmp:
        state_path = Path(tmp) / "state.npz"
        x_path = Path(tmp) / "x.npy"
        np.savez(state_path, **packed_numba.to_state())
        np.save(x_path, rng.normal(size=(1_000, N_FEATURES)))
        cache_dir = str(Path(tmp) / "numba_cache")
        cold = _start_time(state_path, x_path, cache_dir)
        warm = _start_time(state_path, x_path, cache_dir)

    results = {
        "config": {
            "n_trees": N_TREES,
            "max_samples": MAX_SAMPLES,
            "n_features": N_FEATURES,
            "seed": SEED,
            "quick": args.quick,
            "sizes": sizes,
            "python": platform.python_version(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "pack_seconds": pack_s,
            "n_nodes": packed_numba.n_nodes_,
        },
        "batch_median_seconds": batch,
        "batch_speedup_vs_best_sklearn": {},
        "rows_per_second": {},
        "single_row_latency": latency,
        "start_up": {"cold_cache": cold, "warm_cache": warm},
    }
    for n, row in batch.items():
        best_sk = min(row["sklearn_n_jobs_1"], row["sklearn_threading_2"])
        results["batch_speedup_vs_best_sklearn"][n] = {k: best_sk / v for k, v in row.items()}
        results["rows_per_second"][n] = {k: int(n) / v for k, v in row.items()}

    _print_table(results)
    write_json_atomic(args.out, results)
    print(f"\nwrote {args.out}")
    return 0


def _print_table(results: dict) -> None:
    names = ["sklearn_n_jobs_1", "sklearn_threading_2", "packed_numba", "packed_numpy"]
    print("\nBatch score_samples: median seconds (speed-up vs faster sklearn config)")
    print(f"{'rows':>10} | " + " | ".join(f"{n:>26}" for n in names))
    for n, row in results["batch_median_seconds"].items():
        sp = results["batch_speedup_vs_best_sklearn"][n]
        cells = [f"{row[k]:10.4f} s ({sp[k]:6.2f}x)" for k in names]
        print(f"{int(n):>10,} | " + " | ".join(f"{c:>26}" for c in cells))
    print("\nSingle-row latency (microseconds)")
    for name, lat in results["single_row_latency"].items():
        print(
            f"  {name:<28} p50 {lat['p50_us']:10.1f}  p90 {lat['p90_us']:10.1f}  "
            f"p99 {lat['p99_us']:10.1f}  ({lat['calls']} calls)"
        )
    print("\nStart-up in a fresh process (import + load state + first 1,000-row score)")
    for name, r in results["start_up"].items():
        print(
            f"  {name:<11} to first score {r['to_first_score_s']:6.2f} s "
            f"(import+load {r['import_and_load_s']:.2f} s, first batch {r['first_batch_score_s']:.2f} s, "
            f"first score_one {r['first_score_one_s']:.3f} s, process wall {r['process_wall_s']:.2f} s)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
