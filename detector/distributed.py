"""Scoring and training on Dask: folders of Parquet/CSV files, one machine or a cluster.

Only this module imports dask; ``import detector`` and the local engine never do.

Scoring (:func:`score_dask`) gives the same results as :func:`detector.jobs.score_file`
on the concatenation of the input files (same anomaly_score bits, reasons, lanes, ranks,
rejects), whatever the partitioning, in four steps:

1. **Facts pass** (three id/burst columns only): per partition, the row count, the parcel
   burst counts (:meth:`DeclarationFeatures.burst_context`) and 8-byte hashes of the
   declaration ids. The driver sums the burst counts (whole-dataset context), turns row
   counts into global row offsets, and finds repeated id hashes (first occurrence wins):
   16 bytes a row on the driver.
2. **Score pass** (one delayed task a partition): each partition is validated and scored by the
   local engine's own step (:func:`detector.engine.score_part`) with the model, which
   travels once to each worker as one task of the graph (``dask.delayed(model)``), never
   once per partition. Scored rows (without rank) and rejects are spilled to Parquet files
   of a work folder; the scores (8 bytes a row), lane codes, random selections and drift
   bin counts come back to the driver, which adds them up in input order in the engine's
   :class:`~detector.engine.Tally` (the rejects too, as their spills are streamed to the
   rejects file: every one counted).
3. **Rank**: the driver runs the engine's :func:`~detector.engine.rank_pass` (stable rank,
   descending score, ties by input order; batch health; the ``capacity`` cap), exactly as
   a local run does, and checks that every row came out (:func:`~detector.engine.check_rows`).
4. **Write pass**: each partition's spill gets its slice of ranks and is written as
   ``part.NNNNN.parquet`` into a hidden temporary folder beside OUTPUT, which is renamed
   to OUTPUT only when everything succeeded; rejects are streamed to
   ``OUTPUT.rejects.csv`` through :class:`detector.io.AtomicWriter`. The summary is the
   engine's (:func:`~detector.engine.summary`): the same keys as a local run's, plus the
   files and partitions.

Training (:func:`train_dask`) reads the data three times (facts, validation with the
sample and vocabularies, the reference tables over the whole dataset); its rejects are
counted exactly, per partition, with the same :class:`~detector.validate.RejectTally`.

Every task only reads its inputs and (re)writes files named after its partition number,
so a task that Dask retries after a worker died produces the same file again.
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import os
import secrets
import shutil
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import verdict
from .engine import (
    Part,
    Ranked,
    Scored,
    Tally,
    check_rows,
    lane_counts,
    rank_pass,
    score_part,
    summary,
)
from .errors import InputError, SchemaError
from .io import (
    NA_TOKENS,
    READ_FORMATS,
    TEXT_COLUMNS,
    AtomicWriter,
    csv_dialect,
    decategorise,
    format_of,
    parquet_file,
    read_header,
    real_encoding,
    rejects_path,
)
from .model import OUTPUT_COLUMNS, DeclarationModel, build_model
from .reasons import DEFAULT_EXPLAIN_TOP, check_reasons_mode
from .validate import REJECT_COLUMNS, RejectTally, as_text, validate
from .verdict import MANUAL_LANE

__all__ = ["score_dask", "train_dask", "list_inputs", "DEFAULT_PARTITION_ROWS",
           "DEFAULT_SAMPLE_ROWS"]

DEFAULT_PARTITION_ROWS = 200_000
DEFAULT_SAMPLE_ROWS = 1_000_000
_FACT_COLUMNS = ("declaration_id", "exporter_id", "date", "transport_mode")


# --------------------------------------------------------------------------- input pieces


@dataclass(frozen=True)
class _Piece:
    """One partition of the input: row groups of a Parquet file or a byte range of a CSV."""

    path: str
    fmt: str  # "parquet" | "csv"
    names: tuple[str, ...]  # canonical names of the file's columns, in file order
    raw_names: tuple[str, ...]  # names as written in the file
    row_groups: tuple[int, ...] = ()
    start: int = 0  # CSV: first byte (0 = the header is in this piece)
    end: int = -1  # CSV: one past the last byte (-1 = end of file)
    encoding: str = "utf-8"
    sep: str = ","  # CSV: the dialect, from detector.io.csv_dialect
    decimal: str = "."


def list_inputs(input: str | os.PathLike) -> list[Path]:
    """The data files of INPUT: one file, a folder (its Parquet/CSV files, sorted by
    name, recursively) or a glob pattern. Hidden files (``.x``, ``_x``) are skipped."""
    p = Path(input)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    else:
        import glob

        files = sorted(Path(f) for f in glob.glob(str(input), recursive=True)
                       if Path(f).is_file())
        if not files:
            raise InputError(f"INPUT {input} does not exist (no file, folder or glob match)")
    files = [f for f in files if not any(part.startswith((".", "_")) for part in
                                         f.relative_to(p if p.is_dir() else f.parent).parts)]
    keep = []
    for f in files:
        try:
            format_of(f, READ_FORMATS, "INPUT")
        except InputError:
            continue
        keep.append(f)
    if not keep:
        raise InputError(f"INPUT {input} holds no Parquet or CSV file "
                         f"({', '.join(READ_FORMATS)})")
    return keep


def _csv_splits(path: Path, target_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges starting at line starts, about ``target_bytes`` each."""
    size = path.stat().st_size
    if path.name.lower().endswith(".gz") or size <= target_bytes:
        return [(0, -1)]
    cuts = [0]
    with open(path, "rb") as fh:
        pos = target_bytes
        while pos < size:
            fh.seek(pos)
            fh.readline()  # finish the current line
            nxt = fh.tell()
            if nxt >= size:
                break
            if nxt > cuts[-1]:
                cuts.append(nxt)
            pos = nxt + target_bytes
    return [(a, b) for a, b in zip(cuts, [*cuts[1:], -1], strict=True)]


