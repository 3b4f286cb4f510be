"""File-level jobs behind the CLI commands: plain functions, no click.

Each job reads, validates, calls the model and writes its outputs atomically, and
returns a summary dict that the CLI prints. Progress is reported through an optional
callback so that the CLI can draw it on stderr while stdout stays machine-readable.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from . import verdict
from .engine import Tally, encode_lanes
from .errors import InputError, SchemaError
from .io import LIST_SEPARATOR, AtomicWriter, csv_table, iter_tables, read_ahead, read_table
from .model import DeclarationModel, build_model, load_model
from .reasons import DEFAULT_EXPLAIN_TOP, as_codes, check_reasons_mode, explained_rows
from .schema import load_column_mapping
from .validate import IdTracker, summarise_rejects, validate
from .verdict import MANUAL_LANE

__all__ = ["generate_file", "train_file", "score_file", "evaluate_file", "explain_file",
           "rejects_path", "load_model"]

Progress = Callable[[int], None] | None
_CHUNK_ROWS = 100_000


def rejects_path(output: str | os.PathLike) -> Path:
    """``scored.csv`` -> ``scored.rejects.csv`` (always CSV: people open it)."""
    p = Path(output)
    name = p.name
    for ext in (".csv.gz", ".parquet", ".jsonl", ".ndjson", ".csv", ".pq"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return p.with_name(name + ".rejects.csv")


def generate_file(output, *, rows: int, seed: int, fraud_rate: float = 0.01,
                  force: bool = False) -> dict:
    from .io import write_table
    from .synth import generate

    started = time.time()
    if Path(output).exists() and not force:
        raise InputError(f"OUTPUT {output} exists; pass --force to overwrite")
    df = generate(rows=rows, seed=seed, fraud_rate=fraud_rate)
    write_table(df, output, force=force)
    return {"output": str(output), "rows": int(len(df)), "frauds": int(df["is_fraud"].sum()),
            "seconds": round(time.time() - started, 3)}


def train_file(input, output, *, columns=None, budget: float = 0.01, lanes=None,
               random_share: float = 0.0, trees: int = 200, seed: int = 0,
               max_samples: int | str = 256, min_rows: int = 30,
               encoding: str = "utf-8", force: bool = False, labels: str | None = None,
               revenue: str | None = None) -> dict:
    """Read a file, validate it, fit a model and save the artifact.

    ``labels``/``revenue`` name outcome columns of the input: with them the model also
    learns from inspection outcomes (see :meth:`DeclarationModel.fit`)."""
    started = time.time()
    if Path(output).exists() and not force:
        raise InputError(f"OUTPUT {output} exists; pass --force to overwrite")
    mapping = load_column_mapping(columns)
    df = read_table(input, mapping, encoding=encoding)
    res = validate(df)
    if len(res.valid) < 2:
        raise SchemaError(f"INPUT {input}: {len(res.valid)} valid rows of {len(df)}; training "
                          f"needs at least 2. {summarise_rejects(res.rejects)}")
    model = build_model(mapping, trees=trees, max_samples=max_samples, budget=budget,
                        lanes=lanes, random_share=random_share, seed=seed, min_rows=min_rows)
    model.fit(res.valid, validated=True, labels=labels, revenue=revenue)
    model.metadata_["training"]["rejected"] = int(len(res.rejects))
    model.metadata_["columns"] = mapping.to_obj()
    meta = model.save(output)
    return {"output": str(output), "rows": int(len(df)), "trained_on": int(len(res.valid)),
            "rejected": int(len(res.rejects)),
            "rejects_summary": summarise_rejects(res.rejects) if len(res.rejects) else "",
            "features": meta["features"], "disabled_features": meta["disabled_features"],
            "threshold": meta["threshold"], "lane_thresholds": meta["lane_thresholds"],
            "ranked_by": meta["ranked_by"], "outcomes": meta["outcomes"],
            "coverage": meta["coverage"], "seconds": round(time.time() - started, 3)}


def _burst_context(input, mapping, encoding, chunk_rows, header) -> tuple[pd.Series, int]:
    """Pre-pass over three columns: whole-file parcel bursts, and the row count."""
    from .features import DeclarationFeatures

    parts, rows = [], 0
    burst = ("exporter_id", "date", "transport_mode")
    # Bursts need all three columns; without them the pass only counts rows, and one
    # column is enough for that.
    usecols = burst if all(c in header for c in burst) else ("declaration_id",)
    for chunk in iter_tables(input, mapping, chunk_rows, encoding=encoding, usecols=usecols):
        rows += len(chunk)
        parts.append(DeclarationFeatures.burst_context(chunk))
    return DeclarationFeatures.merge_contexts(parts), rows


# --- parallel chunk scoring -----------------------------------------------------------------
# Reading and validation stay in order (duplicate ids), and so does writing (spill order);
# scoring a validated chunk is independent of the others. By default it runs in threads
# of this process: most of its time is spent in numpy, Arrow and the numba kernel, which
# release the GIL, and threads share the model and the chunks instead of copying them.
# ``workers`` > 1 uses processes instead; each gets the model and the whole-file context
# once, at start.
_WORKER: dict = {}


class _Part(NamedTuple):
    """One scored chunk, in the form the spill takes."""

    scores: np.ndarray  # the ranking column, kept in memory until the rank pass
    data: Any  # CSV-ready Arrow table (CSV output) or the scored frame (other formats)
    lane: Any  # the lane names (an array of strings)
    flagged: int
    picked: np.ndarray  # bool: random selections (kept only when a capacity needs them)
    # Rows (positions in the chunk) with sentences only for being in the chunk's top
    # ``explain_top`` (reasons "officer"), and their codes: the ones outside the file's
    # top get the codes once the rank is known.
    by_top: np.ndarray
    by_top_codes: list
    drift: np.ndarray | None  # the chunk's drift bin counts (detector.health)


def _score_part(model: DeclarationModel, valid: pd.DataFrame, context,
                spill_columns: list[str] | None, rejects: pd.DataFrame | None = None,
                reasons: str = "officer", explain_top: int = DEFAULT_EXPLAIN_TOP) -> _Part:
    drift: list[np.ndarray] = []
    scored = model.score_valid(valid, context, reasons=reasons, explain_top=explain_top,
                               drift=drift) if len(valid) else None
    top_ids = np.zeros(0, dtype=np.int64)
    if reasons == "officer" and scored is not None:
        _, top_mask = explained_rows(reasons, (scored["lane"] == "green").to_numpy(),
                                     scored["random_selected"].to_numpy(),
                                     scored[model.rank_column].to_numpy(), explain_top)
        top_ids = scored.index.to_numpy()[top_mask]
    if rejects is not None and len(rejects):
        # Every input row has one verdict in the scored file: the rejected ones in lane
        # "manual", at their place in the input (the rejects file keeps the details).
        manual = model.manual_rows(rejects)
        scored = manual if scored is None else pd.concat([scored, manual]).sort_index(
            kind="stable")
    # Positions in the part as written (scored and manual rows, in input order).
    by_top = scored.index.get_indexer(top_ids).astype(np.int64)
    texts = scored["reasons"].to_numpy()
    by_top_codes = [as_codes(texts[i]) for i in by_top.tolist()]
    if spill_columns is None:
        data = scored.reset_index(drop=True)
    else:  # converted here, in parallel, rather than in the ordered writer
        data = csv_table(scored[spill_columns].reset_index(drop=True))
    return _Part(scored[model.rank_column].to_numpy(), data,
                 scored["lane"].array, int(scored["flagged"].sum()),
                 scored["random_selected"].to_numpy(dtype=bool), by_top, by_top_codes,
                 drift[0] if drift else None)


def _worker_init(model_state: bytes, context, spill_columns, reasons="officer",
                 explain_top=DEFAULT_EXPLAIN_TOP) -> None:
    import pickle

    try:  # one numba thread per worker: the processes already fill the cores
        import numba

        numba.set_num_threads(1)
    except ImportError:  # pragma: no cover - numpy path
        pass
    _WORKER["model"] = pickle.loads(model_state)  # our own bytes, made by this process
    _WORKER["context"] = context
    _WORKER["spill_columns"] = spill_columns
    _WORKER["reasons"] = (reasons, explain_top)


def _worker_score(valid: pd.DataFrame, rejects: pd.DataFrame | None = None) -> _Part:
    return _score_part(_WORKER["model"], valid, _WORKER["context"], _WORKER["spill_columns"],
                       rejects, *_WORKER["reasons"])


# Inputs from this size on (about 5,000 declarations) load the compiled kernels at start.
_WARM_UP_BYTES = 1 << 20


def _input_bytes(input) -> int:
    try:
        return os.path.getsize(input)
    except (OSError, TypeError, ValueError):
        return 0


def _warm_up(model: DeclarationModel) -> None:
    try:
        model.forest_.warm_up()
    except Exception:  # the first chunk meets the same error and reports it
        pass


def _default_threads() -> int:
    # Two scoring threads fill two cores (the kernel and Arrow use the second one too);
    # more threads only hold more chunks in memory.
    return max(1, min(2, os.cpu_count() or 1))


class _CsvSpill:
    """Scored chunks kept on disk until their rank is known, already in the form the CSV
    writer writes (:func:`~detector.io.csv_table`) and as Arrow IPC: the last pass only
    inserts the rank column, with no Parquet decoding and no pandas on the way out."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        self.rank_at = columns.index("rank")
        self.columns = [c for c in columns if c != "rank"]
        self._writer = None
        self._sink = None

    def add(self, table) -> None:
        """Append a CSV-ready table of ``self.columns`` (see :func:`_score_part`)."""
        import pyarrow as pa

        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_stream(
                self._sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None

    def tables(self, rank: np.ndarray, recode: dict | None = None,
               manual: np.ndarray | None = None, lanes: np.ndarray | None = None):
        """The spilled tables in order, each with its slice of ``rank`` inserted (empty
        where ``manual``), the reasons of the rows in ``recode`` (position -> codes)
        replaced and, when given, its slice of ``lanes`` in place of its own."""
        import pyarrow as pa

        start = 0
        cuts = np.array(sorted(recode or ()), dtype=np.int64)
        with pa.OSFile(str(self.path), "rb") as src:
            for batch in pa.ipc.open_stream(src):
                n = batch.num_rows
                stop = start + n
                table = pa.Table.from_batches([batch])
                if lanes is not None:
                    at = table.schema.get_field_index("lane")
                    table = table.set_column(at, "lane", pa.array(lanes[start:stop],
                                                                  type=pa.string()))
                table = table.add_column(self.rank_at, "rank", pa.array(
                    rank[start:stop], mask=None if manual is None else manual[start:stop]))
                mine = cuts[(cuts >= start) & (cuts < stop)]
                if len(mine):  # a few rows of a few chunks at most (see _Part.by_top)
                    at = table.schema.get_field_index("reasons")
                    cells = table.column(at).to_pylist()
                    for pos in mine.tolist():
                        cells[pos - start] = LIST_SEPARATOR.join(recode[pos])
                    table = table.set_column(at, "reasons", pa.array(cells, pa.string()))
                start = stop
                yield table


def _lane_counts(lanes: dict[str, int], codes: np.ndarray, names: list[str],
                 batch_rows: int) -> None:
    """Add the counts of the lanes ``names[codes]`` to ``lanes``, batch by batch, in the
    order of the summary's keys: that of ``value_counts`` on each batch of the output
    (most frequent first, ties in order of first appearance), from the codes alone."""
    for start in range(0, len(codes), batch_rows):
        batch = codes[start:start + batch_rows]
        seen, first = np.unique(batch, return_index=True)
        by_appearance = seen[np.argsort(first)]
        counts = np.bincount(batch, minlength=len(names))[by_appearance]
        for k in np.argsort(-counts, kind="stable"):
            name = str(names[by_appearance[k]])
            lanes[name] = lanes.get(name, 0) + int(counts[k])


@contextlib.contextmanager
def _rare_gc(first_generation: int = 50_000):
    """Run the cyclic garbage collector less often inside the block.

    Scoring allocates many short-lived containers (lists of reasons, object arrays) while
    the chunk and the model keep many alive; at the default threshold (700) the collector
    re-walks those live objects every few hundred allocations. Cycles are rare here, so
    collecting less often costs no memory to speak of.
    """
    before = gc.get_threshold()
    gc.set_threshold(first_generation, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def batch_process_settings() -> bool:
    """Process-wide settings for a command-line batch run (the CLI owns its process).

    Memory: two allocators hold on to freed memory for reuse by whoever freed it.
    Arrow's default pool (mimalloc) keeps its own segments, and glibc gives each thread
    that allocates its own arena (up to 8 per core), a block freed in one arena serving
    only that arena. With the read-ahead, scoring and encoding threads each taking their
    turn at column-sized buffers, both creep up. Arrow on the system allocator and one
    glibc arena for every thread bring the peak of 1M rows from ~0.88 to ~0.76 GB and of
    4M rows from ~1.01 to ~0.91 GB, at no measurable cost in speed (a fixed mmap
    threshold saved as much but cost 10-15% in page faults).

    Threads: the scoring threads hand the GIL to each other at least every switch
    interval; at the default 5 ms each hand-over also costs the other thread's cached
    data, and 20 ms was 3-5% faster on 1M rows (1 ms: 3% slower). A service embedding
    :func:`score_file` keeps its own setting.

    Returns whether glibc took its setting (False where the C library has no
    ``mallopt``: musl, macOS, Windows).
    """
    import ctypes
    import sys

    import pyarrow as pa

    sys.setswitchinterval(max(sys.getswitchinterval(), 0.02))
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_arena_max = -8  # from glibc's malloc.h
    return bool(mallopt(m_arena_max, 1))


@_rare_gc()
def score_file(model: DeclarationModel | str | os.PathLike, input, output, *, columns=None,
               chunk_rows: int = _CHUNK_ROWS, force: bool = False, encoding: str = "utf-8",
               progress: Progress = None, on_total: Callable[[int], None] | None = None,
               workers: int = 1, threads: int | None = None, reasons: str = "officer",
               explain_top: int = DEFAULT_EXPLAIN_TOP,
               capacity: int | str | None = None) -> dict:
    """Score a file in chunks with bounded memory; every row is scored or rejected.

    Pass 1 reads three columns for whole-file facts (parcel bursts, row count). Pass 2
    reads and validates chunk by chunk in a read-ahead thread and scores the chunks in
    ``threads`` threads (default: up to 2, one per core), or in ``workers`` processes
    when more than one (each costs a process's memory; threads share the model and are
    the faster choice), spilling results in input order to a temporary file
    (CSV-ready Arrow tables for a CSV output, Parquet otherwise) and keeping only the
    scores in memory (8 bytes a row, plus 1 for the lane). Pass 3 ranks the scores and
    streams the results, with their rank, to the output. Outputs appear only complete,
    and are the same whatever the number of threads or workers. ``reasons`` and
    ``explain_top``: see :meth:`DeclarationModel.score_valid`; the top is the file's.
    Rejected rows are in the output too (lane "manual", no score, no rank). ``capacity``
    (rows, or "2%" of the scored rows) caps the first lane in the rank pass, where the
    whole ranking is known.
    """
    started = time.time()
    check_reasons_mode(reasons, explain_top)
    verdict.parse_capacity(capacity, 0)  # a bad capacity fails now, not after the scoring
    if not isinstance(model, DeclarationModel):
        model = load_model(model)
    mapping = load_column_mapping(columns)
    out_path, rej_path = Path(output), rejects_path(output)
    # Both writers are made first: a bad output name, folder or an existing file stops
    # the command before any work. The output is committed before the rejects, so a run
    # killed at any point leaves either both files or neither.
    out_w = AtomicWriter(out_path, force=force)
    rej_w = AtomicWriter(rej_path, force=force)
    from .io import read_header

    header = read_header(input, mapping, encoding=encoding)
    needed = [*model.extra_categorical, *model.extra_numeric]
    absent = [c for c in needed if c not in header]
    if absent:
        raise SchemaError(f"INPUT {input} lacks column(s) {absent} that this model was trained "
                          "with as extra agency columns; add them or map them with --columns")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = _default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    rows_in = n_out = 0
    scores: list[np.ndarray] = []
    tracker = IdTracker()
    tally = Tally(keep_picked=capacity is not None)
    tmp_dir = tempfile.mkdtemp(prefix=".detector-", dir=out_path.parent if
                               out_path.parent.exists() else None)
    spill = Path(tmp_dir) / "scored.parquet"
    # A CSV output (the common case) spills CSV-ready Arrow tables; other formats go
    # through a Parquet spill and the generic writer.
    csv_spill = _CsvSpill(Path(tmp_dir) / "scored.arrow", model.output_columns) if \
        out_w.format == "csv" else None
    spill_columns = csv_spill.columns if csv_spill is not None else None
    by_top: dict[int, list[str]] = {}
    rej_w.__enter__()
    pool = None
    try:
        def validated() -> Iterator:
            # In the read-ahead thread: reading and validation keep the input's order.
            for chunk in iter_tables(input, mapping, chunk_rows, encoding=encoding):
                yield len(chunk), validate(chunk, seen_ids=tracker)

        # The compiled kernels load (~0.5 s in a fresh process) while the pre-pass
        # parses in Arrow threads; an error there resurfaces in scoring. A small file
        # may never need them (a few rows score on the numpy path).
        warm = threading.Thread(target=_warm_up, args=(model,), name="detector-warm-up",
                                daemon=True)
        if _input_bytes(input) >= _WARM_UP_BYTES:
            warm.start()
        try:
            context, total = _burst_context(input, mapping, encoding, chunk_rows, header)
        finally:  # a failed pre-pass leaves no thread of ours running behind the error
            if warm.is_alive():
                warm.join()
        if on_total is not None:
            on_total(total)
        with AtomicWriter(spill, force=True) as spill_w, \
                read_ahead(validated()) as chunks:
            if workers > 1:
                import multiprocessing as mp
                import pickle
                from concurrent.futures import ProcessPoolExecutor

                # spawn, not fork: numba's and OpenMP's thread pools do not survive a fork.
                pool = ProcessPoolExecutor(max_workers=int(workers),
                                           mp_context=mp.get_context("spawn"),
                                           initializer=_worker_init,
                                           initargs=(pickle.dumps(model), context,
                                                     spill_columns, reasons, explain_top))
                in_flight = int(workers)
            elif threads > 1:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(max_workers=threads,
                                          thread_name_prefix="detector-score")
                # One chunk per thread, counting the one that waits for a thread: a
                # chunk queued in the pool would only hold memory.
                in_flight = threads - 1
            else:
                in_flight = 0
            pending: deque = deque()

            def drain(keep: int) -> None:
                nonlocal n_out
                while len(pending) > keep:
                    fut, n_chunk = pending.popleft()
                    part = fut.result() if pool is not None and fut is not None else fut
                    if part is not None:
                        if csv_spill is None:
                            spill_w.write(part.data)
                        else:
                            csv_spill.add(part.data)
                        tally.add_verdicts(*encode_lanes(part.lane), flagged=part.flagged,
                                           picked=part.picked, drift=part.drift)
                        for pos, c in zip(part.by_top.tolist(), part.by_top_codes,
                                          strict=True):
                            by_top[n_out + pos] = c
                        scores.append(part.scores)
                        n_out += len(part.scores)
                    if progress is not None:
                        progress(n_chunk)

            for n_chunk, res in chunks:
                rows_in += n_chunk
                if len(res.rejects):
                    rej_w.write(res.rejects)
                    tally.add_rejects(res.rejects)
                rej = res.rejects if len(res.rejects) else None
                if not n_chunk:
                    pending.append((None, n_chunk))
                elif pool is None:
                    pending.append((_score_part(model, res.valid, context, spill_columns,
                                                rej, reasons, explain_top), n_chunk))
                elif workers > 1:
                    pending.append((pool.submit(_worker_score, res.valid, rej), n_chunk))
                else:
                    pending.append((pool.submit(_score_part, model, res.valid, context,
                                                spill_columns, rej, reasons, explain_top),
                                    n_chunk))
                # Bounded memory: a few chunks in flight (see in_flight), one read ahead.
                drain(keep=in_flight)
            drain(keep=0)
            if tally.rejected == 0:
                rej_w.write(pd.DataFrame({c: pd.Series([], dtype="str") for c in
                                          ("row_number", "declaration_id", "column", "reason")}))
        n_rejected = tally.rejected
        n_scored = n_out - n_rejected
        if rows_in != n_out:  # the product's core promise; never silent
            raise RuntimeError(f"internal error: {rows_in} rows in but {n_out} rows out "
                               f"({n_scored} scored + {n_rejected} rejected)")
        s = np.concatenate(scores) if scores else np.zeros(0)
        scores.clear()  # the per-chunk copies: the largest input's peak is here
        manual = np.isnan(s) if n_rejected else None
        rank = verdict.rank(s, overwrite=True)  # manual rows (NaN) last, written unranked
        del s
        # Rows that had sentences for their chunk's top but are outside the file's.
        recode = {p: c for p, c in by_top.items() if rank[p] > explain_top}
        lane_all = tally.lane_codes()
        # Health looks at the model's own verdicts, before a capacity cap moves any.
        health = tally.health(model, n_scored, lane_all)
        lane_all, cap = tally.cap(model, rank, capacity, n_scored, lane_all)
        # Only a cap that moved rows rewrites the lane column of the spill.
        new_lanes = np.asarray(tally.lane_names, dtype=object)[lane_all] \
            if cap and cap["moved"] else None
        if csv_spill is not None:
            csv_spill.close()
        with out_w as w:
            if n_out and csv_spill is not None:
                # Encoded in threads, written in order: the same bytes as one by one.
                w.write_csv_tables(csv_spill.tables(rank, recode, manual, new_lanes),
                                   threads=threads)
            elif n_out:
                import pyarrow.parquet as pq

                start = 0
                for batch in pq.ParquetFile(spill).iter_batches(batch_size=chunk_rows):
                    df = batch.to_pandas()
                    stop = start + len(df)
                    # Manual rows have no rank: a masked (nullable) integer.
                    df["rank"] = rank[start:stop] if manual is None else pd.arrays.IntegerArray(
                        rank[start:stop], manual[start:stop].copy())
                    if new_lanes is not None:
                        df["lane"] = pd.array(new_lanes[start:stop], dtype="str")
                    for p in [p for p in recode if start <= p < stop]:
                        df.at[p - start, "reasons"] = recode[p]
                    start = stop
                    w.write(df[list(model.output_columns)])
            else:
                w.write(pd.DataFrame({c: pd.Series([], dtype="str") for c in
                                      model.output_columns}))
        lanes: dict[str, int] = {}  # the same for every output format
        if len(lane_all):
            _lane_counts(lanes, lane_all, tally.lane_names, chunk_rows)
        rej_w.__exit__(None, None, None)
    except BaseException as exc:
        rej_w.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        if csv_spill is not None:
            csv_spill.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for f in Path(tmp_dir).glob("*"):
            f.unlink()
        os.rmdir(tmp_dir)
    seconds = time.time() - started
    summary = {"input": str(input), "output": str(out_path), "rejects": str(rej_path),
               "rows": rows_in, "scored": n_scored, "rejected": n_rejected,
               "flagged": tally.flagged, "random_selected": tally.random_selected,
               "lanes": lanes,
               "manual": int(lanes.get(MANUAL_LANE, 0)),
               "workers": int(workers), "threads": threads if int(workers) == 1 else 1,
               "seconds": round(seconds, 3),
               "rows_per_second": round(rows_in / seconds) if seconds > 0 else None}
    if cap is not None:
        summary["capacity"] = cap
    if tally.rejected:
        summary["rejects_summary"] = tally.rejects_summary()
    summary["health"] = health
    return summary


def _raw_baseline(valid: pd.DataFrame, seed: int) -> np.ndarray:
    """Isolation forest on raw fields (numbers plus ordinal-coded categories), fitted on
    the evaluated data itself: the published customs baseline (DATE, KDD 2020)."""
    from sklearn.ensemble import IsolationForest

    cols = []
    for c in ("net_mass_kg", "gross_mass_kg", "customs_value", "quantity", "packages",
              "measured_mass_kg"):
        if c in valid.columns:
            v = pd.to_numeric(valid[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            cols.append(np.log1p(np.nan_to_num(v, nan=0.0)))
    for c in ("hs_code", "origin_country", "dispatch_country", "transport_mode",
              "package_type", "unit", "exporter_id", "importer_id", "declarant_id"):
        if c in valid.columns:
            cols.append(pd.factorize(valid[c].astype("str"))[0].astype(float))
    X = np.column_stack(cols)
    iso = IsolationForest(n_estimators=200, max_samples=256, random_state=seed).fit(X)
    return -iso.score_samples(X)


def _value_baseline(valid: pd.DataFrame) -> np.ndarray:
    """|log value per kg - its HS-6 median| on the evaluated data: price checks alone."""
    v = np.log(valid["customs_value"].to_numpy(float) + 1e-9) - np.log(
        valid["net_mass_kg"].to_numpy(float))
    hs6 = valid["hs_code"].astype("str").str[:6]
    med = pd.Series(v, index=valid.index).groupby(hs6.to_numpy()).transform("median")
    return np.abs(v - med.to_numpy())


def evaluate_file(model: DeclarationModel | str | os.PathLike, input, *, columns=None,
                  encoding: str = "utf-8", baselines: bool = True) -> dict:
    """Rank quality on labelled data, with two baselines computed in the same run."""
    from .evaluate import BUDGETS, budget_metrics, scheme_recall
    from .features import DeclarationFeatures

    if not isinstance(model, DeclarationModel):
        model = load_model(model)
    df = read_table(input, load_column_mapping(columns), encoding=encoding)
    if "is_fraud" not in df.columns:
        raise SchemaError(f"INPUT {input} has no is_fraud column: evaluate needs labelled "
                          "declarations (is_fraud 0/1, optional fraud_scheme and revenue)")
    res = validate(df)
    valid = res.valid
    labelled = valid["is_fraud"].notna().to_numpy()
    if labelled.sum() == 0:
        raise SchemaError(f"INPUT {input}: no row has a usable is_fraud label (0 or 1)")
    scored = model.score_valid(valid, DeclarationFeatures.burst_context(valid))
    y = valid["is_fraud"].to_numpy(dtype=float, na_value=np.nan)[labelled].astype(int)
    rev = valid["revenue"].to_numpy(dtype=float, na_value=0.0)[labelled] if \
        "revenue" in valid.columns else None
    scheme = valid["fraud_scheme"].to_numpy(dtype=object, na_value=None)[labelled] if \
        "fraud_scheme" in valid.columns else np.full(labelled.sum(), None, dtype=object)
    if model.rank_column == "risk_score":
        # Forest alone, ranker alone and combined side by side: what outcomes add, and
        # what the forest still brings on schemes nobody has labelled yet.
        systems = {"combined": scored["risk_score"].to_numpy()[labelled],
                   "forest": scored["anomaly_score"].to_numpy()[labelled],
                   "ranker": scored["fraud_probability"].to_numpy()[labelled]}
    else:
        systems = {"detector": scored["anomaly_score"].to_numpy()[labelled]}
    if baselines:
        systems["raw_fields_iforest"] = _raw_baseline(valid, int(model.seed))[labelled]
        systems["value_per_kg_only"] = _value_baseline(valid)[labelled]
    report: dict[str, Any] = {"input": str(input), "rows": int(len(df)),
                              "rejected": int(len(res.rejects)), "evaluated": int(labelled.sum()),
                              "frauds": int(y.sum()), "budgets": list(BUDGETS), "systems": {}}
    for name, s in systems.items():
        report["systems"][name] = {**budget_metrics(y, s, rev),
                                   "recall@5%_by_scheme": scheme_recall(y, scheme, s, 0.05)}
    return report


def explain_file(model: DeclarationModel | str | os.PathLike, input, declaration_id: str, *,
                 columns=None, encoding: str = "utf-8") -> dict:
    if not isinstance(model, DeclarationModel):
        model = load_model(model)
    df = read_table(input, load_column_mapping(columns), encoding=encoding)
    return model.explain(df, declaration_id)
