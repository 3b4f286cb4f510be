"""scikit-learn's estimator contract, where it applies to DeclarationModel.

DeclarationModel learns from a table of declarations (codes, dates, free text, missing
values) checked against the contract, never from a numeric 2-d array, so its tags say
``two_d_array=False`` and ``check_estimator`` skips every check that feeds it random
numbers. What remains (parameters, cloning, repr, tags, unfitted errors) runs here, one
scikit-learn check at a time; the data checks that matter are restated on real
declarations below. The checks that cannot apply, and why, are listed in
``NOT_APPLICABLE`` (and in docs/architecture.md).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFitted
from sklearn.utils import estimator_checks as ec
from sklearn.utils.validation import check_is_fitted

from detector.errors import NotFittedError
from detector.model import DeclarationModel
from detector.synth import generate

# scikit-learn's own checks that need no data: all must pass.
API_CHECKS = [
    "check_estimator_cloneable", "check_no_attributes_set_in_init",
    "check_get_params_invariance", "check_set_params",
    "check_parameters_default_constructible", "check_estimator_repr",
    "check_estimators_unfitted", "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_tags_renamed", "check_valid_tag_types", "check_mixin_order",
]
# The checks that feed fit random numeric arrays, and why they cannot apply.
NOT_APPLICABLE = {
    "numeric-array checks (check_fit2d_*, check_estimators_dtypes, check_dtype_object, "
    "check_estimators_nan_inf, check_n_features_in*, check_fit_idempotent, "
    "check_methods_*_invariance, check_estimators_pickle, check_readonly_memmap_input, ...)":
        "fit takes a DataFrame of declarations validated against the contract (ids, HS "
        "codes, countries, masses, dates); a numeric matrix has none of its columns. The "
        "properties they test are restated below on generated declarations: fit returns "
        "self and keeps its parameters, same data and seed give the same scores, save/load "
        "round trip (tests/test_model.py, tests/test_artifact.py).",
    "check_outliers_train, check_outliers_fit_predict, check_outlier_contamination":
        "the model is an outlier detector that ranks and lanes declarations "
        "(score(df) -> anomaly_score, lane, reasons); it has no predict/fit_predict "
        "returning -1/+1, and its flag share is the budget, not a contamination parameter.",
    "sample-weight, classifier, regressor and sparse checks":
        "no sample_weight, no class prediction, no sparse input.",
}


@pytest.mark.parametrize("check", API_CHECKS)
def test_scikit_learn_api_checks_pass(check: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks warn on what they skip
        getattr(ec, check)("DeclarationModel", DeclarationModel(n_estimators=10))


def test_check_estimator_runs_and_says_what_it_skips() -> None:
    with pytest.warns(ec.SkipTestWarning, match="two_d_array=False"):
        results = ec.check_estimator(DeclarationModel(n_estimators=10), on_fail=None)
    assert results and all(r["status"] == "passed" for r in results)


@pytest.fixture(scope="module")
def declarations():
    return generate(rows=3_000, seed=4)


def test_check_is_fitted_before_and_after_fit(declarations) -> None:
    model = DeclarationModel(n_estimators=20, seed=1)
    with pytest.raises(SklearnNotFitted):
        check_is_fitted(model)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.score(declarations.head(5))
    assert model.fit(declarations) is model  # fit returns self
    check_is_fitted(model)


def test_fit_keeps_parameters_and_clone_is_unfitted(declarations) -> None:
    model = DeclarationModel(n_estimators=20, seed=1, lanes="red=0.01,yellow=0.03")
    before = model.get_params()
    model.fit(declarations)
    assert model.get_params() == before  # fit never rewrites a parameter
    copy = clone(model)
    assert copy.get_params() == before
    with pytest.raises(SklearnNotFitted):
        check_is_fitted(copy)
    # clone + fit on the same data and seed: the same scores, bit for bit
    a = model.score(declarations)["anomaly_score"].to_numpy()
    b = copy.fit(declarations).score(declarations)["anomaly_score"].to_numpy()
    assert np.array_equal(a, b)


def test_tags_describe_the_input() -> None:
    from sklearn.utils import get_tags

    tags = get_tags(DeclarationModel())
    assert tags.estimator_type == "outlier_detector"
    assert not tags.input_tags.two_d_array and tags.input_tags.string
    assert tags.input_tags.allow_nan and not tags.target_tags.required
