"""Declaration features: reference tables learned at fit, applied unchanged at transform.

The package's public face; the transformer lives in :mod:`detector.features.combiner`.
"""

from __future__ import annotations

from .combiner import (
    DERIVED_FROM,
    EXTRA_RARITY,
    EXTRA_Z,
    FEATURES,
    DeclarationFeatures,
    FeatureSpec,
    encode_against,
    factorize,
    feature_spec,
)

__all__ = ["DeclarationFeatures", "FEATURES", "FeatureSpec", "DERIVED_FROM", "encode_against",
           "factorize", "EXTRA_RARITY", "EXTRA_Z", "feature_spec"]
