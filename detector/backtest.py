"""Replay a labelled history as the agency lived it: score a period, inspect a budget,
learn only the outcomes of what was inspected, retrain, go on.

The model is first trained on every declaration before ``start`` with its outcome known.
Then, period by period, it scores that period's declarations, selects ``budget`` of them
(``budget - random`` by rank, ``random`` uniformly from the rest), and the outcomes of the
selected rows alone are added to what is known. Unselected rows join the training data
with their outcome set to NaN (the forest and the reference tables may use them, as an
agency's would: the declarations are known, their outcome is not). Nothing about an
unselected row's outcome reaches any model: the label and revenue columns are blanked
before the rows are appended, and every other outcome column of the input is dropped.

Several strategies in one run share the same periods and the same validated rows:
``hybrid`` ranks by ``risk_score`` (forest + outcome ranker), ``outcomes`` by the ranker's
``fraud_probability``, ``forest`` by ``anomaly_score`` (unsupervised, labels never used)
and ``random`` selects the whole budget uniformly.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, SchemaError
from .io import atomic_write_bytes, atomic_write_text, read_table, write_table
from .model import DeclarationModel, build_model
from .report import new_figure
from .schema import CANONICAL, load_column_mapping
from .validate import summarise_rejects, validate

__all__ = ["STRATEGIES", "OUTPUT_FILES", "REFIT_MODES", "run_backtest", "period_counts", "select"]

STRATEGIES: tuple[str, ...] = ("hybrid", "forest", "outcomes", "random")
OUTPUT_FILES: tuple[str, ...] = ("decisions.csv", "periods.csv", "summary.json")
# How a strategy learns between periods (see _Learner): everything, or the outcome part.
REFIT_MODES: tuple[str, ...] = ("outcomes", "all")
_SCORE_COLUMN = {"hybrid": "risk_score", "outcomes": "fraud_probability",
                 "forest": "anomaly_score"}


def period_counts(n: int, budget: float, random_share: float) -> tuple[int, int]:
    """(rows by rank, rows at random) for a period of ``n`` rows; shares round half up,
    so a small period may select 0 rows.

    >>> period_counts(300, 0.10, 0.01), period_counts(4, 0.10, 0.01)
    ((27, 3), (0, 0))
    """
    total = int(np.floor(budget * n + 0.5))
    rand = min(total, int(np.floor(random_share * n + 0.5)))
    return total - rand, rand


def select(scores: np.ndarray, ids: np.ndarray, n_rank: int, n_random: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank (1 = most suspicious; ties by id, so the order is total and reproducible),
    the selected mask and who selected each row ("rank", "random" or "")."""
    n = len(scores)
    order = np.lexsort((ids.astype(str), -np.nan_to_num(scores, nan=-np.inf)))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    by = np.full(n, "", dtype=object)
    by[order[:n_rank]] = "rank"
    rest = order[n_rank:]
    if n_random and len(rest):
        picked = rng.choice(rest, size=min(n_random, len(rest)), replace=False)
        by[picked] = "random"
    return rank, by != "", by


def _parse_period(period: str) -> pd.Timedelta:
    try:
        # "7d" as users write it; pandas wants the unit upper-case.
        delta = pd.Timedelta(str(period).strip().upper())
    except ValueError:
        raise InputError(f"--period must be a duration such as 7d or 14d, got {period!r}") \
            from None
    if delta < pd.Timedelta("1D"):
        raise InputError(f"--period must be at least 1 day, got {period!r}")
    return delta


def _dates(df: pd.DataFrame, source: str) -> pd.Series:
    """The acceptance date of every row; a clear error when missing or unparseable."""
    if "date" not in df.columns:
        raise SchemaError(f"HISTORY {source}: a backtest needs the date column (acceptance "
                          f"date, YYYY-MM-DD) to cut periods; columns: {list(df.columns)[:20]}; "
                          "map yours with --columns")
    text = df["date"].astype("str").str.strip().str.slice(0, 10)
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        ids = df["declaration_id"].astype("str")[bad].head(3).tolist() \
            if "declaration_id" in df.columns else []
        raise SchemaError(f"HISTORY {source}: column date must hold a YYYY-MM-DD date on every "
                          f"row; {int(bad.sum())} of {len(df)} rows are missing or unparseable "
                          f"(e.g. declaration_id {ids}, values "
                          f"{df['date'].astype('str')[bad].head(3).tolist()})")
    return parsed


