"""Where the memory of `detector score` (CSV in -> CSV out) goes, phase by phase.

Run:  python benchmarks/bench_memory.py [--sizes 1000000,4000000] [--data-dir DIR]
                                        [--trees N] [--interval 0.01] [--out PATH]

Each size is scored in a fresh child process (``detector.jobs.score_file``, what
``detector score`` runs, on the inputs and model that ``bench_pipeline.py`` generates
and caches). A thread samples the process RSS (``/proc/self/status`` VmRSS) every
``--interval`` seconds; the public steps of :mod:`detector.engine` that
``score_stream`` calls (``pre_pass``, ``score_chunks``, ``rank_pass``,
``write_output``) are wrapped to mark phase boundaries, and the progress callback
marks each chunk. For each phase: the RSS at its start and end and the highest RSS
sampled inside it; at the end, VmHWM (the kernel's exact peak). Also reported: the
sizes of the per-row things kept across phases (the burst context, the score and rank
arrays, the lane codes, the explained-top map) and Arrow's allocated bytes at each
boundary.

The table compares the sizes: for each phase, the growth of its peak from the
smallest size to the largest, in bytes per additional row. Results go to
``benchmarks/results/bench_memory.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json_atomic
from bench_pipeline import _env, ensure_input, ensure_model

PHASES = ("start", "pre_pass", "score_chunks", "concat", "rank_pass", "write_output", "end")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Sampler:
    """RSS every ``interval`` s; :meth:`mark` closes a phase (its highest sample)."""

    def __init__(self, interval: float, trim: bool = False) -> None:
        self.interval = interval
        self.trim = trim
        self.phase = "start"
        self.started = time.perf_counter()
        self.high = _status_kb("VmRSS")
        self.marks: list[dict] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _status_kb("VmRSS")
            with self._lock:
                self.high = max(self.high, rss)

    def mark(self, name: str, **extra) -> None:
        """End the current phase (named ``self.phase``) and start ``name``."""
        import pyarrow as pa

        rss = _status_kb("VmRSS")
        with self._lock:
            self.marks.append({"phase": self.phase, "end": name,
                               "t": round(time.perf_counter() - self.started, 3),
                               "peak_mb": round(max(self.high, rss) / 1024, 1),
                               "rss_mb": round(rss / 1024, 1),
                               "arrow_mb": round(pa.total_allocated_bytes() / 2**20, 1),
                               **extra})
            if self.trim:  # what glibc holds freed but not yet returned, at this point
                _malloc_trim()
                self.marks[-1]["rss_after_trim_mb"] = round(_status_kb("VmRSS") / 1024, 1)
                rss = _status_kb("VmRSS")
            self.phase, self.high = name, rss

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _malloc_trim() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _nbytes(x) -> int:
    return int(getattr(x, "nbytes", 0))


def _wrap(engine, sampler: Sampler, sizes: dict) -> None:
    """Phase marks around the engine steps that score_stream calls by module name."""
    pre_pass, score_chunks = engine.pre_pass, engine.score_chunks
    rank_pass, write_output = engine.rank_pass, engine.write_output

    def pre(*a, **k):
        sampler.mark("pre_pass")
        context, total = pre_pass(*a, **k)
        sizes["context_groups"] = int(len(context))
        sizes["context_bytes"] = int(context.memory_usage(index=True, deep=True))
        sampler.mark("score_chunks")
        return context, total

    def chunks(*a, **k):
        scored = score_chunks(*a, **k)
        sizes["scores_bytes"] = sum(_nbytes(s) for s in scored.scores)
        sizes["by_top_entries"] = len(scored.by_top)
        sizes["by_top_bytes"] = sum(sys.getsizeof(c) + sum(sys.getsizeof(x) for x in c)
                                    for c in scored.by_top.values()) + \
            sys.getsizeof(scored.by_top)
        sampler.mark("concat")  # score_stream concatenates the scores, then ranks
        return scored

    def rank(model, tally, scores, *a, **k):
        sampler.mark("rank_pass")
        ranked = rank_pass(model, tally, scores, *a, **k)
        sizes["rank_bytes"] = _nbytes(ranked.rank)
        sizes["lane_codes_bytes"] = _nbytes(ranked.lane_codes)
        sizes["manual_bytes"] = _nbytes(ranked.manual)
        sizes["recode_entries"] = len(ranked.recode)
        sampler.mark("write_output")
        return ranked

    def write(*a, **k):
        write_output(*a, **k)
        sampler.mark("end")

    engine.pre_pass, engine.score_chunks = pre, chunks
    engine.rank_pass, engine.write_output = rank, write


def child(src: Path, model_path: Path, out: Path, interval: float, trim: bool) -> dict:
    """Score ``src`` in this process with the sampler on; the measurements as a dict."""
    import detector.engine as engine
    from detector.jobs import batch_process_settings, load_model, score_file

    batch_process_settings()  # as `detector score` does (allocator settings)
    model = load_model(model_path)
    sampler = Sampler(interval, trim)
    sizes: dict = {}
    _wrap(engine, sampler, sizes)
    chunk_rss: list[float] = []
    chunk_trimmed: list[float] = []

    def progress(n: int) -> None:  # RSS after each chunk: does it climb with the rows?
        chunk_rss.append(round(_status_kb("VmRSS") / 1024, 1))
        if trim:
            _malloc_trim()
            chunk_trimmed.append(round(_status_kb("VmRSS") / 1024, 1))

    t = time.perf_counter()
    summary = score_file(model, src, out, force=True, progress=progress)
    seconds = time.perf_counter() - t
    sampler.stop()
    return {"rows": summary["rows"], "seconds": round(seconds, 2),
            "rows_per_second": round(summary["rows"] / seconds),
            "vm_hwm_mb": round(_status_kb("VmHWM") / 1024, 1),
            "phases": sampler.marks, "chunk_rss_mb": chunk_rss,
            **({"chunk_rss_after_trim_mb": chunk_trimmed} if trim else {}), "sizes": sizes}


def _per_row(results: list[dict]) -> dict:
    """Growth of each phase's peak, smallest to largest size, in bytes per added row."""
    a, b = results[0], results[-1]
    drow = b["rows"] - a["rows"]
    if drow <= 0:
        return {}
    peak = {m["phase"]: m["peak_mb"] for m in a["phases"]}
    out = {ph: round((m["peak_mb"] - peak[ph]) * 2**20 / drow, 1)
           for m in b["phases"] if (ph := m["phase"]) in peak}
    out["vm_hwm"] = round((b["vm_hwm_mb"] - a["vm_hwm_mb"]) * 2**20 / drow, 1)
    for k, v in b["sizes"].items():
        if k.endswith("_bytes"):
            out[k] = round((v - a["sizes"].get(k, 0)) / drow, 1)
    return out


