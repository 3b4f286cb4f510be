"""Reason modes (officer / all / codes) against golden outputs of the code before them.

The golden files (tests/data/golden, made by make_golden.py there) are the whole CSV
output of `detector score` on 4,000 generated rows and on data/sample.csv with the suite's
fixture model, from the code that gave sentences on every row. ``--reasons all`` must
give those bytes; the other modes must give the same sentences where they give sentences
and exactly those sentences' codes elsewhere.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from detector.reasons import DEFAULT_EXPLAIN_TOP, REASON_MODES, as_codes

GOLDEN = Path(__file__).parent / "data" / "golden"
ROOT = Path(__file__).parents[1]


def _cells(text: str) -> list[str]:
    return text.split(" | ") if text else []


def _golden(name: str) -> pd.DataFrame:
    import io

    raw = gzip.decompress((GOLDEN / f"{name}.scored.csv.gz").read_bytes())
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def inputs(test_df, tmp_path_factory):
    d = tmp_path_factory.mktemp("modes")
    test_df.to_csv(d / "generated.csv", index=False)
    return {"generated": d / "generated.csv", "sample": ROOT / "data" / "sample.csv"}


def _score(model_path, src, out, *args) -> pd.DataFrame:
    subprocess.run(["detector", "score", str(model_path), str(src), "-o", str(out), *args],
                   check=True, capture_output=True)
    return pd.read_csv(out, dtype=str, keep_default_na=False)


def _expected(gold: pd.DataFrame, mode: str, top: int) -> list[list[str]]:
    """Each row's reasons in ``mode`` from the golden sentences."""
    out = []
    for lane, rnd, rank, text in zip(gold["lane"], gold["random_selected"], gold["rank"],
                                     gold["reasons"], strict=True):
        said = mode == "all" or (mode == "officer" and (
            lane != "green" or rnd == "True" or (rank != "" and int(rank) <= top)))
        out.append(_cells(text) if said else as_codes(_cells(text)))
    return out


@pytest.mark.parametrize("name", ["generated", "sample"])
def test_all_is_todays_output_byte_for_byte(model_path, inputs, tmp_path, name):
    out = tmp_path / "all.csv"
    _score(model_path, inputs[name], out, "--reasons", "all")
    assert out.read_bytes() == gzip.decompress((GOLDEN / f"{name}.scored.csv.gz").read_bytes())


@pytest.mark.parametrize("name", ["generated", "sample"])
@pytest.mark.parametrize("mode,top,chunk", [("officer", DEFAULT_EXPLAIN_TOP, 100_000),
                                            ("officer", 150, 700), ("officer", 0, 100_000),
                                            ("codes", DEFAULT_EXPLAIN_TOP, 900)])
def test_sentences_and_codes_match_golden(model_path, inputs, tmp_path, name, mode, top,
                                          chunk):
    gold = _golden(name)
    got = _score(model_path, inputs[name], tmp_path / "o.csv", "--reasons", mode,
                 "--explain-top", str(top), "--chunk-rows", str(chunk))
    # Everything but the reasons is the same as today.
    pd.testing.assert_frame_equal(got.drop(columns="reasons"), gold.drop(columns="reasons"))
    want = _expected(gold, mode, top)
    assert [_cells(t) for t in got["reasons"]] == want
    if mode == "codes":
        assert not got["reasons"].str.contains(":").any()
    else:  # the modes differ on these data: the test could fail either way
        n_codes = sum(w != _cells(t) for w, t in zip(want, gold["reasons"], strict=True))
        assert n_codes > 0


def test_officer_top_is_the_files_whatever_the_chunking(model_path, inputs, tmp_path):
    a = _score(model_path, inputs["generated"], tmp_path / "a.csv", "--explain-top", "300")
    b = _score(model_path, inputs["generated"], tmp_path / "b.csv", "--explain-top", "300",
               "--chunk-rows", "250", "--threads", "2")
    pd.testing.assert_frame_equal(a, b)


def test_officer_top_in_parquet_and_jsonl_outputs(model_path, inputs, tmp_path):
    gold = _golden("generated")
    want = _expected(gold, "officer", 150)
    for ext in ("parquet", "jsonl"):
        out = tmp_path / f"o_{ext}.{ext}"  # each with its own rejects file
        subprocess.run(["detector", "score", str(model_path), str(inputs["generated"]), "-o",
                        str(out), "--explain-top", "150", "--chunk-rows", "700"], check=True,
                       capture_output=True)
        got = pd.read_parquet(out) if ext == "parquet" else pd.read_json(out, lines=True)
        assert [list(r) for r in got["reasons"]] == want, ext


@pytest.mark.parametrize("mode", REASON_MODES)
def test_score_frame_honours_mode(model, test_df, mode):
    gold = _golden("generated")
    got = model.score(test_df, reasons=mode, explain_top=500)
    assert [list(r) for r in got["reasons"]] == _expected(gold, mode, 500)


@pytest.mark.parametrize("mode", REASON_MODES)
def test_score_one_honours_mode(model, test_df, mode):
    from detector.features import DeclarationFeatures
    from detector.validate import validate

    gold = _golden("generated").set_index("declaration_id")
    # The file's parcel-burst counts, as the file path has them.
    context = DeclarationFeatures.burst_context(validate(test_df).valid)
    rows = test_df.iloc[:300]
    for rec in rows.to_dict("records"):
        g = gold.loc[rec["declaration_id"]]
        said = mode == "all" or (mode == "officer" and (g["lane"] != "green"
                                                        or g["random_selected"] == "True"))
        want = _cells(g["reasons"]) if said else as_codes(_cells(g["reasons"]))
        assert model.score_one(rec, context, reasons=mode)["reasons"] == want


def test_dask_honours_mode(model, test_df, tmp_path):
    pytest.importorskip("distributed")
    from detector.distributed import score_dask

    src = tmp_path / "in.csv"
    test_df.to_csv(src, index=False)
    gold = _golden("generated")
    for mode, top in (("officer", 120), ("codes", 0), ("all", 0)):
        out = tmp_path / f"d-{mode}"
        score_dask(model, src, out, processes=False, partition_rows=900, reasons=mode,
                   explain_top=top)
        got = pd.read_parquet(out).set_index("declaration_id").loc[gold["declaration_id"]]
        assert [list(r) for r in got["reasons"]] == _expected(gold, mode, top), mode


def test_bad_mode_is_refused(model, test_df, model_path, inputs, tmp_path):
    with pytest.raises(ValueError, match="reasons must be one of officer, all, codes"):
        model.score(test_df.head(5), reasons="some")
    res = subprocess.run(["detector", "score", str(model_path), str(inputs["sample"]), "-o",
                          str(tmp_path / "x.csv"), "--reasons", "some"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "'some' is not one of" in res.stderr


def test_cli_choices_are_the_modules():
    from click.testing import CliRunner

    from detector.cli import main

    help_text = CliRunner().invoke(main, ["score", "--help"]).output
    assert "[officer|all|codes]" in help_text and tuple(REASON_MODES) == ("officer", "all",
                                                                          "codes")
    assert f"default: {DEFAULT_EXPLAIN_TOP}" in help_text