def _resolve(name: str | None, mapping, df: pd.DataFrame, what: str) -> str | None:
    """A label/revenue column by the user's name or its mapped canonical name."""
    if name is None:
        return None
    col = mapping.columns.get(name, name)
    if col not in df.columns:
        raise SchemaError(f"{what} column {name!r} not in the history; columns: "
                          f"{list(df.columns)[:20]}")
    return col


def _read_history(paths: Sequence[str | Path], mapping, encoding: str) -> pd.DataFrame:
    frames = [read_table(p, mapping, encoding=encoding) for p in paths]
    for p, f in zip(paths, frames, strict=True):
        _dates(f, str(p))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _fit(strategy: str, known: pd.DataFrame, label: str, revenue: str | None, mapping,
         trees: int, seed: int) -> DeclarationModel | None:
    if strategy == "random":
        return None
    model = build_model(mapping, trees=trees, seed=seed)
    if strategy == "forest":
        return model.fit(known.drop(columns=[label]), validated=True)
    return model.fit(known, validated=True, labels=label, revenue=revenue)


class _Learner:
    """What a strategy learns between periods.

    ``refit="all"`` retrains the whole model (features, forest, outcome part) on everything
    known. ``refit="outcomes"`` trains the whole model once, on the rows before start,
    then per period refits only the outcome part (risk profiles + ranker, via
    ``OutcomeModel.refit_ranker``) on the labelled rows known so far, their features and
    forest scores from the first model; the forest strategy then stays as first fitted.
    """

    def __init__(self, strategy: str, refit: str, label: str, revenue: str | None, mapping,
                 trees: int, seed: int):
        self.strategy, self.refit, self.label, self.revenue = strategy, refit, label, revenue
        self.mapping, self.trees, self.seed = mapping, trees, seed
        self.seconds = 0.0

    def start(self, known: pd.DataFrame) -> DeclarationModel | None:
        t0 = time.time()
        self.model = _fit(self.strategy, known, self.label, self.revenue, self.mapping,
                          self.trees, self.seed)
        if self.refit == "outcomes" and self.strategy in ("hybrid", "outcomes"):
            lab = known[known[self.label].notna()]
            self._rows = [lab]
            self._X = [self.model.features_.transform(lab)]
        self.seconds += time.time() - t0
        return self.model

    def learn(self, known: pd.DataFrame, revealed: pd.DataFrame) -> DeclarationModel | None:
        if self.refit == "all":
            return self.start(known)
        if self.strategy not in ("hybrid", "outcomes"):
            return self.model
        t0 = time.time()
        new = revealed[revealed[self.label].notna()]
        if len(new):
            self._rows.append(new)
            self._X.append(self.model.features_.transform(new))
            rows = pd.concat(self._rows, ignore_index=True)
            self._rows = [rows]
            self._X = [np.vstack(self._X)]
            rev = None if self.revenue is None else rows[self.revenue].fillna(0.0).to_numpy(float)
            self.model.outcome_ = self.model.outcome_.refit_ranker(
                rows, self._X[0], rows[self.label].to_numpy(float), revenue=rev)
        self.seconds += time.time() - t0
        return self.model


def _replay(strategy: str, train: pd.DataFrame, periods: list[pd.DataFrame], *, label: str,
            revenue: str | None, mapping, budget: float, random_share: float, seed: int,
            trees: int, refit: str,
            progress: Callable[[str], None]) -> tuple[list[pd.DataFrame], float]:
    """One strategy over every period; its decisions per period and its fit seconds."""
    outcome_cols = [c for c in (label, revenue) if c is not None]
    known = train
    learner = _Learner(strategy, refit, label, revenue, mapping, trees, seed)
    model = learner.start(known)
    out: list[pd.DataFrame] = []
    for k, rows in enumerate(periods):
        n = len(rows)
        ids = rows["declaration_id"].astype("str").to_numpy()
        # Seeded per period only: every strategy draws from the same stream.
        rng = np.random.default_rng([int(seed), k])
        n_rank, n_rand = period_counts(n, budget, random_share)
        blind = rows.drop(columns=outcome_cols)
        if n == 0:
            scores = np.zeros(0)
        elif model is None:
            scores = rng.random(n)
            n_rank, n_rand = 0, n_rank + n_rand
        else:
            scores = model.score_valid(blind)[_SCORE_COLUMN[strategy]].to_numpy(float)
        rank, selected, by = select(scores, ids, n_rank, n_rand, rng)
        out.append(pd.DataFrame({"declaration_id": ids, "period": k, "strategy": strategy,
                                 "score": scores, "rank": rank, "selected": selected,
                                 "selected_by": by}))
        y = rows[label].to_numpy(dtype=float, na_value=np.nan)
        progress(f"{strategy} period {k + 1}/{len(periods)}: {n} rows, {int(selected.sum())} "
                 f"selected, {int(np.nansum(y[selected] == 1))} frauds found")
        if k == len(periods) - 1 or n == 0 or model is None:
            continue
        revealed = rows.copy()
        for c in outcome_cols:
            revealed[c] = revealed[c].astype("float64").where(selected)
        known = pd.concat([known, revealed], ignore_index=True)
        model = learner.learn(known, revealed)
    return out, learner.seconds


