"""A declaration's verdict: flag, lane, random selection and rank, as pure array functions.

Every path that decides what happens to a declaration (a frame through
``DeclarationModel.score``, a streamed file, one record through ``score_one``,
``explain``, the Dask engine) calls these functions, so a lane rule is changed in one
place and every path gives the same verdict for the same rows.

The rules:

- ``flagged``: the ranking score (``risk_score`` for a model trained with outcomes,
  ``anomaly_score`` otherwise) is at or above the budget threshold.
- lanes stack from the training score distribution; the most severe lane whose
  threshold the score reaches wins; below every threshold the lane is ``green``.
- random selection depends only on the declaration id and the seed (the same whatever
  the chunking, the order or the score); a random selection that would have been green
  goes to the first lane (e.g. red), one already in a lane keeps it.
- rank: 1 = most suspicious; ties keep input order (a stable sort), so the rank of a
  file does not depend on how it was chunked. Rows with no score (rejected, lane
  ``manual``) rank after every scored row and are written without a rank.
- capacity: when the first lane may hold at most N rows (the officers' capacity), its
  random selections keep their place (they count against N: the unbiased sample is
  what outcome learning needs) and its best-ranked other rows fill the rest; the others
  go to the next lane (green when there is none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["Verdict", "decide", "lane_codes", "merge_history", "random_note", "random_pick",
           "rank", "parse_capacity", "cap_first_lane", "MANUAL_LANE"]

# The lane of a row that cannot be read (no id, a number that is not a number, a malformed
# code): it has no score, and an officer looks at it by hand.
MANUAL_LANE = "manual"


class Verdict(NamedTuple):
    """Per-row verdict: ``names[codes[i]]`` is row i's lane."""

    flagged: np.ndarray  # bool
    codes: np.ndarray  # intp codes into ``names``
    names: list[str]
    picked: np.ndarray  # bool: selected at random


def random_pick(ids, seed: int, share: float) -> np.ndarray:
    """Seeded random selection that depends only on the id: the same declaration is
    picked (or not) whatever the chunking, the row order or the score."""
    if share <= 0 or len(ids) == 0:  # before any id becomes a Python string
        return np.zeros(len(ids), dtype=bool)
    import pandas as pd  # only when something can be picked: score_one stays pandas-free

    key = f"{int(seed) & 0xFFFFFFFFFFFF:016x}"[-16:]
    h = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key, categorize=False)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < share


def random_note(share: float) -> str:
    """The reason a random selection carries."""
    return (f"RANDOM_SELECTION: selected at random ({share:.2%} of declarations) so that "
            "inspection outcomes stay unbiased")


def lane_codes(ranking: np.ndarray, lane_thresholds: Mapping[str, float]
               ) -> tuple[np.ndarray, list[str]]:
    """Each score's lane as a code into the returned names (0 = "green")."""
    names = ["green", *lane_thresholds]
    codes = np.zeros(len(ranking), dtype=np.intp)
    # Most severe last so that it wins.
    for code, thr in reversed(list(enumerate(lane_thresholds.values(), start=1))):
        codes = np.where(ranking >= thr, code, codes)
    return codes, names


def decide(ranking: np.ndarray, ids, *, threshold: float, lane_thresholds: Mapping[str, float],
           seed: int, random_share: float) -> Verdict:
    """The verdict of every row from its ranking score and id (see the module's rules)."""
    ranking = np.asarray(ranking, dtype=np.float64)
    picked = random_pick(ids, seed, random_share)
    codes, names = lane_codes(ranking, lane_thresholds)
    if picked.any():
        first_lane = next(iter(lane_thresholds), "red")
        if first_lane not in names:
            names.append(first_lane)
        codes = np.where(picked & (codes == 0), names.index(first_lane), codes)
    return Verdict(ranking >= threshold, codes, names, picked)


def merge_history(reasons: list[list[str]], history: list[list[str]], top: int = 3) -> None:
    """Put outcome-history reasons first (at most 2), then the forest's, at most ``top``."""
    for i, h in enumerate(history):
        if h:
            reasons[i] = [*h[:2], *reasons[i]][:top]


# Ranks are written this many at a time: no full-size arange beside the full-size order.
_RANK_BLOCK = 1 << 16


def rank(scores: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """Rank 1 = highest score; ties in input order. NaN scores rank last.

    ``overwrite`` lets the caller's float64 array be used as the work space: it is
    negated in place, then holds the ranks (the returned int64 array is a view of it),
    so a file's pass over millions of scores needs one full-size array besides them
    (the sort order), not three.
    """
    s = np.asarray(scores, dtype=np.float64)
    if not overwrite:
        s = s.copy()
    np.negative(s, out=s)  # descending order, stable among equals
    s[np.isnan(s)] = np.inf
    order = np.argsort(s, kind="stable")
    out = s.view(np.int64)  # the scores are not needed once sorted: same size, same buffer
    for lo in range(0, len(order), _RANK_BLOCK):
        hi = min(lo + _RANK_BLOCK, len(order))
        out[order[lo:hi]] = np.arange(lo + 1, hi + 1)
    return out


def parse_capacity(capacity: int | float | str | None, n_rows: int) -> int | None:
    """How many rows the first (red) lane may hold: ``250`` rows or ``"2%"`` of ``n_rows``
    (rounded down); ``None`` for no cap."""
    if capacity is None:
        return None
    text = str(capacity).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0.0 <= share <= 100.0:
                raise ValueError
            return int(np.floor(share / 100.0 * n_rows + 1e-9))
        value = float(text)
        if value < 0 or value != int(value):
            raise ValueError
        return int(value)
    except ValueError:
        raise ValueError(f"capacity must be a whole number of rows >= 0 or a percentage like "
                         f"'2%' (0% to 100%), got {capacity!r}") from None


def cap_first_lane(codes: np.ndarray, names: list[str], rank: np.ndarray,
                   lane_order: list[str], limit: int | None, picked: np.ndarray | None = None
                   ) -> tuple[np.ndarray, int, str]:
    """Keep at most ``limit`` rows in the first lane of ``lane_order`` (see the module's
    capacity rule); the others go to the next lane of ``lane_order``, or green.

    ``codes`` index ``names`` (extended in place with the next lane if absent); ``rank``
    is 1 = most suspicious, a stable order, so ties at the cut are decided by it;
    ``picked`` marks random selections. Returns (new codes, rows moved, their lane).
    """
    first = lane_order[0] if lane_order else "red"
    after = lane_order[1] if len(lane_order) > 1 else "green"
    if limit is None or first not in names:
        return codes, 0, after
    in_first = codes == names.index(first)
    if int(in_first.sum()) <= limit:
        return codes, 0, after
    kept_at_random = in_first & picked if picked is not None else np.zeros_like(in_first)
    by_rank = np.flatnonzero(in_first & ~kept_at_random)
    room = max(0, limit - int(kept_at_random.sum()))
    moved = by_rank[np.argsort(rank[by_rank], kind="stable")][room:]
    if not len(moved):
        return codes, 0, after
    if after not in names:
        names.append(after)
    codes = codes.copy()
    codes[moved] = names.index(after)
    return codes, int(len(moved)), after
