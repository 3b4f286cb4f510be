"""Model files: exact round trip, no code execution on load, corruption/signature/version checks.

Every test works on real files in ``tmp_path``; hostile files are built with the
same tools an attacker would use (``joblib.dump`` / ``pickle``).
"""

from __future__ import annotations

import copyreg
import math
import os
import pickle
import shlex
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector import artifact
from detector._version import __version__
from detector.artifact import (
    FORMAT_VERSION,
    KEY_ENV_VAR,
    MAGIC,
    load_artifact,
    read_meta,
    save_artifact,
)
from detector.errors import (
    ArtifactError,
    CorruptArtifactError,
    IncompatibleArtifactError,
    SignatureError,
    UnsafeArtifactError,
)


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell may export the key; every test states its own.
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def assert_same(a: Any, b: Any, where: str = "payload") -> None:
    """Exact equality: same types, dtypes, shapes, layout, bits (NaN payloads included)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.dtype.str == b.dtype.str, where
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: bytes differ"
        if a.size > 1 and a.ndim > 1:
            assert a.flags.f_contiguous == b.flags.f_contiguous, f"{where}: memory order"
        assert b.flags.writeable, f"{where}: loaded array is read-only"
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.tobytes() == b.tobytes(), f"{where}: bytes differ"
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def read_envelope(path: Path) -> dict:
    # Test-only: these files were just written by save_artifact, so the plain
    # joblib reader is fine here (and it proves the file is a joblib file).
    return joblib.load(path)


def write_envelope(path: Path, envelope: dict) -> None:
    joblib.dump(envelope, path, compress=0)


def rich_payload() -> dict:
    nan_with_payload = np.frombuffer(struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF), "<f8")[0]
    structured = np.zeros(
        4,
        dtype=np.dtype(
            [("code", "S6"), ("name", "<U5"), ("value", "<f8"), ("flags", "?", (2,)), ("n", ">i2")]
        ),
    )
    structured["code"] = [b"8471", b"6203", b"", b"xx"]
    structured["name"] = ["a", "éü", "", "hello"]
    structured["value"] = [1.5, np.nan, -np.inf, -0.0]
    structured["flags"][1] = [True, False]
    structured["n"] = [1, -2, 300, -32768]
    return {
        "floats64": np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-310, nan_with_payload]),
        "floats32": np.array([1.5, np.nan, -np.inf], dtype=np.float32),
        "int32": np.arange(-5, 7, dtype=np.int32).reshape(3, 4),
        "int64_fortran": np.asfortranarray(np.arange(24, dtype=np.int64).reshape(2, 3, 4)),
        "big_endian": np.arange(5, dtype=">f8"),
        "uint8": np.array([0, 255], dtype=np.uint8),
        "complex": np.array([1 + 2j, np.nan * 1j], dtype=np.complex64),
        "half": np.array([1.0, 65504.0], dtype=np.float16),
        "bools": np.array([[True, False], [False, True]]),
        "text": np.array(["alpha", "", "ünïcödé"]),
        "raw": np.array([b"ab", b"", b"\x00\xff"], dtype="S2"),
        "structured": structured,
        "aligned": np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True)),
        "zero_d": np.array(3.25),
        "empty": np.empty((0, 3), dtype=np.float32),
        "empty_text": np.array([], dtype="<U4"),
        "non_contiguous": np.arange(20.0).reshape(4, 5)[:, ::2],
        "scalars": [
            np.float64(np.nan),
            np.float32(-0.0),
            np.int64(-(2**63)),
            np.uint64(2**64 - 1),
            np.int8(-1),
            np.bool_(True),
            np.str_("x"),
            np.str_(""),
            np.bytes_(b"yz"),
            structured[1],
        ],
        "nested": {
            "tuple": (1, "two", (3.0, None), ()),
            "list": [[], [[]], {"deep": {"deeper": [b"bytes", True, False]}}],
            "python_floats": [float("nan"), float("inf"), -0.0, 1e308],
            "big_int": 2**200,
            "unicode": "zoll ✓ 关税",
            "__detector_type__": "ndarray",  # looks like our tag: must still round-trip
        },
        "empty_dict": {},
        "none": None,
    }


class Evil:
    """A payload that runs a shell command when unpickled (the classic attack)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.sentinel))}",))


