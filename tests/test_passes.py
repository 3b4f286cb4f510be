"""The serial passes of ``score``: the pre-pass (whole-file burst context and row count)
and the rank pass (spilled tables written as CSV). Their fast paths must give exactly
what the plain code gives, on real files, odd ones included."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import detector.fastcsv as fastcsv
import detector.io as dio
from detector.engine import burst_context
from detector.errors import InputError, SchemaError
from detector.schema import load_column_mapping

BURST_HEAD = ["declaration_id", "hs_code", "origin_country", "net_mass_kg", "customs_value",
              "description", "exporter_id", "date", "transport_mode", "packages"]
# Cells of the three pre-pass columns as a spreadsheet might hold them: pandas reads text
# columns verbatim, so "NA", "null" and "" are values here, not missing.
_EXPORTERS = ["E1", "E2", " E1 ", "", "NA", "null", "N/A", '"E,1"', '"E1\nline"',
              '"say ""hi"""', "caf\xe9", "E1\t"]
_DATES = ["2025-01-01", "2025-01-02", "2025-01-01T08:00", "", "NA", "nan", "2025-13-40",
          "20250101", '"2025-01-01"', " 2025-01-01"]
_MODES = ["post", "courier", "POST", " Courier ", "sea", "", "NA", "null", '"post"',
          '"po\nst"']


def _odd_csv(rng: np.random.Generator, *, bad_rows: bool) -> str:
    """A burst-rich file with blank lines, quoted newlines, CRLF and, if ``bad_rows``,
    lines that only the pandas reader reads (short lines, lines of spaces, a blank line
    before the header)."""
    lines = [",".join(BURST_HEAD)]
    if bad_rows and rng.random() < 0.2:
        lines.insert(0, "")
    for i in range(int(rng.integers(1, 60))):
        if rng.random() < 0.05:
            lines.append("")
            continue
        if bad_rows and rng.random() < 0.05:
            lines.append(str(rng.choice(["   ", " \t", f"D{i},1,CN"])))
            continue
        lines.append(",".join([f"D{i}", "030490", "CN", "1", "2",
                               str(rng.choice(['"a, b"', "x", '"multi\nline"', ""])),
                               str(rng.choice(_EXPORTERS)), str(rng.choice(_DATES)),
                               str(rng.choice(_MODES)), "1"]))
    sep = "\r\n" if rng.random() < 0.3 else "\n"
    text = sep.join(lines) + (sep if rng.random() < 0.7 else "")
    return ("\ufeff" + text) if rng.random() < 0.2 else text


def _outcome(fn):
    try:
        return fn()
    except (InputError, SchemaError) as exc:
        return type(exc).__name__, str(exc)


