"""Reading declaration files and writing results, safely.

Reading: CSV (optionally ``.gz``), Parquet and JSON lines, whole or in chunks of bounded
memory. The header is checked (duplicates, required columns after mapping) before any
data is read, so a wrong file fails in milliseconds with one clear message, and every
whole-file problem (missing, empty, not UTF-8, corrupt, ragged) becomes an
:class:`~detector.errors.InputError` or :class:`~detector.errors.SchemaError` instead of
a pandas/pyarrow traceback. Row-level problems are NOT handled here: values are read as
raw as possible and :mod:`detector.validate` decides, row by row, what is valid.

The index of every frame returned is the 0-based position of the row among the data rows
of the file, continuing across chunks, so that a reject can always be traced back to its
input line even when the row has no id.

Writing: :class:`AtomicWriter` writes to a hidden temp file in the destination folder and
renames it over the destination only on success (``os.replace`` is atomic on POSIX and
Windows within one file system). An interrupted or failed run therefore never leaves a
half-written file that looks complete.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import json
import os
import secrets
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from io import StringIO
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import InputError, SchemaError
from .fastcsv import FALLBACK_ERRORS, NA_TOKENS, TEXT_COLUMNS, CsvDialect, csv_frames
from .schema import CSV_SEPARATORS, REQUIRED, ColumnMapping, rename_map

__all__ = [
    "rejects_path",
    "NA_TOKENS",
    "TEXT_COLUMNS",
    "decategorise",
    "format_of",
    "parquet_file",
    "real_encoding",
    "READ_FORMATS",
    "WRITE_FORMATS",
    "CSV_INJECTION_PREFIXES",
    "LIST_SEPARATOR",
    "read_table",
    "iter_tables",
    "read_header",
    "CsvDialect",
    "csv_dialect",
    "AtomicWriter",
    "write_table",
    "csv_table",
    "atomic_write_text",
    "atomic_write_bytes",
]

# Suffix -> format. Longest suffixes are matched first (".csv.gz" before ".gz").
READ_FORMATS: Mapping[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson.gz": "jsonl",
}
WRITE_FORMATS: Mapping[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

# OWASP "CSV injection": a spreadsheet treats a cell starting with one of these as a formula.
CSV_INJECTION_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
# How a list cell (e.g. the reasons of a score) is written in a CSV cell.
LIST_SEPARATOR = " | "

_DEFAULT_CHUNK_ROWS = 100_000

# --------------------------------------------------------------------------- reading


def format_of(path: Path, formats: Mapping[str, str], what: str) -> str:
    name = path.name.lower()
    for suffix in sorted(formats, key=len, reverse=True):
        if name.endswith(suffix):
            return formats[suffix]
    hint = ""
    if what == "INPUT" and name.endswith(".joblib"):
        hint = ("; this looks like a model file: were two arguments swapped? The model file "
                "comes first, then the declarations")
    raise InputError(
        f"{what} {path}: unknown file type; supported extensions are "
        f"{', '.join(formats)}{hint}"
    )


def _check_input_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"INPUT {path} does not exist")
    if path.is_dir():
        raise InputError(f"INPUT {path} is a directory; expected a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"INPUT {path} is not readable (permission denied)")


def _empty_error(path: Path) -> InputError:
    return InputError(
        f"INPUT {path} is empty: expected a header line with columns "
        f"{', '.join(REQUIRED)} (and optional ones)"
    )


def _no_rows_error(path: Path) -> InputError:
    return InputError(f"INPUT {path} has a header but no data rows")


def real_encoding(encoding: str) -> str:
    # "utf-8-sig" decodes plain UTF-8 too and drops a BOM that spreadsheets like to add.
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}; try utf-8 or latin-1") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _open_text(path: Path, encoding: str) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _encoding_error(path: Path, encoding: str) -> InputError:
    """Locate the first undecodable byte (only called once decoding has already failed).

    Scans the file in blocks with an incremental decoder, so the position is exact even
    when pandas reports it relative to one of its internal buffers.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    lines = 1
    try:
        with _open_binary(path) as fh:
            while True:
                block = fh.read(1 << 20)
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    pos = offset - pending + exc.start
                    lines += block[: max(exc.start - pending, 0)].count(b"\n")
                    bad = exc.object[exc.start : exc.start + 4]
                    return InputError(
                        f"INPUT {path} is not valid {encoding.replace('-sig', '')}: "
                        f"undecodable byte(s) {bad!r} at byte position {pos} (line {lines}); "
                        "pass --encoding (e.g. --encoding latin-1 or cp1252) if the file uses "
                        "another encoding"
                    )
                if not block:
                    break
                offset += len(block)
                lines += block.count(b"\n")
    except (OSError, EOFError, zlib.error) as exc:
        return InputError(f"INPUT {path} cannot be read: {exc}")
    return InputError(
        f"INPUT {path} is not valid {encoding}; pass --encoding (e.g. latin-1) if the file "
        "uses another encoding"
    )


