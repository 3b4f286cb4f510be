"""The scoring engine: one pipeline for a file (local) and a dataset (Dask).

read chunks -> validate (in order, :class:`~detector.validate.IdTracker`) -> score parts
(:func:`score_part`, by an :class:`Executor`: serial, threads or processes; Dask calls the
same function in its tasks) -> spill (:class:`CsvSpill` or Parquet, the ranking column in
:class:`ScoreSpill`) -> rank pass
(:func:`rank_pass`: :mod:`detector.verdict`'s rank, then the capacity cap) -> write
atomically -> :func:`summary`. The local file job is :func:`score_stream`;
:mod:`detector.distributed` supplies its own reading, duplicate check and writing of a
folder of parts around :func:`score_part`, :class:`Tally`, :func:`rank_pass`,
:func:`lane_counts` and :func:`summary`.

A batch is scored in parts (chunks of a file, Dask partitions) that arrive in input order.
:class:`Tally` adds up, part by part, everything the summary reports and the rank pass
needs about the verdicts: the lanes as small codes (1 byte a row), flagged and random
selections, the drift bin counts (:mod:`detector.health`) and every reject, counted
exactly per (column, rule) (:class:`detector.validate.RejectTally`). From it come the
``health`` section, the capacity cap (:func:`detector.verdict.cap_first_lane`) and the
reject summary, the same whichever executor scored the parts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from . import verdict
from .fastcsv import read_ahead
from .io import LIST_SEPARATOR, AtomicWriter, csv_table, iter_tables
from .model import DeclarationModel
from .reasons import DEFAULT_EXPLAIN_TOP, as_codes, explained_rows
from .validate import REJECT_COLUMNS, IdTracker, RejectTally, validate
from .verdict import MANUAL_LANE

__all__ = ["Tally", "encode_lanes", "Part", "score_part", "Executor", "Scored", "score_chunks",
           "Ranked", "rank_pass", "check_rows", "lane_counts", "summary", "burst_context",
           "pre_pass", "CsvSpill", "ScoreSpill", "write_output", "StreamResult", "score_stream",
           "rare_gc", "default_threads", "warm_up", "input_bytes", "WARM_UP_BYTES", "Progress"]

Progress = Callable[[int], None] | None


def encode_lanes(lane) -> tuple[np.ndarray, list[str]]:
    """A part's lane names as (int8 codes, names): 1 byte a row to keep or to ship."""
    codes, names = pd.factorize(lane)
    return codes.astype(np.int8), [str(n) for n in names]


