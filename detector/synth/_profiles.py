"""Trade facts for the synthetic generator: one profile per commodity.

Figures are public orders of magnitude (DOMAIN.md: USGS, CRC densities, HTS units,
trade press), rounded; they only need to be plausible and internally consistent
(mass per unit, price per kg, packaging), because the detector learns its references
from data rather than from this table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "COVER_CODES", "RARE_EARTH_CODES", "CONTROLLED_CODES"]

ASIA = {"CN": 0.55, "VN": 0.1, "IN": 0.1, "TH": 0.07, "MY": 0.06, "KR": 0.06, "JP": 0.06}
EUROPE = {"DE": 0.3, "IT": 0.2, "FR": 0.15, "ES": 0.12, "PL": 0.12, "NL": 0.11}
GLOBAL = {"CN": 0.35, "US": 0.15, "DE": 0.12, "JP": 0.08, "KR": 0.08, "IN": 0.07, "TR": 0.06,
          "MX": 0.05, "GB": 0.04}
SEA = {"sea": 0.7, "road": 0.2, "rail": 0.1}
MIXED = {"sea": 0.45, "road": 0.25, "air": 0.15, "courier": 0.1, "post": 0.05}
SMALL = {"air": 0.35, "courier": 0.3, "post": 0.15, "road": 0.2}
BULK = {"sea": 0.85, "rail": 0.1, "road": 0.05}


@dataclass(frozen=True)
class Profile:
    hs: str                    # CN 8-digit code, leading zeros kept
    words: tuple[str, ...]     # description variants traders actually write
    unit: str                  # statistical unit of the supplementary quantity
    kg_per_unit: float         # net mass of one statistical unit
    price: float               # median USD per kg (log-normal)
    price_sigma: float         # log-space spread of the price between lots
    lot: float                 # median lot in statistical units for freight modes
    package: str               # UN/ECE Rec. 21 package code
    kg_per_package: float      # typical net kg in one package
    gross_ratio: float         # gross / net for this packaging
    origins: dict[str, float]
    modes: dict[str, float]
    composition: tuple[tuple[str, float], ...] = ()
    composition_share: float = 0.0   # share of declarations that state a composition
    weight: float = 1.0        # share of trade (relative)


_TILE_BODY = (("SiO2", 68.0), ("Al2O3", 20.0), ("K2O", 3.0), ("Na2O", 2.0), ("CaO", 3.0),
              ("MgO", 1.5), ("Fe2O3", 1.0), ("TiO2", 0.5))

PROFILES: tuple[Profile, ...] = (
    # Cover goods of the story: tiles, glazes and frits, waters, machinery parts, silicates,
    # aluminium oxide, chemical preparations.
    Profile("69072100", ("porcelain floor tiles", "glazed porcelain tiles", "ceramic floor tiles 60x60",
            "vitrified tiles"), "m2", 21.0, 0.65, 0.25, 1500, "PX", 900, 1.04, {"CN": 0.3, "ES": 0.2,
            "IT": 0.2, "IN": 0.15, "TR": 0.15}, SEA, _TILE_BODY, 0.5, 3.0),
    Profile("69072200", ("ceramic tiles", "glazed wall and floor tiles", "stoneware tiles"), "m2",
            18.0, 0.55, 0.25, 1200, "PX", 900, 1.04, {"CN": 0.35, "ES": 0.25, "IT": 0.15, "TR": 0.15,
            "PT": 0.1}, SEA, _TILE_BODY, 0.4, 2.0),
    Profile("69072300", ("wall tiles", "white body wall tiles", "ceramic wall tiles"), "m2", 13.0,
            0.6, 0.25, 1000, "PX", 800, 1.05, {"ES": 0.3, "CN": 0.3, "IT": 0.2, "PL": 0.2}, SEA,
            _TILE_BODY, 0.4, 1.5),
    Profile("32072000", ("ceramic glaze", "vitrifiable enamel", "engobe for tiles", "glaze powder"),
            "kg", 1.0, 1.6, 0.3, 4000, "BG", 25, 1.02, {"ES": 0.35, "IT": 0.3, "CN": 0.25, "DE": 0.1},
            SEA, (("SiO2", 55.0), ("B2O3", 12.0), ("Al2O3", 8.0), ("Na2O", 6.0), ("ZrO2", 8.0),
                  ("ZnO", 5.0), ("CaO", 6.0)), 0.85, 1.5),
    Profile("32074000", ("glass frit", "ceramic frit", "frit granules"), "kg", 1.0, 1.2, 0.3, 6000,
            "BG", 25, 1.02, {"ES": 0.4, "IT": 0.25, "CN": 0.25, "TR": 0.1}, SEA,
            (("SiO2", 60.0), ("B2O3", 10.0), ("Al2O3", 7.0), ("CaO", 9.0), ("Na2O", 5.0),
             ("ZnO", 5.0), ("K2O", 4.0)), 0.85, 1.2),
    Profile("22011000", ("mineral water", "natural mineral water still", "sparkling mineral water",
            "spring water bottles"), "l", 1.0, 0.45, 0.3, 20000, "CT", 12, 1.12, {"FR": 0.3,
            "IT": 0.3, "DE": 0.15, "GE": 0.1, "CH": 0.15}, {"road": 0.7, "sea": 0.2, "rail": 0.1},
            weight=2.0),
    Profile("22021000", ("soft drinks", "flavoured water", "carbonated beverages"), "l", 1.04, 0.8,
            0.3, 15000, "CT", 12, 1.1, EUROPE, {"road": 0.75, "sea": 0.25}, weight=1.5),
    Profile("84879090", ("machinery parts", "spare parts for machinery", "machine parts n.e.s.",
            "mechanical parts", "parts of machines"), "kg", 1.0, 14.0, 0.6, 400, "CT", 20, 1.12,
            GLOBAL, MIXED, weight=3.0),
    Profile("84821010", ("ball bearings", "deep groove ball bearings", "bearings"), "u", 0.25,
            11.0, 0.4, 4000, "CT", 20, 1.1, {"CN": 0.4, "DE": 0.2, "JP": 0.2, "IT": 0.1, "IN": 0.1},
            MIXED, weight=1.5),
    Profile("28399000", ("sodium silicate", "silicates", "potassium silicate powder"), "kg", 1.0,
            0.9, 0.3, 10000, "BG", 25, 1.02, {"CN": 0.3, "DE": 0.2, "TR": 0.2, "IN": 0.15, "US": 0.15},
            SEA, (("SiO2", 62.0), ("Na2O", 30.0), ("H2O", 8.0)), 0.85, 1.2),
    Profile("28182000", ("aluminium oxide", "calcined alumina", "alumina powder"), "kg", 1.0, 0.9,
            0.3, 20000, "BG", 25, 1.02, {"CN": 0.35, "IN": 0.2, "DE": 0.15, "AU": 0.15, "US": 0.15},
            SEA, (("Al2O3", 99.4), ("Na2O", 0.4), ("SiO2", 0.2)), 0.9, 1.5),
    Profile("38249992", ("chemical preparation", "chemical products n.e.s.", "industrial additive"),
            "kg", 1.0, 4.0, 0.5, 2000, "DR", 200, 1.06, GLOBAL, MIXED,
            (("C", 40.0), ("O", 30.0), ("H", 8.0), ("N", 10.0), ("Si", 12.0)), 0.8, 2.0),
    # Legitimately traded rare-earth goods (the ones the schemes imitate or hide).
    Profile("28053010", ("rare earth metals intermixed", "praseodymium-neodymium metal",
            "PrNd metal"), "kg", 1.0, 90.0, 0.3, 300, "DR", 50, 1.05, {"CN": 0.8, "VN": 0.1,
            "JP": 0.1}, {"sea": 0.5, "air": 0.5}, (("Nd", 75.0), ("Pr", 24.5), ("Fe", 0.5)), 0.9, 0.4),
    Profile("28461000", ("cerium oxide", "cerium compounds", "ceria polishing powder"), "kg", 1.0,
            2.5, 0.3, 3000, "DR", 50, 1.04, {"CN": 0.75, "IN": 0.1, "EE": 0.15}, SEA,
            (("CeO2", 99.5), ("La2O3", 0.5)), 0.9, 0.5),
    Profile("28469000", ("neodymium oxide", "rare earth oxide", "dysprosium oxide", "lanthanum oxide",
            "yttrium oxide"), "kg", 1.0, 70.0, 0.6, 500, "DR", 50, 1.04, {"CN": 0.7, "MY": 0.15,
            "EE": 0.05, "US": 0.1}, {"sea": 0.6, "air": 0.4}, (("Nd2O3", 99.5), ("Pr6O11", 0.5)),
            0.95, 0.5),
    Profile("85051110", ("neodymium magnets", "NdFeB permanent magnets", "sintered magnets"), "kg",
            1.0, 40.0, 0.35, 500, "CT", 20, 1.08, {"CN": 0.75, "JP": 0.15, "DE": 0.1}, MIXED,
            (("Nd", 29.0), ("Fe", 66.0), ("B", 1.0), ("Dy", 2.0), ("Pr", 2.0)), 0.6, 1.0),
    # Metals (72-81), minerals (25-27), building materials and glass (68-70).
    Profile("72024100", ("ferro-chromium", "high carbon ferrochrome"), "kg", 1.0, 1.5, 0.25, 50000,
            "BG", 1000, 1.01, {"ZA": 0.5, "KZ": 0.3, "IN": 0.2}, BULK,
            (("Cr", 65.0), ("Fe", 27.0), ("C", 8.0)), 0.8),
    Profile("72142000", ("steel bars", "reinforcing bars", "rebar"), "kg", 1.0, 0.75, 0.2, 100000,
            "NE", 2000, 1.0, {"TR": 0.4, "UA": 0.2, "DE": 0.2, "IT": 0.2}, BULK,
            (("Fe", 98.0), ("C", 0.3), ("Mn", 1.2), ("Si", 0.5)), 0.4, 1.5),
    Profile("73181500", ("screws and bolts", "hex bolts steel", "threaded fasteners"), "kg", 1.0,
            3.2, 0.35, 3000, "CT", 25, 1.05, {"CN": 0.5, "TW": 0.3, "DE": 0.1, "IT": 0.1}, MIXED,
            weight=2.0),
    Profile("76011000", ("aluminium ingots", "unwrought aluminium", "primary aluminium"), "kg",
            1.0, 2.5, 0.15, 50000, "PX", 1000, 1.01, {"NO": 0.3, "AE": 0.3, "IS": 0.2, "IN": 0.2},
            BULK, (("Al", 99.7), ("Fe", 0.2), ("Si", 0.1)), 0.7, 1.5),
    Profile("74031100", ("copper cathodes", "refined copper cathodes"), "kg", 1.0, 9.0, 0.12,
            50000, "PX", 1000, 1.01, {"CL": 0.5, "PE": 0.2, "ZM": 0.2, "PL": 0.1}, BULK,
            (("Cu", 99.99),), 0.7, 1.0),
    Profile("81019400", ("unwrought tungsten", "tungsten powder"), "kg", 1.0, 45.0, 0.3, 500, "DR",
            50, 1.04, {"CN": 0.7, "VN": 0.1, "AT": 0.1, "US": 0.1}, {"sea": 0.5, "air": 0.5},
            (("W", 99.9),), 0.9, 0.4),
    Profile("81089030", ("titanium bars", "titanium alloy rods"), "kg", 1.0, 25.0, 0.3, 1000, "CT",
            50, 1.06, {"US": 0.3, "JP": 0.3, "CN": 0.2, "RU": 0.2}, MIXED,
            (("Ti", 90.0), ("Al", 6.0), ("V", 4.0)), 0.8, 0.5),
    Profile("25051000", ("silica sand", "quartz sand", "industrial sand"), "kg", 1.0, 0.06, 0.3,
            200000, "NE", 25000, 1.0, {"DE": 0.4, "NL": 0.3, "BE": 0.3}, BULK, (("SiO2", 99.5),),
            0.6),
    Profile("25309000", ("mineral substances", "mineral powder", "natural minerals n.e.s."), "kg",
            1.0, 0.4, 0.4, 20000, "BG", 1000, 1.01, {"CN": 0.3, "TR": 0.3, "IN": 0.2, "MA": 0.2},
            SEA, (("SiO2", 50.0), ("Al2O3", 20.0), ("CaO", 15.0), ("MgO", 15.0)), 0.7),
    Profile("26030000", ("copper ores and concentrates", "copper concentrate"), "kg", 1.0, 2.0,
            0.2, 1000000, "NE", 100000, 1.0, {"CL": 0.5, "PE": 0.3, "AU": 0.2}, {"sea": 1.0},
            (("Cu", 28.0), ("Fe", 27.0), ("S", 32.0), ("SiO2", 13.0)), 0.8, 0.5),
    Profile("68069000", ("mineral wool insulation", "insulating materials"), "kg", 1.0, 2.0, 0.3,
            5000, "PX", 300, 1.05, EUROPE, {"road": 0.8, "sea": 0.2},
            (("SiO2", 45.0), ("CaO", 20.0), ("Al2O3", 15.0), ("MgO", 10.0), ("Fe2O3", 10.0)), 0.4),
    Profile("70199000", ("glass fibres", "fibreglass roving"), "kg", 1.0, 2.5, 0.3, 10000, "PX",
            800, 1.04, {"CN": 0.5, "EG": 0.2, "DE": 0.3}, SEA,
            (("SiO2", 55.0), ("CaO", 22.0), ("Al2O3", 14.0), ("B2O3", 6.0), ("MgO", 3.0)), 0.5),
    Profile("70139900", ("glassware", "drinking glasses", "glass tableware"), "u", 0.35, 4.0, 0.35,
            8000, "CT", 12, 1.25, {"CN": 0.4, "TR": 0.3, "FR": 0.15, "PL": 0.15}, MIXED),
    Profile("28230000", ("titanium dioxide", "titanium oxides", "TiO2 pigment"), "kg", 1.0, 3.0,
            0.25, 20000, "BG", 25, 1.02, {"CN": 0.4, "DE": 0.2, "US": 0.2, "FI": 0.2}, SEA,
            (("TiO2", 98.0), ("Al2O3", 1.5), ("SiO2", 0.5)), 0.9),
    # Everyday freight and e-commerce goods across many chapters.
    Profile("39011010", ("polyethylene granules", "LLDPE resin", "polyethylene"), "kg", 1.0, 1.3,
            0.2, 25000, "BG", 25, 1.01, {"SA": 0.4, "US": 0.2, "KR": 0.2, "DE": 0.2}, SEA,
            weight=2.0),
    Profile("40111000", ("car tyres", "new pneumatic tyres", "passenger car tyres"), "u", 9.0, 3.5,
            0.3, 1500, "NE", 9, 1.0, {"CN": 0.4, "TH": 0.2, "KR": 0.2, "DE": 0.2}, SEA, weight=1.5),
    Profile("61091000", ("cotton t-shirts", "t-shirts", "knitted cotton tops"), "u", 0.2, 18.0,
            0.4, 5000, "CT", 15, 1.08, {"BD": 0.3, "CN": 0.25, "TR": 0.15, "VN": 0.15, "IN": 0.15},
            {"sea": 0.6, "air": 0.15, "post": 0.1, "courier": 0.15}, weight=2.5),
    Profile("64039900", ("leather shoes", "footwear", "men's leather shoes"), "pair", 0.9, 25.0,
            0.4, 1200, "CT", 12, 1.3, {"VN": 0.3, "CN": 0.3, "IT": 0.2, "PT": 0.2},
            {"sea": 0.6, "air": 0.2, "courier": 0.2}, weight=1.5),
    Profile("85171300", ("smartphones", "mobile phones", "cellular telephones"), "u", 0.35, 900.0,
            0.35, 800, "CT", 10, 1.35, {"CN": 0.6, "VN": 0.2, "IN": 0.1, "KR": 0.1}, SMALL,
            weight=1.5),
    Profile("84713000", ("laptops", "portable computers", "notebook computers"), "u", 2.2, 300.0,
            0.35, 300, "CT", 11, 1.4, {"CN": 0.8, "TW": 0.1, "VN": 0.1}, SMALL, weight=1.2),
    Profile("85044090", ("power supplies", "static converters", "inverters"), "u", 1.2, 40.0, 0.45,
            800, "CT", 15, 1.25, {"CN": 0.7, "DE": 0.1, "TW": 0.1, "MY": 0.1}, MIXED, weight=1.5),
    Profile("87089997", ("motor vehicle parts", "auto parts", "car spare parts"), "kg", 1.0, 8.0,
            0.5, 2000, "CT", 25, 1.1, GLOBAL, MIXED, weight=2.5),
    Profile("94036090", ("wooden furniture", "wooden tables", "wooden cabinets"), "u", 25.0, 5.0,
            0.35, 200, "CT", 25, 1.15, {"CN": 0.3, "VN": 0.25, "PL": 0.25, "ID": 0.2}, SEA,
            weight=1.5),
    Profile("95030099", ("toys", "plastic toys", "children's toys"), "u", 0.4, 10.0, 0.4, 5000,
            "CT", 10, 1.3, {"CN": 0.85, "VN": 0.1, "DK": 0.05},
            {"sea": 0.6, "post": 0.15, "courier": 0.15, "air": 0.1}, weight=2.0),
    Profile("09012100", ("roasted coffee", "roasted coffee beans", "coffee"), "kg", 1.0, 9.0, 0.25,
            5000, "BG", 60, 1.02, {"BR": 0.3, "CO": 0.25, "VN": 0.2, "ET": 0.15, "IT": 0.1}, SEA,
            weight=1.5),
    Profile("08039010", ("fresh bananas", "bananas"), "kg", 1.0, 0.9, 0.15, 20000, "CT", 18, 1.1,
            {"EC": 0.4, "CO": 0.3, "CR": 0.3}, {"sea": 1.0}, weight=1.5),
    Profile("03044100", ("salmon fillets", "fresh salmon fillets"), "kg", 1.0, 12.0, 0.2, 3000,
            "CT", 20, 1.15, {"NO": 0.7, "CL": 0.2, "GB": 0.1}, {"road": 0.6, "air": 0.4}),
    Profile("10063098", ("milled rice", "long grain rice", "rice"), "kg", 1.0, 0.8, 0.2, 50000,
            "BG", 25, 1.01, {"IN": 0.35, "TH": 0.3, "PK": 0.2, "VN": 0.15}, SEA, weight=1.5),
    Profile("30049000", ("medicaments", "pharmaceutical products", "tablets in packs"), "kg", 1.0,
            80.0, 0.8, 300, "CT", 10, 1.3, {"DE": 0.25, "CH": 0.25, "IN": 0.2, "US": 0.15,
            "IE": 0.15}, {"air": 0.5, "courier": 0.2, "road": 0.3}, weight=1.5),
    Profile("90183190", ("syringes", "disposable syringes"), "u", 0.012, 12.0, 0.35, 100000, "CT",
            8, 1.3, {"CN": 0.5, "DE": 0.2, "US": 0.15, "IN": 0.15}, MIXED),
    Profile("71131900", ("gold jewellery", "jewellery of precious metal"), "kg", 1.0, 30000.0, 0.5,
            3, "BX", 1, 1.6, {"IT": 0.4, "IN": 0.3, "TR": 0.2, "AE": 0.1},
            {"air": 0.5, "courier": 0.5}, weight=0.3),
    Profile("84182100", ("refrigerators", "household refrigerators", "fridges"), "u", 60.0, 5.0,
            0.25, 150, "CT", 60, 1.15, {"CN": 0.3, "TR": 0.3, "KR": 0.2, "PL": 0.2}, SEA),
    Profile("48025690", ("copy paper", "uncoated paper A4", "printing paper"), "kg", 1.0, 1.0,
            0.2, 20000, "PX", 1000, 1.03, {"FI": 0.3, "SE": 0.3, "PT": 0.2, "BR": 0.2},
            {"sea": 0.5, "road": 0.5}, weight=1.2),
    Profile("44071190", ("sawn pine wood", "sawn timber", "pine boards"), "m3", 500.0, 0.5, 0.2, 60,
            "NE", 500, 1.0, {"SE": 0.4, "FI": 0.3, "DE": 0.2, "BR": 0.1}, BULK, weight=1.2),
)

# Harmless codes that the schemes use as cover for rare-earth goods (DOMAIN.md).
COVER_CODES: tuple[str, ...] = ("32072000", "32074000", "28399000", "28182000", "38249992",
                                "25309000", "28230000")
RARE_EARTH_CODES: tuple[str, ...] = ("28053010", "28461000", "28469000", "85051110")
# Export-controlled goods a false origin is most worth for (medium/heavy rare earths, magnets,
# tungsten).
CONTROLLED_CODES: tuple[str, ...] = ("28053010", "28469000", "85051110", "81019400")
