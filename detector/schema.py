"""The declaration contract: canonical columns, their types and units, and column mapping.

One row is one declaration item. Everything downstream (validation, features, the
model) speaks these canonical names; a user's file is brought to them once, here,
by :func:`apply_column_mapping`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import SchemaError

__all__ = [
    "Column",
    "COLUMNS",
    "REQUIRED",
    "OPTIONAL",
    "LABELS",
    "NUMERIC",
    "TEXT",
    "TRANSPORT_MODES",
    "COUNTRIES",
    "UNKNOWN_COUNTRY",
    "UNKNOWN_COUNTRY_SPELLINGS",
    "UNIT_ALIASES",
    "CSV_SEPARATORS",
    "DECIMAL_MARKS",
    "ColumnMapping",
    "load_column_mapping",
    "apply_column_mapping",
    "rename_map",
    "normalise_unit",
    "CANONICAL",
    "MAX_MASS_KG",
    "MAX_VALUE",
    "MAX_QUANTITY",
    "MAX_PACKAGES",
    "DATE_MIN",
    "DATE_MAX",
]


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "id" | "text" | "code" | "float" | "int" | "date" | "label"
    required: bool
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "id", True, "id of the declaration item, unique in a file"),
    Column("hs_code", "code", True, "declared commodity code, 6-10 digits, leading zeros kept"),
    Column("origin_country", "code", True, "declared country of origin, ISO 3166-1 alpha-2"),
    Column("net_mass_kg", "float", True, "declared net mass in kg, >= 0 (0: scored, NET_MASS_ZERO)"),
    Column("customs_value", "float", True, "declared value, >= 0, one currency per dataset"),
    Column("date", "date", False, "acceptance date, YYYY-MM-DD"),
    Column("description", "text", False, "goods description as declared"),
    Column("dispatch_country", "code", False, "country of dispatch/export, alpha-2"),
    Column("transport_mode", "code", False, "sea, air, road, rail, post, courier"),
    Column("exporter_id", "text", False, "consignor / exporter"),
    Column("importer_id", "text", False, "consignee / importer"),
    Column("declarant_id", "text", False, "declarant or agent"),
    Column("gross_mass_kg", "float", False, "gross mass in kg, >= net mass"),
    Column("quantity", "float", False, "supplementary quantity, >= 0, in `unit`"),
    Column("unit", "code", False, "unit of the supplementary quantity (kg, l, m2, u, pair, ...)"),
    Column("packages", "int", False, "number of packages, >= 1"),
    Column("package_type", "code", False, "UN/ECE Rec. 21 package code (BX, BT, BG, CT, ...)"),
    Column("currency", "code", False, "ISO 4217 currency of customs_value"),
    Column("composition", "text", False, "declared composition 'SiO2:68;Al2O3:20' (mass %)"),
    Column("measured_mass_kg", "float", False, "mass weighed or scanned at the border, > 0"),
    Column("is_fraud", "label", False, "inspection outcome 0/1: a label, never a feature"),
    Column("fraud_scheme", "label", False, "scheme found by inspection: a label, never a feature"),
    Column("revenue", "label", False, "revenue recovered by inspection: a label, never a feature"),
)

REQUIRED: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.required)
OPTIONAL: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.required and c.kind != "label")
LABELS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind == "label")
NUMERIC: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind in ("float", "int"))
TEXT: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind in ("id", "text", "code", "date"))
CANONICAL: frozenset[str] = frozenset(c.name for c in COLUMNS)

TRANSPORT_MODES: tuple[str, ...] = ("sea", "air", "road", "rail", "post", "courier")

# ISO 3166-1 alpha-2 officially assigned codes, plus XK (Kosovo, user-assigned but used by
# customs administrations) and EU (used on some EU declarations as an origin).
COUNTRIES: frozenset[str] = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW XK EU""".split()
)
# Unknown or unspecified countries are legal on real declarations (ISO 3166-1 reserves ZZ
# for "unknown", agencies use XX, QU, QV, QZ or a word): the row is scored, every spelling
# folded to one category, ZZ ("NA" is Namibia, not "n/a"), and a reason (ORIGIN_UNKNOWN / DISPATCH_UNKNOWN) says so.
UNKNOWN_COUNTRY: str = "ZZ"
UNKNOWN_COUNTRY_SPELLINGS: frozenset[str] = frozenset(
    {"ZZ", "XX", "QU", "QV", "QZ", "UNK", "UNKNOWN", "UNSPECIFIED", "N/A"}
)