class Tally:
    """Counts of a batch's verdicts and rejects, added part by part in input order.

    ``keep_picked``: keep the random-selection flags of every row (1 byte a row), which
    only a capacity cap needs.
    """

    def __init__(self, keep_picked: bool = False) -> None:
        self.keep_picked = keep_picked
        self.flagged = 0
        self.random_selected = 0
        self.rejected = 0
        self.drift: np.ndarray | None = None  # integer bin counts: any partitioning
        self.lane_names: list[str] = []
        self._lane_codes: list[np.ndarray] = []
        self._picked: list[np.ndarray] = []
        self._rejects = RejectTally()

    def add_rejects(self, rejects: pd.DataFrame | None) -> None:
        if rejects is not None and len(rejects):
            self.rejected += len(rejects)
            self._rejects.add(rejects)

    def add_verdicts(self, codes: np.ndarray, names: list[str], *, flagged: int,
                     picked: np.ndarray, drift: np.ndarray | None) -> None:
        """One part's lanes (codes into ``names``, see :func:`encode_lanes`), flagged
        count, random selections (bool a row) and drift counts."""
        for name in names:
            if name not in self.lane_names:
                self.lane_names.append(name)
        remap = np.array([self.lane_names.index(x) for x in names], dtype=np.int8)
        self._lane_codes.append(remap[codes] if len(names) else codes.astype(np.int8))
        self.flagged += int(flagged)
        self.random_selected += int(np.count_nonzero(picked))
        if drift is not None:
            self.drift = drift if self.drift is None else self.drift + drift
        if self.keep_picked:
            self._picked.append(np.asarray(picked, dtype=bool))

    def add_part(self, part: Part) -> None:
        self.add_verdicts(part.lane_codes, part.lane_names, flagged=part.flagged,
                          picked=part.picked, drift=part.drift)

    def lane_codes(self) -> np.ndarray:
        """Every row's lane, as codes into :attr:`lane_names`, in input order."""
        return np.concatenate(self._lane_codes) if self._lane_codes else \
            np.zeros(0, dtype=np.int8)

    def health(self, model, n_scored: int, lane_codes: np.ndarray | None = None) -> dict:
        """The summary's ``health`` section: the model's own verdicts, before any cap."""
        codes = self.lane_codes() if lane_codes is None else lane_codes
        per_lane = np.bincount(codes, minlength=len(self.lane_names))
        return model.health(self.drift, n_scored=n_scored, flagged=self.flagged,
                            lanes={name: int(c) for name, c in
                                   zip(self.lane_names, per_lane, strict=True)
                                   if name != MANUAL_LANE})

    def cap(self, model, rank: np.ndarray, capacity, n_scored: int,
            lane_codes: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Apply ``capacity`` (see :func:`detector.verdict.parse_capacity`) to the lanes,
        once the whole ranking is known: (lane codes after the cap, the summary's
        ``capacity`` section or None without a capacity)."""
        if capacity is None:
            return lane_codes, None
        limit = verdict.parse_capacity(capacity, n_scored)
        order = list(model.lane_thresholds_)
        picked = np.concatenate(self._picked) if self._picked else np.zeros(0, bool)
        codes, moved, after = verdict.cap_first_lane(lane_codes, self.lane_names, rank, order,
                                                     limit, picked)
        return codes, {"lane": order[0] if order else "red", "limit": limit, "moved": moved,
                       "moved_to": after}

    def rejects_summary(self) -> str | None:
        """Every reject counted per (column, rule), with example ids; None without any."""
        return self._rejects.summary() if self.rejected else None


def burst_context(input, mapping, encoding, chunk_rows, header) -> tuple[pd.Series, int]:
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


class Part(NamedTuple):
    """One scored chunk, in the form the spill takes."""

    scores: np.ndarray  # the ranking column, kept (or spilled, ScoreSpill) until the rank pass
    data: Any  # CSV-ready Arrow table (CSV output) or the scored frame (other formats)
    lane_codes: np.ndarray  # int8 codes into lane_names (see encode_lanes)
    lane_names: list[str]
    flagged: int
    picked: np.ndarray  # bool: random selections (kept only when a capacity needs them)
    # Rows (positions in the chunk) with sentences only for being in the chunk's top
    # ``explain_top`` (reasons "officer"), and their codes: the ones outside the file's
    # top get the codes once the rank is known.
    by_top: np.ndarray
    by_top_codes: list
    drift: np.ndarray | None  # the chunk's drift bin counts (detector.health)


def score_part(model: DeclarationModel, valid: pd.DataFrame, context,
                spill_columns: list[str] | None, rejects: pd.DataFrame | None = None,
                reasons: str = "officer", explain_top: int = DEFAULT_EXPLAIN_TOP) -> Part:
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
    return Part(scored[model.rank_column].to_numpy(), data,
                 *encode_lanes(scored["lane"].array), int(scored["flagged"].sum()),
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


def _worker_score(valid: pd.DataFrame, rejects: pd.DataFrame | None = None) -> Part:
    return score_part(_WORKER["model"], valid, _WORKER["context"], _WORKER["spill_columns"],
                       rejects, *_WORKER["reasons"])


# Inputs from this size on (about 5,000 declarations) load the compiled kernels at start.
WARM_UP_BYTES = 1 << 20


def input_bytes(input) -> int:
    try:
        return os.path.getsize(input)
    except (OSError, TypeError, ValueError):
        return 0


def warm_up(model: DeclarationModel) -> None:
    try:
        model.forest_.warm_up()
    except Exception:  # the first chunk meets the same error and reports it
        pass


def default_threads() -> int:
    # Two scoring threads fill two cores (the kernel and Arrow use the second one too);
    # more threads only hold more chunks in memory.
    return max(1, min(2, os.cpu_count() or 1))


class CsvSpill:
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
        """Append a CSV-ready table of ``self.columns`` (see :func:`score_part`)."""
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
        import pyarrow.compute as pc

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
                if len(mine):  # a few hundred rows of most chunks (see Part.by_top)
                    # Replaced in Arrow: a round trip of the whole column through Python
                    # strings took ~3% of the run, in the one serial (ordered) stage.
                    at = table.schema.get_field_index("reasons")
                    col = table.column(at)
                    mask = np.zeros(n, dtype=bool)
                    mask[mine - start] = True
                    codes = pa.array([LIST_SEPARATOR.join(recode[p]) for p in mine.tolist()],
                                     col.type)
                    table = table.set_column(at, "reasons",
                                             pc.replace_with_mask(col, mask, codes))
                start = stop
                yield table


class ScoreSpill:
    """The ranking column of each part, on disk (raw float64, bit for bit) until the rank
    pass: the chunk loop, where a large file's memory peaks, then holds none of it (8 B a
    row), and the rank pass reads it back as one array, with no concatenation copy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._fh = None

    def add(self, scores: np.ndarray) -> None:
        if self._fh is None:
            self._fh = open(self.path, "wb")
        np.ascontiguousarray(scores, dtype=np.float64).tofile(self._fh)
        self.rows += len(scores)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def read(self) -> np.ndarray:
        """Every part's scores in order, as one writable array (see :func:`rank_pass`)."""
        self.close()
        return np.fromfile(self.path, dtype=np.float64) if self.rows else np.zeros(0)


