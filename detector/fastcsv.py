"""The fast chunked CSV reader: a file cut at record ends, each chunk parsed on its own.

:mod:`detector.io` reads a CSV in chunks through :func:`csv_frames` and, on any
:data:`FALLBACK_ERRORS`, hands the file to pandas' own chunked reader, which then gives the
rows (or the error message) exactly as it always did. This module knows nothing of file
names, mappings or error wording: it takes an open binary file and either yields the very
frames pandas would or raises. :func:`read_ahead` lives here too because the text reader
cuts the file in a background thread with it; the engine uses the same function to read
(and validate) the next chunk while one is scored.
"""

from __future__ import annotations

import contextlib
import csv
import queue
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .schema import TEXT

__all__ = [
    "CsvDialect",
    "FALLBACK_ERRORS",
    "NA_TOKENS",
    "TEXT_COLUMNS",
    "Unsupported",
    "byte_chunks",
    "csv_frames",
    "parse_text_chunk",
    "read_ahead",
    "record_ends",
    "text_chunk_bytes",
]

# Text-like columns are read verbatim: the pandas default NA tokens include "NA", which is
# Namibia's country code, and "" must stay distinguishable from a real value only in
# numeric columns. Validation treats an empty/blank text cell as missing.
TEXT_COLUMNS: frozenset[str] = frozenset((*TEXT, "fraud_scheme"))
# pandas' default NA tokens, applied to the non-text (numeric / extra) columns only.
NA_TOKENS: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written: field separator and decimal mark."""

    sep: str = ","
    decimal: str = "."


# pandas 3 parses a CSV several times faster when it infers the column types than when it
# is told dtype="str": inferred text becomes Arrow strings inside the (threaded) parser,
# while an explicit dtype takes a slow per-value conversion afterwards. Inference is exact
# for text whenever it yields a str column (the values are the characters as written);
# only a column that looks numeric or boolean ("030490", "True") loses its text, and such
# columns are read again, explicitly as str, from the same bytes.
#
# To read the same bytes twice, the file is cut into chunks of exactly ``chunk_rows`` data
# rows here, at record ends (newlines outside quotes), and each chunk is parsed on its
# own. The chunks hold the same rows as pandas' chunked reader would give, so everything
# downstream is unchanged. Anything this cutter does not model exactly (another encoding,
# a bare "\r" line end, a parse error, ...) hands over to the pandas reader, which then
# produces the rows, or the error message, exactly as before.
_BLOCK_BYTES = 4 << 20
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[ord(" "), ord("\t"), ord("\r"), ord("\n")]] = True


class Unsupported(Exception):
    """The fast reader cannot vouch for this input: the pandas reader takes over."""


def record_ends(a: np.ndarray, final: bool) -> tuple[np.ndarray, np.ndarray]:
    """(end position, blank?) of each complete record in ``a`` (uint8), which starts at a
    record start. A record ends at a newline preceded by an even number of quotes;
    pandas skips blank and whitespace-only lines (``skip_blank_lines``)."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    quotes = np.flatnonzero(a == ord('"'))
    nl = np.flatnonzero(a == ord("\n"))
    ends = nl[np.searchsorted(quotes, nl) % 2 == 0]
    cr = np.flatnonzero(a == ord("\r"))
    # A "\r" not followed by "\n" ends a line for pandas too (old Mac files): not modelled.
    lone = cr[cr + 1 < len(a)]
    if (a[lone + 1] != ord("\n")).any() or (final and len(cr) and cr[-1] == len(a) - 1):
        raise Unsupported
    if final and (len(ends) == 0 or ends[-1] != len(a) - 1) and len(a):
        ends = np.append(ends, len(a))  # last record without a newline
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    # A line is blank when it holds only spaces, tabs and "\r": only lines that start
    # with one of those (rare in real files) need a closer look.
    blank = starts >= ends
    maybe = np.flatnonzero(~blank & _WHITESPACE[a[np.minimum(starts, len(a) - 1)]])
    for i in maybe.tolist():
        blank[i] = not bytes(a[starts[i]:ends[i]]).strip(b" \t\r")
    return ends, blank


