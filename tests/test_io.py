"""detector.io on real files: formats, chunking, whole-file errors, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from detector.errors import InputError, SchemaError
from detector.io import (
    AtomicWriter,
    atomic_write_bytes,
    atomic_write_text,
    iter_tables,
    read_header,
    read_table,
    write_table,
)

HEAD = "declaration_id,hs_code,origin_country,net_mass_kg,customs_value"


def _frame(n: int = 7) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "declaration_id": [f"D{i}" for i in range(n)],
            "hs_code": ["030490", "69072100", "0101210000"] * (n // 3) + ["030490"] * (n % 3),
            "origin_country": ["CN", "NA", "DE"] * (n // 3) + ["FR"] * (n % 3),
            "net_mass_kg": np.arange(1, n + 1, dtype=float) / 2,
            "customs_value": np.arange(n, dtype=float) * 10,
            "description": [f"item {i}" for i in range(n)],
        }
    )


def _csv(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", ["csv", "parquet", "pq", "jsonl", "ndjson"])
def test_round_trip(tmp_path: Path, ext: str) -> None:
    df = _frame()
    out = tmp_path / f"t.{ext}"
    write_table(df, out)
    back = read_table(out)
    assert list(back.columns) == list(df.columns)
    assert isinstance(back.index, pd.RangeIndex) and back.index.start == 0
    assert back["hs_code"].tolist() == df["hs_code"].tolist()  # leading zeros survive
    assert back["origin_country"].tolist() == df["origin_country"].tolist()  # "NA" = Namibia
    np.testing.assert_allclose(back["net_mass_kg"].to_numpy(float), df["net_mass_kg"])
    assert _no_temp_files(tmp_path)


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl"])
def test_chunked_equals_whole(tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"t.{ext}"
    with AtomicWriter(out) as w:  # written in several chunks too
        df = _frame(11)
        for start in range(0, 11, 4):
            w.write(df.iloc[start : start + 4])
    whole = read_table(out)
    chunks = list(iter_tables(out, chunk_rows=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 2]
    assert [c.index[0] for c in chunks] == [0, 3, 6, 9]
    pd.testing.assert_frame_equal(pd.concat(chunks), whole, check_index_type=False)
    assert whole.index.tolist() == list(range(11))


def test_leading_zeros_and_text_columns_read_as_strings(tmp_path: Path) -> None:
    p = _csv(tmp_path, HEAD + ",date\n001,030490,NA,1,2,2026-03-01\n002,0101,CN,x,3,\n")
    df = read_table(p)
    assert df["declaration_id"].tolist() == ["001", "002"]
    assert df["hs_code"].tolist() == ["030490", "0101"]
    assert df["origin_country"].tolist() == ["NA", "CN"]
    # junk in a numeric column is left for validate: the column comes back as text
    assert df["net_mass_kg"].tolist() == ["1", "x"]


def test_gzip_csv(tmp_path: Path) -> None:
    import gzip

    p = tmp_path / "in.csv.gz"
    p.write_bytes(gzip.compress((HEAD + "\nD1,030490,CN,1,2\n").encode()))
    assert read_table(p)["hs_code"].tolist() == ["030490"]


def test_mapping_renames_and_extra_columns_are_kept(tmp_path: Path) -> None:
    p = _csv(tmp_path, "ID,HS,Origin,Net,Value,Agency field\nD1,030490,CN,1,2,x\n")
    m = {"ID": "declaration_id", "HS": "hs_code", "Origin": "origin_country",
         "Net": "net_mass_kg", "Value": "customs_value"}
    df = read_table(p, m)
    assert list(df.columns) == [
        "declaration_id", "hs_code", "origin_country", "net_mass_kg", "customs_value",
        "Agency field",
    ]
    assert df["hs_code"].tolist() == ["030490"]
    assert read_header(p, m)[-1] == "Agency field"


# --------------------------------------------------------------------------- header errors


def test_duplicate_header_is_a_schema_error(tmp_path: Path) -> None:
    p = _csv(tmp_path, HEAD + ",hs_code\nD1,030490,CN,1,2,030490\n")
    with pytest.raises(SchemaError, match=r"duplicate column names.*'hs_code'"):
        read_table(p)
    with pytest.raises(SchemaError, match="hs_code"):
        next(iter_tables(p, chunk_rows=1))


def test_missing_required_column_after_mapping(tmp_path: Path) -> None:
    p = _csv(tmp_path, "declaration_id,hs_code,origin_country,net_mass_kg,value\nD1,030490,CN,1,2\n")
    with pytest.raises(SchemaError, match=r"missing required column.*customs_value"):
        read_table(p)
    # the mapping fixes it
    assert len(read_table(p, {"value": "customs_value"})) == 1


def test_bom_header(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (HEAD + "\nD1,030490,CN,1,2\n").encode())
    df = read_table(p)
    assert df.columns[0] == "declaration_id"
    assert df["declaration_id"].tolist() == ["D1"]


# --------------------------------------------------------------------------- whole-file errors


def test_empty_file(tmp_path: Path) -> None:
    p = _csv(tmp_path, "")
    with pytest.raises(InputError, match="is empty: expected a header line") as e:
        read_table(p)
    assert str(p) in str(e.value)


def test_header_only(tmp_path: Path) -> None:
    p = _csv(tmp_path, HEAD + "\n")
    with pytest.raises(InputError, match="has a header but no data rows") as e:
        read_table(p)
    assert str(p) in str(e.value)
    with pytest.raises(InputError, match="no data rows"):
        list(iter_tables(p, chunk_rows=2))


def test_non_utf8_names_the_byte_and_suggests_encoding(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    body = (HEAD + ",description\nD1,030490,CN,1,2,ok\n").encode()
    p.write_bytes(body + "D2,030490,CN,1,2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="--encoding") as e:
        read_table(p)
    msg = str(e.value)
    assert str(p) in msg
    assert f"byte position {len(body) + 20}" in msg and "line 3" in msg
    df = read_table(p, encoding="latin-1")
    assert df["description"].tolist() == ["ok", "caf\xe9"]


def test_non_utf8_deep_in_a_chunked_read(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    good = "".join(f"D{i},030490,CN,1,2\n" for i in range(5000))
    data = (HEAD + "\n" + good).encode() + b"DX,030490,CN,1,2\xff\n"
    p.write_bytes(data)
    with pytest.raises(InputError, match=f"byte position {len(data) - 2}"):
        list(iter_tables(p, chunk_rows=1000))


def test_directory_unknown_extension_missing_file(tmp_path: Path) -> None:
    d = tmp_path / "folder.csv"
    d.mkdir()
    with pytest.raises(InputError, match="is a directory") as e:
        read_table(d)
    assert str(d) in str(e.value)
    x = tmp_path / "data.xlsx"
    x.write_bytes(b"PK")
    with pytest.raises(InputError, match=r"unknown file type.*\.csv.*\.parquet.*\.jsonl") as e:
        read_table(x)
    assert str(x) in str(e.value)
    m = tmp_path / "nope.csv"
    with pytest.raises(InputError, match="does not exist") as e:
        read_table(m)
    assert str(m) in str(e.value)


def test_ragged_line_reports_line_number(tmp_path: Path) -> None:
    p = _csv(tmp_path, HEAD + "\nD1,030490,CN,1,2\nD2,030490,CN,1,2,extra\n")
    with pytest.raises(InputError, match="line 3"):
        read_table(p)


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a valid Parquet file"):
        read_table(p)


def test_jsonl_bad_line_and_duplicate_keys(tmp_path: Path) -> None:
    rec = {"declaration_id": "J1", "hs_code": "030490", "origin_country": "CN",
           "net_mass_kg": 1, "customs_value": 2}
    p = tmp_path / "in.jsonl"
    p.write_text(json.dumps(rec) + "\n\n" + "{oops\n")
    with pytest.raises(InputError, match="line 3 is not valid JSON"):
        read_table(p)
    p.write_text('{"declaration_id":"a","declaration_id":"b"}\n')
    with pytest.raises(SchemaError, match="duplicate"):
        read_table(p)


# --------------------------------------------------------------------------- writing


def test_force(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    out.write_text("old")
    with pytest.raises(InputError, match="exists; pass --force"):
        AtomicWriter(out)  # refused at construction, before any work
    with pytest.raises(InputError, match="exists"):
        write_table(_frame(), out)
    assert out.read_text() == "old"
    write_table(_frame(), out, force=True)
    assert len(read_table(out)) == 7
    assert _no_temp_files(tmp_path)


def test_writer_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    with pytest.raises(RuntimeError, match="boom"), AtomicWriter(out) as w:
        w.write(_frame())
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    out.write_text("old")
    with pytest.raises(KeyboardInterrupt), AtomicWriter(out, force=True) as w:
        w.write(_frame())
        raise KeyboardInterrupt
    assert out.read_text() == "old"
    assert _no_temp_files(tmp_path)


def test_sigkill_mid_write_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "killed.csv"
    script = textwrap.dedent(
        f"""
        import time, pandas as pd
        from detector.io import AtomicWriter
        df = pd.DataFrame({{"a": range(100)}})
        with AtomicWriter({str(out)!r}) as w:
            for _ in range(1000):
                w.write(df)
                time.sleep(0.01)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".killed.csv.tmp-")]
            if temps and temps[0].stat().st_size > 0:
                break
            assert proc.poll() is None, "writer exited before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("the writer never started writing")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    # what is left is hidden and clearly a temp file
    assert all(p.name.startswith(".killed.csv.tmp-") for p in tmp_path.iterdir())