def lane_counts(codes: np.ndarray, names: list[str], starts) -> dict[str, int]:
    """The counts of the lanes ``names[codes]``, batch by batch (a batch from each of
    ``starts`` to the next), in the order of the summary's keys: that of ``value_counts``
    on each batch of the output (most frequent first, ties in order of first appearance),
    from the codes alone."""
    lanes: dict[str, int] = {}
    bounds = [int(s) for s in starts]
    for start, stop in zip(bounds, [*bounds[1:], len(codes)], strict=True):
        batch = codes[start:stop]
        if not len(batch):
            continue
        seen, first = np.unique(batch, return_index=True)
        by_appearance = seen[np.argsort(first)]
        counts = np.bincount(batch, minlength=len(names))[by_appearance]
        for k in np.argsort(-counts, kind="stable"):
            name = str(names[by_appearance[k]])
            lanes[name] = lanes.get(name, 0) + int(counts[k])
    return lanes


@contextlib.contextmanager
def rare_gc(first_generation: int = 50_000):
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


# --- executors and the ordered chunk loop ---------------------------------------------------


class _Done(NamedTuple):
    """A part scored on the spot: the serial executor's future."""

    part: Part

    def result(self) -> Part:
        return self.part


class Executor:
    """Scores validated chunks (see :func:`score_part`): serially (``threads`` 1), in
    ``threads`` threads of this process, or in ``workers`` > 1 processes.

    ``in_flight``: chunks that may wait for their part while the next is read; more would
    only hold memory. Use as a context manager (or call :meth:`close`).
    """

    def __init__(self, model: DeclarationModel, context, spill_columns: list[str] | None,
                 reasons: str = "officer", explain_top: int = DEFAULT_EXPLAIN_TOP, *,
                 workers: int = 1, threads: int = 1) -> None:
        self.model, self.context, self.spill_columns = model, context, spill_columns
        self.reasons, self.explain_top = reasons, explain_top
        self.processes = int(workers) > 1
        self.pool = None
        if self.processes:
            import multiprocessing as mp
            import pickle
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: numba's and OpenMP's thread pools do not survive a fork.
            self.pool = ProcessPoolExecutor(max_workers=int(workers),
                                            mp_context=mp.get_context("spawn"),
                                            initializer=_worker_init,
                                            initargs=(pickle.dumps(model), context,
                                                      spill_columns, reasons, explain_top))
            self.in_flight = int(workers)
        elif threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=threads,
                                           thread_name_prefix="detector-score")
            # One chunk per thread, counting the one that waits for a thread: a chunk
            # queued in the pool would only hold memory.
            self.in_flight = threads - 1
        else:
            self.in_flight = 0

    def submit(self, valid: pd.DataFrame, rejects: pd.DataFrame | None):
        """A future-like object whose ``result()`` is the chunk's :class:`Part`."""
        if self.processes:
            return self.pool.submit(_worker_score, valid, rejects)
        args = (self.model, valid, self.context, self.spill_columns, rejects, self.reasons,
                self.explain_top)
        if self.pool is None:
            return _Done(score_part(*args))
        return self.pool.submit(score_part, *args)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Scored(NamedTuple):
    """What the chunk loop keeps in memory until the rank pass."""

    rows_in: int
    n_out: int
    scores: list[np.ndarray]  # the ranking column of each part (unless kept elsewhere)
    by_top: dict[int, list[str]]  # output position -> codes (see Part.by_top)


