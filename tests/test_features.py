"""DeclarationFeatures on small hand-made frames: each feature family moves the way it
should, labels never leak, HS backoff, unseen categories, missing columns, chunking,
the single-record path and the state round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.errors import NotFittedError
from detector.features import FEATURES, DeclarationFeatures
from detector.validate import validate

N_BASE = 200


def _base(n: int = N_BASE, seed: int = 0) -> pd.DataFrame:
    """n tile rows (69072100) and n glaze rows (32072000) of honest, similar trade."""
    rng = np.random.default_rng(seed)
    rows = []
    for code, kgpu, unit, price, comp, words, pkg in (
        ("69072100", 21.0, "m2", 0.65, "SiO2:68;Al2O3:20;K2O:3", "porcelain floor tiles", "PX"),
        ("32072000", 1.0, "kg", 1.6, "SiO2:55;B2O3:12;Al2O3:8;ZrO2:8", "ceramic glaze powder",
         "BG"),
    ):
        qty = np.round(rng.lognormal(np.log(800), 0.3, n), 2)
        net = qty * kgpu * rng.lognormal(0, 0.03, n) if unit != "kg" else qty
        net = np.round(net, 3)
        qty = net if unit == "kg" else qty
        packages = np.maximum(1, np.round(net / 900 if pkg == "PX" else net / 25)).astype(int)
        gross = np.round(net + packages * 20 * rng.lognormal(0, 0.05, n), 3)
        for i in range(n):
            rows.append({
                "declaration_id": f"{code}-{seed}-{i}",
                "date": f"2025-01-{1 + i % 28:02d}",
                "hs_code": code,
                "description": words,
                "origin_country": ["CN", "ES", "IT"][i % 3],
                "dispatch_country": ["CN", "ES", "IT"][i % 3],
                "transport_mode": "sea",
                "exporter_id": f"E{code[:2]}{i % 10}",
                "importer_id": f"I{i % 7}",
                "declarant_id": "A1",
                "net_mass_kg": float(net[i]),
                "gross_mass_kg": float(gross[i]),
                "quantity": float(qty[i]),
                "unit": unit,
                "packages": int(packages[i]),
                "package_type": pkg,
                "customs_value": float(np.round(net[i] * price * rng.lognormal(0, 0.1), 2)),
                "currency": "USD",
                "composition": comp,
                "measured_mass_kg": float(np.round(gross[i] * rng.normal(1, 0.01), 3)),
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return _base()


@pytest.fixture(scope="module")
def fitted(base) -> DeclarationFeatures:
    return DeclarationFeatures(min_rows=30).fit(base)


def _row(base: pd.DataFrame, code: str = "69072100", **changes) -> pd.DataFrame:
    r = base[base["hs_code"] == code].iloc[[5]].copy()
    r["declaration_id"] = "PLANTED"
    for k, v in changes.items():
        r[k] = v
    return r.reset_index(drop=True)


def _f(fitted: DeclarationFeatures, df: pd.DataFrame, name: str) -> np.ndarray:
    return fitted.transform(df)[:, fitted.feature_names_.index(name)]


def _typical(fitted, base, name, code="69072100"):
    return float(_f(fitted, _row(base, code), name)[0])


# --- families move the way they should ----------------------------------------------------

def test_all_features_present_and_matrix_finite(fitted, base):
    assert fitted.feature_names_ == [f.name for f in FEATURES]
    X = fitted.transform(base)
    assert X.shape == (len(base), len(FEATURES))
    assert X.dtype == np.float64
    assert np.isfinite(X).all()


def test_double_mass_per_unit_gives_high_z(fitted, base):
    r = _row(base)
    heavy = _row(base, net_mass_kg=float(r["net_mass_kg"][0] * 2),
                 gross_mass_kg=float(r["gross_mass_kg"][0] * 2),
                 measured_mass_kg=float(r["measured_mass_kg"][0] * 2))
    z = _f(fitted, heavy, "mass_per_unit_z")[0]
    assert z > np.log1p(5)           # signed log of a robust z: > 5 sigma
    assert abs(_typical(fitted, base, "mass_per_unit_z")) < np.log1p(2)


def test_low_value_gives_low_value_per_kg(fitted, base):
    r = _row(base)
    cheap = _row(base, customs_value=float(r["customs_value"][0] * 0.1))
    z = _f(fitted, cheap, "value_per_kg_z")[0]
    assert z < -np.log1p(5)
    assert _f(fitted, cheap, "value_vs_history_z")[0] < -np.log1p(5)
    assert _f(fitted, cheap, "strongest_value_deviation")[0] >= abs(z) - 1e-12


def test_new_exporter_history_is_one(fitted, base):
    assert _f(fitted, _row(base, exporter_id="NEVER-SEEN"), "exporter_history")[0] == 1.0
    assert _typical(fitted, base, "exporter_history") < 0.1


def test_origin_never_seen_for_code_is_rare(fitted, base):
    # DE is never an origin in training at all; ES never for ... every origin is seen for
    # both codes, so use a country seen nowhere and one seen only elsewhere.
    rare = _f(fitted, _row(base, origin_country="MA", dispatch_country="MA"), "origin_rarity")[0]
    assert rare > 4.0 > _typical(fitted, base, "origin_rarity")


def test_origin_seen_only_for_another_code_is_rare():
    b = _base()
    b.loc[b["hs_code"] == "32072000", "origin_country"] = "DE"
    b.loc[b["hs_code"] == "32072000", "dispatch_country"] = "DE"
    f = DeclarationFeatures(min_rows=30).fit(b)
    r = _row(b, origin_country="DE", dispatch_country="DE")  # a tile row from DE
    assert _f(f, r, "origin_rarity")[0] > 4.0
    assert _f(f, _row(b, "32072000"), "origin_rarity")[0] < 0.1


def test_rare_earth_under_glaze_code(fitted, base):
    r = _row(base, "32072000", composition="Nd2O3:60;SiO2:30;Al2O3:10")
    ex = _f(fitted, r, "rare_earth_excess")[0]
    assert ex == pytest.approx(0.6, abs=0.01)
    assert _f(fitted, r, "composition_foreign")[0] == pytest.approx(0.6, abs=0.01)
    assert _typical(fitted, base, "rare_earth_excess", "32072000") == 0.0


def test_description_with_foreign_words(fitted, base):
    r = _row(base, "32072000", description="ceramic glaze, neodymium oxide powder")
    v = _f(fitted, r, "description_foreign")[0]
    assert v > 0.2
    assert _typical(fitted, base, "description_foreign", "32072000") == 0.0


def test_measured_mass_twice_gross_is_high(fitted, base):
    r = _row(base)
    v = _f(fitted, _row(base, measured_mass_kg=float(r["gross_mass_kg"][0] * 2)),
           "measured_mass_z")[0]
    assert v > np.log1p(10)
    assert abs(_typical(fitted, base, "measured_mass_z")) < np.log1p(2)


def test_origin_differs_flag(fitted, base):
    assert _f(fitted, _row(base, origin_country="CN", dispatch_country="HK"),
              "origin_differs")[0] == 1.0
    assert _f(fitted, _row(base, origin_country="CN", dispatch_country="CN"),
              "origin_differs")[0] == 0.0


def test_parcel_burst_counts_same_sender_same_day(fitted, base):
    parcels = pd.concat([_row(base, transport_mode="post", exporter_id="EP", date="2025-03-01",
                              declaration_id=f"P{i}") for i in range(10)], ignore_index=True)
    v = _f(fitted, parcels, "parcel_burst")
    assert np.allclose(v, np.log(10))
    assert _f(fitted, parcels.iloc[[0]], "parcel_burst")[0] == 0.0


@pytest.mark.parametrize("as_object", [False, True])
def test_parcel_burst_mode_spelling_same_in_frames_and_single_records(fitted, base, as_object):
    """Which items are post/courier (trimmed, any case; other words, blanks and missing
    are not) is decided the same way for a frame (Arrow strings) and for one record, and
    as the whole-file context counts them. (Validated data comes trimmed; a frame passed
    to transform directly once counted ' post' where a record did not.)"""
    modes = ["post", "POST", "Courier", " post", "post ", "sea", None, "", "courier"]
    parcels = pd.concat([_row(base, transport_mode=m, exporter_id="EP", date="2025-03-01",
                              declaration_id=f"P{i}") for i, m in enumerate(modes)],
                        ignore_index=True)
    if as_object:
        parcels = parcels.astype({"transport_mode": object})
    ctx = DeclarationFeatures.burst_context(parcels)
    v = fitted.transform(parcels, ctx)[:, fitted.feature_names_.index("parcel_burst")]
    assert (v > 0).sum() == 6  # all but sea, missing and blank
    ctx_dict = {k: int(x) for k, x in ctx.items()}
    for i in range(len(parcels)):
        rec = {k: (None if isinstance(x, float) and np.isnan(x) else x)
               for k, x in parcels.iloc[i].to_dict().items()}
        one, _ = fitted.transform_record(rec, ctx_dict)
        assert one[0, fitted.feature_names_.index("parcel_burst")] == v[i], modes[i]


# --- labels never leak -------------------------------------------------------------------

def test_labels_never_change_features(base):
    a = DeclarationFeatures(min_rows=30)
    Xa = a.fit_transform(base)
    rng = np.random.default_rng(1)
    lab = base.copy()
    lab["is_fraud"] = rng.integers(0, 2, len(lab))
    lab["fraud_scheme"] = np.where(lab["is_fraud"] == 1, "undervaluation", None)
    lab["revenue"] = rng.random(len(lab)) * 1000
    b = DeclarationFeatures(min_rows=30)
    Xb = b.fit_transform(lab)
    np.testing.assert_array_equal(Xa, Xb)
    perm = lab.copy()
    perm["is_fraud"] = rng.permutation(perm["is_fraud"].to_numpy())
    perm["revenue"] = rng.permutation(perm["revenue"].to_numpy())
    np.testing.assert_array_equal(b.transform(lab), b.transform(perm))
    np.testing.assert_array_equal(a.transform(base), b.transform(lab))
    for name in ("is_fraud", "fraud_scheme", "revenue"):
        assert name not in b.feature_names_
        assert name not in b.input_columns_


# --- HS backoff -----------------------------------------------------------------------------

def test_rare_code_backs_off_to_parent():
    b = _base()
    tiles = b.index[b["hs_code"] == "69072100"]
    b.loc[tiles[:3], "hs_code"] = "69072199"  # a rare code: 3 rows, same 4-digit heading
    renamed = b.copy()
    renamed.loc[tiles[:3], "hs_code"] = "69072100"
    f1 = DeclarationFeatures(min_rows=30).fit(b)
    f2 = DeclarationFeatures(min_rows=30).fit(renamed)
    probe = _row(b)
    heavy = probe.assign(net_mass_kg=probe["net_mass_kg"] * 1.5)
    for df in (probe, heavy):
        rare = df.assign(hs_code="69072199")
        X1 = f1.transform(rare)
        _, det1 = f1.transform_details(rare)
        _, det2 = f2.transform_details(df)
        # The rare code borrows the 6-digit parent's reference...
        assert det1["mass_per_unit|level"][0] == 1
        assert det2["mass_per_unit|level"][0] == 0
        # ... which holds the same rows as the full code in the renamed frame.
        assert det1["mass_per_unit|med"][0] == pytest.approx(det2["mass_per_unit|med"][0])
        assert det1["mass_per_unit|scale"][0] == pytest.approx(det2["mass_per_unit|scale"][0])
        j = f1.feature_names_.index("mass_per_unit_z")
        assert X1[0, j] == pytest.approx(f2.transform(df)[0, j])


# --- unseen categories --------------------------------------------------------------------

def test_unseen_categories_never_raise(fitted, base):
    odd = _row(base, hs_code="0101210000", origin_country="ZW", dispatch_country="XK",
               exporter_id="brand new", importer_id="also new", unit="pair",
               package_type="ZZ", transport_mode="rail", description="qwerty zxcvb",
               composition="Unobtainium:100")
    X = fitted.transform(odd)
    assert np.isfinite(X).all()
    names = fitted.feature_names_
    assert X[0, names.index("exporter_history")] == 1.0
    assert X[0, names.index("importer_history")] == 1.0
    # the same unseen categories under a known code
    known = odd.assign(hs_code="69072100")
    Xk = fitted.transform(known)
    assert np.isfinite(Xk).all()
    assert Xk[0, names.index("origin_rarity")] > 3.0
    assert Xk[0, names.index("package_rarity")] > 3.0
    assert Xk[0, names.index("unit_rarity")] > 3.0
    assert Xk[0, names.index("mode_rarity")] > 3.0
    # and as a single record
    rec = odd.iloc[0].to_dict()
    Xr, _ = fitted.transform_record(rec)
    assert np.isfinite(Xr).all()


def test_unseen_hs_chapter_falls_back_to_all_goods(fitted, base):
    _, det = fitted.transform_details(_row(base, hs_code="01012100"))
    assert det["value_per_kg|level"][0] == 4


# --- missing optional columns ---------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_missing_optional_columns_switch_features_off(base):
    drop = ["measured_mass_kg", "composition", "exporter_id"]
    f = DeclarationFeatures(min_rows=30).fit(base.drop(columns=drop))
    assert "measured_mass_z" in f.disabled_ and f.disabled_["measured_mass_z"] == [
        "measured_mass_kg"]
    for name in ("rare_earth_excess", "composition_foreign", "exporter_history",
                 "value_vs_history_z", "parcel_burst"):
        assert name not in f.feature_names_
        assert name in f.disabled_
    assert "measured_mass_kg" not in f.input_columns_
    X = f.transform(base.drop(columns=drop))
    assert X.shape == (len(base), len(f.feature_names_))
    assert np.isfinite(X).all()
    # extra columns at transform time are ignored
    np.testing.assert_array_equal(f.transform(base), X)


def test_all_missing_column_counts_as_absent(base):
    b = base.copy()
    b["measured_mass_kg"] = np.nan
    f = DeclarationFeatures(min_rows=30).fit(b)
    assert "measured_mass_z" not in f.feature_names_


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_required_only_frame(base):
    req = base[["declaration_id", "hs_code", "origin_country", "net_mass_kg", "customs_value"]]
    f = DeclarationFeatures(min_rows=30).fit(req)
    assert "value_per_kg_z" in f.feature_names_
    assert "origin_rarity" in f.feature_names_
    assert np.isfinite(f.transform(req)).all()


def test_fit_without_exporter_emits_no_runtime_warning(base):
    import warnings

    b = base.copy()
    b.loc[:10, "exporter_id"] = None  # a few blank exporters are ordinary in real files
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        DeclarationFeatures(min_rows=30).fit(b)


def test_transform_before_fit_raises(base):
    with pytest.raises(NotFittedError):
        DeclarationFeatures().transform(base)


# --- chunking, single records, state ------------------------------------------------------

@pytest.fixture(scope="module")
def real(train_df, test_df):
    f = DeclarationFeatures().fit(validate(train_df.iloc[:6000]).valid)
    valid = validate(test_df).valid
    return f, valid


def test_chunked_equals_unchunked(real):
    f, valid = real
    ctx = DeclarationFeatures.burst_context(valid)
    whole = f.transform(valid, ctx)
    parts = [f.transform(valid.iloc[i:i + 700], ctx) for i in range(0, len(valid), 700)]
    np.testing.assert_array_equal(whole, np.vstack(parts))
    # ... and the context matters: bursts split across chunks are still seen whole
    assert (whole[:, f.feature_names_.index("parcel_burst")] > 0).any()


def test_transform_record_equals_transform_row(real):
    f, valid = real
    ctx = DeclarationFeatures.burst_context(valid)
    ctx_dict = {k: int(v) for k, v in ctx.items()}
    X = f.transform(valid, ctx)
    fraud_rows = np.flatnonzero(valid["is_fraud"].to_numpy() == 1)[:20]
    for i in [*range(0, 40), *fraud_rows]:
        rec = valid.iloc[i].to_dict()
        rec = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
        Xr, _ = f.transform_record(rec, ctx_dict)
        np.testing.assert_allclose(Xr[0], X[i], rtol=0, atol=1e-12, err_msg=str(i))


def test_missing_optional_values_are_neutral_in_frames(fitted, base):
    """A blank exporter_id or dispatch_country is missing, not a new trader or a route.

    Regression: pandas' str dtype gives NaN, not None, for a missing value; the frame path
    once treated it as a present value ("exporter ? never seen", "dispatched from ?").
    """
    r = _row(base)
    r["exporter_id"] = pd.Series([None], dtype="str")
    r["dispatch_country"] = pd.Series([None], dtype="str")
    X = fitted.transform(r)
    names = fitted.feature_names_
    rec = {k: (None if k in ("exporter_id", "dispatch_country") else v)
           for k, v in r.iloc[0].to_dict().items()}
    Xr, _ = fitted.transform_record(rec)
    np.testing.assert_allclose(X[0], Xr[0])
    assert X[0, names.index("exporter_history")] == fitted.neutral_[names.index(
        "exporter_history")]
    assert X[0, names.index("origin_differs")] == 0.0


def test_state_round_trip(real):
    f, valid = real
    g = DeclarationFeatures.from_state(f.to_state())
    np.testing.assert_array_equal(f.transform(valid), g.transform(valid))
    assert g.feature_names_ == f.feature_names_
    assert g.disabled_ == f.disabled_


def test_fit_is_deterministic(base):
    a = DeclarationFeatures(min_rows=30).fit_transform(base)
    b = DeclarationFeatures(min_rows=30).fit_transform(base)
    np.testing.assert_array_equal(a, b)


def test_fit_transform_equals_fit_then_transform_for_established_rows(base):
    """Leave-one-out only changes history counts by one; features with no counts agree."""
    f = DeclarationFeatures(min_rows=30)
    Xl = f.fit_transform(base)
    X = f.transform(base)
    j = f.feature_names_.index("value_per_kg_z")
    np.testing.assert_allclose(Xl[:, j], X[:, j])
    h = f.feature_names_.index("exporter_history")
    assert (Xl[:, h] > X[:, h]).all()  # each row is removed from its own history


@pytest.mark.parametrize("bad", [{"min_rows": 0}, {"foreign_share": 1.0}])
def test_bad_params_raise(base, bad):
    with pytest.raises(ValueError):
        DeclarationFeatures(**bad).fit(base)


def test_refit_forgets_previous_lookup_indexes():
    """Refitting the same object must not reuse indexes or memos of the old tables."""
    import detector as _d

    a, b = _d.generate(rows=3000, seed=1), _d.generate(rows=3000, seed=5, world=2)
    f = DeclarationFeatures()
    f.fit(a)
    f.transform(b)
    f.transform_record(b.iloc[0].to_dict())  # fills the single-row memo too
    f.fit(b)
    fresh = DeclarationFeatures().fit(b)
    np.testing.assert_array_equal(f.transform(a), fresh.transform(a))
    np.testing.assert_array_equal(f.transform_record(a.iloc[0].to_dict())[0],
                                  fresh.transform_record(a.iloc[0].to_dict())[0])


def test_whole_dataset_tables_from_parts_equal_a_local_fit():
    """What Dask training does, without Dask: parts' vocabularies and counts merged, the
    parts' grouped values redistributed by (group, key) into other partitions in another
    order, their statistics joined; fitted on a sample with these whole-dataset tables,
    every reference table equals that of a fit on all rows, bit for bit (extras too)."""
    import detector

    df = validate(detector.generate(rows=8000, seed=4)).valid.reset_index(drop=True)
    rng = np.random.default_rng(0)
    df["tax_rate"] = np.round(rng.gamma(2.0, 0.05, len(df)), 4)
    df["broker"] = rng.choice(["B1", "B2", "B3", "B4"], len(df))
    make = lambda: DeclarationFeatures(extra_categorical=("broker",),  # noqa: E731
                                       extra_numeric=("tax_rate",))
    local = make().fit(df)

    cut = np.sort(rng.choice(np.arange(1, len(df)), 2, replace=False))
    parts = [df.iloc[a:b] for a, b in zip([0, *cut], [*cut, len(df)], strict=True)]
    vocabs = DeclarationFeatures.merge_vocabularies([make().vocabularies(p) for p in parts])
    tables = [make().partial_tables(p, vocabs) for p in parts]
    counts = DeclarationFeatures.merge_counts([c for c, _ in tables])
    values = pd.concat([v for _, v in tables]).sample(frac=1.0, random_state=1)
    bucket = (values["group"].to_numpy() * 7919 + values["key"].to_numpy()) % 5
    stats = DeclarationFeatures.merge_value_stats(
        [make().value_stats(values[bucket == b]) for b in range(5)])
    context = DeclarationFeatures.merge_contexts(
        [DeclarationFeatures.burst_context(p) for p in parts])
    pd.testing.assert_series_equal(context, DeclarationFeatures.burst_context(df),
                                   check_names=False)
    sample = df.sample(n=1500, random_state=2)
    whole = make().fit(sample, whole={"vocabs": vocabs, "counts": counts, "stats": stats,
                                      "rows": len(df), "context": context})

    assert sorted(whole.tables_) == sorted(local.tables_)
    assert any(k.startswith("xz:tax_rate|") for k in local.tables_)
    for k, v in local.tables_.items():
        np.testing.assert_array_equal(whole.tables_[k], v, err_msg=k)
    # The sample's rows get the features they have in the whole dataset (parcel bursts
    # counted over all rows), not those of the sample on its own.
    X_whole = whole.fit_transform(sample, whole={"vocabs": vocabs, "counts": counts,
                                                 "stats": stats, "rows": len(df),
                                                 "context": context})
    burst = whole.feature_names_.index("parcel_burst")
    X_local = local.transform(sample, DeclarationFeatures.burst_context(df))
    np.testing.assert_array_equal(X_whole[:, burst], X_local[:, burst])
    X_own = local.transform(sample, DeclarationFeatures.burst_context(sample))
    assert (X_own[:, burst] < X_local[:, burst]).any()
    # A sample alone gives other medians: the test above is not vacuous.
    alone = make().fit(sample)
    assert not all(np.array_equal(alone.tables_[k], v) for k, v in local.tables_.items()
                   if k.endswith("|med"))


def test_composition_items_equal_the_parser_item_for_item() -> None:
    """The bulk split of plain compositions gives _parse_composition's items exactly
    (names, bit-identical percentages, order); other texts still go through the parser,
    and their names join the same list of distinct names."""
    from detector.features.composition import composition_items as _composition_items
    from detector.features.composition import parse_composition as _parse_composition
    from detector.features.lookup import explode as _explode

    texts = ["SiO2:62.5;Na2O:29.8;H2O:7.6", "Cu:100.0", "SiO2:68; Al2O3: 20% ;junk;Nd2O3:x",
             "a:1;", "a:1;;b:2", ":5", "x:1e3", "x:-1", "Cu:100.0\n", "Cu:1 ", "\xe9:1",
             "a:1:2", "a:.5", "a:5.", "A:1;B:2;C", "n:1e400", "Nd2O3:0.1000000000000000055511",
             "La2O3:12.5;CeO2:30;Fe:57.5", "no components here"]
    # Enough texts for the Arrow path (a few go through the parser alone), and a few.
    many = texts + [f"SiO2:{i}.25;Al2O3:{99 - i}.75" for i in range(80)]
    for batch in (many, texts, texts[:1]):
        uniq = np.asarray(batch, dtype=str)
        owner, items = _explode(uniq, _parse_composition)
        got_owner, got_codes, got_uniq, got_pct = _composition_items(uniq)
        np.testing.assert_array_equal(got_owner, owner)
        np.testing.assert_array_equal(got_uniq[got_codes],
                                      np.asarray([c for c, _ in items], dtype=str))
        assert len(set(got_uniq.tolist())) == len(got_uniq)  # each distinct name once
        want_pct = np.asarray([p for _, p in items], dtype=float)
        np.testing.assert_array_equal(got_pct.view(np.int64), want_pct.view(np.int64))


@pytest.mark.parametrize("as_object", [False, True])
def test_burst_context_counts_post_and_courier_items_per_exporter_and_day(as_object):
    """The context counts, per (exporter, day), the items sent by post or courier, modes
    and exporters compared trimmed (and modes in any case); rows without a usable date,
    exporter or mode do not count. Checked against a plain count over the rows."""
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({
        "transport_mode": rng.choice([" Post", "COURIER", "post ", "sea", "air", None, ""], n),
        "date": rng.choice(["2024-01-02", "2024-01-03T10:00", "not a date", None,
                            "2024-02-30", "2024-01-02"], n),
        "exporter_id": rng.choice(["E1", " E1", "E2", None, "E3 "], n),
    })
    if as_object:
        df = df.astype(object)
    expected: dict[tuple[str, int], int] = {}
    for mode, date, exp in df.itertuples(index=False):
        if pd.isna(mode) or str(mode).strip().lower() not in ("post", "courier") or pd.isna(exp):
            continue
        try:
            day = int(np.datetime64(str(date)[:10], "D").astype(np.int64))
        except ValueError:
            continue
        key = (str(exp).strip(), day)
        expected[key] = expected.get(key, 0) + 1
    ctx = DeclarationFeatures.burst_context(df)
    assert {(e, int(d)): int(v) for (e, d), v in ctx.items()} == expected
    assert len(expected) >= 4
    # A file's context is the sum of its parts' (the pre-pass reads it in chunks).
    merged = DeclarationFeatures.merge_contexts(
        [DeclarationFeatures.burst_context(df.iloc[i:i + 700]) for i in range(0, n, 700)])
    pd.testing.assert_series_equal(merged, ctx, check_names=False)
    assert DeclarationFeatures.burst_context(df[df["transport_mode"] == "sea"]).empty
