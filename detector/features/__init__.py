"""Declaration features: reference tables learned at fit, applied unchanged at transform.

The package's public face. One module per family of features (``ratios``, ``surprisal``,
``traders``, ``composition``, ``bursts``, ``summary``), each owning its specs, its fitted
tables and its columns; ``combiner.DeclarationFeatures`` runs them and builds the matrix;
``rows`` prepares a frame or one record for all of them; ``lookup`` holds the shared
lookup structures. docs/architecture.md says how to add a feature.
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
    sentence_of,
)

__all__ = ["DeclarationFeatures", "FEATURES", "FeatureSpec", "DERIVED_FROM", "encode_against",
           "factorize", "EXTRA_RARITY", "EXTRA_Z", "feature_spec", "sentence_of"]
