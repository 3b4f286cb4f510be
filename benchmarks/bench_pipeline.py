"""Benchmark the whole `detector score` pipeline (CSV in -> CSV out) against a naive one.

Run:  python benchmarks/bench_pipeline.py [--quick] [--sizes 1000000,4000000] [--out PATH]
                                          [--repeat 3] [--data-dir DIR] [--trees N]
                                          [--workers N] [--one-thread]

For each size, in one run on one machine:

* ``detector score`` as a real subprocess (``python -m detector.cli score``) on a CSV made by
  ``detector generate``: wall time, declarations per second and the child's peak RSS
  (psutil polling of the whole process tree every 100 ms, cross-checked with
  ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` measured in a fresh helper process);
* ``detector score --reasons all`` the same way: sentences on every row (the default,
  ``--reasons officer``, gives them outside the green lane, on random selections and on
  the top 2,000, codes elsewhere);
* the floor, also in its own subprocess: pyarrow reads the CSV and writes a two-column CSV
  (id, a score) of the same row count; the ratio detector / floor (best run each);
* with ``--one-thread``, ``detector score --threads 1`` (wall time only): one scoring
  thread, to show what the default two scoring threads add;
* with ``--workers N``, ``detector score --workers N`` too (N scoring processes instead
  of threads; the peak is the sum over the process tree, as for the others);
* with ``--baseline DIR`` (a checkout of an earlier commit, e.g. ``git worktree add
  /tmp/old 76ab50b``), that checkout's ``detector score`` (its code on ``PYTHONPATH``, its
  own model trained by its own code on the same 100k rows), taking turns with the others:
  the ratio detector / baseline (best run each) says whether a change made the pipeline
  slower;
* the plain path, also in its own subprocess: ``pandas.read_csv`` of the whole file, a
  scikit-learn ``IsolationForest`` (200 trees, fitted on a 256-row-per-tree sample)
  ``score_samples`` on the numeric columns, and ``to_csv`` of ids + scores: what a naive
  pipeline costs, with none of the validation, features or reasons.

Each command runs ``--repeat`` times (default 3), the commands taking turns; the table shows
the best run (the machine's capability; a shared machine only ever adds time) and the
JSON also the median and every run. Peak memory is the largest of all runs.

Targets (reported, not enforced): >= 150,000 declarations/s CSV to CSV, peak memory under
1 GB, flat from the smallest to the largest size, and at most 9x the floor.

Generated inputs are cached (by size and seed) in ``--data-dir``, by default
``$TMPDIR/detector-bench-data`` (outside the repository; ``benchmarks/results/data`` also
works if it is git-ignored). The model is trained once per data dir on 100k generated rows.
Results go to ``benchmarks/results/bench_pipeline.json`` (written atomically) and a table
is printed.
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
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import psutil
from _common import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
TARGET_RPS = 150_000
TARGET_MB = 1024
TARGET_FLOOR_RATIO = 9.0

# The naive pipeline, run in a child so that its peak RSS is measured the same way.
_PLAIN = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    from sklearn.ensemble import IsolationForest
    src, dst, trees = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    df = pd.read_csv(src)
    t1 = time.perf_counter()
    cols = [c for c in ("net_mass_kg", "gross_mass_kg", "customs_value", "quantity",
                        "packages") if c in df.columns]
    X = np.log1p(np.nan_to_num(df[cols].to_numpy(dtype=float), nan=0.0).clip(min=0))
    iso = IsolationForest(n_estimators=trees, max_samples=256, random_state=0).fit(X)
    s = -iso.score_samples(X)
    t2 = time.perf_counter()
    pd.DataFrame({"declaration_id": df["declaration_id"], "anomaly_score": s}).to_csv(
        dst, index=False)
    t3 = time.perf_counter()
    print({"read_s": t1 - t0, "score_s": t2 - t1, "write_s": t3 - t2})
    """
)

