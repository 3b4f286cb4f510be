"""Mass and value ratios: robust z-scores of physical and value ratios against the
commodity's own reference, backing off along the HS hierarchy (full code -> 6 -> 4 -> 2
digits -> all goods) when a code has fewer than ``min_rows`` training rows. Agency numeric
columns named in the column mapping (``extra_z:<column>``) are compared the same way.

Fitted statistics (grouped, non-additive): ``<ratio>|<level>|{key,n,med,scale}`` and
``<ratio>|all`` for every ratio, ``xz:<column>|...`` for every extra numeric column.
"""

from __future__ import annotations

import numpy as np

from .lookup import LEVELS, MIN_LOG_SCALE, Z_CLIP, log_ratio, pair_key, signed_log
from .spec import EXTRA_Z, Family, FeatureSpec
from .words import level_label, num, pct, shown

__all__ = ["FAMILY", "SPECS", "RATIOS", "ratio", "backoff"]

SPECS = (
    FeatureSpec("mass_per_unit_z", "weight", ("quantity", "unit"), "z",
                "net mass per supplementary unit against the commodity's reference",
                reason_codes=("MASS_PER_UNIT_HIGH", "MASS_PER_UNIT_LOW")),
    FeatureSpec("mass_per_package_z", "weight", ("packages", "package_type"), "z",
                "net mass per package against the reference for this commodity and package",
                reason_codes=("MASS_PER_PACKAGE_HIGH", "MASS_PER_PACKAGE_LOW")),
    FeatureSpec("tare_per_package_z", "weight", ("gross_mass_kg", "packages"), "z",
                "packaging mass (gross - net) per package against the reference for this "
                "commodity and package type",
                reason_codes=("PACKAGING_MASS_HIGH", "PACKAGING_MASS_LOW")),
    FeatureSpec("measured_mass_z", "weight", ("measured_mass_kg",), "z",
                "mass weighed at the border against the declared mass",
                reason_codes=("MEASURED_MASS_ABOVE_DECLARED", "MEASURED_MASS_BELOW_DECLARED")),
    FeatureSpec("value_per_kg_z", "value", (), "z",
                "customs value per kg against the commodity's reference",
                reason_codes=("VALUE_PER_KG_HIGH", "VALUE_PER_KG_LOW")),
    FeatureSpec("value_per_unit_z", "value", ("quantity", "unit"), "z",
                "customs value per supplementary unit against the commodity's reference",
                reason_codes=("VALUE_PER_UNIT_HIGH", "VALUE_PER_UNIT_LOW")),
)
_OWN = frozenset(s.name for s in SPECS)
RATIOS = ("mass_per_unit", "mass_per_package", "tare_per_package", "measured_mass",
          "value_per_kg", "value_per_unit")
# Some references are per (commodity, unit) or per (commodity, package type): kg per m2 and
# kg per litre are different quantities, and a drum weighs more than a carton.
_SUBKEY = {"mass_per_unit": "unit", "value_per_unit": "unit", "tare_per_package": "package_type",
           "mass_per_package": "package_type"}
# Agency numeric columns come in any unit (a tax rate of 0.05, a fee of 1,200): no
# relative floor fits them all, only one against division by zero.
_EXTRA_MIN_SCALE = 1e-6


def ratio(name: str, r) -> np.ndarray:
    """The log-ratio ``name`` of each row (NaN where it cannot be formed)."""
    net, qty = r["net_mass_kg"], np.where(r["quantity"] > 0, r["quantity"], np.nan)
    if name == "mass_per_unit":
        return log_ratio(net, qty)
    if name == "mass_per_package":
        return log_ratio(net, r["packages"])
    if name == "tare_per_package":
        # Gross minus net is the packaging; per package it is a physical constant of
        # the packaging (a drum, a carton, a parcel box), whatever the lot size, where
        # a gross/net ratio would swing with it. log1p keeps unpacked goods (0 kg) finite.
        tare = np.maximum(r["gross_mass_kg"] - net, 0.0)
        with np.errstate(all="ignore"):
            v = np.log1p(tare / r["packages"])
        return np.where(np.isfinite(v) & (r["packages"] > 0), v, np.nan)
    if name == "measured_mass":
        # What a scale weighs is the package: compare with gross mass when declared,
        # else with net; the learned reference absorbs either convention.
        base = np.where(np.isfinite(r["gross_mass_kg"]), r["gross_mass_kg"], net)
        return log_ratio(r["measured_mass_kg"], base)
    if name == "value_per_kg":
        return log_ratio(r["customs_value"], net)
    return log_ratio(r["customs_value"], qty)


def _ref_key(f, name: str, r, lvl: str) -> np.ndarray:
    sub = _SUBKEY.get(name)
    if sub is not None:
        return pair_key(r[lvl], r[sub], len(f.tables_[f"vocab_{sub}"]))
    return r[lvl]