def score_chunks(chunks: Iterable, executor: Executor, tally: Tally,
                 sink: Callable[[Any], None], write_rejects: Callable[[pd.DataFrame], None],
                 progress: Progress = None,
                 keep_scores: Callable[[np.ndarray], None] | None = None) -> Scored:
    """Score ``chunks`` ((rows read, validation result) pairs, in input order) with
    ``executor``; each part's data goes to ``sink`` and its verdicts to ``tally`` in input
    order, and each chunk's rejects to ``write_rejects`` as they are read. Each part's
    scores go to ``keep_scores`` (e.g. :meth:`ScoreSpill.add`) in input order, or, without
    it, to the returned :attr:`Scored.scores`."""
    rows_in = n_out = 0
    scores: list[np.ndarray] = []
    by_top: dict[int, list[str]] = {}
    pending: deque = deque()

    def drain(keep: int) -> None:
        nonlocal n_out
        while len(pending) > keep:
            fut, n_chunk = pending.popleft()
            if fut is not None:
                part = fut.result()
                sink(part.data)
                tally.add_part(part)
                for pos, c in zip(part.by_top.tolist(), part.by_top_codes, strict=True):
                    by_top[n_out + pos] = c
                (scores.append if keep_scores is None else keep_scores)(part.scores)
                n_out += len(part.scores)
            if progress is not None:
                progress(n_chunk)

    for n_chunk, res in chunks:
        rows_in += n_chunk
        rej = res.rejects if len(res.rejects) else None
        if rej is not None:
            write_rejects(rej)
            tally.add_rejects(rej)
        pending.append((executor.submit(res.valid, rej) if n_chunk else None, n_chunk))
        # Bounded memory: a few chunks in flight (see Executor.in_flight), one read ahead.
        drain(keep=executor.in_flight)
    drain(keep=0)
    return Scored(rows_in, n_out, scores, by_top)


# --- rank pass, summary -----------------------------------------------------------------------


class Ranked(NamedTuple):
    """The batch's verdicts once the whole ranking is known."""

    n_scored: int
    rank: np.ndarray
    manual: np.ndarray | None  # rows without a score (lane manual), None when there are none
    recode: dict[int, list[str]]  # positions whose sentences become codes (outside the top)
    lane_codes: np.ndarray  # after any capacity cap
    new_lanes: np.ndarray | None  # lane names a row, only when a cap moved rows
    health: dict
    cap: dict | None