def byte_chunks(fh: IO[bytes], chunk_rows: int) -> Iterator[tuple[list[bytes], int]]:
    """The header record, then chunks of ``chunk_rows`` non-blank records (the last one
    shorter), each as (pieces of bytes, number of data rows).

    Each byte is scanned once: a block is scanned together with the unfinished record
    before it only, and the complete records are set aside (not copied) until a chunk
    is full.
    """
    pieces: list[bytes] = []  # complete records of the chunk being filled
    have = 0  # data rows in ``pieces``
    tail = b""  # an unfinished record (or, before the header, everything so far)
    header_done = False
    while True:
        block = fh.read(_BLOCK_BYTES)
        final = not block
        buf = tail + block
        ends, blank = record_ends(np.frombuffer(buf, dtype=np.uint8), final)
        counted = np.cumsum(~blank)
        pos, done = 0, 0
        if not header_done:
            solid = np.flatnonzero(~blank)
            if len(solid) == 0:
                if final:
                    raise Unsupported
                tail = buf
                continue
            # The header is the first non-blank line, for pandas as for read_header.
            pos, done = int(ends[solid[0]]) + 1, int(counted[solid[0]])
            yield [buf[:pos]], 0
            header_done = True
        while len(counted) and have + int(counted[-1]) - done >= chunk_rows:
            i = int(np.searchsorted(counted, done + chunk_rows - have))
            cut = int(ends[i]) + 1
            yield [*pieces, buf[pos:cut]], chunk_rows
            pieces, have, pos, done = [], 0, cut, int(counted[i])
        last = int(ends[-1]) + 1 if len(ends) else 0
        if last > pos:
            pieces.append(buf[pos:last])
            have += int(counted[-1]) - done
        tail = buf[max(last, pos):]
        if final:
            if have > 0:
                yield pieces, have
            return


def _parse_chunk(data: bytes, names: list[str], encoding: str, usecols: list[str] | None,
                 na_values: dict, dialect: CsvDialect) -> pd.DataFrame:
    # ``data`` starts with the header line, so that pandas checks each line's field count
    # against it exactly as when it reads the whole file.
    read = dict(header=0, names=names, index_col=False, keep_default_na=False,
                encoding=encoding, skip_blank_lines=True, sep=dialect.sep,
                decimal=dialect.decimal)
    text = [n for n in (usecols or names) if n in TEXT_COLUMNS]
    # hs_code looks numeric in every file: ask for text directly.
    df = pd.read_csv(BytesIO(data), usecols=usecols, dtype={"hs_code": "str"},
                     na_values={k: v for k, v in na_values.items()
                                if usecols is None or k in usecols}, **read)
    again = [n for n in text if df[n].dtype != _STR]
    if again:
        redo = pd.read_csv(BytesIO(data), usecols=again, dtype=dict.fromkeys(again, "str"),
                           **read)
        if len(redo) != len(df):
            raise Unsupported
        for n in again:
            df[n] = redo[n]
    return df


_STR = pd.StringDtype(na_value=np.nan)


