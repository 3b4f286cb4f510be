"""One self-contained HTML risk report: what was scored, where the budget cuts, why.

``build_report`` turns a model, the output of ``detector score`` and (optionally) the
original or labelled declarations into a single HTML page: a summary, the score
histogram with the threshold lines, the top flagged declarations with their reasons,
breakdowns by commodity chapter, origin and transport mode, and, when labels are given,
precision / recall / revenue against the inspection budget and recall by fraud scheme.
``build_backtest_report`` does the same for a ``detector backtest`` output folder.

The page needs nothing but itself: images are inlined as base64 PNG, styles are inline,
there is no JavaScript and a Content-Security-Policy forbids any network fetch. Every
value that comes from a file (ids, descriptions, codes, reasons) is escaped with
:func:`html.escape`: descriptions and ids are written by traders.

matplotlib (the ``[report]`` extra) is imported only when a plot is drawn, with the Agg
canvas and without pyplot, so importing this module stays cheap and never changes the
caller's matplotlib backend (a notebook keeps its inline backend).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, SchemaError
from .io import (
    CSV_INJECTION_PREFIXES,
    LIST_SEPARATOR,
    atomic_write_text,
    read_table,
    rejects_path,
)

__all__ = ["build_report", "write_report", "read_scored", "count_rejects", "lane_split",
           "PLOT_BUDGETS", "SCORED_COLUMNS", "new_figure", "is_backtest_dir",
           "build_backtest_report", "write_backtest_report"]

SCORED_COLUMNS = ("declaration_id", "anomaly_score", "rank", "flagged", "lane",
                  "random_selected", "reasons")
#: Budgets of the precision / recall / revenue plot: 0.5% to 20% in steps of 0.5%.
PLOT_BUDGETS: tuple[float, ...] = tuple(round(0.005 * i, 4) for i in range(1, 41))
_TABLE_BUDGETS = (0.01, 0.02, 0.05, 0.10)
_BREAKDOWN_ROWS = 15
_DESCRIPTION_CHARS = 160
_LANE_COLOURS = ("#c0392b", "#e1a100", "#d35400", "#2471a3")


# --------------------------------------------------------------------------- reading


def _tag(b: float) -> str:
    # The key format of detector.evaluate.budget_metrics.
    return f"{b * 100:g}%"


def _undefuse(s: pd.Series) -> pd.Series:
    """Undo the CSV-injection guard of AtomicWriter (``'-12`` was written for ``-12``)."""
    s = s.astype(object)
    starts = tuple("'" + p for p in CSV_INJECTION_PREFIXES)
    mask = s.map(lambda v: isinstance(v, str) and v.startswith(starts)).to_numpy(dtype=bool)
    if mask.any():
        s = s.copy()
        s[mask] = s[mask].str[1:]
    return s


def _as_bool(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=bool, na_value=False)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.fillna(0).to_numpy(dtype=float) != 0
    text = s.astype(object).map(lambda v: str(v).strip().lower() if v is not None and v == v
                                else "")
    return text.isin(("true", "1", "yes", "1.0")).to_numpy(dtype=bool)


def _as_reasons(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list | tuple | np.ndarray):
        return [str(x) for x in v if x is not None and str(x) != ""]
    if isinstance(v, float) and v != v:
        return []
    text = str(v).strip()
    if not text:
        return []
    return [part.strip() for part in text.split(LIST_SEPARATOR.strip()) if part.strip()]


def read_scored(path: str | os.PathLike) -> pd.DataFrame:
    """Read the output of ``detector score`` (CSV, Parquet or JSON lines, by extension).

    Returns the seven output columns with plain types: ``declaration_id`` str,
    ``anomaly_score`` float, ``rank`` int, ``flagged`` / ``random_selected`` bool, ``lane``
    str and ``reasons`` a list of str per row (CSV's ``" | "`` is split back).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"SCORED {p} does not exist")
    if p.is_dir():
        raise InputError(f"SCORED {p} is a directory; expected the output of detector score")
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
        elif name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
            if p.stat().st_size == 0:
                df = pd.DataFrame(columns=list(SCORED_COLUMNS))
            else:
                df = pd.read_json(p, lines=True, dtype={"declaration_id": str, "lane": str},
                                  convert_dates=False)
        elif name.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(p, dtype={"declaration_id": str, "lane": str, "reasons": str},
                             keep_default_na=False, na_values={"anomaly_score": [""],
                                                               "rank": [""]})
        else:
            raise InputError(f"SCORED {p}: unknown format; expected .csv, .parquet or .jsonl "
                             "(the output of detector score)")
    except (InputError, FileNotFoundError):
        raise
    except Exception as exc:  # pandas / pyarrow parse errors: one clear message
        raise InputError(f"SCORED {p} could not be read: {type(exc).__name__}: {exc}") from None
    missing = [c for c in SCORED_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"SCORED {p} lacks column(s) {missing}: expected the output of "
                          f"detector score ({', '.join(SCORED_COLUMNS)}); got "
                          f"{list(df.columns)[:10]}")
    out = pd.DataFrame({
        "declaration_id": _undefuse(df["declaration_id"]).map(
            lambda v: "" if v is None or v != v else str(v)).astype(object),
        "anomaly_score": pd.to_numeric(df["anomaly_score"], errors="coerce").astype(float),
        "rank": pd.to_numeric(df["rank"], errors="coerce"),
        "flagged": _as_bool(df["flagged"]),
        "lane": df["lane"].astype(object).map(lambda v: "" if v is None or v != v else str(v)),
        "random_selected": _as_bool(df["random_selected"]),
        "reasons": [_as_reasons(v) for v in df["reasons"].astype(object)],
    })
    # Rejected rows (lane "manual", no score) are counted, not kept: the report's
    # statistics are of scored rows; the rejects file has their details.
    n_manual = int((out["lane"] == "manual").sum())
    out = out[out["anomaly_score"].notna()].reset_index(drop=True)
    out.attrs["manual"] = n_manual
    if out["rank"].isna().any():
        out["rank"] = out["anomaly_score"].rank(ascending=False, method="first")
    out["rank"] = out["rank"].astype("int64")
    return out


def count_rejects(path: str | os.PathLike) -> int:
    """Data records in a ``*.rejects.csv`` (0 when the file is absent); quoted newlines ok."""
    p = Path(path)
    if not p.is_file():
        return 0
    with open(p, newline="", encoding="utf-8", errors="replace") as fh:
        n = sum(1 for _ in csv.reader(fh))
    return max(0, n - 1)


# --------------------------------------------------------------------------- plots


def new_figure(width: float = 9.0, height: float = 4.0):
    """A matplotlib Figure on the Agg canvas, without pyplot: drawing it never switches
    the caller's backend (a notebook keeps its inline plots). ImportError without
    matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _histogram(scores: np.ndarray, model, fraud: np.ndarray | None) -> str:
    fig = new_figure()
    ax = fig.add_subplot()
    lo, hi = float(np.min(scores)), float(np.max(scores))
    thresholds = [float(model.threshold_), *map(float, model.lane_thresholds_.values())]
    lo, hi = min(lo, *thresholds), max(hi, *thresholds)
    pad = max(1e-3, (hi - lo) * 0.02)
    bins = np.linspace(lo - pad, hi + pad, 61)
    if fraud is not None and fraud.any():
        ax.hist(scores[~fraud], bins=bins, color="#7f8c8d", alpha=0.8, label="not fraud")
        ax.hist(scores[fraud], bins=bins, color="#c0392b", alpha=0.9, label="fraud (label)")
    else:
        ax.hist(scores, bins=bins, color="#5d6d7e", label="declarations")
    ax.set_yscale("log")
    budget = float(model.metadata_.get("params", {}).get("budget", getattr(model, "budget", 0)))
    ax.axvline(model.threshold_, color="black", lw=2, ls="-",
               label=f"flag threshold {model.threshold_:.3f} (budget {budget:.1%})")
    for i, (name, thr) in enumerate(model.lane_thresholds_.items()):
        if abs(float(thr) - float(model.threshold_)) < 1e-12 and i == 0:
            continue  # the first lane usually is the flag threshold: one line is enough
        ax.axvline(thr, color=_LANE_COLOURS[i % len(_LANE_COLOURS)], lw=1.5, ls="--",
                   label=f"{name} lane from {float(thr):.3f}")
    ax.set_xlabel("anomaly score (higher = more suspicious)")
    ax.set_ylabel("declarations (log scale)")
    ax.set_title("Score distribution and where the budget cuts")
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def _budget_plot(curves: Mapping[str, list[float]], budgets: tuple[float, ...]) -> str:
    fig = new_figure()
    ax = fig.add_subplot()
    x = np.asarray(budgets) * 100
    styles = {"precision": "#2471a3", "recall": "#c0392b", "revenue": "#229954"}
    for name, ys in curves.items():
        ax.plot(x, np.asarray(ys, dtype=float) * 100, marker=".", color=styles.get(name),
                label=f"{name}@budget")
    for b in _TABLE_BUDGETS:
        ax.axvline(b * 100, color="#bbbbbb", lw=0.8, ls=":")
    ax.set_xlabel("inspection budget (% of declarations inspected, highest scores first)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, x.max() + 0.5)
    ax.set_title("Precision, recall and revenue against the inspection budget")
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _scheme_plot(recall: Mapping[str, float], counts: Mapping[str, int]) -> str:
    names = sorted(recall, key=lambda k: recall[k])
    fig = new_figure(9.0, max(2.0, 0.45 * len(names) + 1.0))
    ax = fig.add_subplot()
    vals = [recall[n] * 100 for n in names]
    ax.barh(range(len(names)), vals, color="#c0392b")
    ax.set_yticks(range(len(names)), [f"{n} ({counts.get(n, 0)})" for n in names])
    for i, v in enumerate(vals):
        ax.text(min(v + 1, 92), i, f"{v:.0f}%", va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("recall at a 5% budget (% of the scheme's frauds in the top 5%)")
    ax.set_title("Which schemes the top 5% catches")
    return _png(fig)


# --------------------------------------------------------------------------- HTML


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:24px auto;
max-width:1200px;padding:0 16px;box-sizing:border-box;color:#1c2833;background:#fff;
line-height:1.4;overflow-wrap:anywhere}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:2px solid #d5d8dc;padding-bottom:4px;
margin-top:2em}.sub{color:#5d6d7e;margin-top:4px}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}
th,td{border:1px solid #d5d8dc;padding:4px 8px;text-align:left;vertical-align:top;
overflow-wrap:anywhere;word-break:break-word}
.scroll{max-width:100%;overflow-x:auto}table.top{width:100%}
table.top th.num,table.top td.num{white-space:nowrap}
th{background:#eaf2f8}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.top td ul{margin:0;padding-left:1.1em}table.top td.desc{max-width:260px}
.lane{display:inline-block;padding:1px 6px;border-radius:3px;color:#fff;font-size:0.85em}
.lane-red{background:#c0392b}.lane-yellow{background:#b7950b}.lane-green{background:#229954}
.lane-other{background:#5d6d7e}.rnd{color:#6c3483;font-size:0.85em}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #d5d8dc;border-radius:6px;
padding:8px 14px;min-width:120px}.card b{display:block;font-size:1.5em}
img{max-width:100%;height:auto;border:1px solid #eee}.note{color:#5d6d7e;font-size:0.9em}
.flex{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}.flex>div{min-width:0;
max-width:100%}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _num(v: Any, fmt: str = ",") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _e(v)
    if f != f:
        return "n/a"
    return format(int(f), fmt) if fmt == "," else format(f, fmt)


def _pct(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if f != f else f"{f:.1%}"


def _lane_badge(lane: str) -> str:
    cls = lane if lane in ("red", "yellow", "green") else "other"
    return f'<span class="lane lane-{cls}">{_e(lane)}</span>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | frozenset = frozenset(),
           cls: str = "") -> str:
    """``headers`` are plain text (escaped here); ``rows`` cells are ready HTML."""
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else
                                    f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs) + \
        "</table>"


def _text_col(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series([""] * len(df), index=df.index, dtype=object)
    return df[col].astype(object).map(lambda v: "" if v is None or v != v else str(v).strip())


def _join_inputs(scored: pd.DataFrame, inputs: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """Scored rows with the input columns beside them (left join on declaration_id)."""
    if inputs is None:
        return scored, 0
    if "declaration_id" not in inputs.columns:
        raise SchemaError("INPUT has no declaration_id column: the report joins on it")
    keep = [c for c in ("hs_code", "origin_country", "transport_mode", "description",
                        "is_fraud", "fraud_scheme", "revenue") if c in inputs.columns]
    right = inputs[["declaration_id", *keep]].copy()
    right["declaration_id"] = _text_col(right, "declaration_id")
    right = right.drop_duplicates("declaration_id", keep="first")
    left = scored.copy()
    left["declaration_id"] = left["declaration_id"].astype(object).map(lambda v: str(v).strip())
    right = right.rename(columns={c: f"in_{c}" for c in keep})
    right["_joined"] = True
    merged = left.merge(right, on="declaration_id", how="left", sort=False)
    joined = merged["_joined"].astype(object).eq(True).to_numpy(dtype=bool)
    merged = merged.drop(columns="_joined")
    merged.index = scored.index
    return merged, int(joined.sum())


def _labels(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(mask of labelled rows, y, revenue or None, scheme) from the joined frame."""
    y = pd.to_numeric(df["in_is_fraud"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    mask = np.isin(y, (0.0, 1.0))
    rev = None
    if "in_revenue" in df.columns:
        rev = pd.to_numeric(df["in_revenue"], errors="coerce").to_numpy(
            dtype=float, na_value=np.nan)[mask]
    if "in_fraud_scheme" in df.columns:
        scheme = _text_col(df, "in_fraud_scheme").to_numpy(dtype=object)[mask]
        scheme = np.where(scheme == "", None, scheme)
    else:
        scheme = np.full(int(mask.sum()), None, dtype=object)
    return mask, y[mask].astype(int), rev, scheme


def _breakdown(df: pd.DataFrame, key: pd.Series, title: str, labelled: bool) -> str:
    g = pd.DataFrame({"key": key.replace("", "(missing)").to_numpy(),
                      "flagged": df["flagged"].to_numpy(dtype=bool)})
    if labelled:
        y = pd.to_numeric(df["in_is_fraud"], errors="coerce").to_numpy(dtype=float,
                                                                        na_value=np.nan)
        g["fraud"] = y == 1.0
    agg = g.groupby("key", sort=False).agg(
        declarations=("flagged", "size"), flagged=("flagged", "sum"),
        **({"frauds": ("fraud", "sum")} if labelled else {}))
    agg["share"] = agg["flagged"] / agg["declarations"]
    agg = agg.sort_values(["declarations", "flagged"], ascending=False)
    shown = agg.head(_BREAKDOWN_ROWS)
    headers = [title, "declarations", "flagged", "flagged share"] + (["frauds"] if labelled
                                                                     else [])
    rows = []
    for k, r in shown.iterrows():
        row = [_e(k), _num(r["declarations"]), _num(r["flagged"]), _pct(r["share"])]
        if labelled:
            row.append(_num(r["frauds"]))
        rows.append(row)
    more = len(agg) - len(shown)
    note = (f'<p class="note">{more:,} less frequent ones not shown.</p>'
            if more > 0 else "")
    return (f"<div><h3>By {_e(title)}</h3>"
            + _table(headers, rows, numeric={1, 2, 3, 4}) + note + "</div>")


def lane_split(scored: pd.DataFrame) -> pd.DataFrame:
    """Per lane: declarations, and how many were chosen by rank or at random.

    From the scored file's ``lane`` and ``random_selected`` columns: "at random" counts
    the random selections in the lane, "by rank" the rest. Ordered by declarations.
    """
    g = pd.DataFrame({"lane": scored["lane"].astype(object).map(str).to_numpy(),
                      "random": np.asarray(_as_bool(scored["random_selected"]), dtype=bool)})
    out = g.groupby("lane", sort=False).agg(declarations=("random", "size"),
                                            at_random=("random", "sum"))
    out["by_rank"] = out["declarations"] - out["at_random"]
    return out.sort_values("declarations", ascending=False, kind="stable")


def _lane_rows(df: pd.DataFrame, n_scored: int) -> list[list[str]]:
    def share(v):
        return _pct(v / n_scored if n_scored else np.nan)

    rows = []
    for lane, r in lane_split(df).iterrows():
        rows.append([_lane_badge(str(lane)), _num(r["declarations"]), share(r["declarations"]),
                     f"{_num(r['by_rank'])} ({share(r['by_rank'])})",
                     f"{_num(r['at_random'])} ({share(r['at_random'])})"])
    return rows


def _lane_note(model, params: Mapping[str, Any], n_random: int) -> str:
    first = next(iter(getattr(model, "lane_thresholds_", {}) or {}), "red")
    share = params.get("random_share", 0.0) or 0.0
    if not share and not n_random:
        return ('<p class="note">No random selection in this model: every lane is chosen '
                "by rank.</p>")
    return (f'<p class="note">Random selection ({_pct(share)} of declarations, a seeded hash '
            "of the id) keeps inspection outcomes an unbiased sample. A random selection "
            f"that would have been green goes to the first lane ({_e(first)}); one already "
            "in a lane stays there (and is counted under chosen at random in it). So the "
            "first lane's share is its rank share plus the random selections it receives; "
            f"{_num(n_random)} random selections here.</p>")


def _health_section(model, df: pd.DataFrame, health: Mapping[str, Any] | None) -> str:
    """Batch health (:mod:`detector.health`): the score summary's section when given,
    else the flagged and lane shares recomputed from the scored file (no drift: the
    report has no access to the batch's features)."""
    note = ""
    if health is None:
        health = model.health(None, n_scored=len(df), flagged=int(df["flagged"].sum()),
                              lanes={str(k): int(v) for k, v in
                                     df["lane"].value_counts().items()})
        note = ('<p class="note">Shares recomputed from the scored file (lanes as written, '
                "after any capacity cap). Drift per feature needs the batch's features: "
                "it is in the <code>health</code> section of the JSON summary that "
                "<code>detector score</code> prints.</p>")
    parts = ["<h2>Batch health</h2>"]
    warnings = list(health.get("warnings", ()))
    parts.append("<ul>" + "".join(f"<li><b>warning:</b> {_e(w)}</li>" for w in warnings)
                 + "</ul>" if warnings else "<p>No warning: the flagged and lane shares are "
                 "within sampling noise and no feature drifts past the threshold.</p>")

    def row(what: str, c: Mapping[str, Any]) -> list[str]:
        ok = {True: "yes", False: "<b>no</b>", None: "too few rows"}[c["within_noise"]]
        return [_e(what), _num(c["count"]), _pct(c["share"]), _pct(c["expected"]),
                f"{_pct(c['low'])} to {_pct(c['high'])}", ok]

    rows = [row("flagged", health["flagged"])] + [
        row(f"lane {name}", c) for name, c in health["lanes"].items()]
    parts.append(_table(["", "declarations", "share", "expected", "sampling noise allows",
                         "within"], rows, numeric={1, 2, 3}))
    parts.append(f'<p class="note">Rule: {_e(health["rule"])}.</p>' + note)
    drift = health.get("drift") or {}
    if drift.get("available"):
        top = drift.get("top") or []
        if top:
            parts.append("<h3>Drifting features (" + _e(drift["measure"]) + ")</h3>"
                         + _table(["feature", "PSI", "level", "what changed"],
                                  [[_e(t["feature"]), f"{t['psi']:.3f}", _e(t["level"]),
                                    _e(t["sentence"])] for t in top], numeric={1}))
        else:
            parts.append(f"<p>No feature has a PSI above {drift['thresholds']['moderate']}."
                         "</p>")
    elif health is not None and not note:
        parts.append(f'<p class="note">No drift section: {_e(drift.get("why", ""))}</p>')
    return "".join(parts)


def build_report(model, scored_df: pd.DataFrame, rejects_count: int,
                 inputs_df: pd.DataFrame | None = None, top: int = 50, *,
                 title: str = "Customs declaration risk report",
                 sources: Mapping[str, str] | None = None,
                 health: Mapping[str, Any] | None = None) -> str:
    """The HTML report as one string (see the module docstring for what it holds).

    ``scored_df`` has the columns of ``detector score`` (see :func:`read_scored`);
    ``inputs_df`` (optional) the original or labelled declarations, joined on
    ``declaration_id``; ``top`` the number of flagged declarations listed; ``health``
    the ``health`` section of the score summary (else recomputed, without drift).
    """
    if int(top) < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    df, n_joined = _join_inputs(_scored_frame(scored_df), inputs_df)
    has_inputs = inputs_df is not None
    labels = None
    if has_inputs and "in_is_fraud" in df.columns:
        labels = _labels(df)
        if not labels[0].any():
            labels = None  # a label column without one usable label: as unlabelled
    md = dict(getattr(model, "metadata_", {}) or {})
    parts = [_report_header(title, md, sources),
             _summary_section(model, df, int(rejects_count), md),
             _health_section(model, df, health)]
    if has_inputs:
        n_labelled = 0 if labels is None else int(labels[0].sum())
        parts.append(f'<p class="note">INPUT joined on declaration_id: {_num(n_joined)} of '
                     f'{_num(len(df))} scored rows found; labelled rows: '
                     f'{_num(n_labelled)}.</p>')
    parts += _score_section(model, df, labels)
    parts += _top_section(df, top)
    if has_inputs and n_joined:
        parts += _breakdown_section(df, labels is not None)
    if labels is not None:
        parts += _labels_section(df, *labels)
    return _page(title, parts)


def _scored_frame(scored_df: pd.DataFrame) -> pd.DataFrame:
    """The scored rows with their columns in one form (booleans, reason lists, scores),
    rows without a score left out."""
    missing = [c for c in SCORED_COLUMNS if c not in scored_df.columns]
    if missing:
        raise SchemaError(f"scored frame lacks column(s) {missing}")
    scored = scored_df.reset_index(drop=True).copy()
    scored["flagged"] = _as_bool(scored["flagged"])
    scored["random_selected"] = _as_bool(scored["random_selected"])
    scored["reasons"] = [_as_reasons(v) for v in scored["reasons"].astype(object)]
    scored["anomaly_score"] = pd.to_numeric(scored["anomaly_score"], errors="coerce")
    return scored[scored["anomaly_score"].notna()].reset_index(drop=True)


def _report_header(title: str, md: Mapping[str, Any], sources: Mapping[str, str] | None) -> str:
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    src = "".join(f"<br>{_e(k)}: <code>{_e(v)}</code>" for k, v in (sources or {}).items())
    return (f"<h1>{_e(title)}</h1><p class=\"sub\">generated {_e(now)} by detector "
            f"{_e(md.get('detector_version', ''))}{src}</p>")


def _model_facts(model, md: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The model's settings and training figures, for the summary's key-value table."""
    training = md.get("training", {}) or {}
    params = md.get("params", {}) or {}
    lane_thr = ", ".join(f"{_e(k)} &ge; {float(v):.4f}"
                         for k, v in (getattr(model, "lane_thresholds_", {}) or {}).items())
    lane_shares = ", ".join(f"{_e(k)} {float(v):.1%}"
                            for k, v in (params.get("lanes") or {}).items())
    return [
        ("training rows", _num(training.get("rows", "n/a"))),
        ("rejected at training", _num(training.get("rejected", "n/a"))),
        ("trained (UTC)", _e(training.get("trained_utc", "n/a"))),
        ("flag threshold", f"{float(model.threshold_):.4f} (budget "
                           f"{_pct(params.get('budget', np.nan))} of declarations)"),
        ("lane thresholds", lane_thr or "n/a"),
        ("lane shares", lane_shares or "n/a"),
        ("random selection share", _pct(params.get("random_share", np.nan))),
        ("trees", _e(params.get("n_estimators", "n/a"))),
        ("features", _num(len(md.get("features", []) or []))),
        ("switched-off features", _e(", ".join(md.get("disabled_features", {}) or {})
                                     or "none")),
        ("model created (UTC)", _e(md.get("created_utc", "n/a"))),
    ]


def _summary_section(model, df: pd.DataFrame, n_rejected: int, md: Mapping[str, Any]) -> str:
    """Counts (rows in = scored + rejected), the lanes and the model's settings."""
    n_scored = len(df)
    n_rows = n_scored + n_rejected
    n_flagged = int(df["flagged"].sum())
    n_random = int(df["random_selected"].sum())
    params = md.get("params", {}) or {}
    cards = [("rows", n_rows), ("scored", n_scored), ("rejected", n_rejected),
             ("flagged", n_flagged), ("random selections", n_random)]
    html_cards = "".join(f'<div class="card"><b>{_num(v)}</b>{_e(k)}</div>' for k, v in cards)
    flagged_share = _pct(n_flagged / n_scored) if n_scored else "n/a"
    return ("<h2>Summary</h2>" + f'<div class="cards">{html_cards}</div>'
            + f'<p>{_num(n_flagged)} of {_num(n_scored)} scored declarations are flagged '
            f'({flagged_share}); rows in = scored + rejected = {_num(n_rows)}.</p>'
            + '<div class="flex"><div><h3>Lanes</h3>'
            + _table(["lane", "declarations", "share", "chosen by rank",
                      "chosen at random"], _lane_rows(df, n_scored), numeric={1, 2, 3, 4})
            + _lane_note(model, params, n_random) + "</div><div><h3>Model</h3>"
            + _kv(_model_facts(model, md)) + "</div></div>")


def _score_section(model, df: pd.DataFrame, labels) -> list[str]:
    """The histogram of scores (frauds shaded when labelled) with the lane cut-offs."""
    parts = ["<h2>Score distribution</h2>"]
    n_scored = len(df)
    if not n_scored:
        return parts + ["<p>No declaration was scored.</p>"]
    fraud_all = None
    if labels is not None:
        labelled_mask, y = labels[0], labels[1]
        fraud_all = np.zeros(n_scored, dtype=bool)
        fraud_all[np.flatnonzero(labelled_mask)[y == 1]] = True
    parts.append(_img(_histogram(df["anomaly_score"].to_numpy(dtype=float), model,
                                 fraud_all), "histogram of anomaly scores"))
    parts.append('<p class="note">Declarations right of the black line are flagged; '
                 "the dashed lines start the other lanes.</p>")
    return parts


def _top_row(r: pd.Series, extra: list[str]) -> list[str]:
    """One flagged declaration's cells: rank, id, score, lane, input columns, reasons."""
    lane = _lane_badge(str(r["lane"]))
    if r["random_selected"]:
        lane += ' <span class="rnd">random</span>'
    row = [_num(r["rank"]), f"<code>{_e(r['declaration_id'])}</code>",
           f"{float(r['anomaly_score']):.4f}", lane]
    for c in extra:
        v = r[f"in_{c}"]
        text = "" if v is None or (isinstance(v, float) and v != v) else str(v)
        if len(text) > _DESCRIPTION_CHARS:
            text = text[:_DESCRIPTION_CHARS] + "\u2026"
        row.append(_e(text))
    reasons = r["reasons"] or []
    row.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in reasons) + "</ul>"
               if reasons else "<em>no reason recorded</em>")
    return row


def _top_section(df: pd.DataFrame, top: int) -> list[str]:
    """The ``top`` highest-ranked flagged declarations with their reasons."""
    top_rows = df[df["flagged"]].sort_values(["rank", "anomaly_score"],
                                             ascending=[True, False]).head(int(top))
    extra = [c for c in ("hs_code", "origin_country", "transport_mode", "description")
             if f"in_{c}" in df.columns]
    headers = ["rank", "declaration_id", "anomaly score", "lane", *extra, "reasons"]
    rows = [_top_row(r, extra) for _, r in top_rows.iterrows()]
    parts = [f"<h2>Top {_num(len(top_rows))} flagged declarations</h2>"]
    if not rows:
        return parts + ["<p>No declaration is flagged.</p>"]
    parts.append(f'<p class="note">Highest scores first, of {_num(int(df["flagged"].sum()))} '
                 "flagged. Each reason names the feature that, put back to its typical value, "
                 "lowers the score most, with the numbers an officer can check.</p>")
    parts.append('<div class="scroll">' + _table(headers, rows, numeric={0, 2}, cls="top")
                 + "</div>")
    return parts


def _breakdown_section(df: pd.DataFrame, has_labels: bool) -> list[str]:
    """Declarations, flagged (and frauds) by HS chapter, origin and transport mode."""
    blocks = []
    if "in_hs_code" in df.columns:
        chapter = _text_col(df, "in_hs_code").str.replace(r"\D", "", regex=True).str[:2]
        blocks.append(_breakdown(df, chapter, "HS chapter", has_labels))
    if "in_origin_country" in df.columns:
        blocks.append(_breakdown(df, _text_col(df, "in_origin_country").str.upper(),
                                 "origin country", has_labels))
    if "in_transport_mode" in df.columns:
        blocks.append(_breakdown(df, _text_col(df, "in_transport_mode").str.lower(),
                                 "transport mode", has_labels))
    return ["<h2>Breakdowns</h2>", '<div class="flex">' + "".join(blocks) + "</div>"]


def _labels_section(df: pd.DataFrame, labelled_mask: np.ndarray, y: np.ndarray,
                    rev: np.ndarray | None, scheme: np.ndarray) -> list[str]:
    """Precision, recall (and revenue) at budgets, AUC, and recall per fraud scheme."""
    from .evaluate import budget_metrics

    s = df["anomaly_score"].to_numpy(dtype=float)[labelled_mask]
    n_lab, n_fraud = len(y), int(y.sum())
    parts = ["<h2>How the model did (labels)</h2>",
             f"<p>{_num(n_lab)} labelled declarations, {_num(n_fraud)} frauds "
             f"({_pct(n_fraud / n_lab)}). Budgets rank the labelled rows by score: "
             "the top n% are inspected.</p>"]
    if n_fraud == 0:
        return parts + ["<p>No fraud among the labelled rows: recall is undefined.</p>"]
    m = budget_metrics(y, s, rev, budgets=_TABLE_BUDGETS)
    keys = ["precision", "recall"] + (["revenue"] if rev is not None else [])
    rows = [[_e(f"{b:.0%}")] + [_pct(m.get(f"{k}@{_tag(b)}")) for k in keys]
            for b in _TABLE_BUDGETS]
    parts.append('<div class="flex"><div>'
                 + _table(["budget", *[f"{k}@budget" for k in keys]], rows,
                          numeric={1, 2, 3})
                 + _kv([("ROC-AUC", f"{m['roc_auc']:.3f}"),
                        ("average precision", f"{m['average_precision']:.3f}")])
                 + "</div></div>")
    curve_m = budget_metrics(y, s, rev, budgets=PLOT_BUDGETS)
    curves = {k: [curve_m.get(f"{k}@{_tag(b)}", np.nan) for b in PLOT_BUDGETS]
              for k in keys}
    parts.append(_img(_budget_plot(curves, PLOT_BUDGETS),
                      "precision, recall and revenue against the budget"))
    return parts + _scheme_block(y, scheme, s)


def _scheme_block(y: np.ndarray, scheme: np.ndarray, s: np.ndarray) -> list[str]:
    """Recall at a 5% budget per fraud scheme (nothing when no scheme is named)."""
    from .evaluate import scheme_recall

    by_scheme = scheme_recall(y, scheme, s, 0.05)
    if not by_scheme:
        return []
    counts = {k: int(((scheme == k) & (y == 1)).sum()) for k in by_scheme}
    srows = [[_e(k), _num(counts[k]), _pct(v)] for k, v in
             sorted(by_scheme.items(), key=lambda kv: -kv[1])]
    return ["<h3>Recall at 5% by fraud scheme</h3>",
            '<div class="flex"><div>' + _table(["scheme", "frauds", "recall@5%"], srows,
                                               numeric={1, 2})
            + "</div><div>" + _img(_scheme_plot(by_scheme, counts), "recall at 5% by scheme")
            + "</div></div>"]


def _page(title: str, parts: list[str]) -> str:
    # No script, no network: the report opens the same offline and in a mail client.
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           "base-uri 'none'; form-action 'none'")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def is_backtest_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by ``detector backtest``."""
    p = Path(path)
    return p.is_dir() and (p / "summary.json").is_file() and (p / "periods.csv").is_file()


def build_backtest_report(summary: Mapping[str, Any], periods: pd.DataFrame,
                          plot_png: bytes | None = None, *,
                          title: str = "Backtest: the agency's loop replayed") -> str:
    """HTML for a ``detector backtest`` OUTDIR: the replay's settings, each strategy's
    cumulative figures, the precision/recall plot and the per-period table."""
    strategies = summary.get("strategies") or {}
    has_rev = any("revenue_found" in v for v in strategies.values())
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="sub">{_e(", ".join(map(str, summary.get("history", []))))}</p>',
             "<h2>Replay</h2>",
             _kv([("start", _e(summary.get("start"))), ("period", _e(summary.get("period"))),
                  ("periods", _num(summary.get("periods"))),
                  ("budget", _pct(summary.get("budget"))),
                  ("random share of the budget", _pct(summary.get("random"))),
                  ("refit", _e(summary.get("refit"))), ("seed", _e(summary.get("seed"))),
                  ("trained on before start", _num(summary.get("trained_before_start"))),
                  ("replayed declarations", _num(summary.get("replayed_rows"))),
                  ("rejected", _num(summary.get("rejected")))]),
             "<h2>Cumulative, per strategy</h2>"]
    headers = ["strategy", "selected", "frauds", "found", "precision", "recall",
               "found by random (ranking missed)"] + (["revenue found"] if has_rev else [])
    rows = [[_e(name), _num(v.get("selected")), _num(v.get("frauds")),
             _num(v.get("frauds_found")), _pct(v.get("precision")), _pct(v.get("recall")),
             _num(v.get("frauds_found_by_random_missed_by_rank"))]
            + ([_num(v.get("revenue_found"), ",.0f")] if has_rev else [])
            for name, v in strategies.items()]
    parts.append(_table(headers, rows, numeric=set(range(1, len(headers)))))
    if plot_png:
        parts.append(_img(base64.b64encode(plot_png).decode("ascii"),
                          "precision and recall per period for each strategy"))
    parts.append("<h2>Per period</h2>")
    cols = [c for c in ("strategy", "period", "period_start", "rows", "selected", "frauds",
                        "frauds_found", "frauds_found_by_random", "precision", "recall",
                        "revenue_found") if c in periods.columns]
    fmt = {"precision": _pct, "recall": _pct}
    prow = [[fmt.get(c, _e if c in ("strategy", "period_start") else _num)(r[c])
             for c in cols] for r in periods[cols].to_dict("records")]
    parts.append('<div class="scroll">' + _table(
        cols, prow, numeric={i for i, c in enumerate(cols)
                             if c not in ("strategy", "period_start")}) + "</div>")
    return _page(title, parts)


def write_backtest_report(outdir: str | os.PathLike, output: str | os.PathLike,
                          force: bool = False) -> dict:
    """Read a ``detector backtest`` OUTDIR and write its HTML report atomically."""
    import json


    started = time.time()
    d, out = Path(outdir), Path(output)
    if out.exists() and not force:
        raise InputError(f"OUTPUT {out} exists; pass --force to overwrite")
    try:
        summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
        strategies = summary["strategies"]
        periods = pd.read_csv(d / "periods.csv")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{d}: not a `detector backtest` output folder "
                         f"({type(exc).__name__}: {exc})") from None
    plot = d / str(summary.get("plot") or "precision_recall.png")
    png = plot.read_bytes() if plot.is_file() else None
    text = build_backtest_report(summary, periods, png)
    atomic_write_text(out, text, force=force)
    return {"output": str(out), "backtest": str(d), "strategies": list(strategies),
            "periods": int(summary.get("periods") or 0),
            "images": text.count('src="data:image/png;base64,'),
            "bytes": len(text.encode("utf-8")), "seconds": round(time.time() - started, 3)}


def write_report(model_path: str | os.PathLike, scored_path: str | os.PathLike,
                 output: str | os.PathLike, labels: str | os.PathLike | None = None,
                 top: int = 50, force: bool = False, *, columns=None,
                 encoding: str = "utf-8", summary: str | os.PathLike | None = None) -> dict:
    """Read the model, the scored file (+ its rejects) and optional INPUT; write the HTML.

    ``summary``: the JSON summary ``detector score`` printed for this file; its ``health``
    section (with drift) goes into the report, else the shares are recomputed.

    The output is written atomically and is not overwritten unless ``force``. Returns a
    summary dict (what the CLI prints).
    """
    from .model import load_model
    from .schema import load_column_mapping

    started = time.time()
    out = Path(output)
    if out.exists() and not force:
        raise InputError(f"OUTPUT {out} exists; pass --force to overwrite")
    if out.is_dir():
        raise InputError(f"OUTPUT {out} is a directory; expected a file name")
    model = load_model(model_path)
    scored = read_scored(scored_path)
    rej_file = rejects_path(scored_path)
    n_rejected = count_rejects(rej_file)
    inputs = None
    if labels is not None:
        inputs = read_table(labels, load_column_mapping(columns), encoding=encoding)
    sources = {"model": os.fspath(model_path), "scored": os.fspath(scored_path)}
    if labels is not None:
        sources["input"] = os.fspath(labels)
    health = None
    if summary is not None:
        import json

        try:
            health = json.loads(Path(summary).read_text(encoding="utf-8"))["health"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"SUMMARY {summary}: not a `detector score` JSON summary with "
                             f"a health section ({type(exc).__name__}: {exc})") from None
        sources["summary"] = os.fspath(summary)
    text = build_report(model, scored, n_rejected, inputs, top=top, sources=sources,
                        health=health)
    atomic_write_text(out, text, force=force)
    return {"output": str(out), "rows": int(len(scored) + n_rejected),
            "scored": int(len(scored)), "rejected": n_rejected,
            "rejects_file": str(rej_file) if rej_file.exists() else None,
            "flagged": int(scored["flagged"].sum()),
            "random_selected": int(scored["random_selected"].sum()),
            "lanes": {**{str(k): int(v) for k, v in scored["lane"].value_counts().items()},
                      **({"manual": scored.attrs["manual"]} if scored.attrs.get("manual")
                         else {})},
            "top_listed": int(min(int(top), int(scored["flagged"].sum()))),
            "input": None if labels is None else str(labels),
            "labelled": bool(inputs is not None and "is_fraud" in inputs.columns),
            "images": text.count('src="data:image/png;base64,'),
            "bytes": len(text.encode("utf-8")),
            "seconds": round(time.time() - started, 3)}