# Units: real files carry UN/ECE Recommendation 20 codes (KGM, LTR, MTK, ...) or short forms.
# Everything is folded to one short form so that "KGM" and "kg" are the same unit for the
# per-unit references; an unknown unit is kept (lower-cased) and is itself information.
UNIT_ALIASES: Mapping[str, str] = {
    "kg": "kg", "kgm": "kg", "kgs": "kg", "kilogram": "kg", "kilograms": "kg",
    "g": "g", "grm": "g", "gram": "g",
    "t": "t", "tne": "t", "tonne": "t", "ton": "t",
    "l": "l", "ltr": "l", "litre": "l", "liter": "l", "litres": "l", "liters": "l",
    "m2": "m2", "mtk": "m2", "sqm": "m2",
    "m3": "m3", "mtq": "m3", "cbm": "m3",
    "m": "m", "mtr": "m",
    "u": "u", "nmb": "u", "nar": "u", "c62": "u", "pce": "u", "pcs": "u", "piece": "u",
    "pieces": "u", "h87": "u", "unit": "u", "units": "u", "no": "u",
    "pair": "pair", "pairs": "pair", "npr": "pair", "pr": "pair",
    "dzn": "dozen", "dozen": "dozen",
    "kwh": "kwh", "khw": "kwh",
    "ct": "carat", "ctm": "carat", "carat": "carat",
}


def normalise_unit(unit: Any) -> str | None:
    """Fold a unit code to the product's short form (``"KGM"`` -> ``"kg"``).

    >>> normalise_unit("MTK"), normalise_unit(" kg "), normalise_unit("C62")
    ('m2', 'kg', 'u')
    """
    if unit is None:
        return None
    text = str(unit).strip().lower()
    if not text or text == "nan":
        return None
    return UNIT_ALIASES.get(text, text)