@contextlib.contextmanager
def read_ahead(items: Iterator, depth: int = 1):
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead.

    Parsing a chunk (pandas' C tokenizer, Arrow strings) mostly runs without the GIL,
    so the next chunk is read (and validated, and so on) while this one is used. "Ahead" counts
    the item being made too: the thread starts an item only when fewer than ``depth``
    are waiting, so a chunk's memory is never held twice over for nothing. An
    exception in the thread is raised here, in the consumer, at the item where it
    happened; leaving the block stops the thread (within one item) and closes ``items``.
    """
    q: queue.Queue = queue.Queue()
    room = threading.Semaphore(depth)  # items that may be made and not yet taken
    stop = threading.Event()
    end = object()

    def wait_for_room() -> bool:
        while not stop.is_set():
            if room.acquire(timeout=0.05):
                return True
        return False

    def run() -> None:
        try:
            while wait_for_room():
                try:
                    item = next(items)
                except StopIteration:
                    q.put((True, end))
                    return
                q.put((True, item))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="detector-read-ahead", daemon=True)
    thread.start()

    def consume() -> Iterator:
        while True:
            ok, item = q.get()
            room.release()
            if not ok:
                raise item
            if item is end:
                return
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


# Text columns alone (the pre-pass of ``score``: ids, dates, modes) need no type inference
# and no NA tokens: every cell is its characters as written. Arrow's CSV parser gives
# exactly that, in C++ without the GIL, several times faster than pandas, and two chunks
# are parsed at once. Arrow is stricter than pandas (a short line is an error, not
# missing cells): every error or disagreement on the row count hands the file to the
# pandas reader like any other Unsupported.
_TEXT_THREADS = 2


def _text_only(usecols: list[str] | None) -> bool:
    return bool(usecols) and all(n in TEXT_COLUMNS for n in usecols)


def text_chunk_bytes(pieces: list[bytes], names: list[str], sep: str = ",") -> bytes:
    # Arrow takes a quoted field left open at the end of the data as closed there, where
    # pandas fails ("EOF inside string"). A row of empty cells after the data tells: an
    # open quote swallows it, and the row count no longer matches.
    return b"".join([*pieces, b"\n" + sep.encode() * (len(names) - 1) + b"\n"])


def parse_text_chunk(data: bytes, rows: int, names: list[str],
                      usecols: list[str], sep: str = ",") -> pd.DataFrame:
    """``data`` (from :func:`text_chunk_bytes`) parsed by Arrow, or Unsupported."""
    if np.frombuffer(data, dtype=np.uint8).max(initial=0) >= 0x80:
        # pandas decodes every cell, Arrow only the columns it keeps: a bad byte elsewhere
        # must still stop the file (the pandas reader then words the error).
        data.decode("utf-8")
    if len(data) >= 2**31 - 1:
        raise Unsupported  # more than one Arrow block (block_size is 32-bit)
    table = pacsv.read_csv(
        pa.py_buffer(data),
        # One block, read serially: Arrow's own cutting between blocks is never used, so
        # records are exactly the cutter's (threads work on different chunks instead).
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                       block_size=len(data) + 1),
        parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True,
                                         ignore_empty_lines=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=usecols, column_types=dict.fromkeys(usecols, pa.string()),
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    # A line of spaces (blank for pandas, a row for Arrow) is one way to disagree here.
    if table.num_rows != rows + 1 or any(
            table.column(n)[rows].as_py() != "" for n in usecols):
        raise Unsupported
    df = table.slice(0, rows).to_pandas()
    if any(df[n].dtype != _STR for n in usecols):
        raise Unsupported
    return df


def _text_frames(chunks: Iterator[tuple[list[bytes], int]], names: list[str],
                 usecols: list[str], sep: str) -> Iterator[pd.DataFrame]:
    """The chunks parsed by :func:`parse_text_chunk`, in order.

    The read-ahead thread cuts the file (numpy, mostly without the GIL) and hands each
    chunk to a pool that parses it, while the caller works on the frames already
    yielded; at most one chunk per parsing thread is cut and not yet taken (bounded
    memory). The cutting thread also makes each chunk's bytes: big buffers made by one
    thread, not several, are reused instead of being kept by each thread's allocator.
    An error in the cutter or a parse is raised here, at the chunk where it happened.
    """
    from concurrent.futures import ThreadPoolExecutor

    if len(set(names)) != len(names):
        raise Unsupported
    pool = ThreadPoolExecutor(max_workers=_TEXT_THREADS, thread_name_prefix="detector-csv")

    def submitted():
        for pieces, rows in chunks:
            yield pool.submit(parse_text_chunk, text_chunk_bytes(pieces, names, sep), rows,
                              names, usecols, sep)

    try:
        with read_ahead(submitted(), depth=_TEXT_THREADS) as parses:
            for parse in parses:
                yield parse.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pandas_frames(header: bytes, chunks: Iterator[tuple[list[bytes], int]],
                   names: list[str], encoding: str, usecols: list[str] | None,
                   dialect: CsvDialect) -> Iterator[pd.DataFrame]:
    na_values = {n: list(NA_TOKENS) for n in names if n not in TEXT_COLUMNS}
    for data, rows in chunks:
        with warnings.catch_warnings():
            # pandas only warns when a chunk's first line is too long (it could
            # be an index column); in the whole file that line is an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = _parse_chunk(b"".join([header, *data]), names, encoding, usecols,
                              na_values, dialect)
        if len(df) != rows:  # the cutter and pandas disagree on what a row is
            raise Unsupported
        yield df


# Everything the fast reader may raise on input it does not model: the caller then reads
# the file with pandas (ValueError covers pandas' dtype and field-count complaints,
# StopIteration a file without even a header record).
FALLBACK_ERRORS: tuple[type[BaseException], ...] = (
    Unsupported, StopIteration, pd.errors.ParserWarning, UnicodeDecodeError, ValueError,
    OSError, EOFError, zlib.error, csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError,
    pa.ArrowException)


def csv_frames(fh: IO[bytes], names: list[str], encoding: str, chunk_rows: int,
               usecols: list[str] | None, dialect: CsvDialect) -> Iterator[pd.DataFrame]:
    """The data rows of the open CSV ``fh`` in frames of ``chunk_rows`` rows (the last
    shorter), as pandas' chunked reader would give them, or one of
    :data:`FALLBACK_ERRORS` (possibly after some frames: they are still right, and the
    caller's pandas reader makes the same cuts)."""
    if encoding != "utf-8-sig":
        raise Unsupported
    chunks = byte_chunks(fh, chunk_rows)
    (header,), _ = next(chunks)
    head = header.decode("utf-8-sig")
    # read_header skips a line of empty cells (",,,"), pandas would not.
    cells = next(csv.reader(StringIO(head), delimiter=dialect.sep), [])
    if not any(cell.strip() for cell in cells):
        raise Unsupported
    frames = (_text_frames(chunks, names, usecols, dialect.sep) if _text_only(usecols)
              else _pandas_frames(header, chunks, names, encoding, usecols, dialect))
    yielded = 0
    with contextlib.closing(frames):
        for df in frames:
            yielded += 1
            yield df
    if yielded == 0:
        raise Unsupported  # no data rows: let pandas word it
