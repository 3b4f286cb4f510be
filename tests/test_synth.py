"""detector.synth.generate: determinism, the contract, scheme shares and the traces each
scheme is meant to leave, physical consistency of legitimate trade."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.schema import REQUIRED
from detector.synth import (
    CONTROLLED_CODES,
    COVER_CODES,
    OUTPUT_COLUMNS,
    PROFILES,
    SCHEMES,
    generate,
)
from detector.validate import validate

PROFILE = {p.hs: p for p in PROFILES}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- determinism --------------------------------------------------------------------------

def test_same_args_give_identical_frame():
    a = generate(rows=3000, seed=5, fraud_rate=0.03)
    b = generate(rows=3000, seed=5, fraud_rate=0.03)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_different_seeds_differ_but_share_the_trading_world():
    a = generate(rows=3000, seed=5)
    b = generate(rows=3000, seed=6)
    assert not a["customs_value"].equals(b["customs_value"])
    assert set(a["declaration_id"]).isdisjoint(b["declaration_id"])
    # Same world: most exporters of one period are seen in the other.
    ea, eb = set(a["exporter_id"]), set(b["exporter_id"])
    assert len(ea & eb) > 0.2 * len(ea)


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_cli_generate_is_byte_identical(tmp_path, ext):
    runner = CliRunner()
    paths = []
    for name in ("a", "b"):
        p = tmp_path / f"{name}.{ext}"
        res = runner.invoke(main, ["generate", "--rows", "1500", "--seed", "4", "-o", str(p)])
        assert res.exit_code == 0, res.output
        paths.append(p)
    assert paths[0].stat().st_size > 0
    assert _sha(paths[0]) == _sha(paths[1])


def test_cli_generate_file_round_trips_to_same_frame(tmp_path):
    p = tmp_path / "g.parquet"
    res = CliRunner().invoke(main, ["generate", "--rows", "800", "--seed", "9", "-o", str(p)])
    assert res.exit_code == 0, res.output
    back = pd.read_parquet(p)
    ref = generate(rows=800, seed=9)
    assert list(back.columns) == list(OUTPUT_COLUMNS)
    assert back["hs_code"].tolist() == ref["hs_code"].tolist()
    np.testing.assert_array_equal(back["customs_value"].to_numpy(), ref["customs_value"])


# --- contract ------------------------------------------------------------------------------

def test_columns_and_dtypes(synth_df):
    df = synth_df
    assert list(df.columns) == list(OUTPUT_COLUMNS)
    for c in ("net_mass_kg", "gross_mass_kg", "quantity", "customs_value", "measured_mass_kg",
              "revenue"):
        assert df[c].dtype == np.float64, c
    assert df["packages"].dtype == np.int64
    assert df["is_fraud"].dtype == np.int64
    for c in ("declaration_id", "hs_code", "origin_country", "date", "unit", "package_type"):
        assert pd.api.types.is_string_dtype(df[c]), c


def test_required_fields_non_null_and_ids_unique(synth_df):
    df = synth_df
    for c in REQUIRED:
        assert df[c].notna().all(), c
    assert df["declaration_id"].is_unique
    assert (df["net_mass_kg"] > 0).all()
    assert (df["customs_value"] >= 0).all()


def test_hs_codes_are_8_digit_strings_with_leading_zeros(synth_df):
    hs = synth_df["hs_code"]
    assert hs.str.fullmatch(r"\d{8}").all()
    assert set(hs) <= set(PROFILE)
    leading = {h for h in hs.unique() if h.startswith("0")}
    # chapters 03, 08, 09 exist in the profiles and must keep their zero
    assert {"03044100", "08039010", "09012100"} <= leading


def test_hs_code_leading_zero_survives_csv(tmp_path):
    p = tmp_path / "g.csv"
    res = CliRunner().invoke(main, ["generate", "--rows", "3000", "--seed", "1", "-o", str(p)])
    assert res.exit_code == 0, res.output
    from detector.io import read_table

    back = read_table(p)
    assert back["hs_code"].str.fullmatch(r"\d{8}").all()
    assert back["hs_code"].str.startswith("0").any()


def test_generate_passes_validation_with_zero_rejects(synth_df):
    res = validate(synth_df)
    assert len(res.rejects) == 0, res.rejects.head()
    assert len(res.valid) == len(synth_df)


def test_labels_consistent(synth_df):
    df = synth_df
    fraud = df["is_fraud"] == 1
    assert df.loc[fraud, "fraud_scheme"].isin(SCHEMES).all()
    assert df.loc[~fraud, "fraud_scheme"].isna().all()
    assert (df.loc[~fraud, "revenue"] == 0).all()
    assert (df.loc[fraud, "revenue"] > 0).all()


@pytest.mark.parametrize("kwargs", [{"rows": 0}, {"rows": -5}, {"rows": 2.5},
                                    {"fraud_rate": 0.6}, {"fraud_rate": -0.1}])
def test_bad_args_raise(kwargs):
    args = {"rows": 100, "seed": 0} | kwargs
    with pytest.raises(ValueError):
        generate(**args)


def test_cli_bad_rows_is_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["generate", "--rows", "0", "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2
    res = CliRunner().invoke(main, ["generate", "--rows", "10", "--fraud-rate", "0.9",
                                    "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2


def test_zero_fraud_rate_gives_no_fraud():
    df = generate(rows=500, seed=2, fraud_rate=0.0)
    assert df["is_fraud"].sum() == 0


# --- schemes -------------------------------------------------------------------------------

def test_every_scheme_present_at_its_share(synth_df):
    df = synth_df
    n_fraud = int(df["is_fraud"].sum())
    assert n_fraud == round(len(df) * 0.05)
    counts = df["fraud_scheme"].value_counts()
    assert set(counts.index) == set(SCHEMES)
    share = counts / n_fraud
    assert np.allclose(share.to_numpy(), 1 / len(SCHEMES), atol=0.02), share


def test_legit_rows_are_physically_consistent(synth_df):
    leg = synth_df[synth_df["is_fraud"] == 0]
    assert (leg["gross_mass_kg"] >= leg["net_mass_kg"]).all()
    kpu = leg["net_mass_kg"] / leg["quantity"]
    expected = leg["hs_code"].map(lambda h: PROFILE[h].kg_per_unit)
    ratio = kpu / expected
    within = ((ratio > 0.8) & (ratio < 1.25)).mean()
    assert within > 0.98  # keying errors and rounding of tiny parcels are the rest
    unit = leg["hs_code"].map(lambda h: PROFILE[h].unit)
    assert (leg["unit"] == unit).mean() > 0.999


def _by_scheme(df, name):
    return df[df["fraud_scheme"] == name]


def _legit(df):
    return df[df["is_fraud"] == 0]


def test_tile_concealment_is_heavy_per_m2(synth_df):
    tiles = _by_scheme(synth_df, "tile_concealment")
    assert len(tiles) > 50
    assert tiles["hs_code"].str.startswith("6907").all()
    assert (tiles["unit"] == "m2").all()
    leg = _legit(synth_df)
    leg_kpm2 = (leg["net_mass_kg"] / leg["quantity"]).groupby(leg["hs_code"]).median()
    kpm2 = tiles["net_mass_kg"] / tiles["quantity"]
    rel = kpm2 / tiles["hs_code"].map(leg_kpm2)
    assert (rel > 1.25).mean() > 0.95
    assert rel.median() > 1.35


def test_bottles_as_machinery_trace(synth_df):
    b = _by_scheme(synth_df, "bottles_as_machinery")
    assert (b["hs_code"] == "84879090").all()
    assert (b["package_type"] == "BO").all()
    assert b["unit"].isin(["l", "kg"]).all() and (b["unit"] == "l").any()
    assert b["transport_mode"].isin(["post", "courier", "air"]).all()
    leg = _legit(synth_df)
    legit_bo = leg[(leg["hs_code"] == "84879090") & (leg["package_type"] == "BO")]
    assert len(legit_bo) == 0


def test_false_origin_trace(synth_df):
    f = _by_scheme(synth_df, "false_origin")
    assert f["hs_code"].isin(CONTROLLED_CODES).all()
    assert (f["origin_country"] != "CN").all()
    assert (f["origin_country"] != f["dispatch_country"]).mean() > 0.95
    assert f["dispatch_country"].isin(["CN", "HK", "SG", "AE", "MY", "VN"]).all()


def test_false_origin_always_differs_from_dispatch(synth_df):
    f = _by_scheme(synth_df, "false_origin")
    assert (f["origin_country"] != f["dispatch_country"]).all()


def test_postal_splitting_bursts(synth_df):
    p = _by_scheme(synth_df, "postal_splitting")
    assert (p["customs_value"] < 150).all()
    assert p["transport_mode"].isin(["post", "courier"]).all()
    size = p.groupby(["exporter_id", "date"]).size()
    # Bursts of 6-25 parcels: almost every parcel belongs to a burst of at least 6 (the
    # last burst may be truncated to the scheme's row count).
    in_big = p.groupby(["exporter_id", "date"])["declaration_id"].transform("size") >= 6
    assert in_big.mean() > 0.9
    assert size.max() >= 6


def test_undervaluation_far_below_legit_median(synth_df):
    u = _by_scheme(synth_df, "undervaluation")
    leg = _legit(synth_df)
    vpk = np.log(leg["customs_value"] / leg["net_mass_kg"])
    med = vpk.groupby(leg["hs_code"]).median()
    uv = np.log(u["customs_value"] / u["net_mass_kg"]) - u["hs_code"].map(med)
    assert uv.median() < np.log(0.4)
    assert (uv < 0).mean() > 0.9


def test_false_composition_mass_gap(synth_df):
    f = _by_scheme(synth_df, "false_composition")
    assert (f["hs_code"] == "28461000").all()
    heavier = np.maximum(f["gross_mass_kg"], f["measured_mass_kg"].fillna(0)) / f["net_mass_kg"]
    assert (heavier > 1.3).mean() > 0.9
    leg = _legit(synth_df)
    leg_ratio = (leg["gross_mass_kg"] / leg["net_mass_kg"])[leg["hs_code"] == "28461000"]
    assert leg_ratio.quantile(0.99) < 1.3


def test_misdeclared_contents_under_cover_codes(synth_df):
    m = _by_scheme(synth_df, "misdeclared_contents")
    assert m["hs_code"].isin(COVER_CODES).all()
    comp = m["composition"].dropna()
    has_re = comp.str.contains(r"(?:Nd|Dy|Tb|Pr)")
    assert has_re.any()
    leg = _legit(synth_df)
    leg_cover = leg[leg["hs_code"].isin(COVER_CODES)]["composition"].dropna()
    assert not leg_cover.str.contains(r"(?:Nd2O3|Dy2O3|Tb4O7)").any()
