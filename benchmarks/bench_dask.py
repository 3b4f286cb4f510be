"""Throughput of the local engine vs the Dask engine on the same Parquet data.

Run:  python benchmarks/bench_dask.py [--quick] [--sizes 1000000 4000000] [--data DIR]
          [--scheduler ADDR] [--out benchmarks/results/bench_dask.json]

Data is generated once per size with ``detector.generate`` and cached in ``--data``
(default: a folder under the system temp dir, never the repository): one Parquet file for
the local engine and the same rows split into 8 Parquet files for Dask. A model (200
trees, trained on 50k generated rows) scores it with ``detector.jobs.score_file`` and with
``detector.distributed.score_dask`` (a 2-worker LocalCluster on 127.0.0.1 unless
``--scheduler`` is given). Wall times include everything each engine does for a user:
reading, validation, scoring, ranking, writing (and for Dask, starting the cluster).

Training (``--train-sizes``, default 1M rows): ``detector.jobs.train_file`` on the one
file (everything in memory) vs ``detector.distributed.train_dask`` on the folder with a
``--sample-rows`` sample (default 250k) for the forest; the benchmark checks that every
reference table of the Dask model equals the local one (whole-dataset medians included).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json_atomic

N_FILES = 8


def _data(root: Path, rows: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import detector

    one, folder = root / f"rows{rows}.parquet", root / f"rows{rows}"
    if one.exists() and folder.is_dir() and len(list(folder.glob("*.parquet"))) == N_FILES:
        return one, folder
    root.mkdir(parents=True, exist_ok=True)
    df = detector.generate(rows=rows, seed=7)
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, one, row_group_size=100_000)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    per = -(-rows // N_FILES)
    for i in range(N_FILES):
        pq.write_table(table.slice(i * per, per), folder / f"part{i}.parquet",
                       row_group_size=50_000)
    return one, folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k rows only")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--data", type=Path,
                    default=Path(tempfile.gettempdir()) / "detector-bench-dask")
    ap.add_argument("--scheduler", default=None, help="existing Dask scheduler address")
    ap.add_argument("--partition-rows", type=int, default=None)
    ap.add_argument("--train-sizes", type=int, nargs="*", default=[1_000_000],
                    help="sizes for the training comparison (none: skip it)")
    ap.add_argument("--sample-rows", type=int, default=250_000)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "results" / "bench_dask.json")
    args = ap.parse_args()
    sizes = [100_000] if args.quick else args.sizes

    import detector
    from detector.distributed import DEFAULT_PARTITION_ROWS, score_dask
    from detector.jobs import score_file

    model = detector.train(detector.generate(rows=50_000, seed=1), trees=200)
    results = []
    work = Path(tempfile.mkdtemp(prefix="bench-dask-out-"))
    try:
        for rows in sizes:
            one, folder = _data(args.data, rows)
            # Warm-up (numba cache, imports) on a small slice, not timed.
            score_file(model, one, work / "warm.parquet", force=True, chunk_rows=1000)
            t = time.perf_counter()
            loc = score_file(model, one, work / "local.parquet", force=True)
            t_local = time.perf_counter() - t
            part_rows = args.partition_rows or min(DEFAULT_PARTITION_ROWS,
                                                   max(rows // 8, 10_000))
            t = time.perf_counter()
            dsk = score_dask(model, folder, work / "dask_out", force=True,
                             scheduler=args.scheduler, partition_rows=part_rows)
            t_dask = time.perf_counter() - t
            assert loc["scored"] == dsk["scored"] and loc["flagged"] == dsk["flagged"]
            r = {"rows": rows, "local_seconds": round(t_local, 2),
                 "dask_seconds": round(t_dask, 2),
                 "local_rows_per_s": round(rows / t_local),
                 "dask_rows_per_s": round(rows / t_dask),
                 "ratio_dask_over_local": round(t_local / t_dask, 3),
                 "dask_partitions": dsk["partitions"], "partition_rows": part_rows}
            results.append(r)
            print(f"{rows:>10,} rows  local {r['local_rows_per_s']:>9,} rows/s "
                  f"({t_local:7.1f} s)  dask {r['dask_rows_per_s']:>9,} rows/s "
                  f"({t_dask:7.1f} s, {dsk['partitions']} partitions)  "
                  f"dask/local {r['ratio_dask_over_local']:.2f}", flush=True)
        training = [_train(args, work, rows) for rows in
                    ([100_000] if args.quick else args.train_sizes)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {"benchmark": "bench_dask", "quick": bool(args.quick), "results": results,
               "training": training,
               "model": {"trees": 200, "trained_rows": 50_000},
               "cluster": args.scheduler or "LocalCluster(n_workers=2, threads_per_worker=1, "
                                             "processes=True, host=127.0.0.1)",
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()},
               "detector_version": detector.__version__}
    print()
    print(f"{'rows':>10}  {'local rows/s':>12}  {'dask rows/s':>12}  {'dask/local':>10}")
    for r in results:
        print(f"{r['rows']:>10,}  {r['local_rows_per_s']:>12,}  {r['dask_rows_per_s']:>12,}  "
              f"{r['ratio_dask_over_local']:>10.2f}")
    if training:
        print(f"\n{'train rows':>10}  {'local s':>8}  {'dask s':>8}  {'dask/local':>10}  "
              f"{'sample':>8}  tables equal")
        for r in training:
            print(f"{r['rows']:>10,}  {r['local_seconds']:>8.1f}  {r['dask_seconds']:>8.1f}  "
                  f"{r['ratio_dask_over_local']:>10.2f}  {r['sample_rows']:>8,}  "
                  f"{r['tables_equal']}")
    write_json_atomic(args.out if not args.quick else
                      args.out.with_name(args.out.stem + "_quick.json"), payload)


def _train(args, work: Path, rows: int) -> dict:
    import numpy as np

    import detector
    from detector.distributed import train_dask
    from detector.jobs import train_file

    one, folder = _data(args.data, rows)
    t = time.perf_counter()
    train_file(one, work / "local.joblib", force=True, trees=200, seed=0)
    t_local = time.perf_counter() - t
    t = time.perf_counter()
    s = train_dask(folder, work / "dask.joblib", force=True, trees=200, seed=0,
                   scheduler=args.scheduler, sample_rows=args.sample_rows,
                   partition_rows=args.partition_rows or max(rows // 8, 10_000))
    t_dask = time.perf_counter() - t
    a = detector.load_model(work / "local.joblib").features_.tables_
    b = detector.load_model(work / "dask.joblib").features_.tables_
    equal = sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    return {"rows": rows, "local_seconds": round(t_local, 2), "dask_seconds": round(t_dask, 2),
            "ratio_dask_over_local": round(t_local / t_dask, 3),
            "sample_rows": int(s["trained_on"]), "partitions": s["partitions"],
            "tables_equal": bool(equal)}


if __name__ == "__main__":
    main()