def _pieces(files: Sequence[Path], mapping, encoding: str, partition_rows: int) -> list[_Piece]:
    pieces: list[_Piece] = []
    for f in files:
        fmt = format_of(f, READ_FORMATS, "INPUT")
        if fmt == "jsonl":
            raise InputError(f"INPUT {f}: JSON lines are not supported by the dask engine; "
                             "use Parquet or CSV (or --engine local)")
        names = tuple(read_header(f, mapping, encoding=encoding))
        if fmt == "parquet":
            pf = parquet_file(f)
            raw = tuple(pf.schema_arrow.names)
            groups: list[int] = []
            rows = 0
            for i in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(i).num_rows
                if n == 0:
                    continue
                if groups and rows + n > partition_rows:
                    pieces.append(_Piece(str(f), fmt, names, raw, tuple(groups)))
                    groups, rows = [], 0
                groups.append(i)
                rows += n
            if groups:
                pieces.append(_Piece(str(f), fmt, names, raw, tuple(groups)))
        else:
            with open(f, "rb") as fh:  # bytes per row from the first megabyte
                head = fh.read(1 << 20)
            per_row = max(len(head) / max(head.count(b"\n"), 1), 1.0)
            dialect = csv_dialect(f, encoding, mapping)
            for a, b in _csv_splits(f, max(int(per_row * partition_rows), 1 << 16)):
                pieces.append(_Piece(str(f), fmt, names, names, start=a, end=b,
                                     encoding=encoding, sep=dialect.sep,
                                     decimal=dialect.decimal))
    return pieces