def _unique_names(names: list[str]) -> list[str]:
    # An empty header cell (e.g. a trailing comma on every line) gets a visible name
    # instead of pandas' "Unnamed: 3", and two empty cells are not reported as duplicates.
    return [n if n.strip() else f"unnamed_{i + 1}" for i, n in enumerate(names)]


def _csv_header(path: Path, encoding: str, sep: str = ",") -> list[str]:
    # The csv module sees the header exactly as written; pandas would silently rename a
    # duplicate "x" to "x.1", which is the bug we must report.
    try:
        with _open_text(path, encoding) as fh:
            for record in csv.reader(fh, delimiter=sep):
                if record and any(cell.strip() for cell in record):
                    return _unique_names(record)
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except csv.Error as exc:
        raise InputError(f"INPUT {path}: the header line cannot be parsed as CSV: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"INPUT {path} cannot be read: {exc}") from None
    raise _empty_error(path)


def _first_line(path: Path, encoding: str) -> str:
    try:
        with _open_text(path, encoding) as fh:
            for line in fh:
                if line.strip():
                    return line
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"INPUT {path} cannot be read: {exc}") from None
    raise _empty_error(path)


def _fields(line: str, sep: str) -> int:
    return len(next(csv.reader([line], delimiter=sep), []))


def csv_dialect(path: str | os.PathLike[str], encoding: str = "utf-8",
                mapping: ColumnMapping | Mapping[str, Any] | None = None) -> CsvDialect:
    """The separator and decimal mark to read a CSV file with: the mapping's
    (:class:`~detector.schema.ColumnMapping` ``sep``/``decimal``), the separator detected
    from the header line when the mapping does not give one.

    Detection takes the one of ``, ; tab |`` that splits the header into the most
    fields (the comma when they tie), as spreadsheet programs guess; with decimal commas
    the comma is not a candidate.
    """
    m = ColumnMapping.from_obj(mapping)
    sep, decimal = m.sep, m.decimal
    p = Path(path)
    if sep is None:
        line = _first_line(p, real_encoding(encoding))
        counts = {s: _fields(line, s) for s in dict.fromkeys(CSV_SEPARATORS.values())}
        # max() keeps the first of equal counts: the comma, listed first, wins ties.
        found = max(counts, key=counts.__getitem__)
        if decimal == "," and found == ",":
            found = max((s for s in counts if s != ","), key=counts.__getitem__)
            if counts[found] == 1:
                raise InputError(
                    f"INPUT {p}: with decimal commas the fields must be separated by ';', "
                    "tab or '|', but the header line holds none of them; pass --sep")
        return CsvDialect(found, decimal)
    return CsvDialect(sep, decimal)


def _separator_hint(path: Path, names: list[str], dialect: CsvDialect) -> None:
    # Only reached when --sep was given: detection would have split such a header.
    if len(names) != 1:
        return
    for name, real in CSV_SEPARATORS.items():
        if real != dialect.sep and real in names[0]:
            shown = "tab" if real == "\t" else real
            raise SchemaError(
                f"INPUT {path}: the header has a single column {names[0][:60]!r} when split "
                f"by {dialect.sep!r}; the file seems to be separated by {shown!r}: pass "
                f"--sep {name!r}, or leave --sep out to detect it")