class EvilSubprocess(Evil):
    def __reduce__(self) -> tuple:
        return (subprocess.call, (["touch", str(self.sentinel)],))


def valid_envelope(tmp_path: Path) -> dict:
    path = tmp_path / "valid.joblib"
    save_artifact(path, {"x": np.arange(3)}, {"name": "valid"})
    return read_envelope(path)


# --------------------------------------------------------------------------- #
# round trip
# --------------------------------------------------------------------------- #
def test_rich_payload_round_trips_exactly(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    payload = rich_payload()
    meta = save_artifact(path, payload, {"threshold": 0.7, "features": ["a", "b"]})

    loaded_meta, loaded = load_artifact(path)

    assert_same(payload, loaded)
    assert loaded_meta == meta
    assert loaded["int64_fortran"].flags.f_contiguous
    assert loaded["structured"]["value"][1] != loaded["structured"]["value"][1]  # NaN
    assert loaded["aligned"].dtype.isalignedstruct
    loaded["int32"][0, 0] = 99  # writable, independent of the file buffer


def test_meta_is_stamped(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    meta = save_artifact(path, {}, {"threshold": 0.5, "pair": (1, 2), "detector_version": "x"})
    assert meta["threshold"] == 0.5
    assert meta["pair"] == [1, 2]  # meta is JSON-like: tuples become lists
    assert meta["detector_version"] == __version__  # the stamp wins over user keys
    assert meta["numpy_version"] == np.__version__
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["python_version"].count(".") == 2
    assert meta["created_utc"].endswith("+00:00")
    assert read_meta(path) == meta
    assert load_artifact(path)[0] == meta


def test_stamp_records_only_libraries_already_imported(tmp_path: Path) -> None:
    code = (
        "import sys, detector.artifact as a\n"
        "m = a.save_artifact(sys.argv[1], {}, {})\n"
        "assert 'pandas_version' not in m and 'sklearn_version' not in m, m\n"
        "assert 'pandas' not in sys.modules and 'sklearn' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.joblib")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_file_is_a_plain_joblib_file(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    save_artifact(path, {"x": np.arange(4.0)}, {})
    envelope = joblib.load(path)
    assert envelope["magic"] == MAGIC
    assert envelope["format_version"] == FORMAT_VERSION
    assert isinstance(envelope["payload"], bytes)
    assert set(envelope) >= {"meta", "payload_sha256", "hmac_sha256"}


def test_payload_pickle_holds_no_globals(tmp_path: Path) -> None:
    import pickletools

    path = tmp_path / "model.joblib"
    save_artifact(path, rich_payload(), {})
    envelope = read_envelope(path)
    for blob in (path.read_bytes(), envelope["payload"]):
        ops = {op.name for op, _, _ in pickletools.genops(blob)}
        assert not ops & {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "EXT1"}


def test_overwrite_and_no_temp_files_left(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    save_artifact(path, {"v": 1}, {})
    save_artifact(path, {"v": 2}, {})
    assert os.listdir(tmp_path) == ["model.joblib"]
    assert load_artifact(path)[1] == {"v": 2}


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "model.joblib"
    target.mkdir()  # os.replace onto a directory fails after the temp file is written
    with pytest.raises(OSError):
        save_artifact(target, {"v": 1}, {})
    assert os.listdir(tmp_path) == ["model.joblib"]
    assert os.listdir(target) == []


def test_missing_folder_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        save_artifact(tmp_path / "nope" / "m.joblib", {}, {})
    with pytest.raises(ArtifactError, match="model file not found: .*absent.joblib"):
        load_artifact(tmp_path / "absent.joblib")
    with pytest.raises(ArtifactError, match="model file not found"):
        read_meta(tmp_path / "absent.joblib")


# --------------------------------------------------------------------------- #
# unsupported content is refused at save time
# --------------------------------------------------------------------------- #
class DataFrame:  # stands in for pandas.DataFrame without importing pandas
    pass


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"features": {"table": DataFrame()}},
            r"payload\['features'\]\['table'\] has unsupported type DataFrame",
        ),
        ({"a": [1, {2, 3}]}, r"payload\['a'\]\[1\] has unsupported type set"),
        ({"a": bytearray(b"x")}, r"payload\['a'\] has unsupported type bytearray"),
        (
            {"obj": np.array([1, "a"], dtype=object)},
            r"payload\['obj'\] has unsupported dtype '\|O'",
        ),
        (
            {"when": np.array(["2024-01-01"], dtype="M8[D]")},
            r"payload\['when'\] has unsupported dtype",
        ),
        ({"s": np.zeros(2, dtype=[("o", "O")])}, r"payload\['s'\] field 'o' has unsupported dtype"),
        (
            {"m": np.ma.masked_array([1, 2], mask=[0, 1])},
            r"payload\['m'\] has unsupported type MaskedArray \(an ndarray subclass\)",
        ),
        ({"k": {1: "a"}}, r"payload\['k'\] has a key 1 of type int"),
        ({"p": Path("x")}, r"payload\['p'\] has unsupported type PosixPath|WindowsPath"),
    ],
)
def test_unsupported_payload_refused_at_save(tmp_path: Path, payload: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        save_artifact(tmp_path / "m.joblib", payload, {})
    assert os.listdir(tmp_path) == []


def test_cycles_and_bad_meta_refused_at_save(tmp_path: Path) -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(ArtifactError, match=r"payload\['loop'\]\[0\] refers back to a container"):
        save_artifact(tmp_path / "m.joblib", {"loop": loop}, {})
    with pytest.raises(ArtifactError, match=r"meta\['a'\] has unsupported type ndarray"):
        save_artifact(tmp_path / "m.joblib", {}, {"a": np.arange(2)})
    with pytest.raises(ArtifactError, match="payload must be a dict"):
        save_artifact(tmp_path / "m.joblib", [1], {})  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- #
# hostile files never execute code
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("evil_cls", [Evil, EvilSubprocess])
def test_malicious_whole_file_is_refused(tmp_path: Path, evil_cls: type[Evil]) -> None:
    sentinel = tmp_path / "PWNED"
    path = tmp_path / "evil.joblib"
    joblib.dump(evil_cls(sentinel), path)
    for reader in (load_artifact, read_meta):
        with pytest.raises(
            UnsafeArtifactError, match=r"tries to load '(posix|nt|os|subprocess)\.\w+'"
        ):
            reader(path)
    assert not sentinel.exists()


def test_the_malicious_file_really_is_malicious(tmp_path: Path) -> None:
    # Control: the default loader DOES run the command, so the test above is meaningful.
    sentinel = tmp_path / "PWNED"
    path = tmp_path / "evil.joblib"
    joblib.dump(EvilSubprocess(sentinel), path)
    joblib.load(path)
    assert sentinel.exists()


def test_malicious_object_nested_in_envelope_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    envelope = valid_envelope(tmp_path)
    envelope["meta"] = {"name": "looks fine", "hook": Evil(sentinel)}
    path = tmp_path / "evil.joblib"
    write_envelope(path, envelope)
    with pytest.raises(UnsafeArtifactError, match="refusing to load it"):
        load_artifact(path)
    with pytest.raises(UnsafeArtifactError):
        read_meta(path)
    assert not sentinel.exists()


def test_malicious_object_nested_in_payload_is_refused(tmp_path: Path) -> None:
    # The attacker recomputes the checksum: only the restricted unpickler stops it.
    import hashlib

    sentinel = tmp_path / "PWNED"
    envelope = valid_envelope(tmp_path)
    evil_payload = pickle.dumps({"x": [1, Evil(sentinel)]}, protocol=5)
    envelope["payload"] = evil_payload
    envelope["payload_sha256"] = hashlib.sha256(evil_payload).hexdigest()
    path = tmp_path / "evil.joblib"
    write_envelope(path, envelope)
    with pytest.raises(UnsafeArtifactError, match="tries to load"):
        load_artifact(path)
    assert not sentinel.exists()


def test_persistent_id_and_extension_opcodes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.joblib"
    # PROTO 4, SHORT_BINUNICODE 'x', BINPERSID, STOP
    path.write_bytes(b"\x80\x04\x8c\x01xQ.")
    with pytest.raises(UnsafeArtifactError, match="persistent id"):
        load_artifact(path)

    # EXT2 resolves through the copyreg extension registry, i.e. through find_class.
    copyreg.add_extension("os", "system", 0x7A11)
    try:
        path.write_bytes(b"\x80\x02\x83" + struct.pack("<H", 0x7A11) + b".")
        with pytest.raises(UnsafeArtifactError, match="'os.system'"):
            load_artifact(path)
    finally:
        copyreg.remove_extension("os", "system", 0x7A11)


def test_builtin_only_but_foreign_structures_are_rejected(tmp_path: Path) -> None:
    import hashlib

    envelope = valid_envelope(tmp_path)
    odd = pickle.dumps({"x": {1, 2}}, protocol=5)  # a set: no global needed, never written by us
    envelope["payload"] = odd
    envelope["payload_sha256"] = hashlib.sha256(odd).hexdigest()
    path = tmp_path / "odd.joblib"
    write_envelope(path, envelope)
    with pytest.raises(CorruptArtifactError, match="set"):
        load_artifact(path)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (
            {
                "__detector_type__": "ndarray",
                "dtype": "O",
                "shape": [1],
                "order": "C",
                "data": b"x" * 8,
            },
            "invalid dtype",
        ),
        (
            {
                "__detector_type__": "ndarray",
                "dtype": "f8,O",
                "shape": [1],
                "order": "C",
                "data": b"x" * 16,
            },
            "invalid dtype",
        ),
        (
            {
                "__detector_type__": "ndarray",
                "dtype": "<f8",
                "shape": [3],
                "order": "C",
                "data": b"x" * 8,
            },
            "needs 24 bytes, found 8",
        ),
        (
            {
                "__detector_type__": "ndarray",
                "dtype": "<f8",
                "shape": [-1],
                "order": "C",
                "data": b"",
            },
            "invalid array shape",
        ),
        ({"__detector_type__": "scalar", "dtype": "<i4", "data": b"xx"}, "needs 4 bytes, found 2"),
        ({"__detector_type__": "whatever"}, "unknown entry"),
    ],
)
def test_hand_crafted_array_entries_are_validated(tmp_path: Path, node: dict, message: str) -> None:
    import hashlib

    envelope = valid_envelope(tmp_path)
    blob = pickle.dumps({"x": node}, protocol=5)
    envelope["payload"] = blob
    envelope["payload_sha256"] = hashlib.sha256(blob).hexdigest()
    path = tmp_path / "crafted.joblib"
    write_envelope(path, envelope)
    with pytest.raises(CorruptArtifactError, match=message):
        load_artifact(path)


