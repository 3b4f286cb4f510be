"""Batch health (detector.health): drift per feature (PSI) and flagged share against the
budget, on real generated worlds, through score(), score_file and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from detector import health as H
from detector.synth import generate

DETECTOR = shutil.which("detector") or "detector"
TRAIN_ROWS = 4_000
BATCH_ROWS = 2_000


@pytest.fixture(scope="module")
def world_model():
    """A small fast model of world 0 (few trees, a few thousand rows)."""
    import detector

    return detector.train(generate(rows=TRAIN_ROWS, seed=1), trees=20, seed=0, budget=0.01,
                          lanes="red=0.01,yellow=0.04")


def shifted_batch(rows: int = BATCH_ROWS, seed: int = 5) -> pd.DataFrame:
    """Another trade: world 1's traders under new ids, dispatched through other countries."""
    df = generate(rows=rows, seed=seed, world=1)
    for c in ("exporter_id", "importer_id"):
        df[c] = "NEW-" + df[c].astype("str")
    countries = sorted(set(df["dispatch_country"].dropna().astype("str")))
    rot = dict(zip(countries, countries[3:] + countries[:3], strict=True))
    df["dispatch_country"] = df["dispatch_country"].map(rot)
    return df


# ---- the maths ----------------------------------------------------------------------------
def test_psi_known_values():
    assert H.psi(np.array([[10, 20, 70]]), np.array([[10, 20, 70]]))[0] == 0.0
    q, p = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    want = ((p - q) * np.log(p / q)).sum()
    assert H.psi(q[None] * 1000, p[None] * 1000)[0] == pytest.approx(want)
    # An empty bin on one side stays finite (floored), and padding bins count for nothing.
    assert np.isfinite(H.psi(np.array([[100, 0, 0]]), np.array([[0, 100, 0]])))[0]
    assert H.psi(np.array([[5, 5, 0]]), np.array([[5, 5, 0]]))[0] == 0.0


def test_bin_counts_kernel_equals_numpy(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5_000, 3))
    X[:, 2] = rng.integers(0, 3, 5_000)  # point masses sit on the edges
    ref = H.reference_bins(X, ["a", "b", "c"])
    Y = rng.normal(size=(4_000, 3)) * 2
    Y[::7, 0] = np.nan
    Y[::11, 1] = np.inf
    Y[:, 2] = rng.integers(-1, 4, 4_000)
    fast = H.bin_counts(ref, Y)
    monkeypatch.setenv("DETECTOR_NO_NUMBA", "1")
    slow = H.bin_counts(ref, Y)
    assert np.array_equal(fast, slow)
    assert (fast.sum(axis=1) == len(Y)).all()
    assert fast[0, -1] == len(Y[::7]) and fast[1, -1] == len(Y[::11])
    # Chunks add up to the whole.
    parts = H.bin_counts(ref, Y[:1234]) + H.bin_counts(ref, Y[1234:])
    assert np.array_equal(parts, fast)


def test_novelty_features_have_a_never_seen_bin():
    x = np.r_[np.full(800, 0.01), np.full(200, 1.0)]  # 20% never seen
    ref = H.reference_bins(x[:, None], ["exporter_history"], {"exporter_history": "history"})
    counts = H.bin_counts(ref, np.full((1000, 1), 1.0))
    h = H.batch_health(ref, counts, n_scored=1000, flagged=10, lanes={"red": 10, "green": 990},
                       budget=0.01, lane_shares={"red": 0.01})
    top = h["drift"]["top"][0]
    assert top["feature"] == "exporter_history" and top["level"] == "significant"
    assert top["sentence"] == ("100% of rows have an exporter never seen in training "
                               "(training: 20%)")


def test_flagged_share_rule():
    ok = H.share_check(10, 1000, 0.01, 100_000)
    assert ok["within_noise"] is True
    se = np.sqrt(0.01 * 0.99 * (1 / 1000 + 1 / 100_000))
    assert ok["high"] == pytest.approx(0.01 + H.NOISE_SE * se)
    assert H.share_check(40, 1000, 0.01, 100_000)["within_noise"] is False
    # Too few rows: no verdict either way.
    assert H.share_check(40, H.MIN_HEALTH_ROWS - 1, 0.01, 100_000)["within_noise"] is None


