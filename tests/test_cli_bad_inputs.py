"""The real commands against bad input: whole-file problems, row problems, outputs, model files.

Everything here goes through ``detector score`` / ``detector train`` (click's CliRunner, or a
real subprocess where a signal is involved), never the library functions directly, because
what a user sees is the exit code, one message, and the files left on disk.

Whole-file problems  -> exit 1, ONE "Error: <Name>Error: ..." line naming the problem (and
                        columns), no traceback, no output file and no rejects file.
Row problems         -> exit 0, the row goes to OUTPUT.rejects.csv with row number, id,
                        column and reason; rows in = scored + rejected, every input row is
                        accounted for exactly once (output id or rejected row number).

Bad input files come from tests/data/bad/ (the committed corpus) and, for cases it lacks,
are written into tmp_path by the tests themselves (tests/test_validate.py asserts that the
corpus folder holds exactly its list of files, so new files are not added there).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from detector.cli import main
from detector.io import CSV_INJECTION_PREFIXES

BAD = Path(__file__).parent / "data" / "bad"
HEAD = "declaration_id,hs_code,origin_country,net_mass_kg,customs_value"
REQUIRED = ["declaration_id", "hs_code", "origin_country", "net_mass_kg", "customs_value"]
KEY = "DETECTOR_MODEL_KEY"


# --------------------------------------------------------------------------- session model


@pytest.fixture(scope="session")
def model_path(robust_model_files) -> Path:
    return robust_model_files[0]


@pytest.fixture(scope="session")
def train_df(robust_model_files) -> pd.DataFrame:
    return pd.read_parquet(robust_model_files[1])


# --------------------------------------------------------------------------- helpers


def run(args: list[str], env: dict[str, str | None] | None = None) -> Result:
    """Invoke the CLI in-process. An exception that click did not turn into an exit code
    is a crash (CliRunner would report it as exit 1 without a traceback), so fail loudly."""
    env = {KEY: None, **(env or {})}
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"unhandled exception from `detector {' '.join(map(str, args))}`:\n{tb}")
    return result


def assert_one_error(result: Result, *needles: str) -> str:
    """Exit 1, no traceback, exactly one 'Error:' line, containing every needle."""
    out = result.output
    assert result.exit_code == 1, f"exit {result.exit_code}, expected 1:\n{out}"
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one error line:\n{out}"
    message = out[out.index("Error:"):]  # one message (it may continue on further lines)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def read_out(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def neutralised(value: str) -> str:
    return "'" + value if value.startswith(CSV_INJECTION_PREFIXES) else value


def check_accounting(result: Result, out: Path, n_rows: int,
                     ids: list[str | None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exit 0, the stdout summary, the invariant, and every input row exactly once.

    The output holds every input row in input order: the scored ones and the rejected
    ones in lane "manual" (at their row number, no rank). Returns the scored rows and
    the rejects. ``ids``: the raw declaration_id of each input row (when known), to check
    that the rows not rejected are exactly the rows scored.
    """
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout)
    rej_path = out.with_name(out.name[: -len(".csv")] + ".rejects.csv")
    everything, rejects = read_out(out), read_out(rej_path)
    assert summary["rows"] == n_rows == len(everything)
    manual = (everything["lane"] == "manual").to_numpy()
    assert (everything.loc[manual, "rank"] == "").all()
    assert sorted(np.flatnonzero(manual) + 1) == sorted(rejects["row_number"].astype(int))
    scored = everything[~manual].reset_index(drop=True)
    assert summary["scored"] == len(scored)
    assert summary["rejected"] == len(rejects)
    assert summary["rows"] == summary["scored"] + summary["rejected"]  # nothing lost
    assert list(rejects.columns) == ["row_number", "declaration_id", "column", "reason"]
    numbers = rejects["row_number"].astype(int)
    assert numbers.is_unique and numbers.between(1, n_rows).all()
    assert (rejects["reason"].str.len() > 0).all() and (rejects["column"].str.len() > 0).all()
    assert scored["declaration_id"].is_unique
    if ids is not None:
        assert len(ids) == n_rows
        kept = sorted(set(range(1, n_rows + 1)) - set(numbers))
        expected = sorted(neutralised(str(ids[i - 1]).strip()) for i in kept)
        assert sorted(scored["declaration_id"]) == expected
    return scored, rejects


def no_visible_files(folder: Path, *allowed: str) -> list[str]:
    """Visible (non-hidden) names in ``folder`` other than ``allowed``."""
    return sorted(p.name for p in folder.iterdir()
                  if not p.name.startswith(".") and p.name not in allowed)