def test_not_a_model_file(tmp_path: Path) -> None:
    path = tmp_path / "other.joblib"
    joblib.dump({"some": "dict"}, path)
    with pytest.raises(ArtifactError, match="not a customs-detector model file"):
        load_artifact(path)
    joblib.dump([1, 2, 3], path)
    with pytest.raises(ArtifactError, match="not a customs-detector model file"):
        read_meta(path)


@pytest.mark.parametrize("data, kind", [
    (b"declaration_id,hs_code,origin_country\nD1,030490,CN\n", "a CSV file (first line"),
    (b"declaration_id;hs_code\r\nD1;030490\r\n", "a CSV file"),
    (b"# notes\nnothing here\n", "a text file"),
    (b'{"declaration_id": "D1"}\n', "JSON text"),
    (b"PAR1\x15\x04\x15", "a Parquet file"),
    (b"\x1f\x8b\x08\x00junk", "a gzip-compressed file"),
    (b"PK\x03\x04\x14\x00", "a zip archive"),
    (bytes(range(1, 256)), "binary data of another kind"),
    ("é".encode() * 3000, "a text file"),  # a character cut at the 4 KB sniffing limit
])
def test_a_file_that_is_no_model_is_named_for_what_it_is(tmp_path: Path, data: bytes,
                                                         kind: str) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    for reader in (load_artifact, read_meta):
        with pytest.raises(ArtifactError) as e:
            reader(path)
        assert not isinstance(e.value, CorruptArtifactError)  # not "corrupted"
        assert "not a customs-detector model file" in str(e.value)
        assert f"it looks like {kind}" in str(e.value)
        assert "arguments swapped" in str(e.value)