def _jsonl_header(path: Path, encoding: str) -> list[str]:
    # JSON objects do not need the same keys on every line; the first record is the header.
    # json.loads would keep only the last of two equal keys, so pairs are checked here.
    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dups = sorted({k for k in keys if keys.count(k) > 1})
        if dups:
            raise SchemaError(
                f"INPUT {path}: duplicate column names in the input: {dups}; each key must be "
                "unique"
            )
        return dict(pairs)

    try:
        with _open_text(path, encoding) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line, object_pairs_hook=pairs_hook)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"INPUT {path}: line {lineno} is not valid JSON ({exc.msg} at column "
                        f"{exc.colno}); expected one JSON object per line"
                    ) from None
                if not isinstance(obj, dict):
                    raise InputError(
                        f"INPUT {path}: line {lineno} is a JSON {type(obj).__name__}, expected "
                        "one JSON object per line"
                    )
                return [str(k) for k in obj]
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"INPUT {path} cannot be read: {exc}") from None
    raise _empty_error(path)


def parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"INPUT {path} is not a valid Parquet file (corrupt or truncated): {exc}"
        ) from None


def read_header(
    path: str | os.PathLike[str],
    mapping: ColumnMapping | Mapping[str, Any] | None = None,
    *,
    encoding: str = "utf-8",
) -> list[str]:
    """The canonical column names of a file, checked, without reading its data.

    A CSV file is read with :func:`csv_dialect` (the mapping's separator, or detected).
    Raises :class:`SchemaError` on duplicate names or missing required columns.
    """
    p = Path(path)
    fmt = format_of(p, READ_FORMATS, "INPUT")
    _check_input_file(p)
    if p.stat().st_size == 0:
        raise _empty_error(p)
    if fmt == "parquet":
        names = _unique_names(list(parquet_file(p).schema_arrow.names))
    elif fmt == "jsonl":
        names = _jsonl_header(p, real_encoding(encoding))
    else:
        dialect = csv_dialect(p, encoding, mapping)
        names = _csv_header(p, real_encoding(encoding), dialect.sep)
        _separator_hint(p, names, dialect)
    try:
        renames = rename_map(names, mapping)
    except SchemaError as exc:
        raise SchemaError(f"INPUT {p}: {exc}") from None
    return [renames.get(n, n) for n in names]


def _iter_csv(path: Path, names: list[str], encoding: str, chunk_rows: int | None,
              usecols: list[str] | None = None, dialect: CsvDialect = CsvDialect()):
    dtype = {n: "str" for n in names if n in TEXT_COLUMNS}
    na_values = {n: list(NA_TOKENS) for n in names if n not in TEXT_COLUMNS}
    try:
        reader = pd.read_csv(
            path,
            header=0,
            names=names,
            usecols=usecols,
            sep=dialect.sep,
            decimal=dialect.decimal,
            # Without this, a line with one field too many would shift the first column
            # into the index instead of failing.
            index_col=False,
            dtype=dtype,
            keep_default_na=False,
            na_values=na_values,
            encoding=encoding,
            compression="infer",
            chunksize=chunk_rows,
            skip_blank_lines=True,
        )
        if chunk_rows is None:
            yield reader
            return
        with reader:
            yield from reader
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except pd.errors.EmptyDataError:
        raise _no_rows_error(path) from None
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        hint = (
            f"every line must have as many fields as the header's {len(names)}; quote fields "
            "that contain commas"
            if "fields" in msg
            else "a quoted field is probably not closed"
        )
        raise InputError(f"INPUT {path} is not a well-formed CSV file: {msg} ({hint})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"INPUT {path} cannot be read: {exc}") from None


def _iter_csv_fast(path: Path, names: list[str], encoding: str, chunk_rows: int,
                   usecols: list[str] | None, dialect: CsvDialect):
    yielded = 0
    try:
        with _open_binary(path) as fh:
            for df in csv_frames(fh, names, encoding, chunk_rows, usecols, dialect):
                yielded += 1
                yield df
    except FALLBACK_ERRORS:
        # The pandas reader reproduces the rows already yielded (same cuts): skip them.
        for i, df in enumerate(_iter_csv(path, names, encoding, chunk_rows, usecols, dialect)):
            if i >= yielded:
                yield df


def _iter_jsonl(path: Path, encoding: str, chunk_rows: int | None):
    # Lines are grouped here (not by pandas) so that a bad line can be reported by number.
    first_line = 1
    try:
        with _open_text(path, encoding) as fh:
            while True:
                block = list(islice(fh, chunk_rows)) if chunk_rows else fh.readlines()
                if not block:
                    return
                records = [line for line in block if line.strip()]
                if records:
                    try:
                        df = pd.read_json(StringIO("".join(records)), lines=True, dtype=False)
                    except ValueError:
                        # pandas refuses some valid JSON (integers beyond 64 bits): parse
                        # the lines one by one, so only truly bad lines stop the file and
                        # absurd values reach validation, which rejects them row by row.
                        df = _json_lines_slow(path, block, first_line)

                    yield df
                first_line += len(block)
                if not chunk_rows:
                    return
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"INPUT {path} cannot be read: {exc}") from None