def table(results: list[dict]) -> str:
    head = f"{'phase':>14} " + " ".join(f"{r['rows']:>12,}" for r in results) + \
        f" {'B/added row':>12}"
    growth = _per_row(results)
    lines = ["peak RSS MB per phase (arrow MB at its end)", head, "-" * len(head)]
    for ph in PHASES[:-1]:
        cells = []
        for r in results:
            m = next((m for m in r["phases"] if m["phase"] == ph), None)
            cells.append(f"{m['peak_mb']:>6.0f} ({m['arrow_mb']:>3.0f})" if m else f"{'':>12}")
        lines.append(f"{ph:>14} " + " ".join(cells) + f" {growth.get(ph, ''):>12}")
    lines.append(f"{'VmHWM':>14} " + " ".join(f"{r['vm_hwm_mb']:>12.0f}" for r in results)
                 + f" {growth.get('vm_hwm', ''):>12}")
    lines.append(f"{'rows/s':>14} " + " ".join(f"{r['rows_per_second']:>12,}" for r in results))
    keys = sorted({k for r in results for k in r["sizes"]})
    lines.append("")
    lines.append("kept across phases")
    for k in keys:
        lines.append(f"{k:>18} " + " ".join(f"{r['sizes'].get(k, 0):>12,}" for r in results)
                     + f" {growth.get(k, ''):>12}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,4000000", help="comma-separated row counts")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.01, help="RSS sampling period, s")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "detector-bench-data")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "results" / "bench_memory.json")
    ap.add_argument("--trim", action="store_true",
                    help="experiment: malloc_trim(0) at each phase boundary and report the "
                         "RSS after it (changes what follows: not the CLI's behaviour)")
    ap.add_argument("--child", nargs=3, metavar=("INPUT", "MODEL", "OUTPUT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        src, model, out = (Path(p) for p in args.child)
        print(json.dumps(child(src, model, out, args.interval, args.trim)))
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.data_dir, args.trees)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=args.data_dir) as work:
        for rows in (int(s) for s in args.sizes.split(",")):
            src = ensure_input(args.data_dir, rows)
            out = Path(work) / f"scored_{rows}.csv"
            print(f"size {rows:,} ...", file=sys.stderr)
            res = subprocess.run([sys.executable, __file__, "--interval", str(args.interval),
                                  *(["--trim"] if args.trim else []), "--child", str(src), str(model), str(out)],
                                 capture_output=True, text=True, env=_env(), check=False)
            if res.returncode != 0:
                raise RuntimeError(f"child for {rows:,} rows failed:\n{res.stderr[-3000:]}")
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    payload = {"benchmark": "bench_memory", "sizes": [r["rows"] for r in results],
               "trim": args.trim,
               "results": results, "bytes_per_added_row": _per_row(results),
               "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(args.out, payload)
    print(table(results))
    print(json.dumps(payload["bytes_per_added_row"], indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
