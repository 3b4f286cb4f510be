"""`detector report`: one self-contained HTML file, checked as text and in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import detector
from detector.cli import main
from detector.jobs import rejects_path, score_file

TOP = 10
EVIL = "<script>alert('pwned')</script> ceramic tiles"
CHROMIUM_MISSING = "chromium not installed: the project's scripts/test.sh installs it with apt-get"


class _Page(HTMLParser):
    """Counts what matters: rows of the top table, inline PNGs, scripts, external refs."""

    def __init__(self) -> None:
        super().__init__()
        self.top_rows = 0
        self.top_tables = 0
        self.images: list[str] = []
        self.scripts = 0
        self.external: list[str] = []
        self._in_top = False
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "action", "data", "poster"):
            v = a.get(key) or ""
            if v and not v.startswith("data:"):
                self.external.append(v)
        if tag == "script":
            self.scripts += 1
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "table" and a.get("class") == "top":
            self._in_top = True
            self.top_tables += 1
        elif tag == "tbody" and self._in_top:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.top_rows += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_top = False


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("report")
    model = detector.train(detector.generate(rows=3000, seed=1), trees=50)
    model_path = d / "model.joblib"
    model.save(model_path)
    test = detector.generate(rows=1500, seed=2)
    fraud_rows = np.flatnonzero(test["is_fraud"].to_numpy() == 1)
    test.loc[fraud_rows[:5], "description"] = EVIL  # a trader writes HTML in a description
    test["net_mass_kg"] = test["net_mass_kg"].astype(object)
    test.loc[7, "net_mass_kg"] = "heavy"  # one reject
    labelled = d / "labelled.csv"
    test.to_csv(labelled, index=False)
    scored = d / "scored.csv"
    summary = score_file(model_path, labelled, scored)
    assert summary["rejected"] == 1 and summary["flagged"] > TOP
    # The report takes descriptions from INPUT: make sure hostile text reaches the top
    # table, whatever the ranking, by planting it on the top-ranked declarations too.
    ranks = pd.read_csv(scored).set_index("declaration_id")["rank"]
    top_ids = set(ranks[ranks <= 3].index)
    test.loc[test["declaration_id"].isin(top_ids), "description"] = EVIL
    test.to_csv(labelled, index=False)
    out = d / "report.html"
    res = CliRunner().invoke(main, ["report", str(model_path), str(scored), "--labels",
                                    str(labelled), "--top", str(TOP), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return {"dir": d, "model": model_path, "scored": scored, "labelled": labelled,
            "report": out, "summary": summary, "stdout": res.stdout}


def test_report_is_self_contained_html(files):
    text = files["report"].read_text(encoding="utf-8")
    page = _parse(text)
    assert text.startswith("<!DOCTYPE html>")
    assert page.top_tables == 1 and page.top_rows == TOP
    assert len(page.images) >= 3  # histogram, budget curves, recall by scheme
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/]{1000,}={0,2}"', text)
    assert not re.search(r"https?://", text), "the report must not reference the network"
    assert page.external == [] and page.scripts == 0


def test_report_escapes_trader_text(files):
    text = files["report"].read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in text


def test_report_summary_counts(files):
    out = json.loads(files["stdout"])
    s = files["summary"]
    assert out["rows"] == s["rows"] == 1500
    assert out["rejected"] == 1 and out["scored"] == s["scored"] == 1499
    assert out["flagged"] == s["flagged"] and out["lanes"] == s["lanes"]
    assert out["top_listed"] == TOP and out["labelled"] is True
    assert rejects_path(files["scored"]).exists()
    text = files["report"].read_text(encoding="utf-8")
    for heading in ("Summary", "Score distribution", "Breakdowns", "By HS chapter",
                    "By origin country", "By transport mode", "How the model did",
                    "Recall at 5% by fraud scheme"):
        assert heading in text
    model = detector.load_model(files["model"])
    assert f"{model.threshold_:.4f}" in text
    assert f"{model.metadata_['training']['rows']:,}" in text


def test_existing_output_needs_force(files):
    args = ["report", str(files["model"]), str(files["scored"]), "-o", str(files["report"])]
    before = files["report"].read_bytes()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1
    assert "exists" in res.output and "--force" in res.output
    assert files["report"].read_bytes() == before


def test_report_without_labels_from_parquet_subprocess(files, tmp_path):
    """The real entry point, Parquet scores, no INPUT: summary, histogram and table only."""
    scored = tmp_path / "scored.parquet"
    score_file(files["model"], files["labelled"], scored)
    out = tmp_path / "plain.html"
    proc = subprocess.run([sys.executable, "-m", "detector.cli", "report", str(files["model"]),
                           str(scored), "-o", str(out), "--top", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and json.loads(proc.stdout)["rejected"] == 1
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    assert page.top_rows == 3 and len(page.images) == 1
    assert "Breakdowns" not in text and "How the model did" not in text


def test_empty_scores_still_make_a_page(files):
    from detector.report import SCORED_COLUMNS, build_report

    model = detector.load_model(files["model"])
    empty = pd.DataFrame({c: [] for c in SCORED_COLUMNS})
    text = build_report(model, empty, rejects_count=4)
    assert "No declaration was scored" in text and "No declaration is flagged" in text
    assert _parse(text).top_tables == 0


def test_import_does_not_load_matplotlib():
    code = ("import sys, detector.report; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip(CHROMIUM_MISSING)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium(files, tmp_path):
    import matplotlib.image as mpimg

    url = files["report"].resolve().as_uri()
    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.exists(), f"no screenshot; chromium said: {proc.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique(pixels[::8, ::8, :3].reshape(-1, 3), axis=0)
    assert len(colours) > 20, "the screenshot is (nearly) a single colour"

    dom = _chromium(tmp_path, "--dump-dom", url).stdout
    page = _parse(dom)
    assert page.top_tables == 1 and page.top_rows == TOP
    assert len(page.images) >= 3
    assert page.scripts == 0  # the trader's <script> stayed text
    assert "alert('pwned')" in dom.replace("&#x27;", "'").replace("&#39;", "'")
