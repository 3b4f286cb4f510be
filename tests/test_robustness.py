"""Hard to break: random damage through the library entry points, concurrency, soft problems.

* Property/fuzz tests (hypothesis): random frames built from real generated declarations,
  with random damage (wrong types, NaN, inf, empty strings, unicode incl. RTL / emoji /
  zero-width, huge numbers, shuffled and extra columns, missing optional columns), written
  to CSV and Parquet and scored with ``detector.jobs.score_file`` AND ``model.score(df)``:
  never an unhandled exception (a ``DetectorError`` is acceptable only for a whole-file
  problem) and rows in = rows scored + rows rejected, each input row exactly once.
* ``model.score_one`` on random damaged dicts never raises; status is scored or rejected.
* Under load: ``score`` / ``score_one`` from 8 threads give exactly the serial results.
* Soft problems (unseen hs code / origin, a mass 1000x typical) are scored, not rejected.

The model is trained once per session (10k generated rows, 50 trees) and shared with
tests/test_cli_bad_inputs.py through the session's base temp dir.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detector
from detector.errors import DetectorError
from detector.io import CSV_INJECTION_PREFIXES, rejects_path
from detector.jobs import score_file
from detector.model import DeclarationModel

KEY = "DETECTOR_MODEL_KEY"
REQUIRED = ("declaration_id", "hs_code", "origin_country", "net_mass_kg", "customs_value")
LABELS = ("is_fraud", "fraud_scheme", "revenue")


@pytest.fixture(scope="session")
def model(robust_model_files) -> DeclarationModel:
    saved_key = os.environ.pop(KEY, None)
    try:
        return detector.load_model(robust_model_files[0])
    finally:
        if saved_key is not None:
            os.environ[KEY] = saved_key


@pytest.fixture(scope="session")
def train_df(robust_model_files) -> pd.DataFrame:
    return pd.read_parquet(robust_model_files[1])


@pytest.fixture(scope="session")
def pool(train_df: pd.DataFrame) -> list[dict]:
    """A few hundred real declarations as records of strings/None (the raw shape of a file)."""
    sample = train_df.drop(columns=list(LABELS)).sample(300, random_state=3)
    sample = sample.astype(object).where(sample.notna(), None)
    records = [{k: (None if v is None else str(v)) for k, v in r.items()}
               for r in sample.to_dict("records")]
    _POOL[:] = records
    return records


# --------------------------------------------------------------------------- strategies

_UNICODE = ["\u202eRTL", "\u05e9\u05dc\u05d5\u05dd", "\U0001f600", "\U0001f4a3\u200d\U0001f525",
            "\u200b", "\ufeff", "a\u200bb", "\u00a0", "\u2028", "\u0301", "\uff10\uff13",
            "\u0661\u0662", "Z\u0351\u0352\u0353", "\x00", "=cmd|' /C calc'!A0", "+1", "-1",
            "@SUM(A1)", "\t", "\r", "\n", "\r\n", '"', "'", ",", ";", "NA", "N/A", "null",
            "None", "nan", "NaN", "-inf", "inf", "1e400", "-0", "0x10", "1_000", "１２"]

junk_value = st.one_of(
    st.none(),
    st.just(""),
    st.just("   "),
    st.sampled_from(_UNICODE),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324, 0.0,
                     -0.0]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([2**63, 10**20, 10**30]),
    st.booleans(),
)

_EXTRA_NAMES = ["note", "\u202eevil", "\U0001f600", "", " ", "NOTE", "x,y", "a\nb", "=1+1",
                "unnamed_1", "HS_Code ", "Unnamed: 0", "0"]
_OPTIONAL_DROP = ["date", "description", "dispatch_country", "transport_mode", "exporter_id",
                  "importer_id", "declarant_id", "gross_mass_kg", "quantity", "unit", "packages",
                  "package_type", "currency", "composition", "measured_mass_kg"]


_POOL: list[dict] = []  # filled by the `pool` fixture (kept out of hypothesis' reprs)


def _obj(values) -> pd.Series:
    return pd.Series(list(values), dtype=object)


@st.composite
def damaged_frame(draw) -> pd.DataFrame:
    pool = _POOL
    n = draw(st.integers(1, 14))
    idx = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    df = pd.DataFrame([dict(pool[i]) for i in idx]).astype(object)
    # ids: unique most of the time, with some deliberate duplicates and damage
    df["declaration_id"] = _obj(f"F{k}" for k in range(n))
    columns = list(df.columns)
    for _ in range(draw(st.integers(0, 3 * n))):
        row = draw(st.integers(0, n - 1))
        col = draw(st.sampled_from(columns))
        df.iat[row, columns.index(col)] = draw(junk_value)
    if draw(st.booleans()) and n > 1:  # a duplicate id
        df.iat[n - 1, columns.index("declaration_id")] = df.iat[0, columns.index("declaration_id")]
    drop = draw(st.lists(st.sampled_from(_OPTIONAL_DROP), unique=True, max_size=8))
    df = df.drop(columns=drop)
    for name in draw(st.lists(st.sampled_from(_EXTRA_NAMES), unique=True, max_size=3)):
        if name.strip().lower() in {c.lower() for c in df.columns}:
            continue
        df[name] = _obj(draw(st.lists(junk_value, min_size=n, max_size=n)))
    if draw(st.booleans()):  # shuffled column order
        order = draw(st.permutations(list(df.columns)))
        df = df[list(order)]
    if draw(st.booleans()):  # a whole column of one type: numbers where text is expected
        col = draw(st.sampled_from(list(df.columns)))
        df[col] = _obj(draw(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                               st.integers(-(2**53), 2**53)),
                                     min_size=n, max_size=n)))
    return df


# --------------------------------------------------------------------------- invariants


def _expected_id(v) -> str | None:
    """The declaration_id the detector derives from a raw cell (None when missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 2**53:
        v = int(v)
    text = str(v).strip()
    return text or None


def _check_frame_result(df: pd.DataFrame, out: pd.DataFrame) -> None:
    assert len(out) == len(df)  # one row out per row in
    assert set(out["status"]) <= {"scored", "rejected"}
    scored = out["status"] == "scored"
    s = out["anomaly_score"].to_numpy(dtype=float)
    assert np.all((s[scored] > 0) & (s[scored] <= 1))
    assert np.isnan(s[~scored]).all()
    assert (out.loc[~scored, "lane"] == "manual").all()
    for rs in out.loc[~scored, "reasons"]:
        assert rs and all(r.startswith("REJECTED (") for r in rs)
    ranks = out.loc[scored, "rank"].to_numpy(dtype=int)
    assert sorted(ranks) == list(range(1, int(scored.sum()) + 1))
    assert out.loc[scored, "declaration_id"].is_unique


def _check_file_result(n_rows: int, ids: list, summary: dict, out: Path) -> None:
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    rejects = pd.read_csv(rejects_path(out), dtype=str, keep_default_na=False)
    assert summary["rows"] == n_rows
    # Rows in = rows out: every row has one verdict in the scored file, in input order;
    # the rejected ones in lane "manual" with no score and no rank.
    assert len(scored) == n_rows and summary["rejected"] == len(rejects)
    assert summary["rows"] == summary["scored"] + summary["rejected"]
    manual = (scored["lane"] == "manual").to_numpy()
    assert summary["manual"] == int(manual.sum()) == len(rejects)
    rows = rejects["row_number"].astype(int)
    assert rows.is_unique and rows.between(1, n_rows).all()
    assert sorted(np.flatnonzero(manual) + 1) == sorted(rows)
    assert (scored.loc[manual, "rank"] == "").all() and (scored.loc[manual, "anomaly_score"]
                                                          == "").all()
    assert scored.loc[manual, "reasons"].str.startswith("REJECTED (").all()
    assert (scored.loc[manual, "flagged"].str.lower() == "false").all()
    kept = sorted(set(range(1, n_rows + 1)) - set(rows))
    expected = []
    for i in kept:
        e = _expected_id(ids[i - 1])
        assert e is not None, f"row {i} has no id but was not rejected"
        expected.append("'" + e if e.startswith(CSV_INJECTION_PREFIXES) else e)
    assert scored.loc[~manual, "declaration_id"].tolist() == expected


def _for_file(df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """What can be stored in the format. CSV: anything (written as text). Parquet: one
    type per column, so mixed columns are stored as text (None stays null)."""
    if fmt == "csv":
        return df
    out = {}
    for name in df.columns:
        col = df[name]
        kinds = {type(v) for v in col if v is not None}
        if kinds <= {float} or kinds <= {int}:
            try:
                out[name] = pd.to_numeric(col)
                continue
            except (TypeError, ValueError, OverflowError):
                pass
        out[name] = col.map(lambda v: None if v is None else str(v)).astype(object)
    return pd.DataFrame(out)


def _write(df: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        # CRLF, so that a bare \\r inside a cell is quoted by Python's csv writer
        df.to_csv(path, index=False, lineterminator="\r\n")
    else:
        df.to_parquet(path, index=False)


# --------------------------------------------------------------------------- property tests

_FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


def test_fuzz_model_score(model: DeclarationModel, pool: list[dict]) -> None:
    @_FUZZ
    @given(damaged_frame())
    def check(df: pd.DataFrame) -> None:
        try:
            out = model.score(df)
        except DetectorError as exc:  # whole-frame problems only
            assert "column" in str(exc)
            return
        _check_frame_result(df, out)

    check()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_fuzz_score_file(tmp_path: Path, model: DeclarationModel, pool: list[dict],
                         fmt: str) -> None:
    counter = iter(range(10**6))

    @settings(_FUZZ, max_examples=20)
    @given(damaged_frame(), st.sampled_from([3, 1000]))
    def check(df: pd.DataFrame, chunk_rows: int) -> None:
        k = next(counter)
        src, out = tmp_path / f"in{k}.{fmt}", tmp_path / f"out{k}.csv"
        stored = _for_file(df, fmt)
        _write(stored, src)
        try:
            summary = score_file(model, src, out, chunk_rows=chunk_rows)
        except DetectorError as exc:
            # whole-file problems only: nothing written
            assert not out.exists() and not rejects_path(out).exists(), exc
            return
        if fmt == "csv":
            ids = pd.read_csv(src, dtype=str, keep_default_na=False)
            col = [c for c in ids.columns if c.strip().lstrip("\ufeff").lower()
                   == "declaration_id"][0]
            raw_ids = [v if v != "" else None for v in ids[col]]
        else:
            raw_ids = [v for v in pd.read_parquet(src)["declaration_id"]]
        assert len(raw_ids) == len(df)
        _check_file_result(len(df), raw_ids, summary, out)

    check()


@settings(_FUZZ, max_examples=40)
@given(st.data())
def test_fuzz_score_one(model: DeclarationModel, pool: list[dict], data) -> None:
    rec = dict(data.draw(st.sampled_from(pool)))
    for key in data.draw(st.lists(st.sampled_from([*rec, "extra", "\u202e", ""]),
                                  max_size=6)):
        rec[key] = data.draw(st.one_of(junk_value, st.lists(st.integers(), max_size=2),
                                       st.dictionaries(st.text(max_size=2), st.integers(),
                                                       max_size=2),
                                       st.binary(max_size=4)))
    for key in data.draw(st.lists(st.sampled_from(list(rec)), max_size=3)):
        rec.pop(key, None)
    result = model.score_one(rec)
    assert result["status"] in ("scored", "rejected")
    if result["status"] == "scored":
        assert 0 < result["anomaly_score"] <= 1
        assert result["lane"] != "manual"
    else:
        assert result["anomaly_score"] is None and result["lane"] == "manual"
        assert result["reasons"] and all(r.startswith("REJECTED (") for r in result["reasons"])
    json.dumps(result, default=str)  # serialisable for a web service


def test_score_one_and_score_agree_on_damaged_records(model: DeclarationModel,
                                                      pool: list[dict]) -> None:
    recs = [dict(r) for r in pool[:40]]
    recs[1]["net_mass_kg"] = "abc"
    recs[2]["hs_code"] = "12345"
    recs[3]["origin_country"] = "XY"
    recs[4]["customs_value"] = "-1"
    recs[5]["date"] = "2025-02-30"
    recs[6]["declaration_id"] = "  "
    recs[7]["net_mass_kg"] = "inf"
    frame = model.score(pd.DataFrame(recs, dtype=object))
    for i, rec in enumerate(recs):
        one = model.score_one(rec)
        assert one["status"] == frame.loc[i, "status"], (i, one, frame.loc[i].to_dict())
        if one["status"] == "scored":
            assert one["anomaly_score"] == pytest.approx(frame.loc[i, "anomaly_score"],
                                                         rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("field", ["net_mass_kg", "hs_code", "packages"])
def test_score_one_with_an_integer_too_large_for_a_float(model: DeclarationModel,
                                                         pool: list[dict], field: str) -> None:
    rec = dict(pool[0], **{field: 10**400})
    assert model.score_one(rec)["status"] == "rejected"


def test_jsonl_row_with_a_huge_integer_is_a_reject(tmp_path: Path, model: DeclarationModel,
                                                   pool: list[dict]) -> None:
    good = {k: pool[0][k] for k in REQUIRED}
    lines = [json.dumps(dict(good, declaration_id="J1")),
             json.dumps(dict(good, declaration_id="J2"))[:-1] + ', "quantity": '
             + str(10**30) + "}"]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary = score_file(model, src, tmp_path / "o.csv")
    assert summary["rows"] == 2 and summary["rejected"] == 1


# --------------------------------------------------------------------------- under load


def test_threads_give_the_serial_results(model: DeclarationModel, pool: list[dict]) -> None:
    recs = [dict(r) for r in pool[:200]]
    recs[5]["net_mass_kg"] = "-1"  # a reject among them
    frames = [pd.DataFrame(recs[i: i + 25], dtype=object) for i in range(0, 200, 25)]
    serial_one = [model.score_one(r) for r in recs]
    serial_frames = [model.score(f) for f in frames]
    with ThreadPoolExecutor(max_workers=8) as ex:
        par_one = list(ex.map(model.score_one, recs))
        par_frames = list(ex.map(model.score, frames * 2))
    assert par_one == serial_one  # exact: same floats, same reasons, same lanes
    for got, want in zip(par_frames, serial_frames * 2, strict=True):
        pd.testing.assert_frame_equal(got, want)


# --------------------------------------------------------------------------- soft problems


def _typical(train_df: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    ok = train_df[train_df["is_fraud"] == 0].head(n)
    return ok.drop(columns=list(LABELS)).reset_index(drop=True)


def test_unseen_origin_is_scored_and_named(model: DeclarationModel, train_df) -> None:
    assert "AQ" not in set(train_df["origin_country"])
    df = _typical(train_df).assign(origin_country="AQ", dispatch_country="AQ")
    out = model.score(df)
    assert (out["status"] == "scored").all()
    for rs in out["reasons"]:
        assert any("origin AQ" in r for r in rs), rs
    before = model.score(_typical(train_df))["anomaly_score"].to_numpy()
    assert (out["anomaly_score"].to_numpy() > before).mean() >= 0.75


def test_mass_1000x_is_scored_and_named(model: DeclarationModel, train_df) -> None:
    base = _typical(train_df)
    df = base.assign(net_mass_kg=base["net_mass_kg"] * 1000,
                     gross_mass_kg=base["gross_mass_kg"] * 1000)
    out = model.score(df)
    assert (out["status"] == "scored").all()
    for rs in out["reasons"]:
        assert any(" kg" in r for r in rs), rs
    assert (out["anomaly_score"].to_numpy()
            > model.score(base)["anomaly_score"].to_numpy()).all()
    one = model.score_one(df.iloc[0].to_dict())
    assert one["status"] == "scored" and one["anomaly_score"] == pytest.approx(
        out["anomaly_score"].iloc[0], rel=1e-9)


def test_unseen_hs_code_is_scored(model: DeclarationModel, train_df) -> None:
    assert "0101" not in set(train_df["hs_code"].str[:4])
    out = model.score(_typical(train_df).assign(hs_code="01012100"))
    assert (out["status"] == "scored").all()
    assert out["anomaly_score"].between(0, 1, inclusive="right").all()


def test_unseen_hs_code_is_named_in_the_reasons(model: DeclarationModel, train_df) -> None:
    out = model.score(_typical(train_df, 40).assign(hs_code="01012100"))
    for rs in out["reasons"]:
        assert any("0101" in r for r in rs), rs


def test_reasons_do_not_invent_a_share_for_an_unseen_origin(model: DeclarationModel,
                                                            train_df) -> None:
    out = model.score(_typical(train_df).assign(origin_country="AQ", dispatch_country="AQ"))
    for rs in out["reasons"]:
        for r in rs:
            if "origin AQ" in r and ("RARE" in r or "NEW" in r):
                assert "never" in r or " 0%" in r or "0.00%" in r, r