# The floor: what reading the CSV and writing a result of the same row count costs at
# best (pyarrow's multi-threaded reader, a two-column CSV written by pyarrow).
_FLOOR = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pyarrow as pa, pyarrow.csv as pcsv
    src, dst = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    t = pcsv.read_csv(src)
    t1 = time.perf_counter()
    out = pa.table({"declaration_id": t.column("declaration_id"),
                    "anomaly_score": pa.array(np.random.default_rng(0).random(t.num_rows))})
    pcsv.write_csv(out, dst)
    print({"read_s": t1 - t0, "write_s": time.perf_counter() - t1})
    """
)

# Run a command and print ru_maxrss of its children (Linux: KiB) as JSON on the last line.
_RUSAGE = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
    print(json.dumps({"rc": rc, "ru_maxrss_kb":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
    """
)


def _env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DETECTOR_MODEL_KEY", None)
    # PYTHONPATH comes before the editable install's finder: ``root``'s package is imported
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _detector(*args: str) -> list[str]:
    return [sys.executable, "-m", "detector.cli", *args]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure(cmd: list[str], root: Path = ROOT) -> dict:
    """Wall time and peak RSS (psutil polling of the process tree) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(root))
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, _tree_rss(ps))
        except psutil.NoSuchProcess:
            break
        # Each poll walks /proc (~1.5 ms): at 20 ms it took ~7% of a core from the
        # command measured. The peak itself comes from rusage too (exact).
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n"
                           f"{err.decode(errors='replace')[-3000:]}")
    return {"seconds": wall, "peak_rss_mb": peak / 2**20, "stdout": out.decode()}


def rusage_peak_mb(cmd: list[str]) -> float:
    """ru_maxrss of ``cmd`` measured in a fresh helper (so earlier children don't count)."""
    res = subprocess.run([sys.executable, "-c", _RUSAGE, *cmd], capture_output=True,
                         env=_env(), check=True)
    return json.loads(res.stdout.decode().strip().splitlines()[-1])["ru_maxrss_kb"] / 1024


def ensure_input(data_dir: Path, rows: int) -> Path:
    path = data_dir / f"declarations_{rows}_seed{SEED}.csv"
    if not path.exists():
        t = time.perf_counter()
        subprocess.run(_detector("generate", "--rows", str(rows), "--seed", str(SEED), "-o",
                                 str(path)), check=True, env=_env(), stdout=subprocess.DEVNULL)
        print(f"  generated {rows:,} rows in {time.perf_counter() - t:.0f} s -> {path}",
              file=sys.stderr)
    return path


def ensure_model(data_dir: Path, trees: int, root: Path = ROOT, tag: str = "") -> Path:
    """The model trained by ``root``'s code (a baseline checkout gets its own, ``tag``ged)."""
    model = data_dir / f"model_{trees}trees{tag}.joblib"
    if not model.exists():
        train = ensure_input(data_dir, 100_000)
        subprocess.run(_detector("train", str(train), "-o", str(model), "--trees", str(trees)),
                       check=True, env=_env(root), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return model


class Baseline(NamedTuple):
    """An earlier commit's checkout and the model its own code trained."""

    root: Path
    commit: str
    model: Path


def baseline(data_dir: Path, root: Path, trees: int) -> Baseline:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    return Baseline(root, commit, ensure_model(data_dir, trees, root, f"_{commit}"))


def _runs(measured: list[dict], rows: int) -> dict:
    """Best and median of repeated runs; the peak memory is the largest seen."""
    secs = sorted(m["seconds"] for m in measured)
    return {
        "seconds": round(secs[0], 2),
        "seconds_median": round(float(np.median(secs)), 2),
        "seconds_all": [round(m["seconds"], 2) for m in measured],
        "rows_per_second": round(rows / secs[0]),
        "rows_per_second_median": round(rows / float(np.median(secs))),
        "peak_rss_mb_psutil": round(max(m["peak_rss_mb"] for m in measured), 1),
    }


def bench_size(data_dir: Path, model: Path, rows: int, trees: int, work: Path,
               repeat: int = 1, workers: int = 0, one_thread: bool = False,
               base: Baseline | None = None) -> dict:
    src = ensure_input(data_dir, rows)
    size_mb = src.stat().st_size / 2**20
    out = work / f"scored_{rows}.csv"
    cmd = _detector("score", str(model), str(src), "-o", str(out), "--force")
    plain_out = work / f"plain_{rows}.csv"
    plain_cmd = [sys.executable, "-c", _PLAIN, str(src), str(plain_out), str(trees)]
    # The three commands take turns, ``repeat`` times: a shared machine's slow spells
    # then fall on each of them alike. "1 thread" is the same command on one scoring
    # thread (the read-ahead thread stays): what the scoring threads add.
    # "all" is the same command giving sentences on every row (--reasons all; the
    # default is --reasons officer). The floor reads the CSV and writes two columns.
    floor_cmd = [sys.executable, "-c", _FLOOR, str(src), str(work / f"floor_{rows}.csv")]
    base_out = work / f"baseline_{rows}.csv"
    base_cmd = _detector("score", str(base.model), str(src), "-o", str(base_out),
                         "--force") if base else None
    det, every, one, plain, procs, floor, old = [], [], [], [], [], [], []
    for _ in range(repeat):
        det.append(measure(cmd))
        if base:
            old.append(measure(base_cmd, base.root))
        every.append(measure([*cmd, "--reasons", "all"]))
        if one_thread:
            one.append(measure([*cmd, "--threads", "1"]))
        if workers:
            procs.append(measure([*cmd, "--workers", str(workers)]))
        plain.append(measure(plain_cmd))
        floor.append(measure(floor_cmd))
    summary = json.loads(det[0]["stdout"])
    det_rusage = rusage_peak_mb(cmd)
    plain_rusage = rusage_peak_mb(plain_cmd)
    every_rusage = rusage_peak_mb([*cmd, "--reasons", "all"])
    for p in (out, out.with_name(out.stem + ".rejects.csv"), plain_out,
              work / f"floor_{rows}.csv", base_out, base_out.with_name(base_out.stem
                                                                        + ".rejects.csv")):
        p.unlink(missing_ok=True)
    det_s = min(m["seconds"] for m in det)
    floor_s = min(m["seconds"] for m in floor)
    return {
        "rows": rows,
        "input_mb": round(size_mb, 1),
        "repeat": repeat,
        "detector": {
            **_runs(det, rows),
            "peak_rss_mb_rusage": round(det_rusage, 1),
            "scored": summary["scored"], "rejected": summary["rejected"],
            "inner_rows_per_second": summary.get("rows_per_second"),
            "threads": summary.get("threads"),
        },
        "detector_reasons_all": {**_runs(every, rows),
                                 "peak_rss_mb_rusage": round(every_rusage, 1)},
        **({"detector_one_thread": _runs(one, rows)} if one else {}),
        "floor_pyarrow_read_write": {**_runs(floor, rows), "phases": floor[0]["stdout"].strip()},
        "ratio_detector_to_floor": round(det_s / floor_s, 2),
        "ratio_reasons_all_to_floor": round(min(m["seconds"] for m in every) / floor_s, 2),
        **({"detector_workers": {"workers": workers, **_runs(procs, rows)}} if procs else {}),
        **({"baseline": {"commit": base.commit, "root": str(base.root), **_runs(old, rows)},
            "ratio_detector_to_baseline": round(det_s / min(m["seconds"] for m in old), 3)}
           if old else {}),
        "plain_pandas_sklearn": {
            **_runs(plain, rows),
            "peak_rss_mb_rusage": round(plain_rusage, 1),
            "phases": plain[0]["stdout"].strip(),
        },
    }


def _peak(d: dict) -> float:
    return max(d["peak_rss_mb_psutil"], d.get("peak_rss_mb_rusage", 0.0))


def table(results: list[dict]) -> str:
    head = (f"{'rows':>10} {'input MB':>9} | {'officer s':>9} {'rows/s':>9} {'peak MB':>8} | "
            f"{'all s':>6} {'rows/s':>9} {'peak MB':>8} | {'plain s':>8} {'rows/s':>9} "
            f"{'peak MB':>8} | {'floor s':>7} {'x floor':>7} {'all x':>6}")
    if any("detector_one_thread" in r for r in results):
        head += f" | {'1 thread':>9} {'rows/s':>9}"
    if any("detector_workers" in r for r in results):
        head += f" | {'workers s':>9} {'rows/s':>9} {'peak MB':>8}"
    if any("baseline" in r for r in results):
        head += f" | {'base s':>7} {'peak MB':>8} {'x base':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        d, a, p = r["detector"], r["detector_reasons_all"], r["plain_pandas_sklearn"]
        f = r["floor_pyarrow_read_write"]
        lines.append(
            f"{r['rows']:>10,} {r['input_mb']:>9.0f} | {d['seconds']:>9.1f} "
            f"{d['rows_per_second']:>9,} {_peak(d):>8.0f} | {a['seconds']:>6.1f} "
            f"{a['rows_per_second']:>9,} {_peak(a):>8.0f} | {p['seconds']:>8.1f} "
            f"{p['rows_per_second']:>9,} {_peak(p):>8.0f} | {f['seconds']:>7.2f} "
            f"{r['ratio_detector_to_floor']:>7.2f} {r['ratio_reasons_all_to_floor']:>6.2f}"
            + (f" | {o['seconds']:>9.1f} {o['rows_per_second']:>9,}"
               if (o := r.get("detector_one_thread")) else "")
            + (f" | {w['seconds']:>9.1f} {w['rows_per_second']:>9,} "
               f"{w['peak_rss_mb_psutil']:>8.0f}" if (w := r.get("detector_workers")) else "")
            + (f" | {b['seconds']:>7.1f} {b['peak_rss_mb_psutil']:>8.0f} "
               f"{r['ratio_detector_to_baseline']:>7.3f}" if (b := r.get("baseline")) else ""))
    return "\n".join(lines)


def verdict(results: list[dict]) -> dict:
    peaks = [max(r["detector"]["peak_rss_mb_psutil"], r["detector"]["peak_rss_mb_rusage"])
             for r in results]
    rps = [r["detector"]["rows_per_second"] for r in results]
    growth = peaks[-1] / peaks[0] if peaks and peaks[0] else None
    ratios = [r["ratio_detector_to_floor"] for r in results]
    return {
        "ratio_to_floor_max": max(ratios),
        "meets_9x_floor": max(ratios) <= TARGET_FLOOR_RATIO,
        "rows_per_second_min": min(rps),
        "meets_150k_rows_per_second": min(rps) >= TARGET_RPS,
        "peak_rss_mb_max": max(peaks),
        "meets_under_1gb": max(peaks) < TARGET_MB,
        "peak_growth_smallest_to_largest": round(growth, 2) if growth else None,
        # "flat": the largest input needs at most 25% more memory than the smallest
        "memory_flat": growth is not None and growth <= 1.25,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k and 400k rows")
    ap.add_argument("--sizes", default=None, help="comma-separated row counts")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each command, taking turns; best and median reported")
    ap.add_argument("--workers", type=int, default=0,
                    help="also run `detector score --workers N` (processes; tree RSS summed)")
    ap.add_argument("--one-thread", action="store_true",
                    help="also run `detector score --threads 1`")
    ap.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                    help="also run the `detector score` of this checkout (an earlier commit)")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "detector-bench-data")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "results" / "bench_pipeline.json")
    args = ap.parse_args()
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [100_000, 400_000] if args.quick else [1_000_000, 4_000_000]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.data_dir, args.trees)
    base = baseline(args.data_dir, args.baseline.resolve(), args.trees) if args.baseline else None
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-", dir=args.data_dir) as work:
        for rows in sizes:
            print(f"size {rows:,} ...", file=sys.stderr)
            results.append(bench_size(args.data_dir, model, rows, args.trees, Path(work),
                                      repeat=max(1, args.repeat),
                                      workers=max(0, args.workers),
                                      one_thread=args.one_thread, base=base))
            print(table(results[-1:]).splitlines()[-1], file=sys.stderr)
    payload = {
        "benchmark": "bench_pipeline",
        "mode": "quick" if args.quick else ("custom" if args.sizes else "full"),
        "sizes": sizes,
        "trees": args.trees,
        "repeat": max(1, args.repeat),
        "results": results,
        "targets": {"rows_per_second": TARGET_RPS, "peak_rss_mb": TARGET_MB,
                    "ratio_to_floor": TARGET_FLOOR_RATIO,
                    "memory": "flat from smallest to largest size"},
        "verdict": verdict(results),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(args.out, payload)
    print(table(results))
    print(json.dumps(payload["verdict"], indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
