"""Summary features: the strongest of a declaration's deviations, as axes of their own.

The forest cuts one feature at a time, so a declaration that is wildly off on a single
ratio (a 90% undervaluation) is isolated less readily than one mildly off on several.
Summary columns give such single strong deviations their own axes, one for mass and one
for value, so that both kinds of lie are cut often. They are derived from the other
columns (:func:`refresh_derived`), never fitted.
"""

from __future__ import annotations

import numpy as np

from .spec import Family, FeatureSpec

__all__ = ["FAMILY", "SPECS", "DERIVED_FROM", "refresh_derived"]

SPECS = (
    FeatureSpec("strongest_deviation", "summary", (), "derived",
                "the largest of this declaration's mass and value deviations"),
    FeatureSpec("strongest_mass_deviation", "summary", (), "derived",
                "the largest of this declaration's mass deviations"),
    FeatureSpec("strongest_value_deviation", "summary", (), "derived",
                "the largest of this declaration's value deviations"),
)
DERIVED_FROM = {
    "strongest_mass_deviation": ("mass_per_unit_z", "mass_per_package_z", "tare_per_package_z",
                                 "measured_mass_z"),
    "strongest_value_deviation": ("value_per_kg_z", "value_per_unit_z", "value_vs_history_z"),
}
DERIVED_FROM["strongest_deviation"] = (DERIVED_FROM["strongest_mass_deviation"]
                                        + DERIVED_FROM["strongest_value_deviation"])
# Document lies (rare earths in a glaze's composition, foreign words) are zero for nearly
# every honest declaration, so a forest almost never finds a subsample where it can cut
# on them. Folded into the overall summary, on the same scale as the z-scores (a 5% share
# counts like z = 1, 50% like z = 10), they get an axis that honest trade does spread.
_SHARES_IN_SUMMARY = ("composition_foreign", "rare_earth_excess", "description_foreign")
_SHARE_TO_Z = 20.0


def refresh_derived(names: list[str], X: np.ndarray) -> np.ndarray:
    """Recompute the summary columns of X (columns ``names``) from its base columns, in
    place."""
    for derived, parts in DERIVED_FROM.items():
        if derived in names:
            base = [names.index(f) for f in parts if f in names]
            # take(): one pass over the rows (fancy indexing on axis 1 is far slower).
            v = np.abs(X.take(base, axis=1)).max(axis=1) if base else np.zeros(len(X))
            if derived == "strongest_deviation":
                shares = [names.index(f) for f in _SHARES_IN_SUMMARY if f in names]
                if shares:
                    doc = np.log1p(_SHARE_TO_Z * np.maximum(X.take(shares, axis=1), 0.0)
                                   ).max(axis=1)
                    v = np.maximum(v, doc)
            X[:, names.index(derived)] = v
    return X


def _transform(f, r, context, loo: bool, cols: dict, det: dict) -> None:
    n = len(r["hs"])
    for derived in DERIVED_FROM:
        cols[derived] = np.zeros(n)  # filled by refresh_derived once the matrix is laid out


FAMILY = Family("summary", SPECS, _transform)