# --------------------------------------------------------------------------- #
# corruption
# --------------------------------------------------------------------------- #
def _saved(tmp_path: Path) -> tuple[Path, bytes, dict]:
    path = tmp_path / "model.joblib"
    payload = {"weights": np.linspace(0, 1, 500), "names": ["a", "b"]}
    save_artifact(path, payload, {"name": "m"})
    return path, path.read_bytes(), payload


def test_flipped_byte_in_payload_is_corruption(tmp_path: Path) -> None:
    path, data, _ = _saved(tmp_path)
    blob = read_envelope(path)["payload"]
    start = data.find(blob)
    assert start > 0
    broken = bytearray(data)
    broken[start + len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(broken))
    with pytest.raises(
        CorruptArtifactError,
        match=r"is corrupted: payload sha256 [0-9a-f]+… != recorded [0-9a-f]+…",
    ):
        load_artifact(path)


@pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_corruption(tmp_path: Path, fraction: float) -> None:
    path, data, _ = _saved(tmp_path)
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    with pytest.raises(CorruptArtifactError, match="is corrupted"):
        load_artifact(path)


def test_empty_file_and_trailing_garbage_are_corruption(tmp_path: Path) -> None:
    path, data, _ = _saved(tmp_path)
    path.write_bytes(data + b"\x00junk")
    with pytest.raises(CorruptArtifactError, match="unexpected bytes after the end"):
        load_artifact(path)
    path.write_bytes(b"")
    with pytest.raises(CorruptArtifactError, match="empty"):
        load_artifact(path)