class _Spy:
    """Counts the calls of a real function and lets it run."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _prepass(path, rows: int, mapping=None, encoding: str = "utf-8"):
    m = load_column_mapping(mapping)

    def run():
        header = dio.read_header(path, m, encoding=encoding)
        return burst_context(path, m, encoding, rows, header)

    return _outcome(run)


def _pandas_prepass(monkeypatch, path, rows: int, **kw):
    # The reference: the pre-pass with pandas' own chunked reader.
    with monkeypatch.context() as m:
        m.setattr(dio, "_iter_csv_fast",
                  lambda p, n, e, c, k, d: dio._iter_csv(p, n, e, c, k, d))
        return _prepass(path, rows, **kw)


def _assert_same(got, want, what) -> None:
    if isinstance(want, tuple) and isinstance(want[0], str):
        assert got == want, what  # the same error, word for word
        return
    assert not isinstance(got, tuple) or not isinstance(got[0], str), (what, got)
    (g_ctx, g_rows), (w_ctx, w_rows) = got, want
    assert g_rows == w_rows, what
    pd.testing.assert_series_equal(g_ctx, w_ctx, check_exact=True, obj=str(what))


def _spies(monkeypatch) -> tuple[_Spy, _Spy]:
    fast, slow = _Spy(fastcsv.parse_text_chunk), _Spy(dio._iter_csv)
    monkeypatch.setattr(fastcsv, "parse_text_chunk", fast)
    monkeypatch.setattr(dio, "_iter_csv", slow)
    return fast, slow


@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
@pytest.mark.parametrize("bad_rows", [False, True])
def test_fast_prepass_equals_pandas_prepass_on_odd_files(tmp_path: Path, monkeypatch,
                                                         bad_rows: bool) -> None:
    rng = np.random.default_rng(11 if bad_rows else 12)
    files = []
    for i in range(30):
        p = tmp_path / f"odd{i}.csv"
        p.write_bytes(_odd_csv(rng, bad_rows=bad_rows).encode("utf-8"))
        files.append(p)
    fast, slow = _spies(monkeypatch)
    fell_back = 0
    for i, path in enumerate(files):
        for rows in (1, 2, 7, 1000):
            # Tiny read blocks put record ends and quoted newlines across block edges.
            monkeypatch.setattr(fastcsv, "_BLOCK_BYTES", 5 if i % 4 == 0 else 4 << 20)
            want = _pandas_prepass(monkeypatch, path, rows)
            slow.calls = 0
            got = _prepass(path, rows)
            _assert_same(got, want, (path.name, rows))
            fell_back += slow.calls > 0
    assert fast.calls > 0
    if bad_rows:  # a short line or a line of spaces is read by pandas only
        assert fell_back > 0
    else:
        assert fell_back == 0  # clean files never need pandas
    # The files do have bursts: a context that is empty everywhere would prove nothing.
    assert any(len(_prepass(p, 1000)[0]) for p in files)


@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
def test_fast_prepass_on_the_bad_corpus(monkeypatch) -> None:
    files = sorted((Path(__file__).parent / "data" / "bad").glob("*.csv*"))
    assert len(files) > 10
    for path in files:
        for rows in (1, 3, 1000):
            _assert_same(_prepass(path, rows), _pandas_prepass(monkeypatch, path, rows),
                         (path.name, rows))


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


_CLEAN = (",".join(BURST_HEAD) + "\n" + "".join(
    f"D{i},030490,CN,1,2,x,E{i % 3},2025-01-0{1 + i % 2},{('post', 'courier', 'sea')[i % 3]},1\n"
    for i in range(300)))


@pytest.mark.parametrize("name,text,fallback", [
    ("clean.csv", _CLEAN, False),
    ("clean.csv.gz", _CLEAN, False),
    ("bom.csv", "\ufeff" + _CLEAN, False),
    ("accents.csv", _CLEAN.replace(",x,", ",caf\xe9,"), False),
    # pandas decodes every cell: a bad byte outside the three columns still stops it.
    # (in the description, a column Arrow does not keep, and near the end, beyond what
    # read_header decodes)
    ("bad_utf8.csv", _CLEAN[:_CLEAN.rfind(",x,") + 2] + "\udce9" +
     _CLEAN[_CLEAN.rfind(",x,") + 2:], True),
    ("short_row.csv", _CLEAN + "D99,030490,CN\n", True),
    ("spaces_line.csv", _CLEAN.replace("\nD5,", "\n   \nD5,"), True),
    ("long_row.csv", _CLEAN + "D99,030490,CN,1,2,x,E1,2025-01-01,post,1,extra\n", True),
    # Old Mac line ends: the cutter itself hands over, before Arrow sees a byte.
    ("lone_cr.csv", _CLEAN.replace("\n", "\r"), None),
    ("unclosed_quote.csv", _CLEAN + 'D99,030490,CN,1,2,"x,E1,2025-01-01,post,1\n', True),
], ids=lambda v: v if isinstance(v, str) and v.endswith((".csv", ".gz")) else "")
@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
def test_fast_prepass_falls_back_where_it_must(tmp_path: Path, monkeypatch, name: str,
                                              text: str, fallback: bool | None) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode("utf-8", "surrogateescape"))
                     if name.endswith(".gz") else text.encode("utf-8", "surrogateescape"))
    want = _pandas_prepass(monkeypatch, path, 7)
    fast, slow = _spies(monkeypatch)
    _assert_same(_prepass(path, 7), want, name)
    assert (fast.calls > 0) == (fallback is not None)  # Arrow was tried
    assert (slow.calls > 0) == (fallback is not False)


def test_fast_prepass_other_encoding_and_mapping(tmp_path: Path, monkeypatch) -> None:
    theirs = {"exporter_id": "Consignor", "date": "Accepted", "transport_mode": "Mode"}
    text = _CLEAN.replace(",x,", ",caf\xe9,")
    for k, v in theirs.items():
        text = text.replace(k, v, 1)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({v: k for k, v in theirs.items()}), encoding="utf-8")
    utf8 = _write(tmp_path / "mapped.csv", text)
    latin = _write(tmp_path / "latin.csv", text, "latin-1")
    fast, slow = _spies(monkeypatch)
    got = _prepass(utf8, 7, mapping=str(mapping))
    assert fast.calls > 0 and slow.calls == 0
    _assert_same(got, _pandas_prepass(monkeypatch, utf8, 7, mapping=str(mapping)), "mapped")
    assert got[1] == 300 and got[0].sum() == 200  # post and courier rows: 2 of every 3
    fast.calls = 0
    got = _prepass(latin, 7, mapping=str(mapping), encoding="latin-1")
    assert fast.calls == 0 and slow.calls > 0  # another encoding: pandas reads it
    _assert_same(got, _pandas_prepass(monkeypatch, latin, 7, mapping=str(mapping),
                                      encoding="latin-1"), "latin-1")


def test_prepass_parquet_and_jsonl_keep_their_readers(tmp_path: Path, monkeypatch) -> None:
    df = pd.read_csv(_write(tmp_path / "c.csv", _CLEAN), dtype=str, keep_default_na=False)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "c.parquet")
    (tmp_path / "c.jsonl").write_text(df.to_json(orient="records", lines=True))
    want = _prepass(tmp_path / "c.csv", 7)
    fast, slow = _spies(monkeypatch)
    for ext in ("parquet", "jsonl"):
        _assert_same(_prepass(tmp_path / f"c.{ext}", 7), want, ext)
    assert fast.calls == 0 and slow.calls == 0


def test_text_chunk_parser_refuses_what_pandas_reads_otherwise() -> None:
    names = ["a", "b", "c"]
    ok = fastcsv.parse_text_chunk(fastcsv.text_chunk_bytes([b'x,"y\n1",NA\n', b"\n", b',"",null'],
                                                    names), 2, names, ["a", "c"])
    assert ok["a"].tolist() == ["x", ""] and ok["c"].tolist() == ["NA", "null"]
    assert ok["a"].dtype == pd.StringDtype(na_value=np.nan)
    for data, rows in ((b"x,y,z\n  \n", 1), (b"x,y\n", 1), (b"x,y,z\n", 2),
                       (b"x,\xe9,z\n", 1), (b'x,y,"z\n', 1), (b'x,y,"z', 1)):
        with pytest.raises((fastcsv.Unsupported, pa.ArrowInvalid, UnicodeDecodeError)):
            fastcsv.parse_text_chunk(fastcsv.text_chunk_bytes([data], names), rows, names, ["a"])


# --------------------------------------------------------------------------- rank pass

def _csv_ready_tables(rng: np.random.Generator) -> list[pa.Table]:
    """CSV-ready tables (lists, formulas, quotes, newlines, missing values, numbers in
    several types), an empty one in the middle, as the score spill holds them."""
    cells = ["a", "=1+2", "+x", "-y", "@z", "\tt", 'say "hi"', "a,b", "l1\nl2", "r\r\n",
             "", "NA", "caf\xe9", None]
    tables = []
    for i, n in enumerate((7, 1, 0, 13, 5, 300, 2)):
        df = pd.DataFrame({
            "declaration_id": [f"D{i}-{j}" for j in range(n)],
            "text": pd.Series([cells[k] for k in rng.integers(0, len(cells), n)],
                              dtype=object),
            "score": rng.normal(size=n) * 10 ** float(rng.integers(-8, 8)),
            "rank": np.arange(n, dtype=np.int64) + 100 * i,
            "flagged": rng.random(n) < 0.5,
            "reasons": pd.Series([["x", "=y"] if k % 3 else [] for k in range(n)],
                                 dtype=object),
            "maybe": pd.Series(rng.normal(size=n)).where(rng.random(n) < 0.7),
        })
        tables.append(dio.csv_table(df))
    return tables


@pytest.mark.parametrize("threads,slice_rows", [(1, 25_000), (2, 25_000), (2, 3), (3, 1),
                                               (8, 7)])
def test_threaded_csv_tables_write_the_same_bytes(tmp_path: Path, monkeypatch, threads: int,
                                                  slice_rows: int) -> None:
    # Small slices: the tables are encoded in several pieces, many in flight.
    monkeypatch.setattr(dio, "_ENCODE_ROWS", slice_rows)
    tables = _csv_ready_tables(np.random.default_rng(threads))
    one_by_one, ahead = tmp_path / "one.csv", tmp_path / "ahead.csv"
    with dio.AtomicWriter(one_by_one) as w:
        for t in tables:
            w.write(t)
    with dio.AtomicWriter(ahead) as w2:
        w2.write_csv_tables(iter(tables), threads=threads)
    data = ahead.read_bytes()
    assert data == one_by_one.read_bytes()
    assert w2.rows_written == w.rows_written == sum(t.num_rows for t in tables)
    assert data.count(b"declaration_id") == 1  # one header
    assert b"'=1+2" in data or b"'=y" in data  # formulas stay defused


def test_threaded_csv_tables_after_a_first_write_and_on_errors(tmp_path: Path,
                                                               monkeypatch) -> None:
    monkeypatch.setattr(dio, "_ENCODE_ROWS", 4)
    tables = _csv_ready_tables(np.random.default_rng(0))
    want, got = tmp_path / "want.csv", tmp_path / "got.csv"
    with dio.AtomicWriter(want) as w:
        for t in tables:
            w.write(t)
    with dio.AtomicWriter(got) as w:
        w.write(tables[0])  # the header is written once, by whoever writes first
        w.write_csv_tables(tables[1:], threads=2)
    assert got.read_bytes() == want.read_bytes()
    # A table with other columns fails the write; nothing appears at the output path.
    bad = tmp_path / "bad.csv"
    with pytest.raises(ValueError, match="first chunk's columns"):
        with dio.AtomicWriter(bad) as w:
            w.write_csv_tables([*tables[:3], tables[3].drop_columns(["text"]), *tables[4:]])
    assert not bad.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(ValueError, match="only be written to a CSV"):
        dio.AtomicWriter(tmp_path / "o.parquet").write_csv_tables(tables)
