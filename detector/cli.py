"""The ``detector`` command line: parse, call a plain function in :mod:`detector.jobs`, print.

Only click is imported at module level: ``detector --help`` must stay instant and must
not import pandas or scikit-learn. Results go to stdout (JSON or a table); progress and
human notes go to stderr. User errors exit 1 with one message and no traceback; usage
errors exit 2 (click's own convention).
"""

from __future__ import annotations

import functools
import json
import sys

import click

from ._version import __version__

__all__ = ["main"]


def _errors(fn):
    """Turn the product's named errors into ClickException (exit 1, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import DetectorError

        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except DetectorError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise click.ClickException(f"invalid value: {exc}") from None
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0]) if exc.args else str(exc)) from None

    return wrapper


def _dask(name: str):
    """A function of detector.distributed; a clear error when the extra is not installed."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "--engine dask needs the dask extra: pip install 'detector[dask]'") from None
    from . import distributed as engine

    return getattr(engine, name)


def _note(text: str) -> None:
    click.echo(text, err=True)


def _out(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _share(name: str):
    def convert(ctx, param, value):
        if value is None:
            return None
        if not 0.0 <= value < 1.0:
            raise click.BadParameter(f"{name} must be in [0, 1), got {value}")
        return value

    return convert


_columns_option = click.option(
    "--columns", "columns", type=click.Path(dir_okay=False),
    help="JSON file mapping your column names to the contract's: flat "
         "{\"their name\": \"canonical name\"} or structured (which may also give the "
         "CSV separator and decimal mark).")
_sep_option = click.option(
    "--sep", type=click.Choice([",", ";", "tab", "pipe"]), default=None,
    help="CSV field separator. Default: the mapping's, else detected from the header line.")
_decimal_option = click.option(
    "--decimal", type=click.Choice([".", ","]), default=None,
    help="Decimal mark of numbers in CSV input (',' for 12,5). Default: the mapping's, else '.'.")


def _columns(fn):
    """--columns, --sep and --decimal, handed to the job as one column mapping (the
    agency's file as it is written: names, separator, decimal mark)."""

    @functools.wraps(fn)
    def wrapper(*args, sep=None, decimal=None, columns=None, **kwargs):
        if sep is not None or decimal is not None:
            from .errors import SchemaError
            from .schema import load_column_mapping

            mapping = load_column_mapping(columns)
            try:
                columns = mapping.with_dialect(sep, decimal)
            except SchemaError as exc:  # options that contradict each other: usage error
                raise click.UsageError(str(exc).removeprefix("options: ")) from None
        return fn(*args, columns=columns, **kwargs)

    return _columns_option(_sep_option(_decimal_option(_errors(wrapper))))
_scheduler = click.option(
    "--scheduler", default=None,
    help="Dask scheduler address, e.g. tcp://host:8786 (engine dask) [default: a local cluster].")
_encoding = click.option("--encoding", default="utf-8", show_default=True,
                         help="Text encoding of CSV/JSON input (e.g. latin-1).")
_force = click.option("--force", is_flag=True,
                      help="Overwrite existing output files (kept otherwise).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="detector")
def main() -> None:
    """customs-detector: rank customs declarations by how suspicious they are.

    Typical run: generate (or bring) declarations, train a model, score new ones,
    evaluate on labelled outcomes, explain one declaration.
    """


@main.command()
@click.option("--rows", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Declarations to generate (>= 1).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed (any integer): same seed, same rows.")
@click.option("--fraud-rate", type=click.FloatRange(0, 0.5), default=0.01, show_default=True,
              help="Share of declarations given a fraud scheme, in [0, 0.5].")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="CSV, Parquet or JSON lines, by extension.")
@_force
@_errors
def generate(rows, seed, fraud_rate, output, force):
    """Write synthetic declarations with labelled fraud schemes."""
    from .jobs import generate_file

    summary = generate_file(output, rows=rows, seed=seed, fraud_rate=fraud_rate, force=force)
    _note(f"wrote {summary['rows']:,} declarations ({summary['frauds']:,} fraudulent) "
          f"to {output} in {summary['seconds']:.1f} s")
    _out(summary)


@main.command()
@click.argument("input", type=click.Path())
@click.option("-o", "--output", default="models/detector.joblib", show_default=True,
              type=click.Path(dir_okay=False), help="Model file to write (joblib).")
@click.option("--budget", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.01, show_default=True,
              help="Share of declarations flagged, in (0, 1).")
@click.option("--lanes", default=None,
              help="Lane shares, highest first, each in (0, 1), summing to < 1, e.g. "
                   "red=0.01,yellow=0.04; the rest is green [default: red=BUDGET].")
@click.option("--random", "random_share", type=float, default=0.0, show_default=True,
              callback=_share("--random"),
              help="Share selected at random for inspection, in [0, 1); a random pick "
                   "that would be green goes to the first lane.")
@click.option("--trees", type=click.IntRange(min=1), default=200, show_default=True,
              help="Trees in the isolation forest (>= 1).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the forest and the random selection (any integer).")
@click.option("--max-samples", type=click.IntRange(min=2), default=256, show_default=True,
              help="Rows each tree of the forest is grown on (>= 2).")
@click.option("--min-rows", type=click.IntRange(min=1), default=30, show_default=True,
              help="Rows a code needs for its own reference statistics (a median, a "
                   "frequency); fewer use the next HS level up (>= 1).")
@click.option("--labels", default=None, metavar="COLUMN",
              help="0/1 inspection-outcome column (e.g. is_fraud): also learn from outcomes.")
@click.option("--revenue", default=None, metavar="COLUMN",
              help="Revenue recovered by inspection (with --labels), e.g. revenue.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="dask: reference tables over a dataset larger than "
                                      "memory, forest on a sample.")
@_scheduler
@click.option("--sample-rows", type=click.IntRange(min=1000), default=1_000_000,
              show_default=True, help="Engine dask: rows the model is fitted on (>= 1000).")
@_columns
@_encoding
@_force
@_errors
def train(input, output, budget, lanes, random_share, trees, seed, max_samples, min_rows,
          labels, revenue, engine, scheduler, sample_rows, columns, encoding, force):
    """Fit a model on declarations and save the artifact."""
    from pathlib import Path

    from .jobs import train_file
    from .model import parse_lanes

    try:
        parse_lanes(lanes, budget)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lanes") from None
    if revenue is not None and labels is None:
        raise click.UsageError("--revenue goes with --labels")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    if engine == "dask":
        if labels is not None:
            raise click.UsageError("--labels is not supported with --engine dask yet")
        train_dask = _dask("train_dask")
        summary = train_dask(input, output, columns=columns, budget=budget, lanes=lanes,
                             random_share=random_share, trees=trees, seed=seed,
                             max_samples=max_samples, min_rows=min_rows,
                             scheduler=scheduler, sample_rows=sample_rows, force=force,
                             encoding=encoding)
        _note(f"trained on {summary.get('trained_on', summary.get('rows', 0)):,} declarations "
              f"with dask; model saved to {output}")
        _out(summary)
        return
    summary = train_file(input, output, columns=columns, budget=budget, lanes=lanes,
                         random_share=random_share, trees=trees, seed=seed,
                         max_samples=max_samples, min_rows=min_rows, encoding=encoding,
                         force=force, labels=labels, revenue=revenue)
    if summary["disabled_features"]:
        for name, cols in summary["disabled_features"].items():
            _note(f"feature {name} switched off: input lacks {', '.join(cols)}")
    if summary["rejected"]:
        _note(f"{summary['rejected']:,} rows rejected and not used for training:\n"
              f"{summary['rejects_summary']}")
    if (summary.get("coverage") or {}).get("warning"):
        _note(f"WARNING: {summary['coverage']['warning']}")
    _note(f"trained on {summary['trained_on']:,} declarations in {summary['seconds']:.1f} s; "
          f"model saved to {output}")
    _out(summary)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("input", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="CSV, Parquet or JSON lines by extension; rejects go beside it.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Rows read and scored at a time (>= 1); bounds memory.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Scoring threads in this process (>= 1) [default: one per core, at "
                   "most 2].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scoring processes instead of threads (>= 1; more memory; rarely "
                   "faster).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="local: this process, streamed in chunks; dask: a "
                                      "folder or glob of files on a Dask cluster.")
@_scheduler
# The names and default of detector.reasons (REASON_MODES, DEFAULT_EXPLAIN_TOP), spelled
# out here: importing it would load pandas for --help. A test checks that they agree.
@click.option("--reasons", "reasons", type=click.Choice(["officer", "all", "codes"]),
              default="officer", show_default=True,
              help="officer: full sentences outside the green lane, on random selections and "
                   "on the top --explain-top of the ranking, reason codes elsewhere; all: "
                   "sentences on every row; codes: codes on every row.")
@click.option("--explain-top", type=click.IntRange(min=0), default=2000, show_default=True,
              help="With --reasons officer: the top N of the ranking get sentences too.")
@click.option("--capacity", default=None, metavar="N|P%",
              help="Most rows the first lane (e.g. red) may hold: N rows (>= 0) or P% of "
                   "the scored rows (0% to 100%). Its random selections stay and count; "
                   "the best-ranked others fill the rest; the others go to the next lane "
                   "[default: no cap].")
@_columns
@_encoding
@_force
@_errors
def score(model, input, output, chunk_rows, threads, workers, engine, scheduler, reasons,
          explain_top, capacity, columns, encoding, force):
    """Score declarations: one output row per input row (the rejected ones in lane
    "manual"), the reasons of the rejects beside it."""
    if engine == "dask":
        score_dask = _dask("score_dask")
        summary = score_dask(model, input, output, columns=columns, scheduler=scheduler,
                             force=force, encoding=encoding, reasons=reasons,
                             explain_top=explain_top, capacity=capacity)
        _note(f"rows {summary['rows']:,}: scored {summary['scored']:,}, rejected "
              f"{summary['rejected']:,}")
        _score_notes(summary)
        return
    from .jobs import batch_process_settings, score_file

    batch_process_settings()
    bar = {"obj": None}

    def on_total(total):
        bar["obj"] = click.progressbar(length=total, label="scoring", file=sys.stderr)
        bar["obj"].__enter__()

    def progress(n):
        if bar["obj"] is not None:
            bar["obj"].update(n)

    try:
        summary = score_file(model, input, output, columns=columns, chunk_rows=chunk_rows,
                             force=force, encoding=encoding, progress=progress,
                             on_total=on_total, workers=workers, threads=threads,
                             reasons=reasons, explain_top=explain_top, capacity=capacity)
    finally:
        if bar["obj"] is not None:
            bar["obj"].__exit__(None, None, None)
    _note(f"rows {summary['rows']:,}: scored {summary['scored']:,}, rejected "
          f"{summary['rejected']:,}, flagged {summary['flagged']:,} "
          f"({summary['rows_per_second'] or 0:,} rows/s); output {summary['output']}, "
          f"rejects {summary['rejects']}")
    _score_notes(summary)


def _score_notes(summary: dict) -> None:
    """The capacity, rejects and health lines of a score summary on stderr, then the
    summary on stdout (the same for both engines)."""
    cap = summary.get("capacity")
    if cap:
        _note(f"capacity: lane {cap['lane']} holds at most {cap['limit']:,} rows; "
              f"{cap['moved']:,} moved to {cap['moved_to']}")
    if summary.get("rejects_summary"):
        _note(summary["rejects_summary"])
    health = summary.get("health") or {}
    for text in health.get("warnings", ()):
        _note(f"WARNING: {text}")
    if health and not health["drift"].get("available"):
        _note(f"health: no drift section: {health['drift']['why']}")
    _out(summary)


def _evaluate_table(report: dict) -> str:
    systems = report["systems"]
    names = list(systems)
    keys = [k for k in systems[names[0]] if not k.startswith("recall@5%_by")
            and k not in ("rows", "frauds")]
    width = max(len(k) for k in keys) + 2
    lines = [f"{report['evaluated']:,} labelled declarations, {report['frauds']:,} frauds "
             f"({report['rejected']:,} rows rejected)", ""]
    lines.append("metric".ljust(width) + "".join(n.rjust(20) for n in names))
    for k in keys:
        lines.append(k.ljust(width) + "".join(f"{systems[n][k]:20.3f}" for n in names))
    schemes = sorted({s for n in names for s in systems[n]["recall@5%_by_scheme"]})
    if schemes:
        lines += ["", "recall@5% by scheme".ljust(width) + "".join(n.rjust(20) for n in names)]
        for s in schemes:
            lines.append(s.ljust(width) + "".join(
                f"{systems[n]['recall@5%_by_scheme'].get(s, float('nan')):20.3f}"
                for n in names))
    return "\n".join(lines)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("input", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-baselines", is_flag=True, help="Skip the two baselines.")
@_columns
@_encoding
@_errors
def evaluate(model, input, as_json, no_baselines, columns, encoding):
    """Precision, recall and revenue at inspection budgets on labelled declarations."""
    from .jobs import evaluate_file

    report = evaluate_file(model, input, columns=columns, encoding=encoding,
                           baselines=not no_baselines)
    if as_json:
        _out(report)
    else:
        click.echo(_evaluate_table(report))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("input", type=click.Path())
@click.option("--id", "declaration_id", required=True, help="declaration_id to explain.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@_columns
@_encoding
@_errors
def explain(model, input, declaration_id, as_json, columns, encoding):
    """One declaration's score, lane and each feature against its reference."""
    from .jobs import explain_file

    ex = explain_file(model, input, declaration_id, columns=columns, encoding=encoding)
    if as_json:
        _out(ex)
        return
    if ex["status"] == "rejected":
        click.echo(f"{ex['declaration_id']}: rejected")
        for r in ex["reasons"]:
            click.echo(f"  {r}")
        return
    risk = (f", risk score {ex['risk_score']:.4f}, fraud probability "
            f"{ex['fraud_probability']:.4f}" if "risk_score" in ex else "")
    click.echo(f"{ex['declaration_id']}: anomaly score {ex['anomaly_score']:.4f}{risk} "
               f"(threshold {ex['threshold']:.4f} on {ex['ranked_by']}), lane {ex['lane']}"
               f"{', FLAGGED' if ex['flagged'] else ''}")
    for r in ex["reasons"]:
        click.echo(f"  - {r}")
    click.echo("")
    click.echo(f"  {'feature':28s}{'value':>10s}{'typical':>10s}{'score drop':>12s}  meaning")
    for f in ex["features"]:
        click.echo(f"  {f['feature']:28s}{f['value']:10.3f}{f['typical']:10.3f}"
                   f"{f['score_drop_if_typical']:12.4f}  {f['meaning']}")


@main.command()
@click.argument("model", type=click.Path())
@click.argument("scored", type=click.Path(dir_okay=False), required=False)
@click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None,
              help="Original or labelled declarations (joined on declaration_id): adds "
                   "breakdowns, and precision/recall/revenue when is_fraud is present.")
@click.option("--top", type=click.IntRange(min=0), default=50, show_default=True,
              help="Number of flagged declarations listed with their reasons (>= 0).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HTML file (self-contained: plots inlined, no network).")
@click.option("--summary", "summary", type=click.Path(dir_okay=False), default=None,
              help="The JSON summary `detector score` printed for SCORED: its batch health "
                   "(drift per feature) goes into the report.")
@_columns
@_encoding
@_force
@_errors
def report(model, scored, labels, top, output, summary, columns, encoding, force):
    """Write an HTML risk report from the output of `detector score` (MODEL SCORED), or
    from a `detector backtest` output folder (OUTDIR alone)."""
    from .report import is_backtest_dir, write_backtest_report, write_report

    if scored is None:
        if not is_backtest_dir(model):
            raise click.UsageError(f"SCORED is required unless {model!r} is a `detector "
                                   "backtest` output folder (with summary.json and "
                                   "periods.csv)")
        given = [n for n, v in (("--labels", labels), ("--summary", summary),
                                ("--columns", columns)) if v is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} apply to a scored file, not to a "
                                   "backtest folder")
        _note(f"building backtest report from {model}")
        result = write_backtest_report(model, output, force=force)
        _note(f"report: {len(result['strategies'])} strategies over {result['periods']} "
              f"periods, {result['images']} plot(s); wrote {output}")
        _out(result)
        return
    _note(f"building report from {scored}" + (f" and {labels}" if labels else ""))
    summary = write_report(model, scored, output, labels=labels, top=top, force=force,
                           columns=columns, encoding=encoding, summary=summary)
    _note(f"report: {summary['scored']:,} scored, {summary['rejected']:,} rejected, "
          f"{summary['flagged']:,} flagged, {summary['images']} plots; wrote {output} "
          f"({summary['bytes'] / 1024:,.0f} kB) in {summary['seconds']:.1f} s")
    _out(summary)


@main.command()
@click.argument("history", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--labels", required=True, metavar="COLUMN",
              help="0/1 inspection-outcome column (your name or the mapped one).")
@click.option("--revenue", default=None, metavar="COLUMN", help="Revenue recovered column.")
@click.option("--start", required=True, metavar="DATE",
              help="First replayed day (YYYY-MM-DD); everything before trains the model.")
@click.option("--period", default="7d", show_default=True, help="Length of one period.")
@click.option("--budget", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.10, show_default=True, help="Share of each period inspected.")
@click.option("--random", "random_share", type=float, default=0.01, show_default=True,
              callback=_share("--random"),
              help="Part of each period's budget selected at random, in [0, 1).")
@click.option("--strategy", "strategies", multiple=True,
              type=click.Choice(["hybrid", "forest", "outcomes", "random"]),
              help="Repeat for several; default hybrid.")
@click.option("--trees", type=click.IntRange(min=1), default=200, show_default=True,
              help="Trees in each period's isolation forest (>= 1).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the forests and the random selections (any integer).")
# The choices repeat backtest.REFIT_MODES because importing backtest here would load
# pandas for `detector --help`; tests/test_backtest.py checks that the two agree.
@click.option("--refit", type=click.Choice(["outcomes", "all"]), default="outcomes",
              show_default=True,
              help="Per period: refit only the outcome part (fast, as good on KCS) or "
                   "retrain everything.")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="OUTDIR for decisions.csv, periods.csv, summary.json and the plot.")
@_columns
@_encoding
@_force
@_errors
def backtest(history, labels, revenue, start, period, budget, random_share, strategies, trees,
             seed, refit, output_dir, columns, encoding, force):
    """Replay a labelled history period by period, learning only what was inspected."""
    from .backtest import run_backtest

    summary = run_backtest(list(history), output_dir, labels=labels, revenue=revenue,
                           columns=columns, start=start, period=period, budget=budget,
                           random_share=random_share, strategies=strategies or ("hybrid",),
                           seed=seed, trees=trees, refit=refit, encoding=encoding,
                           force=force, progress=_note)
    _out(summary)


if __name__ == "__main__":  # pragma: no cover
    main()