def test_any_single_byte_flip_is_caught_or_harmless(tmp_path: Path) -> None:
    """Every byte of the header region and a sample of the rest, flipped one at a time."""
    path, data, payload = _saved(tmp_path)
    header_end = data.find(read_envelope(path)["payload"]) + 64
    positions = list(range(min(header_end, len(data)))) + list(range(header_end, len(data), 97))
    for pos in positions:
        broken = bytearray(data)
        broken[pos] ^= 0xFF
        path.write_bytes(bytes(broken))
        try:
            _, loaded = load_artifact(path)
        except ArtifactError:
            continue  # the only acceptable failure type
        assert_same(payload, loaded, f"flip at {pos}")


def test_tampered_meta_is_corruption(tmp_path: Path) -> None:
    path, _, _ = _saved(tmp_path)
    envelope = read_envelope(path)
    envelope["meta"]["name"] = "other"
    write_envelope(path, envelope)
    with pytest.raises(CorruptArtifactError, match="meta sha256"):
        load_artifact(path)
    with pytest.raises(CorruptArtifactError, match="meta sha256"):
        read_meta(path)


# --------------------------------------------------------------------------- #
# format and library versions
# --------------------------------------------------------------------------- #
def test_other_format_version_is_incompatible(tmp_path: Path) -> None:
    path, _, _ = _saved(tmp_path)
    envelope = read_envelope(path)
    envelope["format_version"] = FORMAT_VERSION + 1
    write_envelope(path, envelope)
    expected = (
        rf"model file format {FORMAT_VERSION + 1} is not supported by detector "
        rf"{__version__} \(reads format {FORMAT_VERSION}\); retrain or use a newer detector"
    )
    with pytest.raises(IncompatibleArtifactError, match=expected):
        load_artifact(path)
    with pytest.raises(IncompatibleArtifactError):
        read_meta(path)


def _with_detector_version(path: Path, version: str) -> None:
    envelope = read_envelope(path)
    envelope["meta"]["detector_version"] = version
    envelope["meta_sha256"] = artifact._meta_digest(envelope["meta"])
    write_envelope(path, envelope)


def test_newer_detector_version_warns_but_loads(tmp_path: Path) -> None:
    path, _, payload = _saved(tmp_path)
    _with_detector_version(path, "99.0.0")
    with pytest.warns(
        UserWarning, match=rf"detector 99\.0\.0, newer than this detector {__version__}"
    ):
        meta, loaded = load_artifact(path)
    assert meta["detector_version"] == "99.0.0"
    assert_same(payload, loaded)


