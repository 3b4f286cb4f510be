"""Where the time of `detector score` goes: seconds per phase, per 300k declarations.

Run:  python benchmarks/bench_phases.py [--rows 300000] [--chunk-rows 100000]
                                         [--data-dir DIR] [--trees N]

Uses the same cached input and model as ``bench_pipeline.py`` (the first ``--rows`` rows
of its 1M-row file; generated on first use). Each phase of the score path runs as
``score_file`` runs it, in one process, and is timed with ``perf_counter``: the pre-pass
(burst context and row count), reading, validation, features, forest, counterfactual
reasons, reason texts, and CSV writing of the scored chunks. The last three phases are
timed inside ``score_valid``'s own order of calls. Numbers are wall seconds for all
``--rows`` rows, scaled to 300k rows; the machine may be shared, so compare ratios
within one run. Nothing is written to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import ensure_input, ensure_model

from detector.io import AtomicWriter, iter_tables, read_header
from detector.jobs import _burst_context, _rare_gc, load_model
from detector.reasons import counterfactual_reasons, reason_texts
from detector.validate import IdTracker, validate


def phases(src: Path, model_path: Path, chunk_rows: int, out: Path) -> dict[str, float]:
    model = load_model(model_path)
    model.forest_.anomaly_score(np.zeros((2, len(model.features_.feature_names_))))  # JIT
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def tick(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - clock[0]
        clock[0] = now

    with _rare_gc():
        context, _ = _burst_context(src, None, "utf-8", chunk_rows, read_header(src))
        tick("prepass")
        tracker = IdTracker()
        with AtomicWriter(out, force=True) as writer:
            for chunk in iter_tables(src, chunk_rows=chunk_rows):
                tick("read")
                valid = validate(chunk, seen_ids=tracker).valid
                tick("validate")
                X, det = model.features_.transform_details(valid, context)
                tick("features")
                scores = model.forest_.anomaly_score(X)
                tick("forest")
                idx, _ = counterfactual_reasons(model.features_, model.forest_, X, scores,
                                                candidates=int(model.candidates))
                tick("counterfactual")
                reason_texts(model.features_, X, det, idx)
                tick("reason_texts")
                scored = model.score_valid(valid, context)  # everything again, untimed
                clock[0] = time.perf_counter()
                writer.write(scored)
                tick("write")
    gc.collect()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--data-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "detector-bench-data")
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.data_dir, args.trees)
    big = ensure_input(args.data_dir, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-phases-", dir=args.data_dir) as work:
        src = Path(work) / "input.csv"
        with open(big, "rb") as fh, open(src, "wb") as dst:
            for _ in range(args.rows + 1):
                dst.write(fh.readline())
        seconds = phases(src, model, args.chunk_rows, Path(work) / "scored.csv")
    scale = 300_000 / args.rows
    total = sum(seconds.values())
    for name, s in seconds.items():
        print(f"{name:>15} {s * scale:6.2f} s per 300k  ({s / total:5.1%})")
    print(f"{'total':>15} {total * scale:6.2f} s per 300k  -> {args.rows / total:,.0f} rows/s "
          "(without start-up and the final rank pass)")


if __name__ == "__main__":
    main()
