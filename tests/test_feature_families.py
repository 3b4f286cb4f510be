"""The feature families (detector/features/): each owns its features' columns, the
combiner lays them out in the historical order, and one declaration goes through the
same family code as a frame."""

from __future__ import annotations

import numpy as np
import pytest

import detector
from detector.features import EXTRA_RARITY, EXTRA_Z, FEATURES, DeclarationFeatures, sentence_of
from detector.features.combiner import FAMILIES
from detector.features.rows import prepare_rows
from detector.reasons import REASON_CODES
from detector.validate import validate


@pytest.fixture(scope="module")
def fitted():
    df = detector.generate(rows=3000, seed=11)
    rng = np.random.default_rng(0)
    df["office"] = rng.choice(["A", "B", "C"], len(df))
    df["tax"] = rng.gamma(2.0, 50.0, len(df))
    valid = validate(df).valid
    f = DeclarationFeatures(min_rows=10, extra_categorical=("office",),
                            extra_numeric=("tax",)).fit(valid)
    return f, valid


def test_every_feature_belongs_to_exactly_one_family():
    owners = [s.name for fam in FAMILIES for s in fam.specs]
    assert len(owners) == len(set(owners))
    assert sorted(owners) == sorted(s.name for s in FEATURES)


def test_each_family_writes_its_own_columns_and_no_other(fitted):
    f, valid = fitted
    r = prepare_rows(f, valid.head(200))
    for fam in FAMILIES:
        cols: dict = {}
        fam.transform(f, r, None, False, cols, {})
        extras = {n for n in cols if n.startswith(("extra_rarity:", "extra_z:"))}
        assert set(cols) - extras == {s.name for s in fam.specs}, fam.name
        assert all(len(v) == 200 for v in cols.values()), fam.name
    # The agency's columns: their rarity is a surprisal, their deviation a ratio.
    by_family = {}
    for fam in FAMILIES:
        cols = {}
        fam.transform(f, r, None, False, cols, {})
        by_family[fam.name] = set(cols)
    assert "extra_rarity:office" in by_family["surprisal"]
    assert "extra_z:tax" in by_family["ratios"]


def test_summaries_stay_last_and_extras_before_them(fitted):
    f, _ = fitted
    names = f.feature_names_
    assert names[-3:] == ["strongest_deviation", "strongest_mass_deviation",
                          "strongest_value_deviation"]
    assert names[-5:-3] == ["extra_rarity:office", "extra_z:tax"]


def test_reason_codes_come_from_the_families():
    named = {s.name for s in FEATURES if s.reason_codes is not None}
    assert set(REASON_CODES) == named
    # Every base feature explains itself with a code; summaries are never a reason.
    assert named == {s.name for s in FEATURES if s.kind != "derived"}


def test_each_family_words_its_own_features_reasons(fitted):
    """A feature's reason sentence comes from its own family's module: the owner words
    it with numbers (not its bare name), every other family declines it, and summaries
    (never a reason) are worded by none."""
    f, valid = fitted
    X, det = f.transform_details(valid.head(30), None)
    det = dict(det, X=X, names=f.feature_names_)
    rows = np.arange(len(X))
    owner = {s.name: fam for fam in FAMILIES for s in fam.specs}
    for j, name in enumerate(f.feature_names_):
        fam = owner.get(name) or next(fm for fm in FAMILIES if fm.name == (
            "surprisal" if name.startswith(EXTRA_RARITY) else "ratios"))
        assert name in owner or name.startswith((EXTRA_RARITY, EXTRA_Z)), name
        high = X[:, j] > f.neutral_[j]
        out = fam.sentence(name, high, det, rows)
        if fam.name == "summary":
            assert out is None, name
            continue
        assert sentence_of(name) is fam.sentence, name
        assert len(out) == len(rows) and all(isinstance(t, str) and t != name for t in out)
        for other in FAMILIES:
            if other is not fam:
                assert other.sentence(name, high, det, rows) is None, (other.name, name)


def test_one_record_goes_through_the_same_family_code(fitted):
    f, valid = fitted
    rows = valid.head(60)
    X = f.transform(rows, context={})  # no bursts: each record is scored on its own
    for i, rec in enumerate(rows.to_dict("records")):
        Xi, _ = f.transform_record(rec)
        np.testing.assert_array_equal(Xi[0], X[i])
