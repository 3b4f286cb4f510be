"""Suspicious but legal values are scored with a reason code, on every path.

Net mass 0, customs value 0, quantity 0, unknown or reserved country codes (ZZ, XX, QU, QV, QZ,
'unknown'), a date far outside training: the row is valid, gets a score and a lane (never
"manual"), and carries its code, through ``score()``, ``score_one``, and a scored CSV,
Parquet and JSON-lines file. On the KCS test months (real-shaped data through the shipped
mapping) every row is in the output and none is rejected for a zero mass or 'ZZ'.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from detector.jobs import score_file
from detector.validate import validate

ROOT = Path(__file__).resolve().parents[1]
KCS = ROOT.parent / "shared" / "data" / "kcs"
MAPPING = ROOT / "data" / "mappings" / "kcs.json"

# (column, value, the code it must carry)
CASES = [
    ("net_mass_kg", 0.0, "NET_MASS_ZERO"),
    ("customs_value", 0.0, "VALUE_ZERO"),
    ("quantity", 0.0, "QUANTITY_ZERO"),
    *[("origin_country", c, "ORIGIN_UNKNOWN") for c in ("ZZ", "XX", "QU", "QV", "QZ",
                                                         "unknown", "zz")],
    ("dispatch_country", "ZZ", "DISPATCH_UNKNOWN"),
    ("date", "2049-06-01", "DATE_OUTSIDE_TRAINING"),
]


def _planted(test_df: pd.DataFrame) -> pd.DataFrame:
    """One copy of a few ordinary declarations per case, the case's value planted."""
    base = test_df.head(3)
    parts = []
    for k, (col, value, _) in enumerate(CASES):
        part = base.copy().astype({col: object})
        part[col] = value
        part["declaration_id"] = [f"CASE{k:02d}-{i}" for i in range(len(part))]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _codes(reasons) -> set[str]:
    if isinstance(reasons, str):
        reasons = [r for r in reasons.split(" | ") if r]
    return {r.split(":")[0] for r in reasons}


def _check(frame: pd.DataFrame) -> None:
    frame = frame.reset_index(drop=True)
    for k, (col, value, code) in enumerate(CASES):
        rows = frame[frame["declaration_id"].astype(str).str.startswith(f"CASE{k:02d}-")]
        assert len(rows) == 3, (col, value)
        assert (rows["lane"] != "manual").all(), (col, value, rows["reasons"].tolist())
        assert pd.to_numeric(rows["anomaly_score"]).notna().all()
        for reasons in rows["reasons"]:
            assert code in _codes(reasons), (col, value, reasons)


def test_validate_keeps_every_case(test_df) -> None:
    r = validate(_planted(test_df))
    assert len(r.rejects) == 0, r.rejects["reason"].tolist()


@pytest.mark.parametrize("mode", ["officer", "codes", "all"])
def test_score_frame_carries_the_codes(model, test_df, mode: str) -> None:
    _check(model.score(_planted(test_df), reasons=mode))


def test_score_one_carries_the_codes(model, test_df, record_of) -> None:
    df = _planted(test_df)
    for i in range(len(df)):
        out = model.score_one(record_of(df, i))
        k = int(df["declaration_id"].iloc[i][4:6])
        assert out["lane"] != "manual" and out["anomaly_score"] is not None
        assert CASES[k][2] in _codes(out["reasons"]), (CASES[k], out["reasons"])


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_scored_files_carry_the_codes(model, test_df, tmp_path: Path, fmt: str) -> None:
    df = pd.concat([test_df.head(500), _planted(test_df)], ignore_index=True)
    src = tmp_path / f"in.{fmt}"
    text = df.astype({"date": str})
    if fmt == "csv":
        text.to_csv(src, index=False)
    elif fmt == "parquet":
        text.to_parquet(src, index=False)
    else:
        text.to_json(src, orient="records", lines=True)
    out = tmp_path / f"out.{fmt}"
    summary = score_file(model, src, out, reasons="all")
    assert summary["rows"] == len(df) and summary["rejected"] == 0
    if fmt == "csv":
        scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    elif fmt == "parquet":
        scored = pd.read_parquet(out)
    else:
        scored = pd.read_json(out, lines=True, dtype=False)
    assert len(scored) == len(df)
    _check(scored)


@pytest.mark.skipif(not (KCS / "test.csv").exists(), reason=f"KCS data not found at {KCS}")
def test_kcs_rows_with_zero_mass_or_zz_are_scored_with_their_code(tmp_path: Path) -> None:
    from detector.io import read_table
    from detector.jobs import train_file
    from detector.schema import load_column_mapping

    model = tmp_path / "kcs.joblib"
    train_file(KCS / "train.csv", model, columns=MAPPING, trees=20, labels="is_fraud")
    out = tmp_path / "scored.csv"
    summary = score_file(model, KCS / "test.csv", out, columns=MAPPING)
    src = read_table(KCS / "test.csv", load_column_mapping(MAPPING))
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert summary["rows"] == len(src) == len(scored)  # every row in the output
    rejects = pd.read_csv(out.with_name("scored.rejects.csv"), dtype=str)
    assert not rejects["reason"].str.contains("net_mass_kg|ZZ", regex=True).any()
    zero = pd.to_numeric(src["net_mass_kg"]) == 0
    zz = src["origin_country"].astype(str).str.upper() == "ZZ"
    assert zero.sum() > 10 and zz.sum() > 0  # the cases are really in the file
    by_id = scored.set_index("declaration_id")
    for mask, code in ((zero, "NET_MASS_ZERO"), (zz, "ORIGIN_UNKNOWN")):
        rows = by_id.loc[src.loc[mask, "declaration_id"].astype(str)]
        assert (rows["lane"] != "manual").all()
        assert all(code in _codes(r) for r in rows["reasons"]), code
    print(json.dumps({"rows": len(src), "net_mass_0": int(zero.sum()), "zz": int(zz.sum()),
                      "rejected": int(summary["rejected"])}))
