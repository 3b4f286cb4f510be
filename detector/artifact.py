"""Model files: save and load them without ever running code hidden inside them.

A model file travels between teams, so a loaded file is untrusted input. A pickle
(and therefore a plain ``joblib.load``) can call any function while it is being
read, which turns "open this model" into "run this program". This module keeps
the joblib container (``joblib.load`` can still open our files, which keeps them
inspectable with standard tools) but never reads it with the default unpickler:

* At save time every value is turned into builtin data only (dict, list, str,
  bytes, int, float, bool, None). numpy arrays and scalars become tagged dicts
  holding the dtype *as text* and the raw bytes, so no numpy class is pickled.
* At load time the pickle is read by :class:`_RestrictedUnpickler`, whose
  ``find_class`` refuses every global. Because the writer never needs one, the
  reader can admit none: there is no allow-list to get wrong.

On-disk format (``FORMAT_VERSION`` 1), an uncompressed joblib file (i.e. a
pickle stream) of one dict of builtins::

    {"magic": "customs-detector-model", "format_version": 1,
     "meta": {... JSON-like, with the version stamp ...},
     "meta_sha256": hex of sha256(canonical JSON of meta),
     "payload_sha256": hex of sha256(payload), "hmac_sha256": hex or None,
     "payload": bytes}   # pickle (protocol 5) of the encoded payload, builtins only

The HMAC (key from ``DETECTOR_MODEL_KEY``) signs the format version, the meta
digest and the payload digest together, so neither the model nor its metadata
(thresholds, feature lists, ...) can be altered by someone without the key.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import io
import json
import math
import os
import pickle
import platform
import re
import secrets
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# numpy is a hard dependency of the whole product; pandas and sklearn are NOT
# imported here on purpose: reading a model's header (e.g. from a CLI ``info``
# command) must stay fast and must not drag those heavy libraries in.
import numpy as np

from ._version import __version__
from .errors import (
    ArtifactError,
    CorruptArtifactError,
    IncompatibleArtifactError,
    SignatureError,
    UnsafeArtifactError,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "KEY_ENV_VAR",
    "save_artifact",
    "load_artifact",
    "read_meta",
]

#: Version of the on-disk layout. Bump it on any change an older reader would
#: misread; readers refuse every other value instead of guessing.
FORMAT_VERSION: int = 1

MAGIC = "customs-detector-model"
KEY_ENV_VAR = "DETECTOR_MODEL_KEY"

# Reserved key marking an encoded (non-plain) value inside the payload. A user
# dict that happens to contain this key is itself encoded (kind "dict"), so a
# payload can never be mistaken for a tag: the round trip stays exact.
_TAG = "__detector_type__"

# dtype kinds a model legitimately holds. Object ("O") arrays would need pickle
# to store their elements; datetimes/void blobs are not needed by the detector.
_PLAIN_KINDS = frozenset("biufcUS")

_ENVELOPE_KEYS = frozenset(
    {"magic", "format_version", "meta", "meta_sha256", "payload_sha256", "hmac_sha256", "payload"}
)

# The payload is written by the standard library pickler, not joblib's: only
# builtins are in it, so protocol 5 framing is all we need.
_PAYLOAD_PICKLE_PROTOCOL = 5


# --------------------------------------------------------------------------- #
# restricted unpickling
# --------------------------------------------------------------------------- #
class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build builtin containers and scalars, nothing else.

    Every way a pickle can reach a callable goes through ``find_class`` (GLOBAL,
    STACK_GLOBAL, INST and the EXT* extension-registry opcodes) or through
    ``persistent_load`` (PERSID/BINPERSID). Both refuse, so REDUCE/OBJ/NEWOBJ
    never get anything callable to call. Out-of-band buffers (NEXT_BUFFER) are
    refused by the stdlib itself because no ``buffers`` are given.
    """

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeArtifactError(
            f"model file {self._where} tries to load '{module}.{name}'; a detector model "
            "only contains plain data, refusing to load it"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeArtifactError(
            f"model file {self._where} uses a pickle persistent id ({pid!r:.60}); a detector "
            "model only contains plain data, refusing to load it"
        )


def _restricted_loads(data: bytes, where: str, what: str) -> Any:
    """Unpickle ``data``; any failure other than a refused global means corruption."""
    stream = io.BytesIO(data)
    try:
        obj = _RestrictedUnpickler(stream, where).load()
    except UnsafeArtifactError:
        raise
    except RecursionError as exc:
        # Absurdly deep nesting is never produced by save_artifact.
        raise CorruptArtifactError(
            f"model file {where} is corrupted: {what} is nested too deeply to read"
        ) from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, TypeError, ...
        # A truncated or bit-flipped pickle fails in many different ways; the
        # user only needs to know the file is damaged (and what we saw).
        raise CorruptArtifactError(
            f"model file {where} is corrupted: its {what} cannot be read "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if stream.read(1):
        # We write exactly one pickle; trailing bytes mean the file was altered.
        raise CorruptArtifactError(
            f"model file {where} is corrupted: unexpected bytes after the end of its {what}"
        )
    return obj


# --------------------------------------------------------------------------- #
# encoding (save side)
# --------------------------------------------------------------------------- #
def _path_str(root: str, path: tuple[Any, ...]) -> str:
    return root + "".join(f"[{p!r}]" for p in path)


def _encode_dtype(dt: np.dtype, where: str) -> Any:
    """dtype → builtins (str for plain dtypes, dict for subarray/structured)."""
    if dt.fields is not None:
        names, formats, offsets, titles = [], [], [], []
        for name in dt.names:
            field = dt.fields[name]
            names.append(name)
            formats.append(_encode_dtype(field[0], f"{where} field {name!r}"))
            offsets.append(int(field[1]))
            titles.append(field[2] if len(field) > 2 else None)
        spec: dict[str, Any] = {
            "names": names,
            "formats": formats,
            "offsets": offsets,
            "itemsize": int(dt.itemsize),
            "aligned": bool(dt.isalignedstruct),
        }
        if any(t is not None for t in titles):
            spec["titles"] = titles
        return spec
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": _encode_dtype(base, where), "shape": [int(s) for s in shape]}
    if dt.kind not in _PLAIN_KINDS:
        raise ArtifactError(
            f"{where} has unsupported dtype {dt.str!r} (kind {dt.kind!r}); a model file "
            "stores only numeric, bool, fixed-width str/bytes and structured arrays of them"
        )
    return dt.str


def _encode(obj: Any, path: tuple[Any, ...], active: set[int]) -> Any:
    t = type(obj)
    # Exact type checks, not isinstance: subclasses (np.float64 is a float,
    # np.str_ is a str, IntEnum is an int) would pickle as their own class.
    if obj is None or t in (bool, int, float, str, bytes):
        return obj
    # Exact ndarray only: a subclass (masked array, recarray, matrix) carries
    # state that raw bytes would silently drop, so it is refused below.
    if t is np.ndarray:
        where = _path_str("payload", path)
        spec = _encode_dtype(obj.dtype, where)
        # Keep Fortran order for F-contiguous arrays so the loaded array has
        # the same memory layout (and the same speed characteristics).
        order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
        return {
            _TAG: "ndarray",
            "dtype": spec,
            "shape": [int(s) for s in obj.shape],
            "order": order,
            "data": obj.tobytes(order=order),
        }
    if isinstance(obj, np.generic):
        where = _path_str("payload", path)
        spec = _encode_dtype(obj.dtype, where)
        return {
            _TAG: "scalar",
            "dtype": spec,
            "data": b"" if obj.dtype.itemsize == 0 else obj.tobytes(),
        }
    if t in (dict, list, tuple):
        where = _path_str("payload", path)
        with _container(obj, active, where):
            if t is dict:
                for k in obj:
                    _str_key(k, where, "payload")
                enc = {k: _encode(v, (*path, k), active) for k, v in obj.items()}
                if _TAG in obj:
                    return {_TAG: "dict", "items": [[k, v] for k, v in enc.items()]}
                return enc
            items = [_encode(v, (*path, i), active) for i, v in enumerate(obj)]
            return {_TAG: "tuple", "items": items} if t is tuple else items
    if isinstance(obj, np.ndarray):
        raise ArtifactError(
            f"{_path_str('payload', path)} has unsupported type {t.__name__} (an ndarray "
            "subclass); store np.asarray(...) of it, plus any mask/extra state as separate arrays"
        )
    raise ArtifactError(
        f"{_path_str('payload', path)} has unsupported type {t.__name__}; a model payload may "
        "only hold dict/list/tuple/str/int/float/bool/None/bytes, numpy arrays and numpy scalars"
    )


@contextlib.contextmanager
def _container(obj: Any, active: set[int], where: str):
    """Descend into one dict/list/tuple: one already being descended into is a cycle."""
    if id(obj) in active:
        raise ArtifactError(f"{where} refers back to a container holding it (a reference cycle)")
    active.add(id(obj))
    try:
        yield
    finally:
        active.discard(id(obj))


def _str_key(k: Any, where: str, what: str) -> None:
    if type(k) is not str:
        raise ArtifactError(f"{where} has a key {k!r} of type {type(k).__name__}; {what} dict "
                            "keys must be str")


def _plain_meta(obj: Any, path: tuple[Any, ...], active: set[int]) -> Any:
    """Check ``meta`` is JSON-like and return a plain copy (tuples become lists)."""
    t = type(obj)
    if obj is None or t in (bool, int, float, str):
        return obj
    if t in (dict, list, tuple):
        where = _path_str("meta", path)
        with _container(obj, active, where):
            if t is dict:
                out = {}
                for k, v in obj.items():
                    _str_key(k, where, "meta")
                    out[k] = _plain_meta(v, (*path, k), active)
                return out
            return [_plain_meta(v, (*path, i), active) for i, v in enumerate(obj)]
    raise ArtifactError(
        f"{_path_str('meta', path)} has unsupported type {t.__name__}; meta must be JSON-like "
        "(dict/list/str/int/float/bool/None)"
    )


def _meta_digest(meta: Any) -> str:
    # Canonical text of meta: sorted keys, floats in repr (exact), NaN allowed.
    text = json.dumps(
        meta, sort_keys=True, ensure_ascii=True, allow_nan=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _signed_message(format_version: int, meta_sha256: str, payload_sha256: str) -> bytes:
    return f"{MAGIC}\n{format_version}\n{meta_sha256}\n{payload_sha256}".encode("ascii")


def _key_bytes(key: bytes | str | None) -> bytes | None:
    if key is None:
        key = os.environ.get(KEY_ENV_VAR) or None
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"key must be bytes, str or None, not {type(key).__name__}")
    return bytes(key) or None


def _version_stamp() -> dict[str, Any]:
    stamp: dict[str, Any] = {
        "detector_version": __version__,
        "numpy_version": np.__version__,
    }
    # Only record these libraries if the caller already uses them: importing
    # them here would cost seconds for no benefit (see the module docstring).
    for label, module in (("sklearn_version", "sklearn"), ("pandas_version", "pandas")):
        mod = sys.modules.get(module)
        version = getattr(mod, "__version__", None)
        if isinstance(version, str):
            stamp[label] = version
    stamp["python_version"] = platform.python_version()
    stamp["format_version"] = FORMAT_VERSION
    stamp["created_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return stamp


def save_artifact(path: str | os.PathLike[str], payload: dict, meta: dict) -> dict:
    """Write ``payload`` and ``meta`` to ``path`` atomically; return the stamped meta.

    ``payload`` is a dict of plain Python data, numpy arrays (numeric, bool,
    fixed-width str/bytes, structured) and numpy scalars; anything else is
    refused here, naming where it sits, so a bad model is caught by whoever
    trains it rather than by whoever loads it. ``meta`` must be JSON-like; the
    version stamp (detector/numpy/python versions, sklearn/pandas versions when
    already imported, ``format_version``, ``created_utc``) is added to it and
    overrides user keys of the same name. If ``DETECTOR_MODEL_KEY`` is set the
    file is HMAC-signed with it.
    """
    if type(payload) is not dict:
        raise ArtifactError(f"payload must be a dict, not {type(payload).__name__}")
    if not isinstance(meta, Mapping):
        raise ArtifactError(f"meta must be a dict, not {type(meta).__name__}")

    final_meta = _plain_meta(dict(meta), (), set())
    final_meta.update(_version_stamp())

    encoded = _encode(payload, (), set())
    payload_bytes = pickle.dumps(encoded, protocol=_PAYLOAD_PICKLE_PROTOCOL)
    payload_sha256 = hashlib.sha256(payload_bytes).hexdigest()
    meta_sha256 = _meta_digest(final_meta)
    key = _key_bytes(None)
    signature = None
    if key is not None:
        message = _signed_message(FORMAT_VERSION, meta_sha256, payload_sha256)
        signature = hmac.new(key, message, hashlib.sha256).hexdigest()

    envelope = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "meta": final_meta,
        "meta_sha256": meta_sha256,
        "payload_sha256": payload_sha256,
        "hmac_sha256": signature,
        "payload": payload_bytes,  # last: a reader sees the small header first
    }
    _atomic_joblib_dump(envelope, Path(path))
    return final_meta


def _atomic_joblib_dump(obj: Any, path: Path) -> None:
    """Write via a temp file in the same folder + fsync + os.replace.

    Readers (another process serving the model) therefore see either the old
    file or the complete new one, never a half-written model.
    """
    folder = path.parent
    if not folder.is_dir():
        raise ArtifactError(f"cannot write model file {path}: folder {folder} does not exist")
    # os.open with mode 0o666 (instead of tempfile.mkstemp's 0o600) lets the
    # umask decide permissions, as for any normally created file: the model is
    # meant to be shared.
    while True:
        tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            )
            break
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            import joblib  # writing only: loading never needs (or trusts) joblib

            joblib.dump(obj, fh, compress=0)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    # Persist the rename itself (POSIX); not possible/needed on Windows.
    if hasattr(os, "O_DIRECTORY"):
        try:
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # pragma: no cover - e.g. odd filesystems
            return
        try:
            os.fsync(dir_fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(dir_fd)


# --------------------------------------------------------------------------- #
# decoding (load side)
# --------------------------------------------------------------------------- #
def _decode_dtype(spec: Any, where: str) -> np.dtype:
    """Rebuild a dtype from its builtin form, admitting only plain kinds."""
    bad = CorruptArtifactError(f"model file {where} is corrupted: invalid dtype {spec!r:.200}")
    if type(spec) is str:
        if len(spec) > 32:
            raise bad
        try:
            dt = np.dtype(spec)
        except Exception as exc:
            raise bad from exc
        # A string like "f8,i4" or "O" would parse to a structured/object dtype;
        # a plain spec must give a plain dtype.
        if dt.fields is not None or dt.subdtype is not None or dt.kind not in _PLAIN_KINDS:
            raise bad
        return dt
    if type(spec) is not dict:
        raise bad
    if set(spec) == {"base", "shape"}:
        shape = spec["shape"]
        if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
            raise bad
        try:
            return np.dtype((_decode_dtype(spec["base"], where), tuple(shape)))
        except ArtifactError:
            raise
        except Exception as exc:
            raise bad from exc
    if (
        not {"names", "formats", "offsets", "itemsize", "aligned"}
        <= set(spec)
        <= {"names", "formats", "offsets", "itemsize", "aligned", "titles"}
    ):
        raise bad
    names, formats, offsets = spec["names"], spec["formats"], spec["offsets"]
    itemsize, aligned = spec["itemsize"], spec["aligned"]
    titles = spec.get("titles")
    if (
        type(names) is not list
        or type(formats) is not list
        or type(offsets) is not list
        or not len(names) == len(formats) == len(offsets)
        or not all(type(n) is str for n in names)
        or not all(type(o) is int and o >= 0 for o in offsets)
        or type(itemsize) is not int
        or itemsize < 0
        or type(aligned) is not bool
        or (titles is not None and (type(titles) is not list or len(titles) != len(names)))
    ):
        raise bad
    fields: dict[str, Any] = {
        "names": names,
        "formats": [_decode_dtype(f, where) for f in formats],
        "offsets": offsets,
        "itemsize": itemsize,
    }
    if titles is not None:
        if not all(t is None or type(t) is str for t in titles):
            raise bad
        fields["titles"] = titles
    try:
        return np.dtype(fields, align=aligned)
    except Exception as exc:
        raise bad from exc


def _decode_array(node: dict, where: str) -> np.ndarray:
    bad = f"model file {where} is corrupted"
    if set(node) != {_TAG, "dtype", "shape", "order", "data"}:
        raise CorruptArtifactError(f"{bad}: malformed array entry")
    dt = _decode_dtype(node["dtype"], where)
    shape, order, data = node["shape"], node["order"], node["data"]
    if type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
        raise CorruptArtifactError(f"{bad}: invalid array shape {shape!r:.200}")
    if order not in ("C", "F") or type(data) is not bytes:
        raise CorruptArtifactError(f"{bad}: malformed array entry")
    count = math.prod(shape)
    expected = count * dt.itemsize
    if len(data) != expected:
        raise CorruptArtifactError(
            f"{bad}: array of shape {tuple(shape)} and dtype {dt} needs {expected} bytes, "
            f"found {len(data)}"
        )
    if expected == 0:
        # np.frombuffer cannot handle zero-size items; nothing to copy anyway.
        return np.zeros(shape, dtype=dt, order=order)
    # Over a bytearray the array is writable (bytes would give a read-only one),
    # and the raw bytes are kept as they are: ndarray.copy() would copy a
    # structured array field by field and lose its padding bytes.
    flat = np.frombuffer(bytearray(data), dtype=dt, count=count)
    return flat.reshape(shape, order=order)


def _decode_scalar(node: dict, where: str) -> np.generic:
    if set(node) != {_TAG, "dtype", "data"} or type(node["data"]) is not bytes:
        raise CorruptArtifactError(f"model file {where} is corrupted: malformed numpy scalar")
    dt = _decode_dtype(node["dtype"], where)
    data = node["data"]
    if len(data) != dt.itemsize:
        raise CorruptArtifactError(
            f"model file {where} is corrupted: numpy scalar of dtype {dt} needs "
            f"{dt.itemsize} bytes, found {len(data)}"
        )
    if dt.itemsize == 0:
        return np.zeros((), dtype=dt)[()]
    return np.frombuffer(bytearray(data), dtype=dt).reshape(())[()]


def _decode(node: Any, where: str) -> Any:
    t = type(node)
    if node is None or t in (bool, int, float, str, bytes):
        return node
    if t is list:
        return [_decode(v, where) for v in node]
    if t is dict:
        if _TAG not in node:
            return {k: _decode(v, where) for k, v in node.items() if _check_key(k, where)}
        kind = node[_TAG]
        if kind == "ndarray":
            return _decode_array(node, where)
        if kind == "scalar":
            return _decode_scalar(node, where)
        if (
            kind in ("tuple", "dict")
            and set(node) == {_TAG, "items"}
            and type(node["items"]) is list
        ):
            items = node["items"]
            if kind == "tuple":
                return tuple(_decode(v, where) for v in items)
            out = {}
            for item in items:
                if type(item) is not list or len(item) != 2:
                    raise CorruptArtifactError(f"model file {where} is corrupted: malformed dict")
                _check_key(item[0], where)
                out[item[0]] = _decode(item[1], where)
            return out
        raise CorruptArtifactError(f"model file {where} is corrupted: unknown entry {kind!r:.60}")
    # Sets, bytearrays, tuples... can be pickled without globals but are never
    # written by save_artifact: the file was not produced by us.
    raise CorruptArtifactError(
        f"model file {where} is corrupted: payload holds a {t.__name__}, which "
        "save_artifact never writes"
    )


def _check_key(key: Any, where: str) -> bool:
    if type(key) is not str:
        raise CorruptArtifactError(f"model file {where} is corrupted: non-str dict key")
    return True


def _check_meta(node: Any, where: str) -> None:
    t = type(node)
    if node is None or t in (bool, int, float, str):
        return
    if t is list:
        for v in node:
            _check_meta(v, where)
        return
    if t is dict:
        for k, v in node.items():
            _check_key(k, where)
            _check_meta(v, where)
        return
    raise CorruptArtifactError(f"model file {where} is corrupted: meta holds a {t.__name__}")


# --------------------------------------------------------------------------- #
# public reading API
# --------------------------------------------------------------------------- #
# Every model file is a pickle of protocol 2 or later, which starts with the PROTO opcode.
# Anything else (a CSV, a text file, Parquet: often two arguments swapped) is named for
# what it looks like instead of being reported as a damaged model.
_PICKLE_START = b"\x80"
_SIGNATURES = ((b"PAR1", "a Parquet file"), (b"\x1f\x8b", "a gzip-compressed file"),
               (b"PK\x03\x04", "a zip archive (an Excel workbook?)"))


def _not_a_model(data: bytes, where: str) -> ArtifactError:
    kind = next((what for magic, what in _SIGNATURES if data.startswith(magic)), None)
    if kind is None:
        try:
            head = data[:4096].decode("utf-8", errors="strict" if len(data) <= 4096 else
                                      "ignore")
        except UnicodeDecodeError:
            head = None
        first = next((line.strip() for line in (head or "").splitlines() if line.strip()), "")
        if head is None or "\x00" in head:
            kind = "binary data of another kind"
        elif first.startswith(("{", "[")):
            kind = "JSON text"
        elif any(sep in first for sep in (",", ";", "\t", "|")):
            kind = f"a CSV file (first line {first[:60]!r})"
        else:
            kind = "a text file"
        # "ignore" keeps a multi-byte character cut at 4096 bytes from hiding text
    return ArtifactError(
        f"{where} is not a customs-detector model file: it looks like {kind}. Were two "
        "arguments swapped? The model file comes first, then the declarations: "
        "detector score|evaluate|explain MODEL INPUT")


def _read_envelope(path: str | os.PathLike[str]) -> tuple[dict, str]:
    """Read, safely unpickle and validate the envelope (not the payload hash)."""
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise ArtifactError(f"model file not found: {where}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read model file {where}: {exc}") from exc
    if not data:
        raise CorruptArtifactError(f"model file {where} is corrupted: it is empty")
    if data[:1] != _PICKLE_START:
        raise _not_a_model(data, where)
    envelope = _restricted_loads(data, where, "envelope")
    del data  # the payload bytes now live in the envelope; free the file copy
    if type(envelope) is not dict or envelope.get("magic") != MAGIC:
        raise ArtifactError(
            f"{where} is not a customs-detector model file (no '{MAGIC}' marker); "
            "refusing to load it"
        )
    version = envelope.get("format_version")
    if type(version) is not int:
        raise CorruptArtifactError(f"model file {where} is corrupted: invalid format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleArtifactError(
            f"model file format {version} is not supported by detector {__version__} "
            f"(reads format {FORMAT_VERSION}); retrain or use a newer detector"
        )
    if set(envelope) != _ENVELOPE_KEYS:
        raise CorruptArtifactError(
            f"model file {where} is corrupted: header fields {sorted(envelope)} "
            f"!= expected {sorted(_ENVELOPE_KEYS)}"
        )
    if (
        type(envelope["meta"]) is not dict
        or type(envelope["payload"]) is not bytes
        or type(envelope["payload_sha256"]) is not str
        or type(envelope["meta_sha256"]) is not str
        or not (envelope["hmac_sha256"] is None or type(envelope["hmac_sha256"]) is str)
    ):
        raise CorruptArtifactError(f"model file {where} is corrupted: malformed header")
    try:
        _check_meta(envelope["meta"], where)
    except RecursionError as exc:
        raise CorruptArtifactError(
            f"model file {where} is corrupted: meta nested too deeply"
        ) from exc
    meta_sha = _meta_digest(envelope["meta"])
    if meta_sha != envelope["meta_sha256"]:
        raise CorruptArtifactError(
            f"model file {where} is corrupted: meta sha256 {meta_sha[:12]}… != recorded "
            f"{envelope['meta_sha256'][:12]}…"
        )
    return envelope, where


def _parse_version(text: Any) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text) if isinstance(text, str) else None
    if m is None:
        return None
    return tuple(int(g) if g is not None else 0 for g in m.groups())


def read_meta(path: str | os.PathLike[str]) -> dict:
    """Return a model file's meta without decoding its payload.

    The file is still read with the restricted unpickler (so inspecting an
    untrusted file is safe), magic, format version and the meta checksum are
    checked; the payload hash and signature are not (use :func:`load_artifact`).
    """
    envelope, _ = _read_envelope(path)
    return envelope["meta"]


def load_artifact(
    path: str | os.PathLike[str],
    *,
    key: bytes | str | None = None,
    require_signature: bool | None = None,
) -> tuple[dict, dict]:
    """Load a model file written by :func:`save_artifact`; return ``(meta, payload)``.

    Never executes code from the file. ``key`` defaults to ``DETECTOR_MODEL_KEY``;
    ``require_signature`` defaults to True when a key is available. A signed
    file is always verified when a key is available, even if not required.

    Raises UnsafeArtifactError (file tries to load code), CorruptArtifactError
    (damaged bytes), IncompatibleArtifactError (other format version),
    SignatureError (missing/wrong HMAC) or ArtifactError (missing/not a model).
    """
    key_bytes = _key_bytes(key)
    if require_signature is None:
        require_signature = key_bytes is not None
    envelope, where = _read_envelope(path)
    payload_bytes: bytes = envelope["payload"]

    actual = hashlib.sha256(payload_bytes).hexdigest()
    recorded = envelope["payload_sha256"]
    if not hmac.compare_digest(actual, recorded):
        raise CorruptArtifactError(
            f"model file {where} is corrupted: payload sha256 {actual[:12]}… != recorded "
            f"{recorded[:12]}…"
        )

    signature = envelope["hmac_sha256"]
    if signature is None:
        if require_signature:
            reason = (
                f"{KEY_ENV_VAR} is set so only signed models are accepted"
                if key_bytes is not None
                else "a signature is required"
            )
            raise SignatureError(f"model file {where} is not signed; {reason}")
    elif key_bytes is None:
        if require_signature:
            raise SignatureError(
                f"model file {where} is signed but no key was given to verify it; "
                f"set {KEY_ENV_VAR} or pass key="
            )
    else:
        message = _signed_message(FORMAT_VERSION, envelope["meta_sha256"], recorded)
        expected = hmac.new(key_bytes, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise SignatureError(
                f"model file {where} has a wrong signature: it was signed with another key "
                "or altered after signing; refusing to load it"
            )

    encoded = _restricted_loads(payload_bytes, where, "payload")
    del envelope["payload"], payload_bytes
    try:
        payload = _decode(encoded, where)
    except RecursionError as exc:
        raise CorruptArtifactError(
            f"model file {where} is corrupted: payload nested too deeply"
        ) from exc
    if type(payload) is not dict:
        raise CorruptArtifactError(f"model file {where} is corrupted: payload is not a dict")

    meta = envelope["meta"]
    saved = _parse_version(meta.get("detector_version"))
    running = _parse_version(__version__)
    if saved is not None and running is not None and saved > running:
        warnings.warn(
            f"model file {where} was written by detector {meta['detector_version']}, newer "
            f"than this detector {__version__}; it loads, but results may differ. "
            "Upgrade the detector to be safe.",
            UserWarning,
            stacklevel=2,
        )
    return meta, payload