# ---- on generated worlds ------------------------------------------------------------------
def test_shifted_world_warns_and_names_the_features(world_model):
    h = world_model.score(shifted_batch()).attrs["health"]
    assert h["warnings"], h
    drifting = {t["feature"] for t in h["drift"]["top"] if t["level"] == "significant"}
    assert {"exporter_history", "importer_history"} <= drifting
    text = " ".join(h["warnings"])
    assert "drift in exporter_history" in text
    assert "of rows have an exporter never seen in training" in text
    assert h["drift"]["psi"]["exporter_history"] > H.PSI_SIGNIFICANT


def test_same_world_false_alarm_rate(world_model):
    """20 periods of the trade the model was trained on: at most 1 warns."""
    alarms, worst = [], []
    for seed in range(100, 120):
        h = world_model.score(generate(rows=BATCH_ROWS, seed=seed), reasons="codes") \
            .attrs["health"]
        worst.append(max(h["drift"]["psi"].values()))
        if h["warnings"]:
            alarms.append((seed, h["warnings"]))
    print(f"false alarms {len(alarms)}/20; largest PSI per batch: median "
          f"{np.median(worst):.3f}, max {max(worst):.3f}")
    assert len(alarms) <= 1, alarms


def test_chunk_size_does_not_change_health(world_model, tmp_path):
    from detector.jobs import score_file

    df = shifted_batch(rows=3_000).iloc[:3_000]
    df = pd.concat([df, generate(rows=2_000, seed=7)], ignore_index=True)
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    runs = [score_file(world_model, src, tmp_path / f"o{c}.csv", chunk_rows=c, threads=t)
            ["health"] for c, t in ((512, 1), (1_700, 2), (100_000, 1))]
    assert runs[0] == runs[1] == runs[2]
    whole = world_model.score(df).attrs["health"]
    assert whole["drift"]["psi"] == runs[0]["drift"]["psi"]
    assert whole["flagged"] == runs[0]["flagged"]


def test_capacity_does_not_hide_the_lane_shares(world_model, tmp_path):
    from detector.jobs import score_file

    src = tmp_path / "in.csv"
    generate(rows=2_000, seed=8).to_csv(src, index=False)
    free = score_file(world_model, src, tmp_path / "a.csv")
    capped = score_file(world_model, src, tmp_path / "b.csv", capacity=3)
    assert capped["capacity"]["moved"] > 0
    # Health reports the model's verdicts, before the cap moved rows.
    assert capped["health"]["lanes"] == free["health"]["lanes"]