def _json_lines_slow(path: Path, block: list[str], first_line: int) -> pd.DataFrame:
    rows = []
    for line in block:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise _bad_json_line(path, block, first_line) from None
        if not isinstance(obj, dict):
            raise _bad_json_line(path, block, first_line)
        # Integers a float cannot hold become text; validation reports them.
        rows.append({k: (str(v) if isinstance(v, int) and not isinstance(v, bool)
                         and abs(v) >= 2**63 else v) for k, v in obj.items()})
    return pd.DataFrame(rows)


def _bad_json_line(path: Path, block: list[str], first_line: int) -> InputError:
    # Error path only: find which line of the block pandas choked on.
    for i, line in enumerate(block):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            return InputError(
                f"INPUT {path}: line {first_line + i} is not valid JSON ({exc.msg} at column "
                f"{exc.colno}); expected one JSON object per line"
            )
        if not isinstance(obj, dict):
            return InputError(
                f"INPUT {path}: line {first_line + i} is a JSON {type(obj).__name__}, "
                "expected one JSON object per line"
            )
    return InputError(f"INPUT {path}: cannot be parsed as JSON lines (one object per line)")


def _iter_parquet(path: Path, chunk_rows: int | None, columns: list[str] | None = None):
    pf = parquet_file(path)
    try:
        if chunk_rows is None:
            yield pf.read(columns=columns).to_pandas()
            return
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"INPUT {path} is a corrupt Parquet file: {exc}") from None


def decategorise(df: pd.DataFrame) -> pd.DataFrame:
    # Parquet dictionary columns arrive as categoricals; downstream wants plain values.
    for name in df.columns[[isinstance(t, pd.CategoricalDtype) for t in df.dtypes]]:
        df[name] = df[name].astype(df[name].cat.categories.dtype)
    return df


def _iter(
    path: str | os.PathLike[str],
    mapping: ColumnMapping | Mapping[str, Any] | None,
    chunk_rows: int | None,
    encoding: str,
    usecols: Iterable[str] | None = None,
) -> Iterator[pd.DataFrame]:
    p = Path(path)
    fmt = format_of(p, READ_FORMATS, "INPUT")
    names = read_header(p, mapping, encoding=encoding)
    enc = real_encoding(encoding)
    keep = None if usecols is None else [n for n in names if n in set(usecols)]
    if fmt == "csv":
        dialect = csv_dialect(p, encoding, mapping)
        chunks = (_iter_csv(p, names, enc, chunk_rows, keep, dialect) if chunk_rows is None
                  else _iter_csv_fast(p, names, enc, chunk_rows, keep, dialect))
    elif fmt == "jsonl":
        chunks = _iter_jsonl(p, enc, chunk_rows)
    else:
        raw = list(parquet_file(p).schema_arrow.names)
        chunks = _iter_parquet(p, chunk_rows, None if keep is None else
                               [r for r, n in zip(raw, names, strict=True) if n in keep])
    json_renames: dict[str, str] = {}
    if fmt == "jsonl":
        # JSON keys may differ from line to line: map them by name, not by position.
        json_renames = rename_map(_jsonl_header(p, enc), mapping)
    start = 0
    for df in chunks:
        if fmt == "jsonl":
            df = df.rename(columns=json_renames)
            # A line may lack keys the first line had: keep the column, values missing.
            if any(n not in df.columns for n in names):
                df = df.reindex(columns=[*names, *[c for c in df.columns if c not in names]])
        else:
            # CSV / Parquet: same columns, same order as the header
            df.columns = names if keep is None else keep
        if keep is not None:
            df = df[[c for c in keep if c in df.columns]]
        if fmt == "parquet":
            df = decategorise(df)
        if len(df) == 0:
            continue
        df.index = pd.RangeIndex(start, start + len(df))
        start += len(df)
        yield df
    if start == 0:
        raise _no_rows_error(p)