def test_csv_injection_neutralised(tmp_path: Path) -> None:
    cells = ["=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", None]
    df = pd.DataFrame(
        {
            "declaration_id": [f"D{i}" for i in range(len(cells))],
            "description": cells,
            "customs_value": [-1.5, 2, 3, 4, 5, 6, 7, 8],
            "reasons": [["=bad", "ok"]] + [["ok"]] * 7,
        }
    )
    out = tmp_path / "o.csv"
    write_table(df, out)
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert back["description"].tolist() == [
        "'=cmd|' /C calc'!A0", "'+1", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", "plain", "",
    ]
    assert back["customs_value"].tolist()[0] == "-1.5"  # numbers untouched
    assert back["reasons"].tolist()[:2] == ["'=bad | ok", "ok"]  # lists joined, then checked
    write_table(df.assign(reasons=[["ok", "=inner"]] * 8), out, force=True)
    assert pd.read_csv(out, dtype=str)["reasons"].tolist()[0] == "ok | =inner"  # not a formula


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl"])
def test_list_columns(tmp_path: Path, ext: str) -> None:
    df = pd.DataFrame({"id": ["a", "b", "c"], "reasons": [["x", "y"], [], None]})
    out = tmp_path / f"o.{ext}"
    with AtomicWriter(out) as w:
        w.write(df.iloc[:1])
        w.write(df.iloc[1:])
    if ext == "csv":
        assert pd.read_csv(out)["reasons"].tolist()[0] == "x | y"
    elif ext == "parquet":
        table = pq.read_table(out)
        assert str(table.schema.field("reasons").type).startswith("list<")
        assert table.column("reasons").to_pylist() == [["x", "y"], [], None]
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["reasons"] for r in lines] == [["x", "y"], [], None]


