"""The scoring engine shared by the local file job and Dask: what a batch's summary counts.

A batch is scored in parts (chunks of a file, Dask partitions) that arrive in input order.
:class:`Tally` adds up, part by part, everything the summary reports and the rank pass
needs about the verdicts: the lanes as small codes (1 byte a row), flagged and random
selections, the drift bin counts (:mod:`detector.health`) and every reject, counted
exactly per (column, rule) (:class:`detector.validate.RejectTally`). From it come the
``health`` section, the capacity cap (:func:`detector.verdict.cap_first_lane`) and the
reject summary, the same whichever executor scored the parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import verdict
from .validate import RejectTally
from .verdict import MANUAL_LANE

__all__ = ["Tally", "encode_lanes"]


def encode_lanes(lane) -> tuple[np.ndarray, list[str]]:
    """A part's lane names as (int8 codes, names): 1 byte a row to keep or to ship."""
    codes, names = pd.factorize(lane)
    return codes.astype(np.int8), [str(n) for n in names]


class Tally:
    """Counts of a batch's verdicts and rejects, added part by part in input order.

    ``keep_picked``: keep the random-selection flags of every row (1 byte a row), which
    only a capacity cap needs.
    """

    def __init__(self, keep_picked: bool = False) -> None:
        self.keep_picked = keep_picked
        self.flagged = 0
        self.random_selected = 0
        self.rejected = 0
        self.drift: np.ndarray | None = None  # integer bin counts: any partitioning
        self.lane_names: list[str] = []
        self._lane_codes: list[np.ndarray] = []
        self._picked: list[np.ndarray] = []
        self._rejects = RejectTally()

    def add_rejects(self, rejects: pd.DataFrame | None) -> None:
        if rejects is not None and len(rejects):
            self.rejected += len(rejects)
            self._rejects.add(rejects)

    def add_verdicts(self, codes: np.ndarray, names: list[str], *, flagged: int,
                     picked: np.ndarray, drift: np.ndarray | None) -> None:
        """One part's lanes (codes into ``names``, see :func:`encode_lanes`), flagged
        count, random selections (bool a row) and drift counts."""
        for name in names:
            if name not in self.lane_names:
                self.lane_names.append(name)
        remap = np.array([self.lane_names.index(x) for x in names], dtype=np.int8)
        self._lane_codes.append(remap[codes] if len(names) else codes.astype(np.int8))
        self.flagged += int(flagged)
        self.random_selected += int(np.count_nonzero(picked))
        if drift is not None:
            self.drift = drift if self.drift is None else self.drift + drift
        if self.keep_picked:
            self._picked.append(np.asarray(picked, dtype=bool))

    def lane_codes(self) -> np.ndarray:
        """Every row's lane, as codes into :attr:`lane_names`, in input order."""
        return np.concatenate(self._lane_codes) if self._lane_codes else \
            np.zeros(0, dtype=np.int8)

    def health(self, model, n_scored: int, lane_codes: np.ndarray | None = None) -> dict:
        """The summary's ``health`` section: the model's own verdicts, before any cap."""
        codes = self.lane_codes() if lane_codes is None else lane_codes
        per_lane = np.bincount(codes, minlength=len(self.lane_names))
        return model.health(self.drift, n_scored=n_scored, flagged=self.flagged,
                            lanes={name: int(c) for name, c in
                                   zip(self.lane_names, per_lane, strict=True)
                                   if name != MANUAL_LANE})

    def cap(self, model, rank: np.ndarray, capacity, n_scored: int,
            lane_codes: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Apply ``capacity`` (see :func:`detector.verdict.parse_capacity`) to the lanes,
        once the whole ranking is known: (lane codes after the cap, the summary's
        ``capacity`` section or None without a capacity)."""
        if capacity is None:
            return lane_codes, None
        limit = verdict.parse_capacity(capacity, n_scored)
        order = list(model.lane_thresholds_)
        picked = np.concatenate(self._picked) if self._picked else np.zeros(0, bool)
        codes, moved, after = verdict.cap_first_lane(lane_codes, self.lane_names, rank, order,
                                                     limit, picked)
        return codes, {"lane": order[0] if order else "red", "limit": limit, "moved": moved,
                       "moved_to": after}

    def rejects_summary(self) -> str | None:
        """Every reject counted per (column, rule), with example ids; None without any."""
        return self._rejects.summary() if self.rejected else None