def _read_piece(piece: _Piece, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read one piece with :mod:`detector.io`'s rules: text columns verbatim as strings
    (leading zeros kept, "NA" stays Namibia), pandas NA tokens only in the other columns,
    canonical column names. ``columns``: canonical names to read (others skipped)."""
    names = list(piece.names)
    keep = None if columns is None else [n for n in names if n in set(columns)]
    p = Path(piece.path)
    if piece.fmt == "parquet":
        pf = parquet_file(p)
        raw_cols = None if keep is None else [r for r, n in zip(piece.raw_names, names,
                                                                  strict=True) if n in keep]
        try:
            df = pf.read_row_groups(list(piece.row_groups), columns=raw_cols).to_pandas()
        except Exception as exc:
            raise InputError(f"INPUT {p} is a corrupt Parquet file: {exc}") from None
        df.columns = names if keep is None else keep
        return decategorise(df)
    enc = real_encoding(piece.encoding)
    dtype = {n: "str" for n in names if n in TEXT_COLUMNS}
    na_values = {n: list(NA_TOKENS) for n in names if n not in TEXT_COLUMNS}
    kw: dict[str, Any] = dict(names=names, usecols=keep, index_col=False, dtype=dtype,
                              keep_default_na=False, na_values=na_values, encoding=enc,
                              skip_blank_lines=True, sep=piece.sep, decimal=piece.decimal)
    try:
        if piece.start == 0 and piece.end == -1:
            df = pd.read_csv(p, header=0, compression="infer", **kw)
        else:
            with open(p, "rb") as fh:
                fh.seek(piece.start)
                data = fh.read() if piece.end < 0 else fh.read(piece.end - piece.start)
            df = pd.read_csv(_io.BytesIO(data), header=0 if piece.start == 0 else None, **kw)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame({n: pd.Series([], dtype="str") for n in (keep or names)})
    except UnicodeDecodeError:
        raise InputError(f"INPUT {p} is not valid {enc.replace('-sig', '')}; pass --encoding "
                         "(e.g. latin-1) if the file uses another encoding") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"INPUT {p} is not a well-formed CSV file: {exc}") from None
    if keep is not None:
        df = df[[c for c in keep if c in df.columns]]
    return df


def _union_columns(pieces: Sequence[_Piece]) -> list[str]:
    out: list[str] = []
    for pc in pieces:
        out.extend(n for n in pc.names if n not in out)
    return out


def _read_full(piece: _Piece, columns: Sequence[str]) -> pd.DataFrame:
    df = _read_piece(piece)
    if list(df.columns) != list(columns):  # files may differ in optional columns
        df = df.reindex(columns=list(columns))
    return df


# --------------------------------------------------------------------------- facts pass


def _hash_ids(ids: pd.Series) -> np.ndarray:
    # Same text as validate compares (stripped, blank = missing) and the same hash as
    # detector.validate.IdTracker.
    values = ids.astype("str").to_numpy(dtype=object)
    if len(values) == 0:
        return np.empty(0, dtype=np.uint64)
    return pd.util.hash_array(values)


def _facts(piece: _Piece) -> dict:
    """Row count, parcel bursts and id hashes of one piece (three/four columns only)."""
    from .features import DeclarationFeatures

    df = _read_piece(piece, _FACT_COLUMNS)
    ids = as_text(df["declaration_id"]) if "declaration_id" in df.columns else \
        pd.Series(np.nan, index=df.index, dtype="str")
    present = ids.notna().to_numpy()
    from ._version import __version__

    return {"rows": len(df), "burst": DeclarationFeatures.burst_context(df),
            "version": __version__,
            "id_pos": np.flatnonzero(present).astype(np.int64),
            "id_hash": _hash_ids(ids[present])}


def _global_duplicates(facts: Sequence[dict], offsets: np.ndarray) -> dict[int, tuple]:
    """Per partition: (local positions of repeated ids, 1-based row of the first one)."""
    pos = np.concatenate([f["id_pos"] + off for f, off in zip(facts, offsets, strict=True)]
                         ) if facts else np.zeros(0, np.int64)
    h = np.concatenate([f["id_hash"] for f in facts]) if facts else np.zeros(0, np.uint64)
    if len(h) == 0:
        return {}
    order = np.argsort(h, kind="stable")  # stable: within a hash, input order
    hs = h[order]
    dup_sorted = np.zeros(len(hs), dtype=bool)
    dup_sorted[1:] = hs[1:] == hs[:-1]
    if not dup_sorted.any():
        return {}
    group_start = np.maximum.accumulate(np.where(~dup_sorted, np.arange(len(hs)), 0))
    dup_rows = pos[order][dup_sorted]
    first_rows = pos[order][group_start][dup_sorted] + 1
    o = np.argsort(dup_rows)
    dup_rows, first_rows = dup_rows[o], first_rows[o]
    part = np.searchsorted(offsets, dup_rows, side="right") - 1
    out: dict[int, tuple] = {}
    for p in np.unique(part):
        sel = part == p
        out[int(p)] = (dup_rows[sel] - offsets[p], first_rows[sel])
    return out


# --------------------------------------------------------------------------- validation


def _validate_global(df: pd.DataFrame, dups: tuple | None):
    """:func:`validate` with duplicates judged over the whole dataset.

    ``df`` has the global 0-based row positions as index. Rows whose id appeared earlier
    in the dataset are rejected with the local engine's wording ("duplicate
    declaration_id: first seen at row N"), followed by any other problem of the row in
    the local order of checks.
    """
    if dups is None or len(dups[0]) == 0:
        res = validate(df)
        return res.valid, res.rejects
    local_pos, first_rows = dups
    is_dup = np.zeros(len(df), dtype=bool)
    is_dup[local_pos] = True
    res = validate(df.iloc[np.flatnonzero(~is_dup)])
    d = df.iloc[local_pos].copy()
    ids = as_text(d["declaration_id"])
    # Placeholder ids (unique, present) so that only the other checks speak.
    d["declaration_id"] = [f"dup-{i}" for i in range(len(d))]
    other = validate(d).rejects.set_index("row_number")
    rn = d.index.to_numpy(dtype=np.int64) + 1
    col = np.full(len(d), "declaration_id", dtype=object)
    why = np.asarray(["duplicate declaration_id: first seen at row " + str(int(r))
                      for r in first_rows], dtype=object)
    if len(other):
        hit = np.isin(rn, other.index.to_numpy())
        oc = other["column"].reindex(rn[hit]).to_numpy(dtype=object)
        orr = other["reason"].reindex(rn[hit]).to_numpy(dtype=object)
        col[hit] = col[hit] + ";" + oc
        why[hit] = why[hit] + "; " + orr
    dup_rej = pd.DataFrame({"row_number": rn,
                            "declaration_id": ids.fillna("").astype("str").to_numpy(),
                            "column": col, "reason": why}
                           ).astype({"declaration_id": "str", "column": "str", "reason": "str"})
    rejects = pd.concat([res.rejects, dup_rej], ignore_index=True) if len(res.rejects) \
        else dup_rej
    rejects = rejects.sort_values("row_number", kind="stable").reset_index(drop=True)
    return res.valid, rejects


# --------------------------------------------------------------------------- tasks

def _part_name(i: int) -> str:
    return f"part.{i:05d}.parquet"


def _write_parquet(df: pd.DataFrame, path: Path, schema=None) -> None:
    """Write a file by temp + rename: a retried task simply writes it again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _output_schema(columns=OUTPUT_COLUMNS):
    """Arrow schema of the output columns (a model trained with outcomes adds two)."""
    import pyarrow as pa

    types = {"declaration_id": pa.large_string(), "anomaly_score": pa.float64(),
             "fraud_probability": pa.float64(), "risk_score": pa.float64(),
             "rank": pa.int64(), "flagged": pa.bool_(), "lane": pa.large_string(),
             "random_selected": pa.bool_(), "reasons": pa.list_(pa.string())}
    return pa.schema([(c, types[c]) for c in columns])


def _spill_schema(columns=OUTPUT_COLUMNS):
    import pyarrow as pa

    return pa.schema([f for f in _output_schema(columns) if f.name != "rank"])


def _reject_schema():
    import pyarrow as pa

    return pa.schema([("row_number", pa.int64()), ("declaration_id", pa.large_string()),
                      ("column", pa.large_string()), ("reason", pa.large_string())])


def _score_partition(df: pd.DataFrame, model: DeclarationModel, context: pd.Series,
                     offsets: np.ndarray, dups: dict, work: str, reasons: str = "officer",
                     explain_top: int = DEFAULT_EXPLAIN_TOP,
                     partition_info: dict | None = None) -> Part | None:
    """Validate one partition (duplicates judged over the dataset), score it with the
    engine's :func:`~detector.engine.score_part` and spill it; the driver gets the part
    without its data (scores, lanes as codes, flags, drift counts: a few bytes a row)."""
    i = int(partition_info["number"]) if partition_info else 0
    df.index = pd.RangeIndex(int(offsets[i]), int(offsets[i]) + len(df))
    valid, rejects = _validate_global(df, dups.get(i))
    w = Path(work)
    if len(rejects):
        _write_parquet(rejects[list(REJECT_COLUMNS)], w / f"rejects.{i:05d}.parquet",
                       _reject_schema())
    if not len(valid) and not len(rejects):
        return None
    part = score_part(model, valid, context, None, rejects if len(rejects) else None,
                      reasons, explain_top)
    cols = model.output_columns
    _write_parquet(part.data[[c for c in cols if c != "rank"]], w / f"spill.{i:05d}.parquet",
                   _spill_schema(cols))
    return part._replace(data=None)


def _finish_partition(i: int, work: str, out_dir: str, rank: np.ndarray,
                      columns=OUTPUT_COLUMNS, recode: dict | None = None,
                      lanes: np.ndarray | None = None) -> None:
    """Write partition ``i`` with its ranks, the codes of its rows in ``recode`` (local
    position -> codes: sentences outside the dataset's top) and, after a capacity cap
    moved rows, its ``lanes``."""
    import pyarrow.parquet as pq

    df = pq.read_table(Path(work) / f"spill.{i:05d}.parquet").to_pandas()
    if lanes is not None:
        df["lane"] = pd.array(lanes, dtype="str")
    manual = (df["lane"] == MANUAL_LANE).to_numpy()
    df["rank"] = pd.arrays.IntegerArray(np.asarray(rank, dtype=np.int64), manual) \
        if manual.any() else rank
    for p, codes in (recode or {}).items():
        df.at[p, "reasons"] = codes
    _write_parquet(df[list(columns)], Path(out_dir) / _part_name(i), _output_schema(columns))


# --------------------------------------------------------------------------- cluster


@contextlib.contextmanager
def _client(scheduler: str | None, processes: bool = True):
    from distributed import Client, LocalCluster

    with warnings.catch_warnings(), _quiet("distributed.shuffle._scheduler_plugin"):
        # The model is one task of the graph on purpose (a task, unlike scattered data,
        # is recomputed when the worker holding it dies), so the graph is as large as the
        # model: Dask's advice to scatter it does not apply. The p2p shuffle of training
        # logs every start and end at WARNING: routine, not a problem to show users.
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        if scheduler:
            with Client(scheduler) as client:
                yield client
            return
        # tcp even for threads: LocalCluster's in-process transport ignores host. The
        # dashboard takes a free port (":0"), never 8787 that a user's cluster may hold.
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                          host="127.0.0.1", protocol="tcp://", dashboard_address=":0"
                          ) as cluster, \
                Client(cluster) as client:
            yield client