# --------------------------------------------------------------------------- whole-file problems


def _write(tmp: Path, name: str, data: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


def _make_input(tmp: Path, kind: str) -> tuple[Path, list[str], list[str]]:
    """(input file, extra CLI args, words the message must contain) for one problem."""
    good = HEAD + "\nD1,030490,CN,10.5,100\nD2,69072100,DE,2,50\n"
    if kind.startswith("corpus:"):
        name = kind.split(":", 1)[1]
        words = {
            "empty.csv": ["is empty", *REQUIRED],
            "blank.csv": ["is empty", "declaration_id"],
            "header_only.csv": ["header but no data rows"],
            "latin1.csv": ["not valid utf-8", "line 2", "--encoding"],
            "dup_columns.csv": ["duplicate column names", "'hs_code'"],
            "missing_required.csv": ["missing required column", "'customs_value'"],
            "ragged.csv": ["not a well-formed CSV", "line 3"],
            "unclosed_quote.csv": ["not a well-formed CSV", "quoted field"],
            "bad_line.jsonl": ["line 2 is not valid JSON"],
            "dup_keys.jsonl": ["duplicate column names", "'declaration_id'"],
            "corrupt.parquet": ["not a valid Parquet file"],
            "truncated.parquet": ["not a valid Parquet file"],
            "not_gzip.csv.gz": ["cannot be read"],
            "unknown.xlsx": ["unknown file type", ".csv"],
        }[name]
        return BAD / name, [], words
    if kind == "missing_after_mapping":
        p = _write(tmp, "in.csv", "ID,HS,Origin,Net\nD1,030490,CN,1\n")
        m = _write(tmp, "map.json", json.dumps({"ID": "declaration_id", "HS": "hs_code",
                                                "Origin": "origin_country",
                                                "Net": "net_mass_kg"}))
        return p, ["--columns", str(m)], ["missing required column", "'customs_value'",
                                          "after mapping", "'Net'"]
    if kind == "wrong_sep":  # a semicolon file read with an explicit comma separator
        p = _write(tmp, "in.csv", good.replace(",", ";"))
        return p, ["--sep", ","], ["single column", "separated by ';'", "--sep ';'"]
    if kind == "bad_dialect_in_mapping":
        p = _write(tmp, "in.csv", good)
        m = _write(tmp, "map.json", json.dumps({"columns": {}, "csv": {"sep": ":"}}))
        return p, ["--columns", str(m)], ["map.json", "separator ':' is not supported"]
    if kind == "clash_after_mapping":
        p = _write(tmp, "in.csv", HEAD + ",HS_CODE\nD1,030490,CN,1,2,030490\n")
        return p, [], ["several input columns become", "'hs_code'"]
    if kind == "mapping_not_json":
        p = _write(tmp, "in.csv", good)
        m = _write(tmp, "map.json", "{this is not json")
        return p, ["--columns", str(m)], ["map.json", "not valid UTF-8 JSON"]
    if kind == "mapping_binary":
        p = _write(tmp, "in.csv", good)
        m = _write(tmp, "map.json", b"\xff\xfe\x00{")
        return p, ["--columns", str(m)], ["map.json", "not valid UTF-8 JSON"]
    if kind == "mapping_is_a_list":
        p = _write(tmp, "in.csv", good)
        m = _write(tmp, "map.json", '["declaration_id"]')
        return p, ["--columns", str(m)], ["map.json", "must be a JSON object"]
    if kind == "mapping_unknown_target":
        p = _write(tmp, "in.csv", good)
        m = _write(tmp, "map.json", json.dumps({"Weight": "net_weight"}))
        return p, ["--columns", str(m)], ["map.json", "unknown targets ['net_weight']"]
    if kind == "mapping_missing":
        p = _write(tmp, "in.csv", good)
        return p, ["--columns", str(tmp / "nope.json")], ["nope.json", "not found"]
    if kind == "utf16":
        p = _write(tmp, "in.csv", good.encode("utf-16"))
        return p, [], ["not valid utf-8", "byte position 0", "--encoding"]
    if kind == "binary_junk":
        p = _write(tmp, "in.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
        return p, [], ["not valid utf-8", "--encoding"]
    if kind == "unknown_encoding":
        p = _write(tmp, "in.csv", good)
        return p, ["--encoding", "klingon-8"], ["unknown encoding", "klingon-8"]
    if kind == "truncated_gzip":
        data = gzip.compress((good + "D3,030490,CN,1,2\n" * 5000).encode(), mtime=0)
        p = _write(tmp, "in.csv.gz", data[: len(data) // 2])
        return p, [], ["cannot be read", "Compressed file ended"]
    if kind == "does_not_exist":
        return tmp / "nope.csv", [], ["nope.csv", "does not exist"]
    if kind == "unknown_extension":
        p = _write(tmp, "in.txt", good)
        return p, [], ["in.txt", "unknown file type"]
    raise AssertionError(kind)


WHOLE_FILE = [
    *(f"corpus:{n}" for n in (
        "empty.csv", "blank.csv", "header_only.csv", "latin1.csv", "dup_columns.csv",
        "missing_required.csv", "ragged.csv", "unclosed_quote.csv",
        "bad_line.jsonl", "dup_keys.jsonl", "corrupt.parquet", "truncated.parquet",
        "not_gzip.csv.gz", "unknown.xlsx")),
    "missing_after_mapping", "wrong_sep", "bad_dialect_in_mapping", "clash_after_mapping", "mapping_not_json", "mapping_binary",
    "mapping_is_a_list", "mapping_unknown_target", "mapping_missing", "utf16", "binary_junk",
    "unknown_encoding", "truncated_gzip", "does_not_exist", "unknown_extension",
]


@pytest.mark.parametrize("kind", WHOLE_FILE)
def test_whole_file_problem_stops_score(tmp_path: Path, model_path: Path, kind: str) -> None:
    src, extra, words = _make_input(tmp_path, kind)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run(["score", model_path, src, "-o", out_dir / "scored.csv", *extra])
    assert_one_error(result, *words)
    # nothing that looks like a result is left behind
    assert no_visible_files(out_dir) == []


@pytest.mark.parametrize("kind", WHOLE_FILE)
def test_whole_file_problem_stops_train(tmp_path: Path, kind: str) -> None:
    src, extra, words = _make_input(tmp_path, kind)
    out = tmp_path / "models" / "m.joblib"
    result = run(["train", src, "-o", out, "--trees", "5", *extra])
    assert_one_error(result, *words)
    assert not out.exists()


def test_input_is_a_directory_score(tmp_path: Path, model_path: Path) -> None:
    d = tmp_path / "folder.csv"
    d.mkdir()
    assert_one_error(run(["score", model_path, d, "-o", tmp_path / "o.csv"]),
                     "folder.csv", "is a directory")
    assert no_visible_files(tmp_path, "folder.csv") == []


def test_input_is_a_directory_train(tmp_path: Path) -> None:
    d = tmp_path / "folder.csv"
    d.mkdir()
    assert_one_error(run(["train", d, "-o", tmp_path / "m.joblib"]), "is a directory")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can read a chmod 000 file")
def test_unreadable_file(tmp_path: Path, model_path: Path) -> None:
    p = _write(tmp_path, "in.csv", HEAD + "\nD1,030490,CN,1,2\n")
    p.chmod(0)
    try:
        assert_one_error(run(["score", model_path, p, "-o", tmp_path / "o.csv"]),
                         "not readable")
        assert_one_error(run(["train", p, "-o", tmp_path / "m.joblib"]), "not readable")
    finally:
        p.chmod(0o644)


def test_train_on_a_file_where_every_row_is_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "in.csv", HEAD + "\nD1,030490,CN,-1,2\nD2,12,CN,1,2\nD3,030490,XY,1,2\n")
    out = tmp_path / "m.joblib"
    assert_one_error(run(["train", p, "-o", out, "--trees", "5"]),
                     "0 valid rows of 3", "net_mass_kg", "hs_code", "origin_country")
    assert not out.exists()


# --------------------------------------------------------------------------- row problems

_GOOD = {"hs_code": "69072100", "origin_country": "CN", "net_mass_kg": "820",
         "customs_value": "410", "gross_mass_kg": "850", "quantity": "40", "unit": "m2",
         "packages": "20", "date": "2025-03-01", "description": "ceramic tiles"}

# (declaration_id, overrides, column expected in the reject or None when the row is valid)
ROWS: list[tuple[str | None, dict[str, str | None], str | None]] = [
    ("R01", {}, None),
    ("R02", {"net_mass_kg": "abc"}, "net_mass_kg"),            # non-numeric mass
    ("R03", {"net_mass_kg": "-5"}, "net_mass_kg"),             # negative mass
    ("R04", {"net_mass_kg": "900"}, "gross_mass_kg"),          # net > gross
    ("R05", {"hs_code": "12345"}, "hs_code"),                  # 5 digits
    ("R06", {"hs_code": "12345678901"}, "hs_code"),            # 11 digits
    ("R07", {"hs_code": "69A721"}, "hs_code"),
    ("R01", {}, "declaration_id"),                             # duplicate (another chunk)
    ("R09", {"origin_country": "XY"}, "origin_country"),       # unknown country
    ("R10", {"origin_country": "CHN"}, "origin_country"),
    ("R11", {"date": "2025-02-30"}, "date"),                   # unparseable date
    ("R12", {"date": "01/03/2025"}, "date"),
    ("R13", {"net_mass_kg": "1e300"}, "net_mass_kg"),          # absurd magnitude
    ("R14", {"customs_value": "1e20"}, "customs_value"),
    ("R15", {"net_mass_kg": "NaN"}, "net_mass_kg"),            # NaN
    ("R16", {"net_mass_kg": "inf", "gross_mass_kg": "inf"}, "net_mass_kg"),  # inf
    ("R17", {"customs_value": "-inf"}, "customs_value"),
    ("R18", {"net_mass_kg": ""}, "net_mass_kg"),               # empty strings
    ("R19", {"hs_code": ""}, "hs_code"),
    ("R20", {"origin_country": "  "}, "origin_country"),
    ("", {}, "declaration_id"),
    ("   ", {}, "declaration_id"),
    ("R23", {"origin_country": "NA"}, None),                  # Namibia, not missing
    ("R24", {"hs_code": "6907.21.00"}, None),
    ("R25", {"quantity": "-1"}, "quantity"),
    ("R26", {"packages": "2.5"}, "packages"),
    ("R27", {"packages": "0"}, "packages"),
    ("R28", {"gross_mass_kg": "1e12"}, "gross_mass_kg"),
    ("R29", {"description": "\u202eRTL \U0001f4a3 zero\u200bwidth"}, None),
    ("R30", {"net_mass_kg": "99999999999999999999999999"}, "net_mass_kg"),
]


def _rows_frame() -> pd.DataFrame:
    recs = []
    for did, over, _ in ROWS:
        recs.append({"declaration_id": did, **_GOOD, **over})
    return pd.DataFrame(recs, dtype=object)


def _write_any(df: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        # CRLF so that Python's csv writer quotes a bare \r inside a cell
        df.to_csv(path, index=False, lineterminator="\r\n")
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)


@pytest.mark.parametrize("chunk_rows", [2, 200_000])
@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_row_problems_never_stop_the_run(tmp_path: Path, model_path: Path, fmt: str,
                                         chunk_rows: int) -> None:
    df = _rows_frame()
    src = tmp_path / f"rows.{fmt}"
    _write_any(df, src)
    out = tmp_path / "scored.csv"
    result = run(["score", model_path, src, "-o", out, "--chunk-rows", chunk_rows])
    scored, rejects = check_accounting(result, out, len(ROWS), [r[0] for r in ROWS])
    expected_bad = {i + 1: col for i, (_, _, col) in enumerate(ROWS) if col is not None}
    got = dict(zip(rejects["row_number"].astype(int), rejects["column"], strict=True))
    assert set(got) == set(expected_bad)
    for row, col in expected_bad.items():
        assert col in got[row].split(";"), (row, got[row])
    by_row = rejects.set_index(rejects["row_number"].astype(int))
    assert by_row.loc[8, "reason"].startswith("duplicate declaration_id")
    assert by_row.loc[8, "declaration_id"] == "R01"
    assert by_row.loc[21, "declaration_id"] == "" and by_row.loc[22, "declaration_id"] == ""
    # the stdout summary counts both, and the rejects summary is on stderr too
    summary = json.loads(result.stdout)
    assert summary["scored"] == sum(1 for r in ROWS if r[2] is None)
    assert summary["rejected"] == len(expected_bad)
    assert "rejects_summary" in summary


def test_row_problems_in_train_are_reported_not_fatal(tmp_path: Path, train_df: pd.DataFrame) -> None:
    df = train_df.head(2000).astype(object)
    df.loc[3, "net_mass_kg"] = "abc"
    df.loc[4, "origin_country"] = "XY"
    df.loc[5, "declaration_id"] = df.loc[6, "declaration_id"]
    src = tmp_path / "t.csv"
    _write_any(df, src)
    out = tmp_path / "m.joblib"
    result = run(["train", src, "-o", out, "--trees", "5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 2000 and summary["rejected"] == 3
    assert summary["trained_on"] == 1997
    assert "net_mass_kg" in result.stderr and "origin_country" in result.stderr
    assert out.exists()


# the committed corpus of readable-but-nasty files: each scores, nothing is lost
READABLE = ["bad_rows.csv", "injection.csv", "short_rows.csv", "bom.csv", "crlf.csv",
            "quoted_newlines.csv", "blank_lines.csv", "trailing_comma.csv",
            "huge_numbers.csv", "unicode.csv", "namibia.csv",
            "mixed.jsonl", "numeric_hs.parquet", "good.csv.gz"]


@pytest.mark.parametrize("name", READABLE)
def test_corpus_files_score_without_losing_rows(tmp_path: Path, model_path: Path,
                                                name: str) -> None:
    from detector.io import read_table

    n = len(read_table(BAD / name))
    out = tmp_path / "scored.csv"
    result = run(["score", model_path, BAD / name, "-o", out, "--chunk-rows", 2])
    check_accounting(result, out, n)


def test_train_on_a_small_file_is_warning_free(tmp_path: Path, train_df: pd.DataFrame) -> None:
    src = tmp_path / "small.csv"
    _write_any(train_df.head(300), src)
    result = run(["train", src, "-o", tmp_path / "m.joblib", "--trees", "2"])
    assert result.exit_code == 0


# --------------------------------------------------------------------------- soft problems


def _typical_rows(train_df: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    ok = train_df[(train_df["is_fraud"] == 0)].head(n).copy()
    return ok.drop(columns=["is_fraud", "fraud_scheme", "revenue"]).reset_index(drop=True)


def test_soft_problems_are_scored_with_reasons(tmp_path: Path, model_path: Path,
                                               train_df: pd.DataFrame) -> None:
    base = _typical_rows(train_df, 4)
    unseen_origin = base.assign(origin_country="AQ", dispatch_country="AQ")
    heavy = base.assign(net_mass_kg=base["net_mass_kg"] * 1000,
                        gross_mass_kg=base["gross_mass_kg"] * 1000)
    unseen_hs = base.assign(hs_code="01012100")
    assert "AQ" not in set(train_df["origin_country"])
    assert "0101" not in set(train_df["hs_code"].str[:4])
    df = pd.concat([unseen_origin, heavy, unseen_hs], ignore_index=True)
    df["declaration_id"] = [f"S{i:02d}" for i in range(len(df))]
    src = tmp_path / "soft.csv"
    _write_any(df, src)
    out = tmp_path / "scored.csv"
    result = run(["score", model_path, src, "-o", out])
    scored, rejects = check_accounting(result, out, len(df), df["declaration_id"].tolist())
    assert len(rejects) == 0  # valid values, however unusual, are never rejected
    reasons = dict(zip(scored["declaration_id"], scored["reasons"], strict=True))
    for i in range(4):
        assert "origin AQ" in reasons[f"S{i:02d}"]
        assert " kg" in reasons[f"S{i + 4:02d}"]
    # a mass 1000x typical is more suspicious than the same declaration as it was
    before = run(["score", model_path, _csv_of(tmp_path, base), "-o", tmp_path / "b.csv"])
    assert before.exit_code == 0
    b = read_out(tmp_path / "b.csv").set_index("declaration_id")["anomaly_score"].astype(float)
    a = scored.set_index("declaration_id")["anomaly_score"].astype(float)
    for i, did in enumerate(base["declaration_id"]):
        assert a[f"S{i + 4:02d}"] > b[did]


def _csv_of(tmp: Path, df: pd.DataFrame) -> Path:
    p = tmp / "base.csv"
    _write_any(df, p)
    return p


# --------------------------------------------------------------------------- outputs


def test_csv_outputs_are_safe_in_a_spreadsheet(tmp_path: Path, model_path: Path) -> None:
    ids = ["=1+1", "+SUM(A1)", "-2", "@A1", "\tTAB", "\rCR", "=HYPERLINK(\"http://x\")",
           "ok", "=bad", "+bad", "-bad", "@bad", "\tbad", "\rbad"]
    df = pd.DataFrame([{**_GOOD, "declaration_id": i,
                        "description": "=cmd|' /C calc'!A0" if k % 2 else "\t@SUM(1)"}
                       for k, i in enumerate(ids)], dtype=object)
    df.loc[8:, "net_mass_kg"] = "-1"        # the '...bad' rows are rejected
    df.loc[8, "origin_country"] = "=XY"
    src = tmp_path / "inj.csv"
    _write_any(df, src)
    out = tmp_path / "scored.csv"
    result = run(["score", model_path, src, "-o", out])
    scored, rejects = check_accounting(result, out, len(ids), ids)
    assert len(scored) == 8 and len(rejects) == 6
    for path in (out, tmp_path / "scored.rejects.csv"):
        with path.open(newline="", encoding="utf-8") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        dangerous = [c for c in cells if c.startswith(CSV_INJECTION_PREFIXES)]
        assert dangerous == [], f"{path.name}: {dangerous}"
    assert set(scored["declaration_id"]) >= {"'=1+1", "'+SUM(A1)", "'-2", "'@A1",
                                             "'=HYPERLINK(\"http://x\")"}
    assert set(rejects["declaration_id"]) == {"'=bad", "'+bad", "'-bad", "'@bad", "bad"}


def test_existing_outputs_need_force(tmp_path: Path, model_path: Path,
                                    train_df: pd.DataFrame) -> None:
    src = _write(tmp_path, "in.csv", HEAD + ",gross_mass_kg\nD1,69072100,CN,820,410,850\n"
                 "D2,69072100,CN,-1,410,850\n")
    out, rej = tmp_path / "scored.csv", tmp_path / "scored.rejects.csv"
    out.write_text("precious")
    assert_one_error(run(["score", model_path, src, "-o", out]), str(out), "--force")
    assert out.read_text() == "precious" and not rej.exists()
    out.unlink()
    rej.write_text("precious too")
    assert_one_error(run(["score", model_path, src, "-o", out]), str(rej), "--force")
    assert rej.read_text() == "precious too" and not out.exists()
    out.write_text("precious")
    result = run(["score", model_path, src, "-o", out, "--force"])
    scored, rejects = check_accounting(result, out, 2, ["D1", "D2"])
    assert scored["declaration_id"].tolist() == ["D1"]
    assert rejects["declaration_id"].tolist() == ["D2"]
    # train: same rule for the model file
    model_out = tmp_path / "m.joblib"
    model_out.write_bytes(b"old model")
    assert_one_error(run(["train", src, "-o", model_out, "--trees", "2"]), str(model_out),
                     "--force")
    assert model_out.read_bytes() == b"old model"
    train_src = tmp_path / "train.csv"
    _write_any(train_df.head(2000), train_src)
    assert run(["train", train_src, "-o", model_out, "--trees", "2", "--force"]).exit_code == 0
    assert model_out.read_bytes() != b"old model"


def _rows_csv(tmp: Path) -> Path:
    p = tmp / "rows.csv"
    _write_any(_rows_frame(), p)
    return p


@pytest.mark.parametrize("target", ["a_directory", "unknown_extension"])
def test_bad_output_path_fails_before_any_work(tmp_path: Path, model_path: Path,
                                               target: str) -> None:
    src = _rows_csv(tmp_path)
    if target == "a_directory":
        out = tmp_path / "results.csv"
        out.mkdir()
        args = ["-o", out, "--force"]
    else:
        out = tmp_path / "results.xlsx"
        args = ["-o", out]
    result = run(["score", model_path, src, *args])
    assert_one_error(result, str(out))
    assert no_visible_files(tmp_path, "rows.csv", "results.csv") == []
    assert "scoring" not in result.output  # refused before reading the input


def _big_csv(tmp: Path, train_df: pd.DataFrame, rows: int) -> Path:
    reps = -(-rows // len(train_df))
    big = pd.concat([train_df] * reps, ignore_index=True).head(rows)
    big["declaration_id"] = [f"K{i:07d}" for i in range(len(big))]
    big.loc[::97, "net_mass_kg"] = -1.0  # some rejects, so the rejects file is busy too
    p = tmp / "big.csv"
    big.to_csv(p, index=False)
    return p


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(KEY, None)
    return env


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the scoring process ended (rc {proc.returncode}) before it could be "
                        f"killed:\n{err.decode(errors='replace')[-2000:]}")
        time.sleep(0.005)
    pytest.fail("timed out waiting for the scoring process")


def _sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def _kill_when(condition, cmd: list[str], out: Path) -> None:
    """Run a real scoring process, SIGKILL it once ``condition()`` holds, and check that
    neither the output nor its rejects file exists afterwards."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        _wait_for(condition, proc)
        _sigkill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()
    assert not out.with_name("scored.rejects.csv").exists()


def test_sigkill_while_scoring_leaves_no_output(tmp_path: Path, model_path: Path,
                                                train_df: pd.DataFrame) -> None:
    src = _big_csv(tmp_path, train_df, 80_000)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "scored.csv"

    def spilling() -> bool:  # pass 2 is under way: scored rows are being written
        return any(f.stat().st_size > 0 for d in work.glob(".detector-*")
                   for f in d.glob("*"))

    _kill_when(spilling, [sys.executable, "-m", "detector.cli", "score", str(model_path),
                          str(src), "-o", str(out), "--chunk-rows", "20000"], out)
    assert no_visible_files(work) == []  # only hidden temp files/folders may remain
    assert any(p.name.startswith(".") for p in work.iterdir())


# a real `detector score`, with the final output's writer slowed down so that the kill
# deterministically lands while the output is being written (pass 3)
_SLOW_OUTPUT = textwrap.dedent(
    """
    import sys, time
    import detector.io as dio
    _write = dio.AtomicWriter.write
    def write(self, df):
        _write(self, df)
        if self.path.name == "scored.csv":
            self._file.fh.flush()
            time.sleep(120)
    dio.AtomicWriter.write = write
    _write_tables = dio.AtomicWriter.write_csv_tables
    def write_csv_tables(self, tables, threads=2):
        def slow():
            yield from tables
            # The last tables are still being encoded; the first ones are written.
            if self.path.name == "scored.csv":
                self._file.fh.flush()
                time.sleep(120)
        _write_tables(self, slow(), threads)
    dio.AtomicWriter.write_csv_tables = write_csv_tables
    from detector.cli import main
    main(sys.argv[1:], prog_name="detector")
    """
)


def test_sigkill_while_writing_the_output_leaves_no_rejects(tmp_path: Path, model_path: Path,
                                                           train_df: pd.DataFrame) -> None:
    src = _big_csv(tmp_path, train_df, 1500)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "scored.csv"

    def writing_output() -> bool:
        return any(p.stat().st_size > 0 for p in work.glob(".scored.csv.tmp-*"))

    _kill_when(writing_output, [sys.executable, "-c", _SLOW_OUTPUT, "score", str(model_path),
                                str(src), "-o", str(out), "--chunk-rows", "500"], out)


# --------------------------------------------------------------------------- model files


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _small_input(tmp: Path) -> Path:
    return _write(tmp, "in.csv", HEAD + "\nD1,69072100,CN,820,410\n")


def test_malicious_model_is_refused_and_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / "evil.joblib"
    joblib.dump(Evil(sentinel), evil)
    assert b"system" in evil.read_bytes()
    out = tmp_path / "o.csv"
    result = run(["score", evil, _small_input(tmp_path), "-o", out])
    assert_one_error(result, "UnsafeArtifactError", "system")
    assert not sentinel.exists()
    assert not out.exists()
    # nested inside something that looks like a model envelope: same
    joblib.dump({"magic": "customs-detector-model", "format_version": 1,
                 "payload": Evil(sentinel)}, evil)
    assert_one_error(run(["score", evil, _small_input(tmp_path), "-o", out]),
                     "UnsafeArtifactError")
    assert not sentinel.exists()


def _payload_offset(data: bytes, model: Path) -> int:
    env = joblib.load(model)  # our files are plain data: safe to open with joblib
    payload = env["payload"]
    pos = data.find(payload)  # the payload is one bytes object, stored contiguously
    assert pos > 0
    return pos + len(payload) // 2


def test_flipped_byte_in_payload_is_corrupt(tmp_path: Path, model_path: Path) -> None:
    data = bytearray(model_path.read_bytes())
    data[_payload_offset(bytes(data), model_path)] ^= 0x01
    bad = _write(tmp_path, "flipped.joblib", bytes(data))
    assert_one_error(run(["score", bad, _small_input(tmp_path), "-o", tmp_path / "o.csv"]),
                     "CorruptArtifactError", "payload sha256")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.999])
def test_truncated_model_is_corrupt(tmp_path: Path, model_path: Path, keep: float) -> None:
    data = model_path.read_bytes()
    bad = _write(tmp_path, "cut.joblib", data[: int(len(data) * keep)])
    assert_one_error(run(["score", bad, _small_input(tmp_path), "-o", tmp_path / "o.csv"]),
                     "CorruptArtifactError")


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2, 3], "just a string",
                                 {"magic": "something-else", "format_version": 1}])
def test_non_model_joblib_file(tmp_path: Path, obj) -> None:
    p = tmp_path / "other.joblib"
    joblib.dump(obj, p)
    assert_one_error(run(["score", p, _small_input(tmp_path), "-o", tmp_path / "o.csv"]),
                     "not a customs-detector model file")


def test_swapped_arguments_name_the_mistake(tmp_path: Path, model_path: Path) -> None:
    data = _small_input(tmp_path)
    for command in (["score", data, model_path, "-o", tmp_path / "o.csv"],
                    ["evaluate", data, model_path], ["explain", data, model_path, "--id", "D1"]):
        assert_one_error(run(command), "not a customs-detector model file",
                         "it looks like a CSV file", "arguments swapped")
    assert not (tmp_path / "o.csv").exists()
    # the model in INPUT's place, with a real model first: the input's error says so too
    assert_one_error(run(["score", model_path, model_path, "-o", tmp_path / "o.csv"]),
                     "unknown file type", "looks like a model file")


def test_numpy_object_in_joblib_file_is_unsafe(tmp_path: Path) -> None:
    # a scikit-learn style joblib file (numpy arrays pickled by class) is refused too
    p = tmp_path / "np.joblib"
    joblib.dump({"w": np.arange(5)}, p)
    assert_one_error(run(["score", p, _small_input(tmp_path), "-o", tmp_path / "o.csv"]),
                     "UnsafeArtifactError")


def test_hmac_signed_model(tmp_path: Path, train_df: pd.DataFrame) -> None:
    src = tmp_path / "train.csv"
    _write_any(train_df.head(2000), src)
    signed = tmp_path / "signed.joblib"
    result = run(["train", src, "-o", signed, "--trees", "5"], env={KEY: "key-one"})
    assert result.exit_code == 0, result.output
    inp = _small_input(tmp_path)
    wrong = run(["score", signed, inp, "-o", tmp_path / "a.csv"], env={KEY: "key-two"})
    assert_one_error(wrong, "SignatureError", "wrong signature")
    assert not (tmp_path / "a.csv").exists()
    ok = run(["score", signed, inp, "-o", tmp_path / "b.csv"], env={KEY: "key-one"})
    check_accounting(ok, tmp_path / "b.csv", 1, ["D1"])
    # an unsigned model is refused when a key is set (signing was required)
    unsigned = tmp_path / "unsigned.joblib"
    assert run(["train", src, "-o", unsigned, "--trees", "5"]).exit_code == 0
    assert_one_error(run(["score", unsigned, inp, "-o", tmp_path / "c.csv"],
                         env={KEY: "key-one"}), "SignatureError", "not signed")
    # the signature covers the payload: re-signing is impossible without the key, and a
    # flipped payload byte in a signed file is caught (as corruption) before anything runs
    data = bytearray(signed.read_bytes())
    data[_payload_offset(bytes(data), signed)] ^= 0x40
    tampered = _write(tmp_path, "tampered.joblib", bytes(data))
    assert_one_error(run(["score", tampered, inp, "-o", tmp_path / "d.csv"],
                         env={KEY: "key-one"}), "CorruptArtifactError")


def test_model_file_that_is_not_a_model_at_all(tmp_path: Path) -> None:
    for name, data in (("empty.joblib", b""), ("text.joblib", b"hello, world\n"),
                       ("csv.joblib", (HEAD + "\nD1,1,CN,1,1\n").encode())):
        p = _write(tmp_path, name, data)
        assert_one_error(run(["score", p, _small_input(tmp_path), "-o", tmp_path / "o.csv"]),
                         "ArtifactError", name)
    assert_one_error(run(["score", tmp_path / "missing.joblib", _small_input(tmp_path), "-o",
                          tmp_path / "o.csv"]), "ArtifactError", "not found")


def test_message_is_one_line_even_for_multiline_causes(tmp_path: Path, model_path: Path) -> None:
    # a quoted header cell with a newline must not smuggle a second "Error:" line
    p = _write(tmp_path, "in.csv", '"decl\nError: fake",hs_code,origin_country,net_mass_kg\n'
               "D1,030490,CN,1\n")
    result = run(["score", model_path, p, "-o", tmp_path / "o.csv"])
    assert_one_error(result, "missing required column", "'customs_value'")


def test_stdout_is_pure_json(tmp_path: Path, model_path: Path) -> None:
    out = tmp_path / "o.csv"
    result = run(["score", model_path, _rows_csv(tmp_path), "-o", out])
    summary = json.loads(result.stdout)  # progress and notes went to stderr
    assert set(summary) >= {"rows", "scored", "rejected", "output", "rejects"}
    assert io.StringIO(result.stderr).read().count("rows") >= 1