@pytest.mark.parametrize("version", ["0.0.1", __version__, "not-a-version"])
def test_same_or_older_detector_version_is_silent(tmp_path: Path, version: str) -> None:
    path, _, _ = _saved(tmp_path)
    _with_detector_version(path, version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_artifact(path)


# --------------------------------------------------------------------------- #
# HMAC signatures
# --------------------------------------------------------------------------- #
def test_signed_file_loads_with_right_key_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.joblib"
    monkeypatch.setenv(KEY_ENV_VAR, "key-A")
    save_artifact(path, {"x": np.arange(3)}, {})
    assert read_envelope(path)["hmac_sha256"] is not None

    load_artifact(path)  # key from the environment
    load_artifact(path, key=b"key-A")
    load_artifact(path, key="key-A")
    with pytest.raises(SignatureError, match="wrong signature"):
        load_artifact(path, key=b"key-B")

    monkeypatch.setenv(KEY_ENV_VAR, "key-B")
    with pytest.raises(SignatureError):
        load_artifact(path)

    monkeypatch.delenv(KEY_ENV_VAR)
    load_artifact(path)  # no key, not required: loads (cannot be verified)
    with pytest.raises(SignatureError, match="no key was given"):
        load_artifact(path, require_signature=True)


def test_unsigned_file_and_required_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.joblib"
    save_artifact(path, {"x": 1}, {})
    assert read_envelope(path)["hmac_sha256"] is None

    load_artifact(path)  # no key anywhere: accepted
    monkeypatch.setenv(KEY_ENV_VAR, "key-A")
    with pytest.raises(
        SignatureError,
        match=f"is not signed; {KEY_ENV_VAR} is set so only signed models are accepted",
    ):
        load_artifact(path)
    with pytest.raises(SignatureError, match="is not signed"):
        load_artifact(path, key=b"other")
    assert load_artifact(path, require_signature=False)[1] == {"x": 1}


def test_signature_covers_meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.joblib"
    monkeypatch.setenv(KEY_ENV_VAR, "key-A")
    save_artifact(path, {"x": 1}, {"threshold": 0.9})
    envelope = read_envelope(path)
    envelope["meta"]["threshold"] = 0.0  # attacker also fixes the meta checksum
    envelope["meta_sha256"] = artifact._meta_digest(envelope["meta"])
    write_envelope(path, envelope)
    with pytest.raises(SignatureError, match="wrong signature"):
        load_artifact(path)


# --------------------------------------------------------------------------- #
# import hygiene
# --------------------------------------------------------------------------- #
def test_import_does_not_pull_sklearn_or_pandas() -> None:
    code = (
        "import sys, detector.artifact\n"
        "bad = [m for m in ('sklearn', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- #
# property: random nested payloads round-trip exactly
# --------------------------------------------------------------------------- #
_plain_dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.unicode_string_dtypes(max_len=4),
    hnp.byte_string_dtypes(max_len=4),
)
_any_dtypes = st.one_of(_plain_dtypes, hnp.array_dtypes(_plain_dtypes, min_size=1, max_size=3))


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(_any_dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype.fields is not None:
        # Structured: random raw bytes exercise every bit pattern of every field.
        raw = draw(
            st.binary(
                min_size=dtype.itemsize * math.prod(shape),
                max_size=dtype.itemsize * math.prod(shape),
            )
        )
        arr = (
            np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
            if dtype.itemsize
            else np.zeros(shape, dtype)
        )
    else:
        arr = draw(hnp.arrays(dtype, shape))
    if draw(st.booleans()):
        arr = np.asfortranarray(arr)
    return arr


_scalars = _arrays().filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0])
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    _arrays(),
    _scalars,
)
_keys = st.one_of(st.text(max_size=6), st.just("__detector_type__"), st.just("items"))
_nested = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_keys, children, max_size=4),
    ),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.dictionaries(_keys, _nested, max_size=4))
def test_property_random_payloads_round_trip(tmp_path: Path, payload: dict) -> None:
    path = tmp_path / "prop.joblib"
    save_artifact(path, payload, {})
    _, loaded = load_artifact(path)
    assert_same(payload, loaded)
