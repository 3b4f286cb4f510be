"""What batch health (drift bins per chunk, detector.health) adds to scoring a file.

Run:  python benchmarks/bench_health.py [--rows 1000000] [--repeat 3] [--trees 200]
                                        [--data-dir DIR] [--out PATH]

In one process and one run: a model trained on 100k generated rows scores a generated
CSV of ``--rows`` rows through :func:`detector.jobs.score_file` (the path behind
``detector score``, with its batch settings), once with the model's drift references
and once with a copy that has none (what an old model file gives: no bins counted, no
drift section), the two taking turns ``--repeat`` times. The table shows the best run
of each (a shared machine only ever adds time) and the median; the overhead is
with / without - 1 on the best runs. On a machine other jobs share, wall times move by
more than the few percent measured here, so the process CPU time of every run (all
threads) is recorded too, and the direct cost: :func:`detector.health.bin_counts` timed
alone over a 100k-row feature matrix (what each chunk pays), times the chunks, as a share
of the best run without. Target: at most 5% added.

Results go to ``benchmarks/results/bench_health.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
SEED = 7


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--data-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "detector-bench-data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_health.json")
    args = ap.parse_args()

    import numpy as np

    import detector
    from detector.jobs import batch_process_settings, score_file
    from detector.synth import generate

    batch_process_settings()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    src = args.data_dir / f"health-{args.rows}-{SEED}.csv"
    if not src.exists():
        t = time.perf_counter()
        tmp = src.with_suffix(".tmp.csv")
        generate(rows=args.rows, seed=SEED).to_csv(tmp, index=False)
        os.replace(tmp, src)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    model = detector.train(generate(rows=100_000, seed=1), trees=args.trees, seed=0)
    print(f"trained in {time.perf_counter() - t:.0f} s", flush=True)
    bare = copy.copy(model)
    del bare.health_reference_

    runs: dict[str, list[float]] = {"with health": [], "without": []}
    cpu: dict[str, list[float]] = {"with health": [], "without": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.repeat):
            for name, m in (("with health", model), ("without", bare)) if r % 2 == 0 else \
                    (("without", bare), ("with health", model)):
                t, c = time.perf_counter(), time.process_time()
                summary = score_file(m, src, Path(d) / "out.csv", force=True)
                runs[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                print(f"  {name:12s} {runs[name][-1]:.2f} s "
                      f"(drift: {summary['health']['drift'].get('available')})", flush=True)
    X = model.features_.transform(generate(rows=100_000, seed=9))
    from detector.health import bin_counts

    bins_s = median_time(lambda: bin_counts(model.health_reference_, X), repeats=7)
    best = {k: min(v) for k, v in runs.items()}
    overhead = best["with health"] / best["without"] - 1.0
    cpu_overhead = statistics.median(cpu["with health"]) / statistics.median(cpu["without"]) - 1
    direct = bins_s * args.rows / len(X) / best["without"]
    print(f"\n{'variant':14s}{'best s':>9s}{'median s':>10s}{'rows/s':>11s}")
    for k, v in runs.items():
        print(f"{k:14s}{min(v):9.2f}{statistics.median(v):10.2f}{args.rows / min(v):11,.0f}")
    print(f"\noverhead of batch health at {args.rows:,} rows: {overhead:+.1%} (best runs; "
          f"medians {statistics.median(runs['with health']) / statistics.median(runs['without']) - 1:+.1%})"
          f"; bin_counts on 100k x {X.shape[1]} features: {bins_s * 1e3:.1f} ms"
          f"; target <= +5%")
    print(f"CPU time (all threads), medians: {cpu_overhead:+.1%}; direct cost of the bins: "
          f"{direct:.1%} of the best run without")
    write_json_atomic(args.out, {
        "rows": args.rows, "repeat": args.repeat, "trees": args.trees,
        "features": int(X.shape[1]), "runs_seconds": runs, "best_seconds": best,
        "overhead_best": overhead,
        "overhead_median": statistics.median(runs["with health"])
        / statistics.median(runs["without"]) - 1.0,
        "bin_counts_100k_ms": bins_s * 1e3, "target_overhead": 0.05,
        "cpu_seconds": cpu, "overhead_cpu_median": cpu_overhead, "direct_cost_share": direct,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "detector": detector.__version__,
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