def test_parquet_first_chunk_all_missing_then_text(tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    with AtomicWriter(out) as w:
        w.write(pd.DataFrame({"a": [None, None]}, dtype=object))
        w.write(pd.DataFrame({"a": ["x", "y"]}))
    assert pq.read_table(out).column("a").to_pylist() == [None, None, "x", "y"]


def test_jsonl_nan_is_null(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    write_table(pd.DataFrame({"x": [1.0, np.nan], "s": ["a", None]}), out)
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"x": 1.0, "s": "a"}, {"x": None, "s": None},
    ]


def test_atomic_small_files(tmp_path: Path) -> None:
    p = tmp_path / "summary.json"
    atomic_write_text(p, '{"a": 1}')
    atomic_write_text(p, '{"a": 2}')  # force=True by default for small files
    assert json.loads(p.read_text()) == {"a": 2}
    with pytest.raises(InputError, match="exists"):
        atomic_write_bytes(p, b"x", force=False)
    atomic_write_bytes(tmp_path / "r.html", b"<html></html>")
    assert (tmp_path / "r.html").read_bytes() == b"<html></html>"
    assert _no_temp_files(tmp_path)


def test_writer_output_folder_and_extension_checked_early(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        AtomicWriter(tmp_path / "missing" / "o.csv")
    with pytest.raises(InputError, match="unknown file type"):
        AtomicWriter(tmp_path / "o.xlsx")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- fast CSV reader

_TRICKY_CELLS = ["", " ", "NA", "nan", "True", "False", "1", "03", "1.5", "1e400", "-0", "abc",
                 '"q,uoted"', '"multi\nline"', '"multi\r\nline"', '"say ""hi"""', "  x  ",
                 "030490", "CN", "2025-01-01", "post", "12345678901234567890", "#N/A",
                 "0.1000000000000000055511151231257827", "caf\xe9"]


def _tricky_csv(rng: np.random.Generator) -> str:
    cols = ["declaration_id", "hs_code", "origin_country", "net_mass_kg", "customs_value",
            "description", "exporter_id", "date", "transport_mode", "packages", "extra"]
    lines = [",".join(cols)]
    if rng.random() < 0.2:
        lines.insert(0, "")
    for _ in range(int(rng.integers(0, 25))):
        r = rng.random()
        if r < 0.1:
            lines.append(str(rng.choice(["", "   ", " \t"])))
            continue
        n = len(cols) if rng.random() < 0.95 else int(rng.integers(1, len(cols) + 3))
        lines.append(",".join(str(rng.choice(_TRICKY_CELLS)) if rng.random() < 0.4
                              else str(rng.integers(0, 9999)) for _ in range(n)))
    sep = "\r\n" if rng.random() < 0.3 else "\n"
    return sep.join(lines) + (sep if rng.random() < 0.7 else "")


def _outcome(fn):
    try:
        return fn()
    except (InputError, SchemaError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
def test_fast_csv_chunks_equal_pandas_chunked_reader(tmp_path: Path, monkeypatch) -> None:
    """The byte-cutting reader gives the very frames (values, dtypes, index) or the very
    error that pandas' own chunked reader gives, on blank lines, quoted newlines, CRLF,
    ragged lines, numeric-looking text and junk numbers."""
    import detector.fastcsv as fastcsv
    import detector.io as dio

    def pandas_chunks(path, usecols, rows):
        with monkeypatch.context() as m:
            m.setattr(dio, "_iter_csv_fast", lambda p, n, e, c, k, d: dio._iter_csv(p, n, e, c, k, d))
            return _outcome(lambda: list(iter_tables(path, chunk_rows=rows, usecols=usecols)))

    rng = np.random.default_rng(4)
    files = [_csv(tmp_path, _tricky_csv(rng), f"t{i}.csv") for i in range(40)]
    files += sorted((Path(__file__).parent / "data" / "bad").glob("*.csv"))
    for i, path in enumerate(files):
        usecols = ("declaration_id", "date", "exporter_id", "transport_mode") if i % 3 == 0 \
            else None
        for rows in (1, 2, 5, 1000):
            # Tiny read blocks put record ends and quoted newlines across block edges.
            monkeypatch.setattr(fastcsv, "_BLOCK_BYTES", 7 if rows == 2 else 4 << 20)
            want = pandas_chunks(path, usecols, rows)
            got = _outcome(lambda p=path, r=rows, u=usecols: list(iter_tables(
                p, chunk_rows=r, usecols=u)))
            if isinstance(want, tuple) or isinstance(got, tuple):
                assert got == want, path
                continue
            assert len(got) == len(want), path
            for g, w in zip(got, want, strict=True):
                pd.testing.assert_frame_equal(g, w)


def test_csv_list_cells_joined_whatever_the_mix_of_types(tmp_path):
    """All-list, mixed and list-free object columns are written as before the bulk checks:
    lists and tuples joined (non-strings as str), other values as they are, formulas
    defused after the join."""
    df = pd.DataFrame({
        "all_lists": pd.Series([["a", "b"], [], ("c",), ["=x", "y"]], dtype=object),
        "mixed": pd.Series([["a", 1], "plain", None, ("t", "u")], dtype=object),
        "none": pd.Series(["p", "=q", None, "r"], dtype=object),
    })
    out = tmp_path / "lists.csv"
    with AtomicWriter(out) as w:
        w.write(df)
    back = pd.read_csv(out, dtype="str", keep_default_na=False)
    assert back["all_lists"].tolist() == ["a | b", "", "c", "'=x | y"]
    assert back["mixed"].tolist() == ["a | 1", "plain", "", "t | u"]
    assert back["none"].tolist() == ["p", "'=q", "", "r"]


@pytest.mark.parametrize("cells", [
    [["a", "b"], [], ("c",), np.array(["d", "e"], dtype=object), ["=x", "y"]],
    [["a", 1], ["b"]],            # an item that is not a string
    [[b"raw"], ["b"]],            # bytes are not text: written as str() like any object
    [["a", None], []],            # a missing item
    [["é", "ü | x"], ["", ""]],   # non-ASCII, the separator inside an item, empty items
])
def test_csv_all_list_columns_join_like_python(tmp_path, cells):
    """A column of lists only (the reasons): each cell is ' | '.join(str(item) ...),
    whatever the items, then defused."""
    df = pd.DataFrame({"reasons": pd.Series(cells, dtype=object)})
    out = tmp_path / "lists.csv"
    with AtomicWriter(out) as w:
        w.write(df)
    back = pd.read_csv(out, dtype="str", keep_default_na=False)["reasons"].tolist()
    want = [" | ".join(map(str, v)) for v in cells]
    assert back == ["'" + w if w[:1] in ("=", "+", "-", "@") else w for w in want]