def backoff(f, name: str, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, scale and HS level (0=full .. 3=hs2, 4=all) of the finest reference
    learned from at least ``min_rows`` rows."""
    if len(r["hs"]) == 1:
        sub = _SUBKEY.get(name)
        key = f.memo_key(r, f"b|{name}|{int(r[sub][0]) if sub else -1}")
        return f.memoized(key, lambda: _backoff_rows(f, name, r))
    return _backoff_rows(f, name, r)


def _backoff_rows(f, name: str, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = f.tables_
    _, med_all, sc_all = t[f"{name}|all"]
    n = len(r["hs"])
    med, scale = np.full(n, med_all), np.full(n, sc_all)
    level = np.full(n, len(LEVELS), dtype=np.int64)
    for i in range(len(LEVELS) - 1, -1, -1):  # coarse to fine: finer overwrites
        lvl = LEVELS[i]
        pos = f.table_pos(f"{name}|{lvl}", _ref_key(f, name, r, lvl))
        ok = f.table_val(f"{name}|{lvl}", "n", pos, 0) >= f.min_rows
        med = np.where(ok, f.table_val(f"{name}|{lvl}", "med", pos, 0.0), med)
        scale = np.where(ok, f.table_val(f"{name}|{lvl}", "scale", pos, 1.0), scale)
        level = np.where(ok, i, level)
    return med, scale, level


def _value_groups(f) -> list[tuple[str, str, float, str, str | None]]:
    g: list[tuple[str, str, float, str, str | None]] = []
    refs = [*((n, MIN_LOG_SCALE) for n in RATIOS),
            *((f"xz:{c}", _EXTRA_MIN_SCALE) for c in f.extra_numeric)]
    for name, floor in refs:
        g += [(f"{name}|{lvl}", "robust", floor, name, lvl) for lvl in LEVELS]
        g.append((f"{name}|all", "all", floor, name, None))
    return g


def _group_input(f, r, spec, cache: dict):
    _, _, _, source, level = spec
    if source not in cache:
        cache[source] = r[f"n:{source[3:]}"] if source.startswith("xz:") else ratio(source, r)
    x = cache[source]
    keys = np.zeros(len(x), np.int64) if level is None else _ref_key(f, source, r, level)
    return keys, x


def _deviation(f, name: str, x: np.ndarray, r, det: dict) -> np.ndarray:
    med, scale, level = backoff(f, name, r)
    z = np.clip((x - med) / scale, -Z_CLIP, Z_CLIP)
    det[f"{name}|x"], det[f"{name}|med"], det[f"{name}|scale"] = x, med, scale
    det[f"{name}|level"] = level
    # The forest splits uniformly between a node's min and max: on raw z-scores a
    # few keying errors at |z| = 50 stretch the range so that a z of -5 is rarely
    # cut off. A signed log keeps the order and brings moderate outliers into reach.
    return signed_log(z)


def _transform(f, r, context, loo: bool, cols: dict, det: dict) -> None:
    for name in RATIOS:
        fname = f"{name}_z"
        if fname in f.feature_names_:
            cols[fname] = _deviation(f, name, ratio(name, r), r, det)
    for c in f.extra_numeric:
        if EXTRA_Z + c in f.feature_names_:
            cols[EXTRA_Z + c] = _deviation(f, f"xz:{c}", r[f"n:{c}"], r, det)


def _sentence(name: str, high, det: dict, rows: np.ndarray) -> np.ndarray | None:
    """The declared ratio against its reference's typical range (median +- 2 scales, on
    the log scale the reference is kept in) and the HS level of that reference."""
    if name not in _OWN and not name.startswith(EXTRA_Z):
        return None
    r = det["r"]
    if name == "measured_mass_z":
        x = det["measured_mass|x"][rows]
        declared = np.where(np.isfinite(r["gross_mass_kg"][rows]), r["gross_mass_kg"][rows],
                            r["net_mass_kg"][rows])
        return ("weighed " + num(r["measured_mass_kg"][rows]) + " kg at the border vs "
                + num(declared) + " kg declared (" + pct(np.exp(x) - 1) + ")")
    base = name[len(EXTRA_Z):] if name.startswith(EXTRA_Z) else name[:-2]
    key = f"xz:{base}" if name.startswith(EXTRA_Z) else base
    x, med, sc = det[f"{key}|x"][rows], det[f"{key}|med"][rows], det[f"{key}|scale"][rows]
    where = level_label(det, det[f"{key}|level"][rows], rows)
    if name.startswith(EXTRA_Z):  # an agency's number, compared as it is (no log)
        return (base + " " + num(x) + " vs " + num(med - 2 * sc) + " to " + num(med + 2 * sc)
                + " typical for " + where)
    if name == "tare_per_package_z":  # kept as log1p: unpacked goods have 0 kg
        return (num(np.expm1(x)) + " kg of packaging per " + shown(r["package_type_raw"][rows])
                + " package (gross - net) vs " + num(np.expm1(med - 2 * sc)) + "-"
                + num(np.expm1(med + 2 * sc)) + " typical for " + where)
    val = num(np.exp(x))
    typical = " vs " + num(np.exp(med - 2 * sc)) + "-" + num(np.exp(med + 2 * sc)) + \
        " typical for " + where
    if name == "mass_per_unit_z":
        return val + " kg per " + shown(r["unit_raw"][rows]) + typical
    if name == "mass_per_package_z":
        return val + " kg per package (" + shown(r["package_type_raw"][rows]) + ")" + typical
    if name == "value_per_kg_z":
        return "value " + val + " per kg" + typical
    if name == "value_per_unit_z":
        return "value " + val + " per " + shown(r["unit_raw"][rows]) + typical
    return None


FAMILY = Family("ratios", SPECS, _transform, value_groups=_value_groups,
                group_input=_group_input, sentence=_sentence)
