"""What a feature is (:class:`FeatureSpec`) and what a family of features provides
(:class:`Family`): the contract between the families and the combiner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FeatureSpec", "Family", "EXTRA_RARITY", "EXTRA_Z"]

# Agency-specific columns named in the column mapping become features of their own:
# a categorical one its rarity for the commodity, a numeric one its robust deviation from
# the commodity's reference. Their names carry the column: "extra_rarity:Office ID".
EXTRA_RARITY, EXTRA_Z = "extra_rarity:", "extra_z:"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    family: str
    needs: tuple[str, ...]   # optional input columns this feature cannot do without
    kind: str                # "z" (signed robust z), "surprisal", "share", "history", "flag"
    meaning: str
    # The reason codes when this feature explains a score: (value above typical, below).
    reason_codes: tuple[str, str] | None = None


def _nothing(*_args) -> None:
    return None


def _no_groups(_features) -> list:
    return []


@dataclass(frozen=True)
class Family:
    """One family of features: its specs and the steps the combiner calls, in order.

    - ``fit(features, rows, tables)``: add the family's count tables (sums over rows) and
      any per-row inputs its grouped statistics need to ``tables`` / ``rows``.
    - ``value_groups(features)``: its non-additive references, as (table, kind, floor,
      source, level) tuples; ``group_input(features, rows, spec, cache)`` gives one
      group's (keys, values). Their statistics (medians, MADs, means) are computed by the
      combiner, locally or over a shuffled dataset (see DeclarationFeatures.partial_tables).
    - ``finish(tables, n_rows)``: references derived once all tables are in.
    - ``transform(features, rows, context, loo, cols, det)``: put the family's columns in
      ``cols`` and what the reasons quote in ``det``; ``loo`` removes each training row
      from its own counts (leave-one-out, at fit).
    - ``vocabularies(features, df)``: the sorted distinct values it encodes against.
    - ``sentence(name, high, det, rows)``: the numbers behind one of its features' reason
      on the given rows (text per row, from what ``transform`` put in ``det``; ``high``
      where the value is above typical), or None for a feature it does not word.
    """

    name: str
    specs: tuple[FeatureSpec, ...]
    transform: Callable
    fit: Callable = _nothing
    value_groups: Callable = _no_groups
    group_input: Callable = _nothing
    finish: Callable = _nothing
    vocabularies: Callable = field(default=lambda _features, _df: {})
    sentence: Callable = _nothing