def rank_pass(model: DeclarationModel, tally: Tally, scores: np.ndarray,
              by_top: dict[int, list[str]], *, explain_top: int, capacity) -> Ranked:
    """Rank ``scores`` (overwritten: their buffer becomes the ranks, so a file's millions
    need no copy and no second array of that size), then health (the
    model's own verdicts), then the capacity cap, which only the whole ranking allows."""
    nan = np.isnan(scores)
    n_scored = int(len(scores) - np.count_nonzero(nan))
    manual = nan if n_scored < len(scores) else None
    rank = verdict.rank(scores, overwrite=True)  # manual rows (NaN) last, written unranked
    # Rows that had sentences for their part's top but are outside the batch's.
    recode = {p: c for p, c in by_top.items() if rank[p] > explain_top}
    lane_all = tally.lane_codes()
    health = tally.health(model, n_scored, lane_all)
    lane_all, cap = tally.cap(model, rank, capacity, n_scored, lane_all)
    # Only a cap that moved rows rewrites the lane column of the spill.
    new_lanes = np.asarray(tally.lane_names, dtype=object)[lane_all] \
        if cap and cap["moved"] else None
    return Ranked(n_scored, rank, manual, recode, lane_all, new_lanes, health, cap)


def check_rows(rows_in: int, n_out: int, n_scored: int, n_rejected: int) -> None:
    """Every input row comes out scored or rejected: the product's core promise, never
    silent."""
    if rows_in != n_out or n_out != n_scored + n_rejected:
        raise RuntimeError(f"internal error: {rows_in} rows in but {n_out} rows out "
                           f"({n_scored} scored + {n_rejected} rejected)")


def summary(input, output, rejects, *, rows: int, ranked: Ranked, tally: Tally,
            lanes: dict[str, int], seconds: float, middle: dict, tail: dict | None = None
            ) -> dict:
    """A scored batch's JSON summary; ``middle`` (before the timings) and ``tail`` (after)
    hold what one engine adds."""
    out = {"input": str(input), "output": str(output), "rejects": str(rejects),
           "rows": rows, "scored": ranked.n_scored, "rejected": tally.rejected,
           "flagged": tally.flagged, "random_selected": tally.random_selected,
           # manual: rows that could not be read, in the output without a score
           "lanes": lanes, "manual": int(lanes.get(MANUAL_LANE, 0)), **middle,
           "seconds": round(seconds, 3),
           "rows_per_second": round(rows / seconds) if seconds > 0 else None, **(tail or {})}
    if ranked.cap is not None:
        out["capacity"] = ranked.cap
    if tally.rejected:
        out["rejects_summary"] = tally.rejects_summary()
    out["health"] = ranked.health
    return out


# --- the local file pipeline ------------------------------------------------------------------


def pre_pass(model: DeclarationModel, input, mapping, encoding: str, chunk_rows: int,
             header) -> tuple[pd.Series, int]:
    """The whole-file facts (:func:`burst_context`), while the compiled kernels load."""
    # The compiled kernels load (~0.5 s in a fresh process) while the pre-pass parses in
    # Arrow threads; an error there resurfaces in scoring. A small file may never need
    # them (a few rows score on the numpy path).
    warm = threading.Thread(target=warm_up, args=(model,), name="detector-warm-up",
                            daemon=True)
    if input_bytes(input) >= WARM_UP_BYTES:
        warm.start()
    try:
        return burst_context(input, mapping, encoding, chunk_rows, header)
    finally:  # a failed pre-pass leaves no thread of ours running behind the error
        if warm.is_alive():
            warm.join()


def _validated(input, mapping, chunk_rows: int, encoding: str, rows: int = 0) -> Iterator:
    # In the read-ahead thread: reading and validation keep the input's order. ``rows``
    # (the pre-pass's count) sizes the id tracker once: no growing copies of its hashes.
    tracker = IdTracker(capacity=rows)
    for chunk in iter_tables(input, mapping, chunk_rows, encoding=encoding):
        yield len(chunk), validate(chunk, seen_ids=tracker)


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})


