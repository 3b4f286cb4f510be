"""Vectorized synthetic declarations: legitimate trade, honest oddities and fraud schemes.

Every column is built as a numpy array for all rows at once; Python loops run over
profiles, schemes or traders' attributes, never over declaration rows. One
``numpy.random.Generator`` seeded once drives everything, in a fixed order, so the
same arguments give the same frame bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._profiles import CONTROLLED_CODES, COVER_CODES, PROFILES, RARE_EARTH_CODES

__all__ = ["generate", "SCHEMES", "OUTPUT_COLUMNS"]

SCHEMES: tuple[str, ...] = (
    "false_origin",
    "misdeclared_contents",
    "false_composition",
    "tile_concealment",
    "bottles_as_machinery",
    "postal_splitting",
    "undervaluation",
)

OUTPUT_COLUMNS: tuple[str, ...] = (
    "declaration_id", "date", "hs_code", "description", "origin_country", "dispatch_country",
    "transport_mode", "exporter_id", "importer_id", "declarant_id", "net_mass_kg",
    "gross_mass_kg", "quantity", "unit", "packages", "package_type", "customs_value", "currency",
    "composition", "measured_mass_kg", "is_fraud", "fraud_scheme", "revenue",
)

HUBS = np.array(["NL", "BE", "DE", "SG", "HK", "AE", "MY", "PA", "TR"])
# Countries a false origin is moved to: plausible makers of the goods, close to China.
FALSE_ORIGINS = np.array(["VN", "MY", "TH", "KR", "IN", "ID", "LA", "KZ", "EE", "MN"])
RARE_ORIGINS = np.array(["MA", "TN", "KE", "PE", "AR", "UY", "LK", "NP", "GE", "AM", "RS", "MK",
                         "BA", "JO", "OM", "QA", "MU", "MG", "NZ", "IS"])
DE_MINIMIS = 150.0  # postal/courier low-value threshold the splitters stay under
# Words that do not belong to a harmless heading; they leak into descriptions written by
# people who know what is really in the box.
LEAK_WORDS = np.array(["oxide powder", "REO powder", "magnet material", "Nd powder",
                       "metal powder", "rare earth"])
RE_TRUE_GOODS = (  # what is really inside when rare earths hide under another code
    (("Nd2O3", 99.0), ("Pr6O11", 1.0)),
    (("Dy2O3", 99.5), ("Tb4O7", 0.5)),
    (("Tb4O7", 99.9),),
    (("Nd", 75.0), ("Pr", 25.0)),
)
RE_TRUE_PRICE = np.array([70.0, 250.0, 800.0, 90.0])


@dataclass
class _Tab:
    """Profile facts as parallel numpy arrays, so that rows index them by profile number."""

    hs: np.ndarray
    unit: np.ndarray
    kgpu: np.ndarray
    price: np.ndarray
    sigma: np.ndarray
    lot: np.ndarray
    package: np.ndarray
    kg_pkg: np.ndarray
    gross_ratio: np.ndarray
    comp_share: np.ndarray
    weight: np.ndarray


def _tab() -> _Tab:
    P = PROFILES
    return _Tab(
        hs=np.array([p.hs for p in P]),
        unit=np.array([p.unit for p in P]),
        kgpu=np.array([p.kg_per_unit for p in P]),
        price=np.array([p.price for p in P]),
        sigma=np.array([p.price_sigma for p in P]),
        lot=np.array([p.lot for p in P], dtype=float),
        package=np.array([p.package for p in P]),
        kg_pkg=np.array([p.kg_per_package for p in P], dtype=float),
        gross_ratio=np.array([p.gross_ratio for p in P]),
        comp_share=np.array([p.composition_share for p in P]),
        weight=np.array([p.weight for p in P]),
    )


def _profile_index(hs: str) -> int:
    return next(i for i, p in enumerate(PROFILES) if p.hs == hs)


def _pick(rng: np.random.Generator, options: dict[str, float], size: int) -> np.ndarray:
    keys = np.array(list(options))
    p = np.array(list(options.values()), dtype=float)
    return keys[rng.choice(len(keys), size=size, p=p / p.sum())]


def _pick_per_profile(rng, prof: np.ndarray, attr: str) -> np.ndarray:
    """Draw one option per row from the row's profile's dict attribute (origins, modes)."""
    out = np.empty(len(prof), dtype=object)
    for i in np.unique(prof):
        m = prof == i
        out[m] = _pick(rng, getattr(PROFILES[i], attr), int(m.sum()))
    return out.astype(str)


def _words(rng, prof: np.ndarray) -> np.ndarray:
    out = np.empty(len(prof), dtype=object)
    for i in np.unique(prof):
        m = prof == i
        words = np.array(PROFILES[i].words, dtype=object)
        out[m] = words[rng.integers(0, len(words), int(m.sum()))]
    return out


def _format_composition(rng, parts: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    """n composition strings 'A:x;B:y' with lot-to-lot noise, built column-wise."""
    base = np.array([v for _, v in parts])
    pct = base[None, :] * rng.lognormal(0.0, 0.04, size=(n, len(parts)))
    pct = pct / pct.sum(axis=1, keepdims=True) * base.sum()
    pct = np.round(pct, 1)
    out = pd.Series([""] * n, dtype=object)
    for j, (name, _) in enumerate(parts):
        sep = "" if j == 0 else ";"
        out = out + sep + name + ":" + pd.Series(pct[:, j]).astype(str)
    return out.to_numpy(dtype=object)


def _composition(rng, tab: _Tab, prof: np.ndarray) -> np.ndarray:
    out = np.full(len(prof), None, dtype=object)
    declared = rng.random(len(prof)) < tab.comp_share[prof]
    for i in np.unique(prof[declared]):
        m = declared & (prof == i)
        out[m] = _format_composition(rng, PROFILES[i].composition, int(m.sum()))
    return out


def _goods(rng, tab: _Tab, prof: np.ndarray, mode: np.ndarray,
           lot_mult: np.ndarray | None = None, price_mult: np.ndarray | None = None,
           lot_sigma: float = 1.0) -> dict:
    """Physical and value columns of honest goods of the given profiles.

    ``lot_sigma`` scales the lot-to-lot price spread: known sellers bring their own price
    level in ``price_mult`` and vary less around it.
    """
    n = len(prof)
    lot_mult = np.ones(n) if lot_mult is None else lot_mult
    price_mult = np.ones(n) if price_mult is None else price_mult
    small = np.isin(mode, ("post", "courier"))
    kgpu = tab.kgpu[prof]
    # Freight lots follow the profile; parcels are a few kg whatever the goods.
    units = np.where(
        small,
        np.clip(rng.lognormal(np.log(4.0), 0.8, n), 0.2, 60.0) / kgpu,
        rng.lognormal(np.log(tab.lot[prof]), 0.9, n),
    ) * lot_mult
    unit = tab.unit[prof]
    counted = np.isin(unit, ("u", "pair"))
    units = np.where(counted, np.maximum(1.0, np.round(units)), np.round(units, 2))
    units = np.where(unit == "l", np.maximum(1.0, np.round(units)), units)
    units = np.maximum(units, 0.01)
    is_kg = unit == "kg"
    net = np.where(is_kg, units, units * kgpu * rng.lognormal(0.0, 0.04, n))
    net = np.round(np.maximum(net, 0.01), 3)
    quantity = np.where(is_kg, net, units)
    price = tab.price[prof] * rng.lognormal(0.0, tab.sigma[prof] * lot_sigma) * price_mult
    value = np.round(net * price, 2)
    # Packaging (the tare) scales with the goods and varies a little between lots; the
    # border scale sees net + tare, so noise belongs on the tare, not on the whole gross.
    tare = net * (tab.gross_ratio[prof] - 1.0) * rng.lognormal(0.0, 0.1, n)
    gross = np.round(net + tare + np.where(small, 0.3, 0.0), 3)
    bulk = tab.package[prof] == "NE"
    packages = np.where(
        small, rng.integers(1, 4, n),
        np.where(bulk, 1, np.maximum(1, np.ceil(net / tab.kg_pkg[prof]
                                                 * rng.lognormal(0.0, 0.15, n)))),
    ).astype(np.int64)
    package_type = np.where(small, np.where(mode == "post", "PK", "BX"), tab.package[prof])
    return {
        "hs_code": tab.hs[prof].astype(object),
        "description": _words(rng, prof),
        "net_mass_kg": net,
        "gross_mass_kg": gross,
        "quantity": np.round(quantity, 3),
        "unit": unit.astype(object),
        "packages": packages,
        "package_type": package_type.astype(object),
        "customs_value": value,
        "composition": _composition(rng, tab, prof),
        "true_value": value.copy(),
    }


def _measured(rng, gross: np.ndarray, mode: np.ndarray) -> np.ndarray:
    """Border scale readings: mostly parcels, some freight; about 1% scale noise."""
    share = np.where(np.isin(mode, ("post", "courier")), 0.6, 0.25)
    has = rng.random(len(gross)) < share
    reading = np.round(gross * rng.normal(1.0, 0.01, len(gross)), 3)
    return np.where(has, np.maximum(reading, 0.001), np.nan)


@dataclass
class _Traders:
    exp_origin: np.ndarray     # (n_exp,) origin country of each exporter's goods
    exp_dispatch: np.ndarray   # (n_exp,) where it ships from (a hub for some)
    exp_prof: np.ndarray       # (n_exp, 3) profile numbers, -1 padded
    exp_k: np.ndarray          # (n_exp,) how many profiles it trades
    exp_mode: np.ndarray       # (n_exp,) usual transport mode
    exp_imp: np.ndarray        # (n_exp, 4) its importers, -1 padded
    exp_nimp: np.ndarray
    exp_w: np.ndarray          # activity weights
    exp_price: np.ndarray      # (n_exp, 3) the exporter's price level for each of its goods
    imp_decl: np.ndarray       # (n_imp,) each importer's usual declarant


def _traders(rng, tab: _Tab, n_exp: int, n_imp: int, n_decl: int) -> _Traders:
    pw = tab.weight / tab.weight.sum()
    exp_prof = rng.choice(len(PROFILES), size=(n_exp, 3), p=pw)
    exp_k = rng.choice([1, 2, 3], size=n_exp, p=[0.6, 0.3, 0.1])
    exp_prof = np.where(np.arange(3)[None, :] < exp_k[:, None], exp_prof, -1)
    primary = exp_prof[:, 0]
    exp_origin = _pick_per_profile(rng, primary, "origins")
    exp_mode = _pick_per_profile(rng, primary, "modes")
    hub = rng.random(n_exp) < 0.15
    hubs = HUBS[rng.integers(0, len(HUBS), n_exp)]
    exp_dispatch = np.where(hub & (hubs != exp_origin), hubs, exp_origin)
    exp_nimp = rng.integers(1, 5, n_exp)
    exp_imp = rng.integers(0, n_imp, size=(n_exp, 4))
    exp_imp = np.where(np.arange(4)[None, :] < exp_nimp[:, None], exp_imp, -1)
    # Trade activity is heavy-tailed: a few big shippers, many occasional ones.
    exp_w = rng.lognormal(0.0, 1.2, n_exp)
    imp_decl = rng.integers(0, n_decl, n_imp)
    # Prices spread mostly between sellers (quality, contracts), less between one seller's
    # lots: a seller's own price history is a tighter reference than the commodity's.
    sigma = tab.sigma[np.maximum(exp_prof, 0)]
    exp_price = rng.lognormal(0.0, 0.9 * sigma)
    return _Traders(exp_origin, exp_dispatch, exp_prof, exp_k, exp_mode, exp_imp, exp_nimp,
                    exp_w / exp_w.sum(), exp_price, imp_decl)


def _ids(prefix: str, idx: np.ndarray, width: int) -> np.ndarray:
    return (prefix + pd.Series(idx).astype(str).str.zfill(width)).to_numpy(dtype=object)


def _legit(rng, tab: _Tab, tr: _Traders, rows: int) -> dict:
    exp = rng.choice(len(tr.exp_w), size=rows, p=tr.exp_w)
    u = rng.random(rows)
    k = tr.exp_k[exp]
    slot = np.where(k == 1, 0, np.where(k == 2, (u > 0.7).astype(int),
                                        np.where(u < 0.6, 0, np.where(u < 0.85, 1, 2))))
    prof = tr.exp_prof[exp, slot]
    # Traders keep their habits: the usual mode most of the time, else what the goods allow.
    usual = rng.random(rows) < 0.85
    mode = np.where(usual, tr.exp_mode[exp], _pick_per_profile(rng, prof, "modes"))
    imp_slot = (rng.random(rows) * tr.exp_nimp[exp]).astype(int)
    imp = tr.exp_imp[exp, imp_slot]
    decl = np.where(rng.random(rows) < 0.9, tr.imp_decl[imp],
                    rng.integers(0, tr.imp_decl.max() + 1, rows))

    # Honest oddities: disjoint small groups of legitimate rows that look unusual.
    kind = rng.choice(6, size=rows, p=[0.953, 0.003, 0.01, 0.005, 0.015, 0.014])
    lot_mult = np.where(kind == 2, rng.uniform(10, 40, rows), 1.0)          # bulk lots
    price_mult = np.where(kind == 2, 0.7, 1.0)                              # ... at a discount
    price_mult = np.where(kind == 3, rng.uniform(2.5, 4.0, rows), price_mult)  # premium goods
    g = _goods(rng, tab, prof, mode, lot_mult, price_mult * tr.exp_price[exp, slot],
               lot_sigma=0.45)

    # Keying errors: a decimal slip in the value or a unit confusion in the quantity.
    typo = kind == 1
    which = rng.integers(0, 3, rows)
    g["customs_value"] = np.where(typo & (which == 0), g["customs_value"] * 10,
                                  np.where(typo & (which == 1),
                                           np.round(g["customs_value"] / 10, 2),
                                           g["customs_value"]))
    g["quantity"] = np.where(typo & (which == 2) & (g["unit"] != "kg"),
                             g["quantity"] * 1000, g["quantity"])

    origin = tr.exp_origin[exp].astype(object)
    dispatch = tr.exp_dispatch[exp].astype(object)
    rare = kind == 5
    rare_c = RARE_ORIGINS[rng.integers(0, len(RARE_ORIGINS), rows)]
    origin = np.where(rare, rare_c, origin)
    dispatch = np.where(rare, rare_c, dispatch)
    exporter = _ids("E", exp, 6)
    importer = _ids("I", imp, 6)
    new = kind == 4  # new legitimate traders: first time seen
    exporter = np.where(new, _ids("EN", np.arange(rows), 7), exporter)
    importer = np.where(new & (rng.random(rows) < 0.5), _ids("IN", np.arange(rows), 7), importer)
    g.update(
        origin_country=origin, dispatch_country=dispatch, transport_mode=mode.astype(object),
        exporter_id=exporter, importer_id=importer, declarant_id=_ids("A", decl, 4),
    )
    return g


# --- fraud schemes: each returns the columns of its k rows -------------------------------

def _controlled_exporters(tr: _Traders, codes: tuple[str, ...], origin: str | None = "CN"):
    prof_codes = {_profile_index(c) for c in codes}
    has = np.isin(tr.exp_prof, list(prof_codes)).any(axis=1)
    if origin is not None:
        has &= tr.exp_origin == origin
    return np.flatnonzero(has)


def _exporter_or_new(rng, pool: np.ndarray, k: int, new_share: float, tag: str, tr: _Traders):
    """Existing exporters from pool (with their usual importer) or fresh ones."""
    new = (rng.random(k) < new_share) | (len(pool) == 0)
    pick = pool[rng.integers(0, max(len(pool), 1), k)] if len(pool) else np.zeros(k, int)
    exporter = np.where(new, _ids(f"E{tag}", np.arange(k) + rng.integers(0, 10**6), 7),
                        _ids("E", pick, 6))
    imp = tr.exp_imp[pick, 0]
    importer = np.where(new, _ids(f"I{tag}", np.arange(k) + rng.integers(0, 10**6), 7),
                        _ids("I", imp, 6))
    declarant = _ids("A", np.where(new, rng.integers(0, tr.imp_decl.max() + 1, k),
                                   tr.imp_decl[imp]), 4)
    return exporter, importer, declarant, new


def _route(rng, k: int, cn_share: float, hub_share: float):
    origin = np.where(rng.random(k) < cn_share, "CN",
                      FALSE_ORIGINS[rng.integers(0, len(FALSE_ORIGINS), k)])
    hubs = np.array(["HK", "SG", "AE", "MY", "VN"])
    dispatch = np.where(rng.random(k) < hub_share, hubs[rng.integers(0, len(hubs), k)], "CN")
    return origin.astype(object), dispatch.astype(object)


def _re_composition(rng, k: int) -> tuple[np.ndarray, np.ndarray]:
    which = rng.integers(0, len(RE_TRUE_GOODS), k)
    comp = np.empty(k, dtype=object)
    for j, parts in enumerate(RE_TRUE_GOODS):
        m = which == j
        comp[m] = _format_composition(rng, parts, int(m.sum()))
    return comp, RE_TRUE_PRICE[which]


def _false_origin(rng, tab, tr, k):
    prof = np.array([_profile_index(c) for c in CONTROLLED_CODES])[rng.integers(0, 4, k)]
    mode = _pick_per_profile(rng, prof, "modes")
    mode = np.where(np.isin(mode, ("post", "courier")), "air", mode)
    g = _goods(rng, tab, prof, mode)
    pool = _controlled_exporters(tr, CONTROLLED_CODES)
    g["exporter_id"], g["importer_id"], g["declarant_id"], _ = _exporter_or_new(
        rng, pool, k, 0.3, "F", tr)
    g["origin_country"] = FALSE_ORIGINS[rng.integers(0, len(FALSE_ORIGINS), k)].astype(object)
    _, dispatch = _route(rng, k, 1.0, 0.35)
    # A hub may be one of the false origins (MY, VN): ship those from China itself.
    g["dispatch_country"] = np.where(dispatch == g["origin_country"], "CN", dispatch)
    g["transport_mode"] = mode.astype(object)
    g["revenue"] = 0.3 * g["true_value"]
    return g


def _misdeclared_contents(rng, tab, tr, k):
    cover = np.array([_profile_index(c) for c in COVER_CODES])[rng.integers(0, len(COVER_CODES), k)]
    mode = np.where(rng.random(k) < 0.7, "sea", "air")
    g = _goods(rng, tab, cover, mode)
    net = np.round(rng.lognormal(np.log(300), 0.8, k), 3)
    comp_true, true_price = _re_composition(rng, k)
    true_value = net * true_price * rng.lognormal(0, 0.2, k)
    at_cover = rng.random(k) < 0.55
    value = np.where(at_cover, net * tab.price[cover] * rng.lognormal(0, 0.2, k),
                     true_value * rng.uniform(0.5, 1.0, k))
    drum = rng.random(k) < 0.6
    packages = np.maximum(1, np.ceil(net / np.where(drum, 50.0, 25.0))).astype(np.int64)
    r = rng.random(k)
    comp = np.where(r < 0.35, comp_true, np.where(r < 0.65, g["composition"], None))
    leak = rng.random(k) < 0.25
    desc = np.where(leak, g["description"] + ", " + LEAK_WORDS[rng.integers(0, 6, k)],
                    g["description"])
    pool = _controlled_exporters(tr, RARE_EARTH_CODES)
    exporter, importer, declarant, _ = _exporter_or_new(rng, pool, k, 0.5, "M", tr)
    origin, dispatch = _route(rng, k, 0.6, 0.3)
    g.update(net_mass_kg=net, gross_mass_kg=np.round(net * rng.uniform(1.02, 1.06, k), 3),
             quantity=net, unit=np.full(k, "kg", dtype=object), packages=packages,
             package_type=np.where(drum, "DR", "BG").astype(object),
             customs_value=np.round(value, 2), composition=comp, description=desc,
             exporter_id=exporter, importer_id=importer, declarant_id=declarant,
             origin_country=origin, dispatch_country=dispatch,
             transport_mode=mode.astype(object), true_value=true_value)
    g["revenue"] = 0.2 * np.maximum(true_value - value, 0) + 0.1 * true_value
    return g


def _false_composition(rng, tab, tr, k):
    prof = np.full(k, _profile_index("28461000"))
    mode = np.where(rng.random(k) < 0.7, "sea", "air")
    g = _goods(rng, tab, prof, mode)
    true_net = rng.lognormal(np.log(200), 0.7, k)
    net = np.round(true_net * rng.uniform(0.35, 0.7, k), 3)
    true_gross = true_net * 1.04
    gross = np.where(rng.random(k) < 0.5, true_gross, net * 1.04)
    measured = np.where(rng.random(k) < 0.85,
                        np.round(true_gross * rng.normal(1, 0.01, k), 3), np.nan)
    value = net * tab.price[prof] * rng.lognormal(0, 0.3, k)
    true_value = true_net * rng.choice([250.0, 800.0], k)
    # Drums keep their true count: a lighter declared mass spreads over the same drums.
    packages = np.maximum(1, np.ceil(true_net / 50.0)).astype(np.int64)
    pool = _controlled_exporters(tr, RARE_EARTH_CODES)
    exporter, importer, declarant, _ = _exporter_or_new(rng, pool, k, 0.5, "C", tr)
    g.update(net_mass_kg=net, gross_mass_kg=np.round(gross, 3), quantity=net,
             customs_value=np.round(value, 2), measured_mass_kg=measured, packages=packages,
             package_type=np.full(k, "DR", dtype=object),
             composition=_format_composition(rng, (("CeO2", 99.5), ("La2O3", 0.5)), k),
             exporter_id=exporter, importer_id=importer, declarant_id=declarant,
             origin_country=np.full(k, "CN", dtype=object),
             dispatch_country=np.where(rng.random(k) < 0.8, "CN", "HK").astype(object),
             transport_mode=mode.astype(object), true_value=true_value)
    g["revenue"] = 0.2 * np.maximum(true_value - value, 0) + 0.1 * true_value
    return g


def _tile_concealment(rng, tab, tr, k):
    tiles = np.array([_profile_index(c) for c in ("69072100", "69072200", "69072300")])
    prof = tiles[rng.choice(3, k, p=[0.5, 0.3, 0.2])]
    mode = np.where(rng.random(k) < 0.8, "sea", "road")
    g = _goods(rng, tab, prof, mode, lot_mult=rng.uniform(0.3, 1.0, k))
    # Powder in the body: heavier per m2 (denser, thicker) while the m2 price is kept,
    # so the value per kg falls.
    heavier = rng.uniform(1.35, 1.9, k)
    g["net_mass_kg"] = np.round(g["net_mass_kg"] * heavier, 3)
    g["gross_mass_kg"] = np.round(g["net_mass_kg"] * tab.gross_ratio[prof], 3)
    g["packages"] = np.maximum(1, np.ceil(g["net_mass_kg"] / 900.0)).astype(np.int64)
    r = rng.random(k)
    spiked = _format_composition(rng, (("SiO2", 60.0), ("Al2O3", 18.0), ("K2O", 3.0),
                                       ("CeO2", 6.0), ("Nd2O3", 8.0), ("CaO", 3.0),
                                       ("Fe2O3", 2.0)), k)
    body = _format_composition(rng, PROFILES[prof[0]].composition, k)
    g["composition"] = np.where(r < 0.45, body, np.where(r < 0.75, spiked, None))
    pool = np.flatnonzero(np.isin(tr.exp_prof, tiles).any(axis=1))
    exporter, importer, declarant, new = _exporter_or_new(rng, pool, k, 0.5, "T", tr)
    origin, dispatch = _route(rng, k, 0.6, 0.2)
    g.update(exporter_id=exporter, importer_id=importer, declarant_id=declarant,
             origin_country=origin, dispatch_country=dispatch, transport_mode=mode.astype(object))
    true_value = g["net_mass_kg"] * 15.0  # ~10% rare-earth oxide by mass
    g["true_value"] = true_value
    g["revenue"] = 0.2 * np.maximum(true_value - g["customs_value"], 0) + 0.1 * true_value
    return g


def _bottles_as_machinery(rng, tab, tr, k):
    prof = np.full(k, _profile_index("84879090"))
    mode = rng.choice(np.array(["post", "courier", "air"]), k, p=[0.4, 0.45, 0.15])
    g = _goods(rng, tab, prof, mode)
    bottles = rng.integers(2, 25, k)
    net = np.round(bottles * rng.uniform(2.0, 4.5, k), 3)  # a 1-litre bottle of oxide powder
    gross = np.round(net + bottles * 0.35, 3)
    in_litres = rng.random(k) < 0.3
    cheap = rng.random(k) < 0.3
    value = net * tab.price[prof] * rng.lognormal(0, 0.3, k) * np.where(cheap, 0.3, 1.0)
    comp, true_price = _re_composition(rng, k)
    true_value = net * true_price
    leak = rng.random(k) < 0.25
    extra = np.array(["water bottles", "bottled", "pump fluid", "liquid parts"])
    desc = np.where(leak, g["description"] + ", " + extra[rng.integers(0, 4, k)], g["description"])
    pool = _controlled_exporters(tr, RARE_EARTH_CODES)
    exporter, importer, declarant, _ = _exporter_or_new(rng, pool, k, 0.6, "B", tr)
    origin, dispatch = _route(rng, k, 0.5, 0.4)
    g.update(net_mass_kg=net, gross_mass_kg=gross,
             quantity=np.where(in_litres, bottles.astype(float), net),
             unit=np.where(in_litres, "l", "kg").astype(object), packages=bottles.astype(np.int64),
             package_type=np.full(k, "BO", dtype=object), customs_value=np.round(value, 2),
             composition=np.where(rng.random(k) < 0.15, "Fe:98.0;C:2.0", None),
             description=desc, exporter_id=exporter, importer_id=importer,
             declarant_id=declarant, origin_country=origin, dispatch_country=dispatch,
             transport_mode=mode.astype(object), true_value=true_value,
             measured_mass_kg=np.where(rng.random(k) < 0.6,
                                       np.round(gross * rng.normal(1, 0.01, k), 3), np.nan))
    g["revenue"] = 0.2 * np.maximum(true_value - value, 0) + 0.1 * true_value
    return g


def _postal_splitting(rng, tab, tr, k, days):
    # One consignment becomes a burst of parcels: same sender, same day, each under the
    # de-minimis value.
    sizes = rng.integers(6, 26, k)
    burst = np.repeat(np.arange(k), sizes)[:k]
    nb = int(burst.max()) + 1
    declared = np.array([_profile_index(c) for c in
                         ("85051110", "28469000", "84879090", "38249992")])
    b_prof = declared[rng.choice(4, nb, p=[0.4, 0.3, 0.15, 0.15])]
    b_mode = np.where(rng.random(nb) < 0.6, "post", "courier")
    prof, mode = b_prof[burst], b_mode[burst]
    g = _goods(rng, tab, prof, mode)
    net = np.round(rng.uniform(0.5, 3.0, k), 3)
    value = np.round(rng.uniform(60.0, DE_MINIMIS - 1, k), 2)
    pool = np.flatnonzero(np.isin(tr.exp_mode, ("post", "courier")))
    b_exp, b_imp, b_decl, _ = _exporter_or_new(rng, pool, nb, 0.7, "P", tr)
    private = rng.random(k) < 0.7  # parcels addressed to many private people
    importer = np.where(private, _ids("IP", np.arange(k) + rng.integers(0, 10**6), 7),
                        b_imp[burst])
    b_origin, b_dispatch = _route(rng, nb, 0.5, 0.5)
    b_day = rng.integers(0, days, nb)
    gross = np.round(net + 0.3, 3)
    comp, true_price = _re_composition(rng, k)
    true_value = net * true_price
    g.update(net_mass_kg=net, gross_mass_kg=gross, quantity=net,
             unit=np.full(k, "kg", dtype=object), packages=np.ones(k, dtype=np.int64),
             package_type=np.where(mode == "post", "PK", "BX").astype(object),
             customs_value=value, composition=np.full(k, None, dtype=object),
             exporter_id=b_exp[burst], importer_id=importer, declarant_id=b_decl[burst],
             origin_country=b_origin[burst], dispatch_country=b_dispatch[burst],
             transport_mode=mode.astype(object), true_value=true_value, day=b_day[burst],
             measured_mass_kg=np.where(rng.random(k) < 0.6,
                                       np.round(gross * rng.normal(1, 0.01, k), 3), np.nan))
    g["revenue"] = 0.2 * np.maximum(true_value - value, 0) + 0.1 * true_value
    return g


def _undervaluation(rng, legit: dict, pos: np.ndarray):
    """Turns existing legitimate rows into undervalued ones: only the value is false."""
    k = len(pos)
    true_value = legit["customs_value"][pos]
    value = np.round(true_value * rng.uniform(0.08, 0.3, k), 2)
    return {"customs_value": value, "true_value": true_value,
            "revenue": 0.2 * (true_value - value) + 0.1 * true_value}


# --- assembly ----------------------------------------------------------------------------

def _plant_frauds(rng, tab, tr, cols: dict, day: np.ndarray, scheme: np.ndarray,
                  n_fraud: int, days: int) -> None:
    """Overwrite ``n_fraud`` random rows of ``cols``/``day`` in place, shared evenly
    between the schemes, and name each row's scheme in ``scheme``."""
    rows = len(day)
    per = np.full(len(SCHEMES), n_fraud // len(SCHEMES))
    per[: n_fraud % len(SCHEMES)] += 1
    positions = rng.permutation(rows)[:n_fraud]
    start_i = 0
    for name, k in zip(SCHEMES, per, strict=True):
        pos = positions[start_i:start_i + k]
        start_i += k
        if k == 0:
            continue
        if name == "undervaluation":
            g = _undervaluation(rng, cols, pos)
        elif name == "postal_splitting":
            g = _postal_splitting(rng, tab, tr, int(k), days)
        else:
            g = globals()[f"_{name}"](rng, tab, tr, int(k))
        if "measured_mass_kg" not in g and "gross_mass_kg" in g:
            g["measured_mass_kg"] = _measured(rng, np.asarray(g["gross_mass_kg"], float),
                                              np.asarray(g["transport_mode"]))
        if "day" in g:
            day[pos] = g.pop("day")
        for c, v in g.items():
            if c == "true_value":
                continue
            cols[c][pos] = v
        scheme[pos] = name


def _frame(cols: dict, day: np.ndarray, scheme: np.ndarray, *, seed: int,
           start: str) -> pd.DataFrame:
    """The generated columns as the output frame: canonical order, fixed dtypes."""
    rows = len(day)
    dates = (np.datetime64(start) + day.astype("timedelta64[D]")).astype(str)
    is_fraud = (scheme != "").astype(np.int64)
    out = {
        "declaration_id": _ids(f"S{seed}-", np.arange(rows), 8),
        "date": dates.astype(object),
        **{c: cols[c] for c in ("hs_code", "description", "origin_country", "dispatch_country",
                                "transport_mode", "exporter_id", "importer_id", "declarant_id",
                                "net_mass_kg", "gross_mass_kg", "quantity", "unit", "packages",
                                "package_type", "customs_value")},
        "currency": np.full(rows, "USD", dtype=object),
        "composition": cols["composition"],
        "measured_mass_kg": cols["measured_mass_kg"],
        "is_fraud": is_fraud,
        "fraud_scheme": np.where(is_fraud == 1, scheme, None),
        "revenue": np.round(np.where(is_fraud == 1, cols["revenue"].astype(float), 0.0), 2),
    }
    df = pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))
    for c in ("net_mass_kg", "gross_mass_kg", "quantity", "customs_value", "measured_mass_kg",
              "revenue"):
        df[c] = df[c].astype(np.float64)
    df["packages"] = df["packages"].astype(np.int64)
    for c in ("declaration_id", "date", "hs_code", "description", "origin_country",
              "dispatch_country", "transport_mode", "exporter_id", "importer_id", "declarant_id",
              "unit", "package_type", "currency", "composition", "fraud_scheme"):
        df[c] = df[c].astype("str")
    return df