def _period_table(decisions: pd.DataFrame, truth: pd.DataFrame, n_periods: int,
                  starts: list[pd.Timestamp], has_revenue: bool) -> pd.DataFrame:
    d = decisions.merge(truth, on="declaration_id", how="left", validate="many_to_one")
    d["found"] = d["selected"] & (d["y"] == 1)
    d["found_random"] = d["found"] & (d["selected_by"] == "random")
    d["rev_found"] = np.where(d["selected"], d["rev"], 0.0)
    d["fraud"] = d["y"] == 1
    rows = []
    for strategy in pd.unique(decisions["strategy"]):
        g = d[d["strategy"] == strategy].groupby("period")
        agg = g.agg(rows=("declaration_id", "size"), selected=("selected", "sum"),
                    frauds=("fraud", "sum"), frauds_found=("found", "sum"),
                    frauds_found_by_random=("found_random", "sum"),
                    revenue_found=("rev_found", "sum")).reindex(range(n_periods), fill_value=0)
        agg.insert(0, "strategy", strategy)
        agg.insert(1, "period_start", [s.strftime("%Y-%m-%d") for s in starts])
        rows.append(agg.reset_index(names="period"))
    t = pd.concat(rows, ignore_index=True)
    t["precision"] = t["frauds_found"] / t["selected"].where(t["selected"] > 0)
    t["recall"] = t["frauds_found"] / t["frauds"].where(t["frauds"] > 0)
    cols = ["strategy", "period", "period_start", "rows", "selected", "frauds", "frauds_found",
            "frauds_found_by_random", "precision", "recall"]
    return t[cols + (["revenue_found"] if has_revenue else [])]


def _summary(periods: pd.DataFrame, has_revenue: bool) -> dict[str, Any]:
    out = {}
    for strategy, g in periods.groupby("strategy", sort=False):
        sel, found, frauds = int(g["selected"].sum()), int(g["frauds_found"].sum()), \
            int(g["frauds"].sum())
        out[str(strategy)] = {
            "rows": int(g["rows"].sum()), "selected": sel, "frauds": frauds,
            "frauds_found": found,
            "precision": found / sel if sel else None,
            "recall": found / frauds if frauds else None,
            # Random picks are drawn from outside the rank cut: every fraud they find is
            # one the ranking missed.
            "frauds_found_by_random_missed_by_rank": int(g["frauds_found_by_random"].sum()),
            **({"revenue_found": float(g["revenue_found"].sum())} if has_revenue else {})}
    return out


def _plot(periods: pd.DataFrame) -> bytes | None:
    try:
        fig = new_figure(9.0, 6.0)
    except ImportError:
        return None
    axes = fig.subplots(2, 1, sharex=True)
    for strategy, g in periods.groupby("strategy", sort=False):
        for ax, col in zip(axes, ("precision", "recall"), strict=True):
            ax.plot(g["period"], g[col], marker="o", ms=3, label=str(strategy))
    for ax, col in zip(axes, ("precision", "recall"), strict=True):
        ax.set_ylabel(col)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].set_xlabel("period")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _check_options(out: Path, *, refit: str, strategies: Sequence[str], budget: float,
                   random_share: float, force: bool) -> None:
    """Refuse bad options before any file is read."""
    if refit not in REFIT_MODES:
        raise InputError(f"refit must be one of {list(REFIT_MODES)}, got {refit!r}")
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise InputError(f"strategy must be one of {list(STRATEGIES)}, got {list(strategies)}")
    if not 0.0 < budget < 1.0 or not 0.0 <= random_share <= budget:
        raise InputError(f"need 0 < budget < 1 and 0 <= random <= budget, got budget {budget}, "
                         f"random {random_share}")
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not force:
        raise InputError(f"OUTDIR {out} already holds {existing}; pass --force to overwrite")