@contextlib.contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _prepare(input, columns, encoding, partition_rows):
    from .schema import load_column_mapping

    if not isinstance(partition_rows, int | np.integer) or partition_rows < 1:
        raise ValueError(f"partition_rows must be a positive integer, got {partition_rows!r}")
    mapping = load_column_mapping(columns)
    files = list_inputs(input)
    pieces = _pieces(files, mapping, encoding, int(partition_rows))
    return mapping, files, pieces


def _facts_pass(client, pieces):
    """Whole-dataset facts: offsets, parcel-burst context, duplicate ids."""
    import dask

    from ._version import __version__

    facts = dask.compute(*[dask.delayed(_facts, pure=True)(p) for p in pieces])
    other = sorted({f["version"] for f in facts} - {__version__})
    if other:  # the same model must run the same code everywhere
        raise RuntimeError(f"Dask workers run detector {', '.join(other)} but this process "
                           f"runs {__version__}; install the same version on every worker")
    rows = np.array([f["rows"] for f in facts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    from .features import DeclarationFeatures

    context = DeclarationFeatures.merge_contexts([f["burst"] for f in facts])
    dups = _global_duplicates(facts, offsets)
    return rows, offsets, context, dups


def _ddf(pieces, cols):
    import dask.dataframe as dd

    meta = pd.DataFrame({c: pd.Series([], dtype="object") for c in cols})
    return dd.from_map(_read_full, pieces, columns=cols, meta=meta, enforce_metadata=False,
                       divisions=[None] * (len(pieces) + 1))


def _replace_dir(tmp: Path, out: Path, force: bool) -> None:
    if out.exists() or out.is_symlink():
        if not force:
            raise InputError(f"OUTPUT {out} exists; pass --force to overwrite")
        trash = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        os.replace(out, trash)
        os.replace(tmp, out)
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)
    else:
        os.replace(tmp, out)


# --------------------------------------------------------------------------- public


def score_dask(model: DeclarationModel | str | os.PathLike, input, output, *, columns=None,
               scheduler: str | None = None, force: bool = False, encoding: str = "utf-8",
               partition_rows: int = DEFAULT_PARTITION_ROWS, processes: bool = True,
               reasons: str = "officer", explain_top: int = DEFAULT_EXPLAIN_TOP,
               capacity: int | str | None = None) -> dict:
    """Score a Parquet/CSV dataset (file, folder or glob) on Dask.

    ``reasons`` / ``explain_top`` / ``capacity`` as for :func:`detector.jobs.score_file`
    (the top and the cap are the dataset's); the summary has the same ``health`` section.

    OUTPUT is a folder of Parquet files ``part.NNNNN.parquet`` (columns
    :data:`detector.model.OUTPUT_COLUMNS`, rank global); rejects go to
    ``OUTPUT.rejects.csv`` (same columns and reasons as the local engine, row_number the
    1-based position in the concatenated input, files in name order). With no
    ``scheduler`` a 2-worker LocalCluster on 127.0.0.1 runs for the call (``processes``
    picks worker processes or threads); with an address, that cluster is used.
    Returns a summary dict (``engine="dask"``).
    """
    from .jobs import load_model

    started = time.time()
    check_reasons_mode(reasons, explain_top)
    verdict.parse_capacity(capacity, 0)  # a bad capacity fails now, not after the scoring
    out = Path(output)
    rej_path = rejects_path(out)
    for p in (out, rej_path):
        if (p.exists() or p.is_symlink()) and not force:
            raise InputError(f"OUTPUT {p} exists; pass --force to overwrite")
    if not out.parent.is_dir():
        raise InputError(f"OUTPUT folder {out.parent} does not exist; create it first")
    if not isinstance(model, DeclarationModel):
        model = load_model(model)
    mapping, files, pieces = _prepare(input, columns, encoding, partition_rows)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    work = out.parent / f".{out.name}.work-{tag}"
    tmp_out = out.parent / f".{out.name}.tmp-{tag}"
    work.mkdir()
    tmp_out.mkdir()
    tally = Tally(keep_picked=capacity is not None)
    try:
        with _client(scheduler, processes) as client:
            total, starts, scored = _score_pass(client, input, pieces, model, work, tally,
                                                reasons, explain_top)
            ranked = rank_pass(model, tally, np.concatenate(scored.scores), scored.by_top,
                               explain_top=int(explain_top), capacity=capacity)
            _write_pass(pieces, model, work, tmp_out, starts, ranked)
        _write_rejects(work, len(pieces), rej_path, force, tally)
        check_rows(total, scored.n_out, ranked.n_scored, tally.rejected)
        _replace_dir(tmp_out, out, force)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Lanes counted partition by partition, as written.
    lanes = lane_counts(ranked.lane_codes, tally.lane_names, starts[:-1])
    return summary(input, out, rej_path, rows=total, ranked=ranked, tally=tally, lanes=lanes,
                   seconds=time.time() - started,
                   middle={"files": len(files), "partitions": len(pieces)},
                   tail={"engine": "dask"})


def _score_pass(client, input, pieces, model, work: Path, tally: Tally, reasons: str,
                explain_top: int) -> tuple[int, np.ndarray, Scored]:
    """The facts pass, then every partition validated, scored and spilled on the cluster;
    the parts' verdicts go to ``tally`` in partition order. Returns the row count, the
    partitions' first output rows (and the total last) and the scores."""
    import dask

    rows, offsets, context, dups = _facts_pass(client, pieces)
    total = int(rows.sum())
    if total == 0:
        raise InputError(f"INPUT {input} has no data rows")
    # The model and the whole-dataset context are one task each in the graph: shipped
    # once to each worker that needs them, not once per partition.
    key = uuid.uuid4().hex
    model_d = dask.delayed(model, name=f"detector-model-{key}", traverse=False)
    ctx_d = dask.delayed(context, name=f"detector-context-{key}", traverse=False)
    dups_d = dask.delayed(dups, name=f"detector-dups-{key}", traverse=False)
    parts = dask.compute(*[
        dask.delayed(_score_partition, pure=True)(
            p, model_d, ctx_d, offsets, dups_d, str(work), reasons, int(explain_top),
            partition_info={"number": i})
        for i, p in enumerate(_ddf(pieces, _union_columns(pieces)).to_delayed())])
    scores: list[np.ndarray] = []
    by_top: dict[int, list[str]] = {}
    starts = [0]
    for part in parts:
        if part is not None:
            tally.add_part(part)
            for pos, c in zip(part.by_top.tolist(), part.by_top_codes, strict=True):
                by_top[starts[-1] + pos] = c
            scores.append(part.scores)
        starts.append(starts[-1] + (0 if part is None else len(part.scores)))
    return total, np.array(starts, dtype=np.int64), Scored(total, starts[-1], scores or
                                                           [np.zeros(0)], by_top)


def _write_pass(pieces, model, work: Path, tmp_out: Path, starts: np.ndarray,
                ranked: Ranked) -> None:
    """Every partition's spill written with its ranks (and a cap's lanes) into
    ``tmp_out``, one Parquet file each (an empty one for an empty dataset)."""
    import dask

    cols = tuple(model.output_columns)
    todo = [i for i in range(len(pieces)) if starts[i + 1] > starts[i]]
    key = uuid.uuid4().hex
    at = np.array(sorted(ranked.recode), dtype=np.int64)

    def recode(i: int):
        a, b = int(starts[i]), int(starts[i + 1])
        lo, hi = np.searchsorted(at, [a, b])
        codes = {p - a: ranked.recode[p] for p in at[lo:hi].tolist()}
        # A named task that dask neither walks nor hashes: as a plain argument, each of
        # its thousands of code lists was pickled to make the task's key (most of the
        # driver's time on small partitions).
        return dask.delayed(codes, name=f"detector-recode-{key}-{i}", traverse=False)

    dask.compute(*[
        dask.delayed(_finish_partition, pure=True)(
            i, str(work), str(tmp_out), ranked.rank[starts[i]:starts[i + 1]], cols,
            recode(i),
            None if ranked.new_lanes is None else ranked.new_lanes[starts[i]:starts[i + 1]])
        for i in todo])
    if not todo:
        _write_parquet(pd.DataFrame({c: pd.Series([], dtype="object") for c in cols}),
                       tmp_out / _part_name(0), _output_schema(cols))


def _write_rejects(work: Path, n_pieces: int, rej_path: Path, force: bool,
                   tally: Tally) -> None:
    """The partitions' rejects, streamed in partition (= row) order into one CSV,
    atomically, and counted in ``tally``."""
    import pyarrow.parquet as pq

    with AtomicWriter(rej_path, force=force) as w:
        for i in range(n_pieces):
            f = work / f"rejects.{i:05d}.parquet"
            if f.exists():
                r = pq.read_table(f).to_pandas()
                tally.add_rejects(r)
                w.write(r)
        if tally.rejected == 0:
            w.write(pd.DataFrame({c: pd.Series([], dtype="str") for c in REJECT_COLUMNS}))


# --------------------------------------------------------------------------- training


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of integers (SplitMix64 finaliser), vectorised."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _sample_mask(global_pos: np.ndarray, seed: int, frac: float) -> np.ndarray:
    """Keep a row when a hash of (seed, global row) falls under ``frac``: the sample
    depends only on the seed and the row's position, not on the partitioning."""
    if frac >= 1.0:
        return np.ones(len(global_pos), dtype=bool)
    salt = _splitmix64(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        h = _splitmix64(global_pos.astype(np.uint64) ^ salt)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < frac


def _sample_partition(df: pd.DataFrame, offsets: np.ndarray, dups: dict, seed: int,
                      frac: float, extras: tuple = ((), ()),
                      partition_info: dict | None = None) -> dict:
    i = int(partition_info["number"]) if partition_info else 0
    df.index = pd.RangeIndex(int(offsets[i]), int(offsets[i]) + len(df))
    valid, rejects = _validate_global(df, dups.get(i))
    keep = _sample_mask(valid.index.to_numpy(np.int64), seed, frac)
    vocabs = _features(extras).vocabularies(valid) if len(valid) else None
    return {"valid": valid.iloc[np.flatnonzero(keep)], "n_valid": len(valid),
            "n_rejected": len(rejects), "rejects": RejectTally().add(rejects), "vocabs": vocabs}


def _tables_partition(df: pd.DataFrame, offsets: np.ndarray, dups: dict, vocabs: dict,
                      extras: tuple, partition_info: dict | None = None):
    """One partition's share of the reference tables: the counts of its valid rows,
    their grouped values (inputs of the medians, MADs and means) and parcel bursts."""
    from .features import DeclarationFeatures

    i = int(partition_info["number"]) if partition_info else 0
    df.index = pd.RangeIndex(int(offsets[i]), int(offsets[i]) + len(df))
    valid, _ = _validate_global(df, dups.get(i))
    if not len(valid):
        return None, _values_meta(), pd.Series(dtype="int64")
    return (*_features(extras).partial_tables(valid, vocabs),
            DeclarationFeatures.burst_context(valid))


def _values_meta() -> pd.DataFrame:
    return pd.DataFrame({"group": np.array([], np.int32), "key": np.array([], np.int64),
                         "value": np.array([], np.float64)})


def _value_stats(values: pd.DataFrame, extras: tuple) -> dict:
    return _features(extras).value_stats(values)


def _features(extras: tuple):
    from .features import DeclarationFeatures

    return DeclarationFeatures(extra_categorical=tuple(extras[0]),
                               extra_numeric=tuple(extras[1]))


def train_dask(input, output, *, columns=None, budget: float = 0.01, lanes=None,
               random_share: float = 0.0, trees: int = 200, seed: int = 0,
               max_samples: int | str = 256, min_rows: int = 30,
               scheduler: str | None = None, sample_rows: int = DEFAULT_SAMPLE_ROWS,
               partition_rows: int = DEFAULT_PARTITION_ROWS, encoding: str = "utf-8",
               force: bool = False, processes: bool = True) -> dict:
    """Train on a dataset larger than memory: statistics over the whole dataset on Dask,
    the forest on a sample.

    Over the whole dataset (Dask, exact): row, valid and reject counts, duplicate ids
    (first occurrence wins), the validation itself, and every reference table: the
    vocabularies, the additive tables (category frequencies per HS level, routes, trader
    histories, composition and description frequencies, daily parcel counts, the row
    count) summed over partitions, and the non-additive ones (medians and MADs per
    commodity key and HS level, the exporters' price levels and pooled price scale, mean
    rare-earth shares, usual daily parcel counts) computed after a shuffle by (group,
    key), where each group's values are all in one partition. These tables equal those
    of a local fit on all valid rows (means up to the order of a float sum, which is
    fixed: values are summed sorted). On a uniform sample of about ``sample_rows`` valid
    rows (deterministic: a hash of the seed and the global row position decides): the
    forest, the features' typical values and the budget/lane thresholds. When the
    dataset has at most ``sample_rows`` valid rows the model equals
    :func:`detector.jobs.train_file` on the concatenated input.

    The data is read three times: the facts pass (ids and lengths), validation with the
    sample and the vocabularies, and the reference tables; memory on the driver is 16
    bytes a row for the duplicate check plus the sample.
    """
    started = time.time()
    if Path(output).exists() and not force:
        raise InputError(f"OUTPUT {output} exists; pass --force to overwrite")
    if not isinstance(sample_rows, int | np.integer) or sample_rows < 2:
        raise ValueError(f"sample_rows must be an integer >= 2, got {sample_rows!r}")
    mapping, files, pieces = _prepare(input, columns, encoding, partition_rows)
    extras = (tuple(mapping.extra_categorical), tuple(mapping.extra_numeric))
    with _client(scheduler, processes) as client:
        rows, offsets, _, dups = _facts_pass(client, pieces)
        total = int(rows.sum())
        # The valid count is only known after validation: aim at sample_rows of the rows
        # that are not duplicates (rows rejected for other reasons make the sample a
        # little smaller than sample_rows, never larger).
        frac = min(1.0, sample_rows / max(total - sum(len(v[0]) for v in dups.values()), 1))
        results, whole = _training_passes(pieces, offsets, dups, int(seed), frac, extras)
    n_valid = sum(r["n_valid"] for r in results)
    n_rejected = sum(r["n_rejected"] for r in results)
    if total != n_valid + n_rejected:
        raise RuntimeError(f"internal error: {total} rows in but {n_valid} valid + "
                           f"{n_rejected} rejected")
    # Every reject counted (a tally per partition, merged in input order), not a sample.
    rej_tally = RejectTally()
    for r in results:
        rej_tally.merge(r["rejects"])
    frames = [r["valid"] for r in results if len(r["valid"])]
    valid = pd.concat(frames) if len(frames) > 1 else (frames[0] if frames else None)
    if valid is None or len(valid) < 2:
        raise SchemaError(f"INPUT {input}: {0 if valid is None else len(valid)} valid rows of "
                          f"{total}; training needs at least 2. {rej_tally.summary()}")
    model = build_model(mapping, trees=trees, max_samples=max_samples, budget=budget,
                        lanes=lanes, random_share=random_share, seed=seed, min_rows=min_rows)
    model.fit(valid, validated=True, _whole=whole)
    sampled = len(valid) < n_valid
    model.metadata_["training"].update(
        rejected=int(n_rejected), engine="dask", dataset_rows=total,
        dataset_valid_rows=int(n_valid), sample={
            "sampled": bool(sampled), "rows": int(len(valid)), "fraction": float(frac),
            "seed": int(seed), "method": "hash(seed, global row) < fraction; every reference "
            "table (vocabularies, counts, medians/MADs, price levels, means) computed over the "
            "whole dataset; forest, typical feature values and thresholds fitted on the "
            "sample"})
    model.metadata_["columns"] = mapping.to_obj()
    meta = model.save(output)
    return {"output": str(output), "rows": total, "trained_on": int(len(valid)),
            "valid": int(n_valid), "rejected": int(n_rejected), "sampled": bool(sampled),
            "sample_fraction": float(frac),
            "rejects_summary": rej_tally.summary() if n_rejected else "",
            "features": meta["features"], "disabled_features": meta["disabled_features"],
            "threshold": meta["threshold"], "lane_thresholds": meta["lane_thresholds"],
            "files": len(files), "partitions": len(pieces),
            "seconds": round(time.time() - started, 3), "engine": "dask"}


def _training_passes(pieces, offsets, dups, seed: int, frac: float, extras: tuple):
    """The validation/sample pass (valid sample, counts, reject tallies and vocabularies
    per partition) and then the whole-dataset reference tables; runs on the current
    client. Returns the per-partition results and the tables for ``fit(_whole=)`` (None
    when no partition has a valid row)."""
    import dask

    cols = _union_columns(pieces)
    key = uuid.uuid4().hex
    dups_d = dask.delayed(dups, name=f"detector-dups-{key}", traverse=False)
    results = dask.compute(*[
        dask.delayed(_sample_partition, pure=True)(
            p, offsets, dups_d, seed, frac, extras, partition_info={"number": i})
        for i, p in enumerate(_ddf(pieces, cols).to_delayed())])
    from .features import DeclarationFeatures

    vocab_parts = [r["vocabs"] for r in results if r["vocabs"] is not None]
    if not vocab_parts:
        return results, None
    vocabs = DeclarationFeatures.merge_vocabularies(vocab_parts)
    return results, {"vocabs": vocabs, "rows": int(sum(r["n_valid"] for r in results)),
                     **_reference_tables(pieces, cols, offsets, dups_d, vocabs, extras, key)}


def _reference_tables(pieces, cols, offsets, dups_d, vocabs, extras: tuple, key: str) -> dict:
    """Whole-dataset reference tables on the merged vocabularies: in one more read,
    every partition's counts (summed) and its grouped values, shuffled by (group, key) so
    that each group's medians, MADs and means are computed where all of its values are."""
    import dask
    import dask.dataframe as dd

    from .features import DeclarationFeatures

    vocabs_d = dask.delayed(vocabs, name=f"detector-vocabs-{key}", traverse=False)
    tables = [dask.delayed(_tables_partition, pure=True, nout=3)(
        p, offsets, dups_d, vocabs_d, extras, partition_info={"number": i})
        for i, p in enumerate(_ddf(pieces, cols).to_delayed())]
    values = dd.from_delayed([v for _, v, _ in tables], meta=_values_meta(),
                             verify_meta=False)
    shuffled = values.shuffle(on=["group", "key"], npartitions=len(tables))
    count_parts, stat_parts, context_parts = dask.compute(
        [c for c, _, _ in tables],
        [dask.delayed(_value_stats, pure=True)(p, extras) for p in shuffled.to_delayed()],
        [b for _, _, b in tables])
    return {"counts": DeclarationFeatures.merge_counts([c for c in count_parts if c]),
            "stats": DeclarationFeatures.merge_value_stats([s for s in stat_parts if s]),
            "context": DeclarationFeatures.merge_contexts(list(context_parts))}
