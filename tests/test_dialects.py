"""CSV files as agencies export them: semicolon, tab and pipe separators, decimal commas.

Every dialect is checked against the same declarations written as plain comma CSV: the
frame read, the chunked reader (fast cutter and Arrow text path), and the scored output
of the CLI, byte for byte. Real files, real subprocesses, a real Dask cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from detector.errors import InputError, SchemaError
from detector.io import csv_dialect, iter_tables, read_header, read_table
from detector.schema import ColumnMapping, load_column_mapping

# numeric columns of the generated data: written with a decimal comma in the comma variants
NUMERIC = ["net_mass_kg", "gross_mass_kg", "quantity", "packages", "customs_value",
           "measured_mass_kg", "revenue"]
DIALECTS = {  # file name -> (separator, decimal mark, CLI options)
    "semicolon_comma.csv": (";", ",", ["--sep", ";", "--decimal", ","]),
    "semicolon_point.csv": (";", ".", ["--sep", ";"]),
    "tab_comma.csv": ("\t", ",", ["--sep", "tab", "--decimal", ","]),
    "pipe_point.csv": ("|", ".", ["--sep", "pipe"]),
}


def _run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detector.cli", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory, test_df) -> Path:
    d = tmp_path_factory.mktemp("dialects")
    text = test_df.head(1500).astype(str).replace({"nan": ""})
    text.to_csv(d / "plain.csv", index=False)
    for name, (sep, decimal, _) in DIALECTS.items():
        t = text.copy()
        if decimal == ",":
            for c in NUMERIC:
                t[c] = t[c].str.replace(".", ",", regex=False)
        t.to_csv(d / name, sep=sep, index=False)
    return d


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_read_equals_plain_csv(files: Path, name: str) -> None:
    sep, decimal, _ = DIALECTS[name]
    plain = read_table(files / "plain.csv")
    given = ColumnMapping(sep=sep, decimal=decimal)
    detected = ColumnMapping(decimal=decimal)  # the separator found from the header
    for mapping in (given, detected):
        pd.testing.assert_frame_equal(read_table(files / name, mapping), plain)
        chunks = pd.concat(list(iter_tables(files / name, mapping, chunk_rows=97)))
        pd.testing.assert_frame_equal(chunks, plain)
        # a text-only pre-pass takes the Arrow path of the fast reader
        cols = ["exporter_id", "date", "transport_mode"]
        text = pd.concat(list(iter_tables(files / name, mapping, chunk_rows=400,
                                          usecols=cols)))
        pd.testing.assert_frame_equal(text[cols], plain[cols])
    assert csv_dialect(files / name, mapping=detected).sep == sep


def test_decimal_comma_without_option_rejects_with_a_hint(files: Path, model_path: Path,
                                                           tmp_path: Path) -> None:
    r = _run("score", model_path, files / "semicolon_comma.csv", "-o", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert "read the file with --decimal ," in r.stderr
    rejects = pd.read_csv(tmp_path / "s.rejects.csv", dtype=str)
    assert rejects["reason"].str.contains("(a decimal comma? read the file with --decimal ,)",
                                          regex=False).all()


def test_cli_scores_every_dialect_like_plain_csv(files: Path, model_path: Path,
                                                 tmp_path: Path) -> None:
    r = _run("score", model_path, files / "plain.csv", "-o", tmp_path / "plain.csv")
    assert r.returncode == 0, r.stderr
    expected = (tmp_path / "plain.csv").read_bytes()
    mapping = tmp_path / "map.json"
    for name, (sep, decimal, options) in DIALECTS.items():
        out = tmp_path / f"out_{name}"
        r = _run("score", model_path, files / name, "-o", out, *options)
        assert r.returncode == 0, (name, r.stderr)
        assert out.read_bytes() == expected, name
        # the same from the agency's mapping file, without options
        shown = {"\t": "tab"}.get(sep, sep)
        mapping.write_text(json.dumps({"columns": {}, "csv": {"sep": shown,
                                                              "decimal": decimal}}))
        out2 = tmp_path / f"map_{name}"
        r = _run("score", model_path, files / name, "-o", out2, "--columns", mapping)
        assert r.returncode == 0, (name, r.stderr)
        assert out2.read_bytes() == expected, name


def test_train_and_explain_read_dialects(files: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.joblib", tmp_path / "b.joblib"
    assert _run("train", files / "plain.csv", "-o", a, "--trees", "20").returncode == 0
    r = _run("train", files / "tab_comma.csv", "-o", b, "--trees", "20", "--decimal", ",")
    assert r.returncode == 0, r.stderr
    ida = read_table(files / "plain.csv")["declaration_id"].iloc[3]
    ea = _run("explain", a, files / "plain.csv", "--id", ida, "--json")
    eb = _run("explain", b, files / "tab_comma.csv", "--id", ida, "--json", "--decimal", ",")
    assert ea.returncode == eb.returncode == 0, eb.stderr
    assert json.loads(ea.stdout) == json.loads(eb.stdout)


def test_dask_engine_reads_dialects(files: Path, model, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from detector.distributed import score_dask
    from detector.jobs import score_file

    score_file(model, files / "plain.csv", tmp_path / "local.csv")
    mapping = ColumnMapping(decimal=",")  # separator detected
    score_dask(model, files / "semicolon_comma.csv", tmp_path / "dask", columns=mapping,
               processes=False, partition_rows=400)
    got = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "dask").glob("*.parquet")))
    want = pd.read_csv(tmp_path / "local.csv", dtype={"declaration_id": str})
    got = got.sort_values("declaration_id").reset_index(drop=True)
    want = want.sort_values("declaration_id").reset_index(drop=True)
    assert got["declaration_id"].tolist() == want["declaration_id"].tolist()
    assert (got["anomaly_score"].to_numpy() == want["anomaly_score"].to_numpy()).all()


def test_conflicting_and_unknown_dialects(files: Path, model_path: Path, tmp_path: Path) -> None:
    r = _run("score", model_path, files / "plain.csv", "-o", tmp_path / "x.csv",
             "--sep", ",", "--decimal", ",")
    assert r.returncode == 2 and "cannot both be ','" in r.stderr  # a usage error
    r = _run("score", model_path, files / "plain.csv", "-o", tmp_path / "x.csv", "--sep", ":")
    assert r.returncode == 2
    with pytest.raises(SchemaError, match="separator ':' is not supported"):
        load_column_mapping({"columns": {}, "csv": {"sep": ":"}})
    with pytest.raises(SchemaError, match="decimal mark '_' is not supported"):
        ColumnMapping().with_dialect(decimal="_")
    # decimal commas in a comma-separated header: no separator to detect
    with pytest.raises(InputError, match="pass --sep"):
        read_table(files / "plain.csv", ColumnMapping(decimal=","))
    # an explicit separator that does not split the header says which one would
    with pytest.raises(SchemaError, match="--sep ';'"):
        read_header(files / "semicolon_point.csv", ColumnMapping(sep=","))


def test_mapping_round_trip_keeps_the_dialect() -> None:
    m = load_column_mapping({"columns": {"ID": "declaration_id"},
                             "csv": {"sep": "tab", "decimal": ","}})
    assert (m.sep, m.decimal) == ("\t", ",")
    assert ColumnMapping.from_obj(m.to_obj()) == m
    assert "csv" not in ColumnMapping().to_obj()  # unchanged for the comma default