def _replay_columns(valid: pd.DataFrame, mapping, label: str, rev: str | None) -> pd.DataFrame:
    """The valid rows restricted to what the replay may use, outcomes as float."""
    # Only what a model may see, plus the outcomes we control: any other outcome column
    # of the input (e.g. KCS "Critical Fraud") never enters the replay.
    keep = [c for c in valid.columns if c in CANONICAL or c in mapping.extra_columns
            or c in (label, rev)]
    keep = [c for c in keep if c not in ("is_fraud", "fraud_scheme", "revenue")
            or c in (label, rev)]
    valid = valid[keep].copy()
    valid[label] = pd.to_numeric(valid[label], errors="coerce").astype("float64")
    if rev is not None:
        valid[rev] = pd.to_numeric(valid[rev], errors="coerce").astype("float64")
    return valid


def run_backtest(history: Sequence[str | Path], output_dir: str | Path, *, labels: str,
                 start: str, revenue: str | None = None, columns=None, period: str = "7d",
                 budget: float = 0.10, random_share: float = 0.01,
                 strategies: Sequence[str] = ("hybrid",), seed: int = 0, trees: int = 200,
                 encoding: str = "utf-8", force: bool = False, refit: str = "outcomes",
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Replay ``history`` (one or more files, concatenated) and write decisions.csv,
    periods.csv, summary.json, rejects.csv and precision_recall.png to ``output_dir``."""
    started = time.time()
    progress = progress or (lambda line: print(line, file=sys.stderr))
    out = Path(output_dir)
    _check_options(out, refit=refit, strategies=strategies, budget=budget,
                   random_share=random_share, force=force)
    delta = _parse_period(period)
    t_start = pd.Timestamp(start)
    mapping = load_column_mapping(columns)
    df = _read_history(list(history), mapping, encoding)
    label = _resolve(labels, mapping, df, "label")
    rev = _resolve(revenue, mapping, df, "revenue")
    res = validate(df)
    valid = _replay_columns(res.valid, mapping, label, rev)
    dates = pd.to_datetime(valid["date"])
    before = (dates < t_start).to_numpy()
    train = valid[before]
    if len(train) < 2 or (train[label] == 1).sum() < 5:
        raise SchemaError(f"the history before --start {start} must hold labelled declarations "
                          f"to train on; got {len(train)} rows with "
                          f"{int((train[label] == 1).sum())} frauds")
    k = ((dates[~before] - t_start) // delta).to_numpy(dtype=np.int64)
    after = valid[~before]
    n_periods = int(k.max()) + 1 if len(k) else 0
    periods = [after[k == i] for i in range(n_periods)]
    starts = [t_start + i * delta for i in range(n_periods)]
    progress(f"backtest: {len(train):,} rows before {start} to train on, {len(after):,} rows in "
             f"{n_periods} periods of {period}; {len(res.rejects):,} rows rejected")
    decisions, fit_seconds = [], {}
    for strategy in strategies:
        parts, fit_seconds[strategy] = _replay(
            strategy, train, periods, label=label, revenue=rev, mapping=mapping, budget=budget,
            random_share=random_share, seed=seed, trees=trees, refit=refit, progress=progress)
        decisions.extend(parts)
    dec = pd.concat(decisions, ignore_index=True) if decisions else pd.DataFrame()
    truth = pd.DataFrame({"declaration_id": after["declaration_id"].astype("str").to_numpy(),
                          "y": after[label].to_numpy(dtype=float),
                          "rev": after[rev].fillna(0.0).to_numpy(dtype=float) if rev else 0.0})
    table = _period_table(dec, truth, n_periods, starts, rev is not None)
    summary = {"history": [str(p) for p in history], "start": str(start), "period": period,
               "budget": budget, "random": random_share, "seed": seed, "refit": refit,
               "trained_before_start": int(len(train)), "replayed_rows": int(len(after)),
               "periods": n_periods, "rejected": int(len(res.rejects)),
               "rejects_summary": summarise_rejects(res.rejects) if len(res.rejects) else "",
               "strategies": _summary(table, rev is not None),
               "fit_seconds": {s: round(v, 2) for s, v in fit_seconds.items()}}
    out.mkdir(parents=True, exist_ok=True)
    write_table(dec, out / "decisions.csv", force=True)
    write_table(table, out / "periods.csv", force=True)
    write_table(res.rejects, out / "rejects.csv", force=True)
    png = _plot(table)
    if png is None:
        progress("matplotlib is not installed: no precision_recall.png written")
    else:
        atomic_write_bytes(out / "precision_recall.png", png, force=True)
    summary["plot"] = "precision_recall.png" if png is not None else None
    summary["seconds"] = round(time.time() - started, 2)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2), force=True)
    return summary
