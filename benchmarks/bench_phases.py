"""Where the time of `detector score` goes, and how far two scoring threads can take it.

Run:  python benchmarks/bench_phases.py [--rows 300000] [--chunk-rows 100000]
                                         [--data-dir DIR] [--trees N] [--repeat 3]
                                         [--reasons officer,all]

Each reason mode given (default: officer, the default of `detector score`, then all,
sentences on every row as before the modes) is measured in turn, both parts below.

Uses the same cached input and model as ``bench_pipeline.py`` (the first ``--rows`` rows
of its 1M-row file; generated on first use).

1. Phases: each phase of the score path runs as ``score_file`` runs it, in one process,
   one chunk after the other on one thread, timed with ``perf_counter``: the pre-pass
   (burst context and row count), reading, validation, features, forest, counterfactual
   reasons, reason texts, and CSV writing of the scored chunks. The last three phases are
   timed inside ``score_valid``'s own order of calls. The compiled kernels are loaded
   before timing (as ``score_file`` does during its pre-pass). Seconds for all ``--rows``
   rows, scaled to 300k rows.
2. Ceiling: the scoring stage alone (``score_valid`` and the CSV-ready table of each
   chunk: everything a scoring thread does) on chunks read and validated beforehand, on
   one thread and on two, taking turns ``--repeat`` times. No reading, validation,
   pre-pass or output: what two scoring threads can give at most, however fast the rest.
   Also the process CPU time per run: more CPU for the same rows on two threads is
   contention (the GIL and the shared cores).

The machine may be shared: compare ratios within one run. A table is printed and the
JSON goes to ``benchmarks/results/bench_phases.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json_atomic
from bench_pipeline import ensure_input, ensure_model

from detector.engine import burst_context, rare_gc, score_part
from detector.io import AtomicWriter, iter_tables, read_header
from detector.jobs import load_model
from detector.reasons import REASON_MODES, counterfactual_reasons, explained_rows, reason_texts
from detector.validate import IdTracker, validate


def phases(src: Path, model_path: Path, chunk_rows: int, out: Path,
           reasons: str = "officer") -> dict[str, float]:
    model = load_model(model_path)
    model.forest_.warm_up()  # as score_file does during its pre-pass
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def tick(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - clock[0]
        clock[0] = now

    with rare_gc():
        context, _ = burst_context(src, None, "utf-8", chunk_rows, read_header(src))
        tick("prepass")
        tracker = IdTracker()
        with AtomicWriter(out, force=True) as writer:
            for chunk in iter_tables(src, chunk_rows=chunk_rows):
                tick("read")
                valid = validate(chunk, seen_ids=tracker).valid
                tick("validate")
                # Scored first, untimed: its lanes say which rows get sentences.
                scored = model.score_valid(valid, context, reasons=reasons)
                full, _ = explained_rows(reasons, (scored["lane"] == "green").to_numpy(),
                                         scored["random_selected"].to_numpy(),
                                         scored[model.rank_column].to_numpy())
                clock[0] = time.perf_counter()
                X, det = model.features_.transform_details(valid, context)
                tick("features")
                scores = model.forest_.anomaly_score(X)
                tick("forest")
                idx, _ = counterfactual_reasons(model.features_, model.forest_, X, scores,
                                                candidates=int(model.candidates))
                tick("counterfactual")
                reason_texts(model.features_, X, det, idx, None if full.all() else full)
                tick("reason_texts")
                writer.write(scored)
                tick("write")
    gc.collect()
    return seconds


def _score_in_threads(model, chunks: list, context, columns: list[str], threads: int,
                      reasons: str = "officer") -> tuple[float, float]:
    """Wall and process CPU seconds of ``score_part`` over ``chunks`` in ``threads``
    threads (each takes the next chunk when done, as score_file's pool does)."""
    todo = iter(chunks)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    chunk = next(todo, None)
                if chunk is None:
                    return
                score_part(model, chunk, context, columns, reasons=reasons)
        except BaseException as exc:  # reported by the caller, not lost in a thread
            errors.append(exc)

    wall, cpu = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - wall, time.process_time() - cpu


def ceiling(src: Path, model_path: Path, chunk_rows: int, repeat: int,
            reasons: str = "officer") -> dict:
    """The scoring stage alone on one and on two threads, taking turns."""
    model = load_model(model_path)
    model.forest_.warm_up()
    context, _ = burst_context(src, None, "utf-8", chunk_rows, read_header(src))
    tracker = IdTracker()
    chunks = [validate(c, seen_ids=tracker).valid
              for c in iter_tables(src, chunk_rows=chunk_rows)]
    rows = sum(len(c) for c in chunks)
    columns = [c for c in model.output_columns if c != "rank"]
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    with rare_gc():
        score_part(model, chunks[0], context, columns, reasons=reasons)  # first-use caches
        for _ in range(repeat):
            for threads in (1, 2):
                runs[threads].append(_score_in_threads(model, chunks, context, columns,
                                                       threads, reasons))
    out = {"rows": rows, "chunk_rows": chunk_rows, "repeat": repeat}
    for threads, measured in runs.items():
        best = min(measured)
        out[f"threads_{threads}"] = {
            "seconds": round(best[0], 3), "rows_per_second": round(rows / best[0]),
            "cpu_seconds": round(best[1], 3),
            "seconds_all": [round(w, 3) for w, _ in measured],
            "cpu_seconds_all": [round(c, 3) for _, c in measured]}
    one, two = out["threads_1"], out["threads_2"]
    out["speedup_two_threads"] = round(one["seconds"] / two["seconds"], 2)
    out["cpu_ratio_two_threads"] = round(two["cpu_seconds"] / one["cpu_seconds"], 2)
    return out


def _print(mode: str, seconds: dict, top: dict, rows: int, scale: float) -> None:
    total = sum(seconds.values())
    print(f"--reasons {mode}: phases, one thread, one chunk after the other:")
    for name, s in seconds.items():
        print(f"{name:>15} {s * scale:6.2f} s per 300k  ({s / total:5.1%})")
    print(f"{'total':>15} {total * scale:6.2f} s per 300k  -> {rows / total:,.0f} rows/s "
          "(without start-up and the final rank pass)")
    print(f"ceiling: the scoring stage alone on {top['rows']:,} validated rows "
          f"(best of {top['repeat']}):")
    for threads in (1, 2):
        r = top[f"threads_{threads}"]
        print(f"{threads:>6} thread{'s' if threads > 1 else ' '} {r['seconds']:7.2f} s "
              f"{r['rows_per_second']:>10,} rows/s   cpu {r['cpu_seconds']:6.2f} s")
    print(f"two threads: {top['speedup_two_threads']}x the rows/s of one, "
          f"{top['cpu_ratio_two_threads']}x its CPU time for the same rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the ceiling on 1 and 2 threads, taking turns (best kept)")
    ap.add_argument("--reasons", default="officer,all",
                    help="reason modes measured, in turn (officer is the default of "
                         "`detector score`; all gives sentences on every row, as before)")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "detector-bench-data")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "results" / "bench_phases.json")
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.data_dir, args.trees)
    big = ensure_input(args.data_dir, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-phases-", dir=args.data_dir) as work:
        src = Path(work) / "input.csv"
        with open(big, "rb") as fh, open(src, "wb") as dst:
            for _ in range(args.rows + 1):
                dst.write(fh.readline())
        modes = [m for m in args.reasons.split(",") if m in REASON_MODES]
        seconds = {m: phases(src, model, args.chunk_rows, Path(work) / "scored.csv", m)
                   for m in modes}
        top = {m: ceiling(src, model, args.chunk_rows, max(1, args.repeat), m) for m in modes}
    scale = 300_000 / args.rows
    for m in modes:
        _print(m, seconds[m], top[m], args.rows, scale)
    payload = {
        "benchmark": "bench_phases", "rows": args.rows, "chunk_rows": args.chunk_rows,
        "trees": args.trees, "reasons_modes": modes,
        "by_mode": {m: {
            "phases_seconds_per_300k": {k: round(v * scale, 3) for k, v in seconds[m].items()},
            "phases_share": {k: round(v / sum(seconds[m].values()), 3)
                             for k, v in seconds[m].items()},
            "phases_rows_per_second": round(args.rows / sum(seconds[m].values())),
            "ceiling": top[m]} for m in modes},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(args.out, payload)
    print(json.dumps({m: v["phases_rows_per_second"] for m, v in payload["by_mode"].items()}))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
