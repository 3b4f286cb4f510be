"""Preparation shared by every family: a frame (or one declaration as a dict) becomes
codes against the fitted vocabularies and plain float arrays, the ``rows`` every family
reads. One declaration takes a pandas-free path (the latency path), giving the same
values as a frame of one row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import SchemaError
from .lookup import (
    LEVEL_LEN,
    LEVELS,
    codes_against,
    days,
    encode_against,
    factorize,
    missing_value,
    objects,
)

__all__ = ["CATEGORICALS", "NUMBERS", "prepare_rows", "hs_digits"]

CATEGORICALS = ("origin_country", "dispatch_country", "exporter_id", "importer_id",
                "transport_mode", "package_type", "unit")
NUMBERS = ("net_mass_kg", "gross_mass_kg", "quantity", "packages", "customs_value",
           "measured_mass_kg")
# Read trimmed and in lower case, as one record is read (any case is the same mode).
_LOWER = ("transport_mode", "unit")
# Kept as read (Arrow strings) for the comparisons done in C on a frame.
_AS_READ = ("origin_country", "dispatch_country", "transport_mode")


def hs_digits(uniq: np.ndarray) -> np.ndarray:
    """HS codes as digits only ("8471.30 00" -> "84713000")."""
    return np.asarray([u.replace(".", "").replace(" ", "") for u in uniq.tolist()],
                      dtype=str) if len(uniq) else uniq


def prepare_rows(f, data, single: bool = False) -> dict[str, np.ndarray]:
    """The rows of ``data`` (a frame, or one record when ``single``) for transformer ``f``."""
    if single:
        def get(c):
            v = data.get(c)
            return np.array([None if missing_value(v) else v], dtype=object)
    else:
        n = len(data)

        def get(c):
            if c not in data.columns:
                return np.full(n, None, dtype=object)
            return data[c]
    r: dict[str, np.ndarray] = {}
    _hs_levels(f, r, get("hs_code"), single)
    for c in CATEGORICALS:
        _categorical(f, r, c, get(c), single)
    for c in NUMBERS:
        r[c] = _numbers(get(c), single)
    # A net mass of 0 (goods declared by unit) is legal but says nothing about mass:
    # it is a missing mass for every mass-based ratio (neutral), and a note says so.
    r["net_mass_zero"] = r["net_mass_kg"] == 0
    if r["net_mass_zero"].any():
        r["net_mass_kg"] = np.where(r["net_mass_zero"], np.nan, r["net_mass_kg"])
    _extras(f, r, data, get, single)
    for c in ("composition", "description"):
        raw = get(c)
        # Factorised from the column itself: from the object array below, pandas
        # would first rebuild Arrow strings value by value.
        r[f"{c}|f"] = factorize(raw)
        r[c] = objects(raw)
    r["day"] = days(get("date"))
    return r


def _hs_levels(f, r: dict, raw, single: bool) -> None:
    t = f.tables_
    hs_codes, hs_uniq = factorize(raw)
    hs_uniq = hs_digits(hs_uniq)
    r["hs_u"], r["hs_uniq"] = hs_codes, hs_uniq
    for lvl in LEVELS:
        u = hs_uniq if lvl == "hs" else np.asarray([h[:LEVEL_LEN[lvl]] for h in
                                                    hs_uniq.tolist()], dtype=str)
        if single:
            r[lvl] = np.array([f.code_of(f"vocab_{lvl}", u[0]) if len(u) else -1])
            continue
        enc = encode_against(t[f"vocab_{lvl}"], u)
        r[lvl] = np.where(hs_codes >= 0, enc[np.maximum(hs_codes, 0)] if len(enc) else -1,
                          -1)


def _categorical(f, r: dict, c: str, raw, single: bool) -> None:
    if c in _LOWER:
        if single:
            raw = np.asarray([None if missing_value(v) else str(v).strip().lower()
                              for v in raw], dtype=object)
        else:  # as one record is read: trimmed, any case
            raw = pd.Series(raw).astype("str").str.strip().str.lower()
    if single:
        v = raw[0]
        r[c] = np.array([-1 if v is None else f.code_of(f"vocab_{c}", str(v).strip())])
    else:
        r[c] = codes_against(f.tables_[f"vocab_{c}"], raw)
    r[f"{c}_raw"] = objects(raw)
    if c in _AS_READ and isinstance(raw, pd.Series):
        r[f"{c}|s"] = raw


def _numbers(raw, single: bool) -> np.ndarray:
    if single:
        v = raw[0]
        try:
            x = float(v) if v is not None else np.nan
        except (TypeError, ValueError):
            x = np.nan
        return np.array([x])
    return pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float,
                                                                   na_value=np.nan)


def _extras(f, r: dict, data, get, single: bool) -> None:
    for c in (*f.extra_categorical, *f.extra_numeric):
        present = (c in data) if single else (c in data.columns)
        if not present:
            raise SchemaError(f"column {c!r} is required: the model was trained with it as "
                              f"an extra {'categorical' if c in f.extra_categorical else 'numeric'}"
                              " column (see the column mapping)")
    for c in f.extra_categorical:
        raw = get(c)
        r[f"x:{c}"] = codes_against(f.tables_[f"vocab_x:{c}"], raw)
        r[f"x:{c}_raw"] = objects(raw)
    for c in f.extra_numeric:
        x = _numbers(get(c), single)
        r[f"n:{c}"] = np.where(np.isfinite(x), x, np.nan)