@dataclass(frozen=True)
class ColumnMapping:
    """How a user's file maps to the contract.

    ``columns`` renames their columns to canonical ones; ``extra_categorical`` and
    ``extra_numeric`` name agency-specific fields that the model may use as features.
    ``sep`` and ``decimal`` say how the agency's CSV exports are written (structured
    form: ``"csv": {"sep": ";", "decimal": ","}``); ``sep`` None means detect it.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    extra_categorical: tuple[str, ...] = ()
    extra_numeric: tuple[str, ...] = ()
    sep: str | None = None
    decimal: str = "."

    @classmethod
    def from_obj(cls, obj: Any, source: str = "mapping") -> ColumnMapping:
        if obj is None:
            return cls()
        if isinstance(obj, ColumnMapping):
            return obj
        if not isinstance(obj, Mapping):
            raise SchemaError(
                f"{source}: a column mapping must be a JSON object, got {type(obj).__name__}"
            )
        structured = {"columns", "extra_categorical", "extra_numeric", "csv"}
        dialect: Any = {}
        if "columns" in obj and set(obj) <= structured:
            columns = obj.get("columns") or {}
            extra_cat = tuple(obj.get("extra_categorical") or ())
            extra_num = tuple(obj.get("extra_numeric") or ())
            dialect = obj.get("csv") or {}
        else:
            columns, extra_cat, extra_num = obj, (), ()
        sep, decimal = _dialect(dialect, source)
        if not isinstance(columns, Mapping):
            raise SchemaError(f"{source}: 'columns' must be an object of their name -> ours")
        bad = {k: v for k, v in columns.items() if not isinstance(v, str) or v not in CANONICAL}
        if bad:
            raise SchemaError(
                f"{source}: every mapping target must be a canonical column; "
                f"unknown targets {sorted(map(str, bad.values()))[:5]} "
                f"(canonical: {', '.join(c.name for c in COLUMNS)})"
            )
        targets = list(columns.values())
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise SchemaError(f"{source}: several columns map to the same target {dup}")
        for name in (*extra_cat, *extra_num):
            if not isinstance(name, str) or not name:
                raise SchemaError(f"{source}: extra column names must be non-empty strings")
        overlap = set(extra_cat) & set(extra_num)
        if overlap:
            raise SchemaError(
                f"{source}: a column cannot be both categorical and numeric: {sorted(overlap)}"
            )
        return cls(dict(columns), extra_cat, extra_num, sep, decimal)

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "columns": dict(self.columns),
            "extra_categorical": list(self.extra_categorical),
            "extra_numeric": list(self.extra_numeric),
        }
        if self.sep is not None or self.decimal != ".":
            obj["csv"] = {"sep": self.sep, "decimal": self.decimal}
        return obj

    def with_dialect(self, sep: str | None = None, decimal: str | None = None) -> ColumnMapping:
        """This mapping with the CSV separator and/or decimal mark given (None: keep)."""
        sep, decimal = _dialect({"sep": self.sep if sep is None else sep,
                                 "decimal": self.decimal if decimal is None else decimal},
                                "options")
        return replace(self, sep=sep, decimal=decimal)

    @property
    def extra_columns(self) -> tuple[str, ...]:
        return (*self.extra_categorical, *self.extra_numeric)


# The CSV field separators an agency's export may use, by the name given on the command
# line or in a mapping file ("tab" because a tab is awkward to type in a shell).
CSV_SEPARATORS: Mapping[str, str] = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|",
                                     "pipe": "|"}
DECIMAL_MARKS: tuple[str, ...] = (".", ",")


def _dialect(obj: Any, source: str) -> tuple[str | None, str]:
    if not isinstance(obj, Mapping) or set(obj) - {"sep", "decimal"}:
        raise SchemaError(f"{source}: 'csv' must be an object with keys 'sep' and/or 'decimal'")
    sep, decimal = obj.get("sep"), obj.get("decimal") or "."
    if sep is not None and sep not in CSV_SEPARATORS:
        raise SchemaError(f"{source}: separator {sep!r} is not supported; use one of "
                          f"{', '.join(repr(k) for k in CSV_SEPARATORS)}")
    if decimal not in DECIMAL_MARKS:
        raise SchemaError(f"{source}: decimal mark {decimal!r} is not supported; use '.' or ','")
    if sep is not None and CSV_SEPARATORS[sep] == decimal:
        raise SchemaError(f"{source}: the separator and the decimal mark cannot both be "
                          f"{decimal!r}; files with decimal commas are usually separated by ';'")
    return (None if sep is None else CSV_SEPARATORS[sep]), decimal


def load_column_mapping(path: str | Path | Mapping | ColumnMapping | None) -> ColumnMapping:
    """A column mapping from a file path (JSON, flat ``{"their": "ours"}`` or the structured
    form), a mapping object, a ColumnMapping, or None (no renames)."""
    if path is None or isinstance(path, ColumnMapping):
        return path or ColumnMapping()
    if isinstance(path, Mapping):
        return ColumnMapping.from_obj(path)
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"column mapping file not found: {p}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"column mapping file {p} is not valid UTF-8 JSON: {exc}") from None
    return ColumnMapping.from_obj(obj, source=str(p))


def rename_map(columns: list[str], mapping: ColumnMapping | Mapping | None) -> dict[str, str]:
    """The renames to apply to a header; checks duplicates and required columns.

    Works on names only so that chunked readers can check the header once before
    reading any data.
    """
    mapping = ColumnMapping.from_obj(mapping)
    names = [str(c) for c in columns]
    dups = sorted({c for c in names if names.count(c) > 1})
    if dups:
        raise SchemaError(f"duplicate column names in the input: {dups}; each column must be unique")
    # Names are matched after stripping spaces and a BOM: spreadsheets add both.
    stripped = {c: c.strip().lstrip("\ufeff") for c in names}
    lookup = {k.strip(): v for k, v in mapping.columns.items()}
    renames: dict[str, str] = {}
    for raw, clean in stripped.items():
        if clean in lookup:
            renames[raw] = lookup[clean]
        elif clean.lower() in CANONICAL:
            renames[raw] = clean.lower()
    out = [renames.get(c, c) for c in names]
    clashes = sorted({c for c in out if c in CANONICAL and out.count(c) > 1})
    if clashes:
        raise SchemaError(
            f"after mapping, several input columns become {clashes}; map only one of them"
        )
    missing = [c for c in REQUIRED if c not in out]
    if missing:
        raise SchemaError(
            f"missing required column(s) {missing} after mapping; required: {list(REQUIRED)}; "
            f"input columns: {names[:20]}{' ...' if len(names) > 20 else ''}"
            + ("" if mapping.columns else "; pass a mapping file with --columns to rename yours")
        )
    missing_extra = [c for c in mapping.extra_columns if c not in out]
    if missing_extra:
        raise SchemaError(
            f"missing extra column(s) {missing_extra} named in the column mapping; "
            f"input columns: {names[:20]}"
        )
    return renames


def apply_column_mapping(df: Any, mapping: ColumnMapping | Mapping | None = None) -> Any:
    """Rename a user's frame to canonical columns and check the required ones are present.

    Unmapped columns are kept (they may be extras or passthrough), so nothing the user
    sent is silently dropped before validation.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"ID": ["a"], "HS": ["690721"], "Origin": ["CN"],
    ...                    "Net kg": [1.0], "Value": [2.0]})
    >>> m = {"ID": "declaration_id", "HS": "hs_code", "Origin": "origin_country",
    ...      "Net kg": "net_mass_kg", "Value": "customs_value"}
    >>> list(apply_column_mapping(df, m).columns)
    ['declaration_id', 'hs_code', 'origin_country', 'net_mass_kg', 'customs_value']
    """
    renames = rename_map(list(df.columns), mapping)
    return df.rename(columns=renames) if renames else df


# --- Magnitude limits (added for detector.validate; values above them are rejected) -----------
# They are far above any real declaration, so they only catch typos, unit mix-ups (grams
# typed as kg, cents as units) and overflow-like junk that would wreck the model's scaling.
MAX_MASS_KG: float = 1e9  # 1 million tonnes: more than the largest ship's cargo (~4e8 kg)
MAX_VALUE: float = 1e13  # more than the yearly imports of the largest economies in one item
MAX_QUANTITY: float = 1e10  # supplementary quantity in any unit (pieces, litres, m2, ...)
MAX_PACKAGES: float = 1e7  # ten million packages on one declaration item
# Acceptance dates outside this window are typos (0026, 2206) or placeholder dates.
DATE_MIN: str = "1900-01-01"
DATE_MAX: str = "2100-12-31"