def iter_tables(
    path: str | os.PathLike[str],
    mapping: ColumnMapping | Mapping[str, Any] | None = None,
    chunk_rows: int = _DEFAULT_CHUNK_ROWS,
    *,
    encoding: str = "utf-8",
    usecols: Iterable[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the file in chunks of at most ``chunk_rows`` rows, canonical column names.

    ``usecols`` (canonical names) reads only those columns, for cheap pre-passes.

    Each chunk's index continues the 0-based data-row position (the second chunk starts at
    ``chunk_rows``). The header is checked before the first chunk is read; a whole-file
    problem raises :class:`InputError`/:class:`SchemaError`, possibly after earlier chunks
    were yielded (e.g. a ragged line in the middle of a CSV), so write outputs through
    :class:`AtomicWriter`.
    """
    if not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return _iter(path, mapping, int(chunk_rows), encoding, usecols)


def read_table(
    path: str | os.PathLike[str],
    mapping: ColumnMapping | Mapping[str, Any] | None = None,
    *,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a whole CSV / Parquet / JSON-lines file with canonical column names.


    Text columns (ids, codes, dates, free text) are strings exactly as written ("030490"
    keeps its zero, "NA" stays Namibia); numeric columns are parsed by pandas and may come
    back as strings when they hold junk (validation reports it). Extra columns are kept.
    The index is a RangeIndex of the 0-based data-row positions.
    """
    frames = list(_iter(path, mapping, None, encoding))
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames)
    return out


# --------------------------------------------------------------------------- writing


