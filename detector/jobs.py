"""File-level jobs behind the CLI commands: plain functions, no click.

Each job reads, validates, calls the model and writes its outputs atomically, and
returns a summary dict that the CLI prints. Progress is reported through an optional
callback so that the CLI can draw it on stderr while stdout stays machine-readable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import verdict
from .engine import Progress, default_threads, score_stream
from .engine import summary as engine_summary
from .errors import InputError, SchemaError
from .io import AtomicWriter, read_header, read_table, rejects_path
from .model import DeclarationModel, build_model, load_model
from .reasons import DEFAULT_EXPLAIN_TOP, check_reasons_mode
from .schema import load_column_mapping
from .validate import summarise_rejects, validate

__all__ = ["generate_file", "train_file", "score_file", "evaluate_file", "explain_file",
           "load_model", "batch_process_settings"]

_CHUNK_ROWS = 100_000


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
    (CSV-ready Arrow tables for a CSV output, Parquet otherwise, and the scores as raw
    float64), keeping a few bytes a row in memory (the lane, the id hashes). Pass 3
    ranks the scores and streams the results, with their rank, to the output. Outputs appear only complete,
    and are the same whatever the number of threads or workers. ``reasons`` and
    ``explain_top``: see :meth:`DeclarationModel.score_valid`; the top is the file's.
    Rejected rows are in the output too (lane "manual", no score, no rank). ``capacity``
    (rows, or "2%" of the scored rows) caps the first lane in the rank pass, where the
    whole ranking is known. The pipeline itself is :func:`detector.engine.score_stream`.
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
    header = read_header(input, mapping, encoding=encoding)
    needed = [*model.extra_categorical, *model.extra_numeric]
    absent = [c for c in needed if c not in header]
    if absent:
        raise SchemaError(f"INPUT {input} lacks column(s) {absent} that this model was trained "
                          "with as extra agency columns; add them or map them with --columns")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    run = score_stream(model, input, mapping, header, out_w, rej_w, chunk_rows=chunk_rows,
                       encoding=encoding, workers=int(workers), threads=threads,
                       reasons=reasons, explain_top=explain_top, capacity=capacity,
                       progress=progress, on_total=on_total)
    return engine_summary(
        input, out_path, rej_path, rows=run.rows_in, ranked=run.ranked, tally=run.tally,
        lanes=run.lanes, seconds=time.time() - started,
        middle={"workers": int(workers), "threads": threads if int(workers) == 1 else 1})


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