def write_output(w: AtomicWriter, model: DeclarationModel, ranked: Ranked,
                 csv_spill: CsvSpill | None, spill: Path, n_out: int, chunk_rows: int,
                 threads: int) -> None:
    """Stream the spill, with each row's rank (and a cap's lanes), to the open ``w``."""
    if n_out and csv_spill is not None:
        # Encoded in threads, written in order: the same bytes as one by one.
        w.write_csv_tables(csv_spill.tables(ranked.rank, ranked.recode, ranked.manual,
                                            ranked.new_lanes), threads=threads)
    elif n_out:
        import pyarrow.parquet as pq

        rank, manual, recode = ranked.rank, ranked.manual, ranked.recode
        start = 0
        for batch in pq.ParquetFile(spill).iter_batches(batch_size=chunk_rows):
            df = batch.to_pandas()
            stop = start + len(df)
            # Manual rows have no rank: a masked (nullable) integer.
            df["rank"] = rank[start:stop] if manual is None else pd.arrays.IntegerArray(
                rank[start:stop], manual[start:stop].copy())
            if ranked.new_lanes is not None:
                df["lane"] = pd.array(ranked.new_lanes[start:stop], dtype="str")
            for p in [p for p in recode if start <= p < stop]:
                df.at[p - start, "reasons"] = recode[p]
            start = stop
            w.write(df[list(model.output_columns)])
    else:
        w.write(_empty(model.output_columns))


class StreamResult(NamedTuple):
    rows_in: int
    ranked: Ranked
    lanes: dict[str, int]
    tally: Tally


@rare_gc()
def score_stream(model: DeclarationModel, input, mapping, header, out_w: AtomicWriter,
                 rej_w: AtomicWriter, *, chunk_rows: int, encoding: str, workers: int,
                 threads: int, reasons: str, explain_top: int, capacity,
                 progress: Progress = None, on_total: Callable[[int], None] | None = None
                 ) -> StreamResult:
    """The local pipeline of :func:`detector.jobs.score_file` (see there), writing to the
    atomic writers ``out_w`` (committed first) and ``rej_w``."""
    tally = Tally(keep_picked=capacity is not None)
    tmp_dir = tempfile.mkdtemp(prefix=".detector-", dir=out_w.path.parent if
                               out_w.path.parent.exists() else None)
    spill = Path(tmp_dir) / "scored.parquet"
    # A CSV output (the common case) spills CSV-ready Arrow tables; other formats go
    # through a Parquet spill and the generic writer.
    csv_spill = CsvSpill(Path(tmp_dir) / "scored.arrow", model.output_columns) if \
        out_w.format == "csv" else None
    score_spill = ScoreSpill(Path(tmp_dir) / "scores.f8")
    executor = None
    rej_w.__enter__()
    try:
        context, total = pre_pass(model, input, mapping, encoding, chunk_rows, header)
        if on_total is not None:
            on_total(total)
        with AtomicWriter(spill, force=True) as spill_w, \
                read_ahead(_validated(input, mapping, chunk_rows, encoding, total)) as chunks:
            executor = Executor(model, context, csv_spill.columns if csv_spill else None,
                                reasons, explain_top, workers=workers, threads=threads)
            scored = score_chunks(chunks, executor, tally,
                                  spill_w.write if csv_spill is None else csv_spill.add,
                                  rej_w.write, progress, score_spill.add)
            if tally.rejected == 0:
                rej_w.write(_empty(REJECT_COLUMNS))
        s = score_spill.read()
        ranked = rank_pass(model, tally, s, scored.by_top, explain_top=explain_top,
                           capacity=capacity)
        del s
        check_rows(scored.rows_in, scored.n_out, ranked.n_scored, tally.rejected)
        if csv_spill is not None:
            csv_spill.close()
        with out_w as w:
            write_output(w, model, ranked, csv_spill, spill, scored.n_out, chunk_rows, threads)
        # The same for every output format.
        lanes = lane_counts(ranked.lane_codes, tally.lane_names,
                            range(0, len(ranked.lane_codes), chunk_rows))
        rej_w.__exit__(None, None, None)
    except BaseException as exc:
        rej_w.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        score_spill.close()
        if csv_spill is not None:
            csv_spill.close()
        if executor is not None:
            executor.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return StreamResult(scored.rows_in, ranked, lanes, tally)
