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
from detector.io import rejects_path
from detector.jobs import score_file

TOP = 10
EVIL = "<script>alert('pwned')</script> ceramic tiles"
CHROMIUM_MISSING = ("chromium not installed: run `bash scripts/test.sh --with-browser` (installs "
                    "Debian's chromium with apt-get; CI does it always)")


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


def _page_width(tmp_path: Path, report: Path, width: int) -> tuple[int, int]:
    """(document scrollWidth, viewport width) of the report in headless chromium.

    The report has no script and its CSP forbids one, so a copy without the CSP gets a
    one-line script that writes both widths into the title, read back with --dump-dom.
    """
    text = report.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    probe = ("<script>document.title = 'W:' + document.documentElement.scrollWidth + ':' "
             "+ window.innerWidth;</script>")
    copy = tmp_path / f"probe_{width}.html"
    copy.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, f"--window-size={width},900", "--hide-scrollbars",
                    "--dump-dom", copy.resolve().as_uri()).stdout
    m = re.search(r"<title>W:(\d+):(\d+)</title>", dom)
    assert m, f"no measurement in the DOM: {dom[:500]}"
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("width", [1280, 800])
def test_report_fits_the_window_without_horizontal_scrolling(files, tmp_path, width):
    scroll, viewport = _page_width(tmp_path, files["report"], width)
    assert viewport == width
    assert scroll <= viewport, f"page is {scroll} px wide in a {viewport} px window"


def test_width_probe_sees_a_page_that_overflows(files, tmp_path):
    """The probe can fail: a page with a 2,000 px block is measured as wider."""
    wide = tmp_path / "wide.html"
    wide.write_text(files["report"].read_text(encoding="utf-8").replace(
        "</body>", '<div style="width:2000px">x</div></body>'), encoding="utf-8")
    scroll, viewport = _page_width(tmp_path, wide, 1280)
    assert viewport == 1280 and scroll >= 2000


def test_lane_shares_split_by_rank_and_at_random(tmp_path):
    """A real model with lanes and a random share: the report's lane table matches the file."""
    from detector.report import lane_split

    model = detector.train(detector.generate(rows=3000, seed=1), trees=50,
                           lanes="red=0.01,yellow=0.04", random_share=0.05)
    model_path = tmp_path / "lanes.joblib"
    model.save(model_path)
    data = tmp_path / "test.csv"
    detector.generate(rows=4000, seed=2).to_csv(data, index=False)
    scored = tmp_path / "scored.csv"
    score_file(model_path, data, scored)
    out = tmp_path / "lanes.html"
    res = CliRunner().invoke(main, ["report", str(model_path), str(scored), "-o", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(scored, dtype={"lane": str})
    red_random = df[(df["lane"] == "red") & df["random_selected"]]
    # the rule: random selections below every lane threshold were put in the first lane ...
    assert (red_random["anomaly_score"] < model.lane_thresholds_["yellow"]).any()
    # ... those the rank had put in yellow stayed yellow, and no random one is green
    assert (df[df["random_selected"]]["lane"] != "green").all()
    assert ((df["lane"] == "yellow") & df["random_selected"]).any()
    split = lane_split(df)
    assert split.loc["red", "at_random"] == len(red_random)
    assert split.loc["red", "by_rank"] == int(((df["lane"] == "red")
                                               & ~df["random_selected"]).sum())
    assert split.loc["green", "at_random"] == 0
    assert int(split["declarations"].sum()) == len(df)
    text = out.read_text(encoding="utf-8")
    assert "chosen by rank" in text and "chosen at random" in text
    assert "would have been green goes to the first lane (red)" in text
    n = len(df)
    by_rank, at_rand = int(split.loc["red", "by_rank"]), int(split.loc["red", "at_random"])
    assert f"{by_rank:,} ({by_rank / n:.1%})" in text
    assert f"{at_rand:,} ({at_rand / n:.1%})" in text
