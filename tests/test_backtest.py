"""`detector backtest`: the replay learns only what was inspected, and its outputs agree."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from detector.backtest import period_counts, run_backtest
from detector.errors import InputError
from detector.synth import generate

START = "2025-10-01"


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> pd.DataFrame:
    df = generate(rows=1500, seed=3, fraud_rate=0.08)
    return df


def _write(df: pd.DataFrame, path) -> str:
    df.to_csv(path, index=False)
    return str(path)


def _run(df, tmp_path, name, strategies=("forest",), **kw):
    src = _write(df, tmp_path / f"{name}.csv")
    out = tmp_path / name
    kw.setdefault("period", "30d")
    summary = run_backtest([src], out, labels="is_fraud", revenue="revenue", start=START,
                           strategies=strategies, trees=20, seed=kw.pop("seed", 0),
                           progress=lambda line: None, **kw)
    return summary, pd.read_csv(out / "decisions.csv"), pd.read_csv(out / "periods.csv")


@pytest.mark.parametrize("refit", ["outcomes", "all"])
def test_planted_labels_on_unselected_rows_change_no_decision(history, tmp_path, refit):
    # Two periods: the first one's outcomes (planted or not) feed the model that scores
    # the second. hybrid is the outcome-trained model (outcomes ranks by the same fit).
    summary, dec, _ = _run(history, tmp_path, "base", strategies=("hybrid",), period="60d",
                           refit=refit)
    assert summary["periods"] == 2
    unselected = set(dec.loc[~dec["selected"], "declaration_id"])
    planted = history.copy()
    rows = planted["declaration_id"].isin(unselected).to_numpy()
    # Every unselected row becomes a fraud with a large revenue: if any of it reached a
    # model, later scores would move.
    planted.loc[rows, "is_fraud"] = 1
    planted.loc[rows, "revenue"] = 1e6
    _, dec2, per2 = _run(planted, tmp_path, "planted", strategies=("hybrid",), period="60d",
                         refit=refit)
    cols = ["declaration_id", "period", "strategy", "score", "rank", "selected", "selected_by"]
    pd.testing.assert_frame_equal(dec[cols], dec2[cols])
    assert per2["frauds"].sum() > summary["strategies"]["hybrid"]["frauds"]  # planting took


def test_refit_outcomes_learns_the_revealed_rows(history, tmp_path):
    # Planting on SELECTED rows must move the second period's scores: the per-period
    # refit of the outcome part really learns what was revealed.
    summary, dec, _ = _run(history, tmp_path, "base", strategies=("hybrid",), period="60d")
    assert summary["refit"] == "outcomes"
    first = dec[(dec["period"] == 0) & dec["selected"]]["declaration_id"]
    planted = history.copy()
    planted["is_fraud"] = np.where(planted["declaration_id"].isin(set(first)),
                                   1 - planted["is_fraud"].astype(int), planted["is_fraud"])
    _, dec2, _ = _run(planted, tmp_path, "flipped", strategies=("hybrid",), period="60d")
    second = dec["period"] == 1
    assert not np.allclose(dec.loc[second, "score"], dec2.loc[second, "score"])


def test_unknown_refit_mode_is_refused(history, tmp_path):
    with pytest.raises(InputError, match="refit must be one of"):
        _run(history, tmp_path, "bad", refit="sometimes")


def test_periods_csv_recomputed_from_decisions(history, tmp_path):
    summary, dec, per = _run(history, tmp_path, "agree", strategies=("forest", "random"))
    truth = history.set_index("declaration_id")
    dec["y"] = truth.loc[dec["declaration_id"], "is_fraud"].to_numpy()
    dec["rev"] = truth.loc[dec["declaration_id"], "revenue"].to_numpy()
    for (strategy, period), g in dec.groupby(["strategy", "period"]):
        row = per[(per["strategy"] == strategy) & (per["period"] == period)].iloc[0]
        sel = g[g["selected"]]
        assert row["rows"] == len(g)
        assert row["selected"] == len(sel)
        assert row["frauds"] == (g["y"] == 1).sum()
        assert row["frauds_found"] == (sel["y"] == 1).sum()
        assert row["revenue_found"] == pytest.approx(sel["rev"].sum())
        if len(sel):
            assert row["precision"] == pytest.approx((sel["y"] == 1).mean())
        n_rank, n_rand = period_counts(len(g), 0.10, 0.01)
        if strategy == "random":
            assert (sel["selected_by"] == "random").sum() == n_rank + n_rand
        else:
            assert (sel["selected_by"] == "rank").sum() == n_rank
            assert (sel["selected_by"] == "random").sum() == n_rand
            # The rank picks are the top ranks; random picks come from below them.
            assert set(sel.loc[sel["selected_by"] == "rank", "rank"]) == set(range(1, n_rank + 1))
            assert (sel.loc[sel["selected_by"] == "random", "rank"] > n_rank).all()
    for strategy, s in summary["strategies"].items():
        p = per[per["strategy"] == strategy]
        assert s["frauds_found"] == p["frauds_found"].sum()
        assert s["precision"] == pytest.approx(p["frauds_found"].sum() / p["selected"].sum())


def test_same_seed_same_decisions_other_seed_other_random_picks(history, tmp_path):
    _, a, _ = _run(history, tmp_path, "a", strategies=("forest", "random"), seed=5)
    _, b, _ = _run(history, tmp_path, "b", strategies=("forest", "random"), seed=5)
    _, c, _ = _run(history, tmp_path, "c", strategies=("forest", "random"), seed=6)
    pd.testing.assert_frame_equal(a, b)
    ra, rc = a[a["strategy"] == "random"], c[c["strategy"] == "random"]
    assert not ra["selected"].equals(rc["selected"])


def test_empty_periods_no_frauds_and_zero_budget_period(history, tmp_path):
    df = history.copy()
    dates = pd.to_datetime(df["date"])
    late = (dates >= pd.Timestamp(START)).to_numpy()
    # A gap: nothing declared in the second week; the third week keeps 4 rows, all honest
    # (10% of 4 rounds to 0 selected).
    wk = ((dates - pd.Timestamp(START)).dt.days // 7).to_numpy()
    drop = late & ((wk == 1) | ((wk == 2) & (np.cumsum(wk == 2) > 4)))
    df = df[~drop].copy()
    df.loc[late[~drop] & (wk[~drop] == 2), "is_fraud"] = 0
    summary, dec, per = _run(df, tmp_path, "gaps", period="7d")
    p = per.set_index("period")
    assert p.loc[1, "rows"] == 0 and p.loc[1, "selected"] == 0
    assert np.isnan(p.loc[1, "precision"]) and np.isnan(p.loc[1, "recall"])
    assert p.loc[2, "rows"] == 4 and p.loc[2, "selected"] == 0 and p.loc[2, "frauds"] == 0
    assert np.isnan(p.loc[2, "recall"])
    assert summary["replayed_rows"] == p["rows"].sum() == len(dec)


def test_history_without_dates_names_the_column(history, tmp_path):
    src = _write(history.drop(columns=["date"]), tmp_path / "nodate.csv")
    r = subprocess.run(["detector", "backtest", src, "--labels", "is_fraud", "--start", START,
                        "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1
    assert "date column" in r.stderr and "Traceback" not in r.stderr
    bad = history.copy()
    bad.loc[bad.index[:3], "date"] = "31/12/2025"
    src = _write(bad, tmp_path / "baddate.csv")
    r = subprocess.run(["detector", "backtest", src, "--labels", "is_fraud", "--start", START,
                        "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1
    assert "column date" in r.stderr and "3 of 1500 rows" in r.stderr
    assert str(bad["declaration_id"].iloc[0]) in r.stderr


def test_cli_writes_every_output_and_one_progress_line_per_period(history, tmp_path):
    a = _write(history.iloc[:800], tmp_path / "a.csv")
    b = _write(history.iloc[800:], tmp_path / "b.csv")  # several files are concatenated
    out = tmp_path / "cli"
    r = subprocess.run(["detector", "backtest", a, b, "--labels", "is_fraud", "--start", START,
                        "--period", "30d", "--strategy", "forest", "--strategy", "random",
                        "--trees", "20", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["replayed_rows"] + summary["trained_before_start"] + summary["rejected"] \
        == len(history)
    lines = [x for x in r.stderr.splitlines() if " period " in x]
    assert len(lines) == 2 * summary["periods"]
    assert (out / "periods.csv").exists() and (out / "rejects.csv").exists()
    r2 = subprocess.run(["detector", "backtest", a, "--labels", "is_fraud", "--start", START,
                         "-o", str(out)], capture_output=True, text=True)
    assert r2.returncode == 1 and "--force" in r2.stderr


def test_cli_refit_option_reaches_the_replay_and_matches_the_library(history, tmp_path):
    import click

    from detector import cli
    from detector.backtest import REFIT_MODES

    param = next(p for p in cli.backtest.params if p.name == "refit")
    assert isinstance(param.type, click.Choice) and tuple(param.type.choices) == REFIT_MODES
    src = _write(history, tmp_path / "h.csv")
    out = tmp_path / "all"
    r = subprocess.run(["detector", "backtest", src, "--labels", "is_fraud", "--start", START,
                        "--period", "30d", "--trees", "10", "--refit", "all", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["refit"] == "all"
    r = subprocess.run(["detector", "backtest", src, "--labels", "is_fraud", "--start", START,
                        "--refit", "some", "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "'some' is not one of" in r.stderr


def test_report_pointed_at_the_backtest_folder(history, tmp_path):
    summary, _, periods = _run(history, tmp_path, "rep", strategies=("forest", "random"))
    out = tmp_path / "rep"
    html_path = tmp_path / "backtest.html"
    r = subprocess.run(["detector", "report", str(out), "-o", str(html_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["strategies"] == ["forest", "random"]
    assert result["periods"] == summary["periods"]
    text = html_path.read_text(encoding="utf-8")
    # One row per strategy and period in the per-period table, plus the cumulative rows.
    assert text.count("<tr>") >= len(periods) + len(summary["strategies"])
    for name, v in summary["strategies"].items():
        assert f"<td>{name}</td>" in text and f"{v['precision']:.1%}" in text
    assert (result["images"] == 1) == (out / "precision_recall.png").exists()
    assert "<script" not in text
    # The scored-file options do not apply to a folder; a folder that is not a backtest's
    # and a model without SCORED are usage errors (exit 2) that say what is expected.
    for extra in (["--labels", "x.csv"], ["--summary", "s.json"]):
        r = subprocess.run(["detector", "report", str(out), "-o", str(tmp_path / "x.html"),
                            *extra], capture_output=True, text=True)
        assert r.returncode == 2 and extra[0] in r.stderr
    r = subprocess.run(["detector", "report", str(tmp_path), "-o", str(tmp_path / "y.html")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "SCORED is required" in r.stderr
    r = subprocess.run(["detector", "report", str(out), "-o", str(html_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--force" in r.stderr