def test_old_model_file_without_references_still_scores(world_model, tmp_path):
    from detector.artifact import save_artifact
    from detector.model import load_model

    state = world_model.to_state()
    del state["health"]  # what a file written before drift references holds
    path = tmp_path / "old.joblib"
    save_artifact(path, state, world_model.metadata_)
    old = load_model(path)
    assert not hasattr(old, "health_reference_")
    df = shifted_batch(rows=1_000)
    out = old.score(df)
    new = world_model.score(df)
    assert out["anomaly_score"].equals(new["anomaly_score"])
    h = out.attrs["health"]
    assert h["drift"] == {"available": False, "why": H.NO_REFERENCE}
    assert h["flagged"] == new.attrs["health"]["flagged"]
    # The CLI scores it, says why there is no drift section, and stdout stays JSON.
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    proc = subprocess.run([DETECTOR, "score", str(path), str(src), "-o",
                           str(tmp_path / "o.csv")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "health: no drift section" in proc.stderr
    assert json.loads(proc.stdout)["health"]["drift"]["available"] is False


def test_cli_warns_on_stderr_and_report_shows_it(world_model, tmp_path):
    model = tmp_path / "m.joblib"
    world_model.save(model)
    src = tmp_path / "shift.csv"
    shifted_batch().to_csv(src, index=False)
    proc = subprocess.run([DETECTOR, "score", str(model), str(src), "-o",
                           str(tmp_path / "s.csv")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: drift in exporter_history" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["health"]["warnings"]
    (tmp_path / "sum.json").write_text(proc.stdout)
    for extra, want in (([], "Drift per feature needs the batch"),
                        (["--summary", str(tmp_path / "sum.json")], "Drifting features")):
        out = tmp_path / f"r{len(extra)}.html"
        rep = subprocess.run([DETECTOR, "report", str(model), str(tmp_path / "s.csv"), "-o",
                              str(out), *extra], capture_output=True, text=True)
        assert rep.returncode == 0, rep.stderr
        html = out.read_text()
        assert "Batch health" in html and want in html
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    rep = subprocess.run([DETECTOR, "report", str(model), str(tmp_path / "s.csv"), "-o",
                          str(tmp_path / "x.html"), "--summary", str(bad)],
                         capture_output=True, text=True)
    assert rep.returncode == 1 and "not a `detector score` JSON summary" in rep.stderr


# ---- capacity on a flooded batch ---------------------------------------------------------
def test_capacity_holds_the_first_lane_at_n_on_the_shifted_batch(world_model):
    batch = shifted_batch()
    free = world_model.score(batch, reasons="codes")
    red = int((free["lane"] == "red").sum())
    assert red > 40, red  # the shifted batch floods the red lane
    capped = world_model.score(batch, reasons="codes", capacity=25)
    assert int((capped["lane"] == "red").sum()) == 25
    moved = (free["lane"] == "red") & (capped["lane"] != "red")
    assert capped.attrs["capacity"]["moved"] == int(moved.sum()) == red - 25
    assert (capped.loc[moved, "lane"] == "yellow").all()  # to the next lane, counted
    # a normal batch under a capacity it does not reach: the same output
    normal = generate(rows=BATCH_ROWS, seed=101)
    plain = world_model.score(normal, reasons="codes")
    roomy = world_model.score(normal, reasons="codes",
                              capacity=int((plain["lane"] == "red").sum()) + 5)
    pd.testing.assert_frame_equal(roomy, plain, check_like=False)
    assert roomy.attrs["capacity"]["moved"] == 0


def test_capacity_with_ties_at_the_cut(world_model, tmp_path):
    """Fifty copies of one red declaration score the same: the cut keeps the random picks,
    then the best ranked, ties in input order, on a frame and a streamed file alike."""
    from detector.jobs import score_file

    batch = shifted_batch()
    free = world_model.score(batch, reasons="codes")
    one = batch[(free["lane"] == "red").to_numpy()].iloc[[0]]
    copies = pd.concat([one] * 50, ignore_index=True)
    copies["declaration_id"] = [f"TIE-{i:03d}" for i in range(50)]
    df = pd.concat([batch, copies], ignore_index=True)
    scored = world_model.score(df, reasons="codes")
    tied = scored.iloc[-50:]
    assert tied["anomaly_score"].nunique() == 1 and (tied["lane"] == "red").all()
    n_red = int((scored["lane"] == "red").sum())
    # the cut falls inside the tied block: everything ranked above it stays red
    above = int((scored["anomaly_score"] > tied["anomaly_score"].iloc[0]).sum())
    cap = above + 20
    assert cap < n_red
    capped = world_model.score(df, reasons="codes", capacity=cap)
    assert int((capped["lane"] == "red").sum()) == cap
    kept = capped.iloc[-50:]["lane"].eq("red").to_numpy()
    picks = scored.iloc[-50:]["random_selected"].to_numpy()
    assert kept[picks].all()  # random picks are never cut
    ranks = scored.iloc[-50:]["rank"].to_numpy()
    assert (np.diff(ranks) > 0).all()  # ties ranked in input order
    # the non-picks kept are the first by rank
    rest = np.flatnonzero(~picks)
    assert 0 < kept[rest].sum() < len(rest)  # the cut is inside the tie
    assert kept[rest].tolist() == sorted(kept[rest].tolist(), reverse=True)
    src = tmp_path / "ties.csv"
    df.to_csv(src, index=False)
    score_file(world_model, src, tmp_path / "o.csv", chunk_rows=700, capacity=cap,
               reasons="codes")
    out = pd.read_csv(tmp_path / "o.csv", dtype={"declaration_id": "str"})
    assert out["lane"].tolist() == capped["lane"].tolist()