class _AtomicFile:
    """A hidden temp file next to ``path`` that replaces ``path`` only on commit."""

    def __init__(self, path: str | os.PathLike[str], force: bool) -> None:
        self.path = Path(path)
        self.force = force
        if self.path.is_dir():
            raise InputError(f"OUTPUT {self.path} is a directory; expected a file name")
        if self.path.exists() and not force:
            raise InputError(f"OUTPUT {self.path} exists; pass --force to overwrite")
        parent = self.path.parent
        if not parent.is_dir():
            raise InputError(f"OUTPUT folder {parent} does not exist; create it first")
        self.tmp: Path | None = None
        self.fh: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        if self.fh is None:
            # Same folder, so os.replace is a rename on one file system (atomic); hidden so
            # a leftover from a SIGKILL is not mistaken for an output.
            name = f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            tmp = self.path.parent / name
            # O_EXCL: never clobber someone else's temp; 0o666 & umask like a normal file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            self.tmp = tmp
            self.fh = os.fdopen(fd, "wb")
        return self.fh

    def commit(self) -> None:
        fh = self.open()
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        assert self.tmp is not None
        if not self.force and self.path.exists():
            # Someone created the output while we were working: do not clobber it.
            self.abort()
            raise InputError(f"OUTPUT {self.path} exists; pass --force to overwrite")
        os.replace(self.tmp, self.path)
        self.tmp = None
        # Make the rename itself durable (best effort: not possible on every platform).
        with contextlib.suppress(OSError):
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def abort(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.close()
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None


def _is_text_dtype(dtype: Any) -> bool:
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


_LIST_TYPES = (list, tuple, np.ndarray)


def _list_mask(s: pd.Series) -> np.ndarray:
    values = s.to_numpy(dtype=object)
    # A column is nearly always all lists (reasons) or no lists at all (ids, names):
    # the set of types settles it in C; only a mixed column is checked value by value.
    kinds = set(map(type, values))
    if kinds.isdisjoint(_LIST_TYPES):
        return np.zeros(len(s), dtype=bool)
    if kinds <= set(_LIST_TYPES):
        return np.ones(len(s), dtype=bool)
    return np.fromiter((type(v) in _LIST_TYPES for v in values), bool, len(s))


def _join_one(v: Any) -> str:
    try:
        return LIST_SEPARATOR.join(v)
    except TypeError:  # items that are not strings are written as str() of each
        return LIST_SEPARATOR.join(map(str, v))


def _join_lists(s: pd.Series, mask: np.ndarray) -> pd.Series:
    values = s.to_numpy(dtype=object).copy()
    lists = values[mask].tolist()
    try:  # lists of strings (reasons): one join per row, no call per row around it
        values[mask] = [LIST_SEPARATOR.join(v) for v in lists]
    except TypeError:
        values[mask] = [_join_one(v) for v in lists]
    return pd.Series(values, index=s.index, dtype=object)


def _neutralise(s: pd.Series) -> pd.Series:
    starts = s.str.startswith(CSV_INJECTION_PREFIXES)
    mask = starts.fillna(False).to_numpy(dtype=bool) if starts.dtype == object else (
        starts.to_numpy(dtype=bool, na_value=False)
    )
    if mask.any():
        s = s.copy()
        s[mask] = "'" + s[mask].astype(str)
    return s


def _csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Lists joined into one cell, and text cells that a spreadsheet would run defused."""
    safe = df.copy()
    for i in range(df.shape[1]):
        s = df.iloc[:, i]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        if not _is_text_dtype(s.dtype):
            continue  # numbers and dates are not formulas: -3.5 stays a number
        if pd.api.types.is_object_dtype(s.dtype):
            lists = _list_mask(s)
            if lists.any():
                s = _join_lists(s, lists)
            if pd.api.types.infer_dtype(s, skipna=True) == "string":
                # Text only: as Arrow strings (what the writer makes of it anyway), the
                # formula check runs in C instead of once per Python object.
                s = s.astype("str")
        safe.isetitem(i, _neutralise(s))
    # Header names come from the user too.
    header = pd.Series([str(c) for c in df.columns], dtype=object)
    safe.columns = _neutralise(header).tolist()
    return safe


def _arrow_schema(table: pa.Table) -> pa.Schema:
    # An all-missing first chunk has no type to learn from: text is the safe guess.
    fields = []
    for f in table.schema:
        if pa.types.is_null(f.type):
            f = f.with_type(pa.large_string())
        elif pa.types.is_list(f.type) and pa.types.is_null(f.type.value_type):
            f = f.with_type(pa.list_(pa.large_string()))
        fields.append(f)
    return pa.schema(fields, metadata=table.schema.metadata)


def csv_table(df: pd.DataFrame) -> pa.Table:
    """``df`` as a CSV output writes it: lists joined, formulas defused, text as Arrow
    strings (see :class:`AtomicWriter`)."""
    safe = _csv_safe(df)
    # Object columns become text first: pyarrow guesses no types.
    table = pa.Table.from_pandas(
        safe.astype({c: "str" for c, t in safe.dtypes.items()
                     if pd.api.types.is_object_dtype(t)}), preserve_index=False)
    return table.cast(pa.schema([
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) or
        pa.types.is_string(f.type) else f for f in table.schema]))


# Rows per CSV slice encoded by AtomicWriter.write_csv_tables: small buffers, and
# work for both threads within one table.
_ENCODE_ROWS = 25_000


def _csv_bytes(table: pa.Table, header: bool | None) -> pa.Buffer | None:
    """``table`` as :meth:`AtomicWriter._write_csv` writes it (None: nothing to write)."""
    if header is None:
        return None
    sink = pa.BufferOutputStream()
    AtomicWriter._write_csv(table, sink, header)
    return sink.getvalue()


class AtomicWriter:
    """Write a table in chunks to ``path``, all or nothing.

    >>> with AtomicWriter("scores.csv", force=True) as w:  # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.write(chunk)

    The format follows the extension (.csv, .parquet/.pq, .jsonl/.ndjson). Data goes to a
    hidden temp file in the same folder; a clean exit flushes, fsyncs and renames it over
    ``path``; an exception (KeyboardInterrupt included) deletes it and re-raises. A kill
    -9 can leave the hidden temp file behind but never a partial file at ``path``.
    The existence check (``force``) happens at construction, before any work.

    List cells (e.g. ``reasons``) are written as ``"a | b"`` in CSV, ``list<string>`` in
    Parquet and JSON arrays in JSONL. CSV text cells starting with ``= + - @ \\t \\r``
    are prefixed with ``'`` (OWASP CSV injection); numeric columns are left alone.
    """

    def __init__(self, path: str | os.PathLike[str], force: bool = False) -> None:
        self.path = Path(path)
        self.format = format_of(self.path, WRITE_FORMATS, "OUTPUT")
        self._file = _AtomicFile(self.path, force)
        self._columns: list[Any] | None = None
        self._pq_writer: pq.ParquetWriter | None = None
        self._pq_schema: pa.Schema | None = None
        self._done = False
        self.rows_written = 0

    def __enter__(self) -> AtomicWriter:
        self._file.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _check_columns(self, df: pd.DataFrame) -> pd.DataFrame:
        if self._columns is None:
            self._columns = list(df.columns)
            return df
        extra = [c for c in df.columns if c not in self._columns]
        if extra:
            raise ValueError(
                f"every chunk written to {self.path} must have the first chunk's columns; "
                f"new columns {extra[:5]}"
            )
        if list(df.columns) != self._columns:
            df = df.reindex(columns=self._columns)
        return df

    def write(self, df: pd.DataFrame | pa.Table) -> None:
        """Append one chunk (the first chunk fixes the columns and, for Parquet, types).

        A CSV output also takes a table made by :func:`csv_table` (for pipelines that
        prepare chunks ahead of writing them): it is written as it is.
        """
        if self._done:
            raise ValueError(f"AtomicWriter for {self.path} is already closed")
        if isinstance(df, pa.Table):
            self._write_csv_table(df)
            return
        first = self._columns is None
        df = self._check_columns(df)
        fh = self._file.open()
        if self.format == "csv":
            if len(df) or first:
                self._write_csv(csv_table(df), fh, first)
        elif self.format == "jsonl":
            if len(df):
                text = df.to_json(
                    orient="records", lines=True, force_ascii=False, date_format="iso"
                )
                if not text.endswith("\n"):
                    text += "\n"
                fh.write(text.encode("utf-8"))
        else:
            self._write_parquet(df, fh)
        self.rows_written += len(df)

    def write_csv_tables(self, tables: Iterable[pa.Table], threads: int = 2) -> None:
        """Write tables made by :func:`csv_table`, in order: the same bytes as
        :meth:`write` of each, sooner.

        Encoding a table as CSV (Arrow's C++, without the GIL) takes longer than reading
        or writing it, so ``threads`` slices of the tables are encoded at once while the
        finished ones are written; at most ``threads`` + 1 slices of
        ``_ENCODE_ROWS`` rows are held as CSV at any time. CSV rows are encoded one by
        one, so slices give the bytes of the whole table.
        """
        from concurrent.futures import ThreadPoolExecutor

        if self._done:
            raise ValueError(f"AtomicWriter for {self.path} is already closed")
        pool = ThreadPoolExecutor(max_workers=max(1, int(threads)),
                                  thread_name_prefix="detector-csv-write")
        pending: deque = deque()

        def write_oldest() -> None:
            encoded, rows = pending.popleft()
            data = encoded.result()
            if data is not None:
                self._file.open().write(data)
            self.rows_written += rows

        try:
            for table in tables:
                header = self._csv_table_header(table)
                for start in range(0, max(table.num_rows, 1), _ENCODE_ROWS):
                    part = table.slice(start, _ENCODE_ROWS)
                    pending.append((pool.submit(_csv_bytes, part, header), part.num_rows))
                    header = False if header is not None else None
                    while len(pending) > max(1, int(threads)):
                        write_oldest()
            while pending:
                write_oldest()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _csv_table_header(self, table: pa.Table) -> bool | None:
        """Check a table's columns: whether it is written with the header (the first
        one), or None when there is nothing to write."""
        if self.format != "csv":
            raise ValueError(f"an Arrow table (from csv_table) can only be written to a CSV "
                             f"output, not {self.path}")
        first = self._columns is None
        if first:
            self._columns = list(table.column_names)
        elif table.column_names != self._columns:
            raise ValueError(f"every chunk written to {self.path} must have the first "
                             f"chunk's columns {self._columns[:5]}")
        return first if table.num_rows or first else None

    def _write_csv_table(self, table: pa.Table) -> None:
        header = self._csv_table_header(table)
        if header is not None:
            self._write_csv(table, self._file.open(), header)
        self.rows_written += table.num_rows

    @staticmethod
    def _write_csv(table: pa.Table, fh: IO[bytes] | pa.NativeFile, header: bool) -> None:
        # pyarrow's writer is C++ and several times faster than to_csv. It quotes every
        # text cell, so a cell holding "\r" or "\n" can never split a row; numbers are
        # written in their shortest exact form (read back bit for bit) and missing values
        # as empty cells.
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=header,
                                                     quoting_style="needed"))

    def _write_parquet(self, df: pd.DataFrame, fh: IO[bytes]) -> None:
        if self._pq_schema is None:
            table = pa.Table.from_pandas(df, preserve_index=False)
            self._pq_schema = _arrow_schema(table)
            table = table.cast(self._pq_schema)
            self._pq_writer = pq.ParquetWriter(fh, self._pq_schema)
        else:
            try:
                table = pa.Table.from_pandas(df, schema=self._pq_schema, preserve_index=False)
            except (pa.ArrowException, ValueError, TypeError) as exc:
                raise ValueError(
                    f"a chunk written to {self.path} does not fit the first chunk's column "
                    f"types: {exc}"
                ) from None
        assert self._pq_writer is not None
        self._pq_writer.write_table(table)

    def commit(self) -> None:
        """Finish the file and move it into place (called by a clean ``with`` exit)."""
        if self._done:
            return
        try:
            if self.format == "parquet":
                if self._pq_writer is None:
                    # Nothing was written: still leave a valid (empty) Parquet file.
                    self._pq_writer = pq.ParquetWriter(self._file.open(), pa.schema([]))
                self._pq_writer.close()
            self._file.commit()
        except BaseException:
            self._file.abort()
            raise
        finally:
            self._done = True

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left as it was."""
        if self._done:
            return
        self._done = True
        if self._pq_writer is not None:
            with contextlib.suppress(Exception):
                self._pq_writer.close()
        self._file.abort()


def rejects_path(output: str | os.PathLike) -> Path:
    """``scored.csv`` -> ``scored.rejects.csv`` (always CSV: people open it)."""
    p = Path(output)
    name = p.name
    for ext in (".csv.gz", ".parquet", ".jsonl", ".ndjson", ".csv", ".pq"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return p.with_name(name + ".rejects.csv")


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], force: bool = False) -> None:
    """Write one frame atomically; the format follows the extension (see AtomicWriter)."""
    with AtomicWriter(path, force=force) as writer:
        writer.write(df)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, force: bool = True) -> None:
    """Write a small file (report, summary) all or nothing."""
    f = _AtomicFile(path, force)
    try:
        f.open().write(data)
        f.commit()
    except BaseException:
        f.abort()
        raise


def atomic_write_text(
    path: str | os.PathLike[str], text: str, force: bool = True, encoding: str = "utf-8"
) -> None:
    """Write a small text file (JSON summary, HTML report) all or nothing."""
    atomic_write_bytes(path, text.encode(encoding), force=force)