def generate(rows: int = 10_000, seed: int = 0, fraud_rate: float = 0.01,
             start: str = "2025-01-01", days: int = 365, world: int = 0,
             traders: int = 4000) -> pd.DataFrame:
    """Synthetic declarations with labelled fraud schemes, deterministic in ``seed``.

    Returns one row per declaration item in the contract's canonical columns, plus the
    labels ``is_fraud``, ``fraud_scheme`` and ``revenue`` (what an inspection recovers).
    ``world`` fixes the population of ``traders`` exporters (and their importers and
    agents); ``seed`` draws the declarations, so two seeds are two periods of one trade.

    >>> df = generate(rows=2000, seed=1)
    >>> len(df), int(df["is_fraud"].sum())
    (2000, 20)
    """
    if not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    if not isinstance(traders, (int, np.integer)) or traders < 10:
        raise ValueError(f"traders must be an integer >= 10, got {traders!r}")
    if not 0.0 <= fraud_rate <= 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5], got {fraud_rate!r}")
    rows = int(rows)
    tab = _tab()
    # The trading world (who ships what, from where, to whom) depends on `world` only, so
    # that files generated with different seeds are successive periods of the same trade:
    # a model trained on seed 1 meets known traders, and new ones, in seed 2.
    tr = _traders(np.random.default_rng([world, 20250101]), tab, traders, traders * 3 // 4,
                  max(10, traders // 25))
    rng = np.random.default_rng(seed)
    cols = _legit(rng, tab, tr, rows)
    day = rng.integers(0, days, rows)
    cols["measured_mass_kg"] = _measured(rng, cols["gross_mass_kg"], cols["transport_mode"])
    cols["revenue"] = np.zeros(rows)
    scheme = np.full(rows, "", dtype=object)

    n_fraud = int(round(rows * fraud_rate))
    _plant_frauds(rng, tab, tr, cols, day, scheme, n_fraud, days)
    return _frame(cols, day, scheme, seed=seed, start=start)
