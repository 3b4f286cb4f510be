"""A packed, scikit-learn-free copy of a fitted ``IsolationForest``.

``PackedForest.from_sklearn`` flattens every tree of a fitted
``sklearn.ensemble.IsolationForest`` into a handful of numpy arrays; scoring then
runs a compiled numba kernel (or a vectorised numpy fallback) over those arrays
and reproduces ``IsolationForest.score_samples`` bit for bit.

Why the layout looks the way it does:

* Nodes are renumbered breadth-first per tree so that the two children of a
  split are adjacent: one ``child`` array (left child; right = left + 1) replaces
  two, which keeps a 256-sample tree (<= 511 nodes) inside L1 cache.
* Leaves point to themselves with a threshold of ``+inf``. Every row can then
  take exactly ``tree_depth[t]`` steps in tree ``t`` with no "is this a leaf?"
  branch, which lets the CPU overlap many rows (and lets numpy advance all rows
  one level at a time) - the data-dependent branch is what makes a naive tree
  walk slow.
* sklearn casts X to float32 and compares ``float32(x) <= float64(threshold)``.
  Storing ``threshold`` as the largest float32 not above the float64 threshold
  gives exactly the same decision for every float32 ``x`` (including ties) with
  half the memory.
* Each leaf stores the whole per-tree contribution
  ``decision_path_length + average_path_length(n_node_samples) - 1.0`` computed
  with the same float64 operations as sklearn, and the kernels add the trees
  in estimator order starting from 0.0, exactly like sklearn's ``depths +=``,
  so the sums round identically.
* The final ``2 ** -(depths / denominator)`` is always done by numpy, never by
  numba or Python's ``**``: numpy may use a SIMD ``pow`` that differs from libm
  in the last bit, and sklearn goes through numpy.

numba is imported lazily on the first scoring call so that importing this module
(and the CLI's ``--help``) stays fast; sklearn is never imported here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["PackedForest", "Backend"]

Backend = Literal["auto", "numba", "numpy"]

_STATE_FORMAT = 1
_DEFAULT_CHUNK_ROWS = 65_536
# Rows handled together by one numba worker: large enough to amortise the
# per-tree loop setup, small enough that the block's X rows (block * 4 bytes *
# n_features) and node ids stay in L2 while all trees stream over them.
_BLOCK_ROWS = 256
# Up to this many rows the serial one-row kernel is used (same sums, same order).
_SERIAL_MAX_ROWS = 16
# The numpy fallback walks sub-chunks of this many rows so that its temporaries
# stay cache-resident; it does not change any result.
_NUMPY_SUB_ROWS = 8_192

_ARRAY_DTYPES: dict[str, Any] = {
    "feature": np.uint32,
    "threshold": np.float32,
    "child": np.uint32,
    "nan_right": np.uint8,
    "value": np.float64,
    "roots": np.uint32,
    "tree_depth": np.int32,
}


def _average_path_length(n_samples_leaf: Any) -> np.ndarray:
    """Copy of ``sklearn.ensemble._iforest._average_path_length``.

    Kept operation-for-operation identical (same masks, same float64
    expression order) so that the normalisation constant and leaf values match
    sklearn bit for bit without importing it.
    """
    n = np.asarray(n_samples_leaf)
    shape = n.shape
    n = n.reshape((1, -1))
    out = np.zeros(n.shape)
    mask_1 = n <= 1
    mask_2 = n == 2
    not_mask = ~np.logical_or(mask_1, mask_2)
    out[mask_1] = 0.0
    out[mask_2] = 1.0
    out[not_mask] = 2.0 * (np.log(n[not_mask] - 1.0) + np.euler_gamma) - 2.0 * (
        n[not_mask] - 1.0
    ) / n[not_mask]
    return out.reshape(shape)


def _node_depths(children_left: np.ndarray, children_right: np.ndarray) -> np.ndarray:
    """Same as ``Tree.compute_node_depths`` (root = 1); used only if sklearn lacks it."""
    depths = np.empty(len(children_left), dtype=np.int64)
    depths[0] = 1
    for node in range(len(children_left)):
        if children_left[node] != -1:
            depths[children_left[node]] = depths[node] + 1
            depths[children_right[node]] = depths[node] + 1
    return depths


def _float32_floor(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 ``<= threshold``: makes ``x32 <= t32`` equal ``x32 <= t64``."""
    t64 = np.asarray(threshold, dtype=np.float64)
    with np.errstate(over="ignore"):
        t32 = t64.astype(np.float32)
    too_big = t32.astype(np.float64) > t64
    t32[too_big] = np.nextafter(t32[too_big], np.float32(-np.inf))
    return t32


# --------------------------------------------------------------------------- #
# Kernels. Written as plain module-level functions and compiled on first use so
# that importing this module never imports numba, and so that numba's on-disk
# cache (keyed on this file + function name) works. ``_prange`` is swapped for
# ``numba.prange`` just before compiling.
# --------------------------------------------------------------------------- #
_prange = range


def _depths_batch_kernel(X, feature, threshold, child, nan_right, value, roots, tree_depth, out):  # pragma: no cover - compiled
    n_rows, n_features = X.shape
    Xf = X.reshape(-1)
    n_blocks = (n_rows + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    for b in _prange(n_blocks):
        start = b * _BLOCK_ROWS
        stop = min(start + _BLOCK_ROWS, n_rows)
        m = stop - start
        acc = np.zeros(m)
        # Unsigned indices spare numba its negative-index wraparound code in the
        # hot loop (about 2x faster here).
        node = np.empty(m, dtype=np.uint32)
        base = np.empty(m, dtype=np.uint32)
        for i in range(m):
            base[i] = (start + i) * n_features
        # NaN needs an extra test per step; a block without NaN (the usual case)
        # takes the branch-free loop, where a mispredicted "go right?" branch
        # would otherwise cost more than the whole step.
        has_nan = False
        for j in range(start * n_features, stop * n_features):
            if Xf[j] != Xf[j]:
                has_nan = True
                break
        # Trees outer, rows inner: one tree's nodes stay hot in L1 while the
        # whole block goes through it, and rows are independent so the CPU
        # overlaps their loads instead of waiting on one row's dependent chain.
        for t in range(roots.shape[0]):
            root = roots[t]
            for i in range(m):
                node[i] = root
            for _ in range(tree_depth[t]):
                if has_nan:
                    for i in range(m):
                        k = node[i]
                        x = Xf[base[i] + feature[k]]
                        c = child[k] + np.uint32(x > threshold[k])
                        if x != x:
                            # sklearn tests isnan first and follows missing_go_to_left.
                            c = child[k] + np.uint32(nan_right[k])
                        node[i] = c
                else:
                    for i in range(m):
                        k = node[i]
                        node[i] = child[k] + np.uint32(Xf[base[i] + feature[k]] > threshold[k])
            for i in range(m):
                acc[i] += value[node[i]]
        for i in range(m):
            out[start + i] = acc[i]


def _depth_one_kernel(x, feature, threshold, child, nan_right, value, roots, tree_depth):  # pragma: no cover - compiled
    acc = 0.0
    for t in range(roots.shape[0]):
        k = roots[t]
        for _ in range(tree_depth[t]):
            v = x[feature[k]]
            c = child[k] + np.uint32(v > threshold[k])
            if v != v:
                c = child[k] + np.uint32(nan_right[k])
            k = c
        acc += value[k]
    return acc


_kernel_lock = threading.Lock()
_kernels: tuple[Any, Any] | None = None
_numba_error: BaseException | None = None
# Batch calls are serialised: numba's "workqueue" threading layer aborts the process on
# concurrent parallel launches (and which layer is active is only known after the first
# launch), and one launch already runs on every core, so two at once would only
# oversubscribe them. Scoring threads overlap their other work with a launch instead.
_batch_call_lock = threading.Lock()


def _load_numba_kernels() -> tuple[Any, Any]:
    global _kernels, _numba_error, _prange
    if _kernels is not None:
        return _kernels
    with _kernel_lock:
        if _kernels is not None:
            return _kernels
        if _numba_error is not None:
            raise ImportError(f"numba backend unavailable: {_numba_error}") from _numba_error
        try:
            import numba
        except Exception as exc:  # ImportError, or a broken llvmlite install
            _numba_error = exc
            raise ImportError(f"numba backend unavailable: {exc}") from exc
        _prange = numba.prange
        batch = numba.njit(cache=True, parallel=True, nogil=True)(_depths_batch_kernel)
        one = numba.njit(cache=True, nogil=True)(_depth_one_kernel)
        _kernels = (batch, one)
        return _kernels


def _numba_wanted(backend: str) -> bool:
    if backend == "numpy":
        return False
    if backend == "numba":
        return True
    return os.environ.get("DETECTOR_NO_NUMBA", "").strip() not in ("1", "true", "yes")


def _final_scores(depths: np.ndarray, denominator: float) -> np.ndarray:
    """Anomaly score (higher = more suspicious), written as sklearn writes it.

    With max_samples == 1 the denominator is 0 and sklearn's ``out=ones`` makes
    every score ``2 ** -1 == 0.5`` (not 1 as its comment says); mirrored here.
    """
    den = np.float64(denominator)
    return 2 ** (-np.divide(depths, den, out=np.ones_like(depths), where=den != 0))


def _breadth_first(left: np.ndarray, right: np.ndarray,
                   t: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Breadth-first renumbering of tree ``t``, one level at a time, so siblings are
    adjacent: (new id of each old node, old nodes in new order, number of split levels)."""
    n_nodes = len(left)
    new_id = np.empty(n_nodes, dtype=np.int64)
    order = []
    level = np.array([0], dtype=np.int64)
    next_id = 0
    n_levels = 0
    while level.size:
        new_id[level] = np.arange(next_id, next_id + level.size)
        next_id += level.size
        order.append(level)
        internal = level[left[level] != -1]
        if internal.size == 0:
            break
        n_levels += 1
        level = np.stack([left[internal], right[internal]], axis=1).ravel()
    order_arr = np.concatenate(order)
    if order_arr.size != n_nodes:
        raise ValueError(f"tree {t} is not a proper binary tree")
    return new_id, order_arr, n_levels


def _leaf_values(tree: Any, left: np.ndarray, right: np.ndarray, dpl: Any,
                 apl: Any) -> np.ndarray:
    """Path length credited at each node: sklearn's own cached depths and average path
    lengths when the forest holds them (``dpl``/``apl``), else computed the same way."""
    if dpl is not None:
        dpl = np.asarray(dpl)
    elif hasattr(tree, "compute_node_depths"):
        dpl = np.asarray(tree.compute_node_depths())
    else:
        dpl = _node_depths(left, right)
    if apl is not None:
        apl = np.asarray(apl)
    else:
        apl = _average_path_length(tree.n_node_samples)
    # Same expression and order as sklearn's _parallel_compute_tree_depths.
    return dpl + apl - 1.0


class PackedForest:
    """Flat-array copy of a fitted ``IsolationForest`` with a fast scorer.

    Build with :meth:`from_sklearn` (from a fitted estimator) or
    :meth:`from_state` (from :meth:`to_state` output). Scoring holds no mutable
    state, so one instance may be shared by many threads.
    """

    def __init__(
        self,
        *,
        feature: np.ndarray,
        threshold: np.ndarray,
        child: np.ndarray,
        nan_right: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        tree_depth: np.ndarray,
        n_features_in: int,
        denominator: float,
        max_samples: int,
        backend: Backend = "auto",
        chunk_rows: int = _DEFAULT_CHUNK_ROWS,
    ) -> None:
        if backend not in ("auto", "numba", "numpy"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
        if int(chunk_rows) < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        arrays = {
            "feature": feature,
            "threshold": threshold,
            "child": child,
            "nan_right": nan_right,
            "value": value,
            "roots": roots,
            "tree_depth": tree_depth,
        }
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            if name in ("threshold", "value"):
                if arr.dtype.kind != "f":
                    raise ValueError(f"{name} must be floating point, got {arr.dtype}")
            else:
                if arr.dtype.kind not in "iub":
                    raise ValueError(f"{name} must be integer, got {arr.dtype}")
                # Checked before the unsigned cast, which would wrap negatives.
                if arr.size and (int(arr.min()) < 0 or int(arr.max()) > np.iinfo(np.int32).max):
                    raise ValueError(f"{name} has entries outside [0, 2**31)")
            # np.array(copy) + read-only: a shared instance cannot be mutated
            # under a concurrent scorer, and from_state never aliases caller data.
            packed = np.array(arr, dtype=_ARRAY_DTYPES[name], order="C", copy=True)
            packed.flags.writeable = False
            setattr(self, "_" + name, packed)
        self.n_features_in_ = int(n_features_in)
        self.denominator_ = float(denominator)
        self.max_samples_ = int(max_samples)
        self.backend = backend
        self.chunk_rows = int(chunk_rows)
        self._validate()

    # ------------------------------------------------------------------ build
    @classmethod
    def from_sklearn(
        cls,
        forest: Any,
        *,
        backend: Backend = "auto",
        chunk_rows: int = _DEFAULT_CHUNK_ROWS,
    ) -> PackedForest:
        """Pack a fitted ``sklearn.ensemble.IsolationForest`` (only reads its attributes)."""
        try:
            estimators = list(forest.estimators_)
            estimators_features = list(forest.estimators_features_)
            n_features = int(forest.n_features_in_)
        except AttributeError as exc:
            raise ValueError(
                f"expected a fitted IsolationForest, got {type(forest).__name__}: {exc}"
            ) from exc
        max_samples = int(getattr(forest, "_max_samples", forest.max_samples_))
        # sklearn only slices X by estimators_features_ when the forest really
        # uses fewer features; with all features it scores the raw columns even
        # though estimators_features_ may hold a permutation.
        max_features = getattr(forest, "_max_features", n_features)
        subsample_features = max_features != n_features
        dpl_all = getattr(forest, "_decision_path_lengths", None)
        apl_all = getattr(forest, "_average_path_length_per_tree", None)

        feats, thrs, childs, nans, values, roots, depths = [], [], [], [], [], [], []
        offset = 0
        for t, (est, est_features) in enumerate(zip(estimators, estimators_features, strict=True)):
            tree = est.tree_
            left = np.asarray(tree.children_left, dtype=np.int64)
            right = np.asarray(tree.children_right, dtype=np.int64)
            n_nodes = len(left)
            leaf_value = _leaf_values(tree, left, right,
                                      None if dpl_all is None else dpl_all[t],
                                      None if apl_all is None else apl_all[t])
            if hasattr(tree, "missing_go_to_left"):
                go_left = np.asarray(tree.missing_go_to_left).astype(bool)
            else:
                # Older trees had no NaN branch: NaN <= t is False, so right.
                go_left = np.zeros(n_nodes, dtype=bool)

            tree_feature = np.asarray(tree.feature, dtype=np.int64)
            if subsample_features:
                tree_feature = np.where(
                    left != -1, np.asarray(est_features, dtype=np.int64)[np.maximum(tree_feature, 0)], 0
                )

            new_id, order_arr, n_levels = _breadth_first(left, right, t)

            is_split = left[order_arr] != -1
            t_child = np.where(is_split, new_id[left[order_arr]], np.arange(n_nodes)) + offset
            t_thr = np.where(is_split, 0.0, np.inf)
            t_thr[is_split] = tree.threshold[order_arr[is_split]]
            feats.append(np.where(is_split, tree_feature[order_arr], 0))
            thrs.append(_float32_floor(t_thr))
            childs.append(t_child)
            nans.append(np.where(is_split, ~go_left[order_arr], False))
            values.append(np.where(is_split, 0.0, leaf_value[order_arr]))
            roots.append(offset)
            depths.append(n_levels)
            offset += n_nodes

        denominator = len(estimators) * _average_path_length([max_samples])
        return cls(
            feature=np.concatenate(feats),
            threshold=np.concatenate(thrs),
            child=np.concatenate(childs),
            nan_right=np.concatenate(nans),
            value=np.concatenate(values),
            roots=np.asarray(roots),
            tree_depth=np.asarray(depths),
            n_features_in=n_features,
            denominator=float(denominator[0]),
            max_samples=max_samples,
            backend=backend,
            chunk_rows=chunk_rows,
        )

    def to_state(self) -> dict[str, Any]:
        """Plain dict (numpy arrays, ints, floats, strs) for a model artifact."""
        state: dict[str, Any] = {"format": _STATE_FORMAT}
        for name in _ARRAY_DTYPES:
            state[name] = np.array(getattr(self, "_" + name))
        state["n_features_in"] = self.n_features_in_
        state["denominator"] = self.denominator_
        state["max_samples"] = self.max_samples_
        return state

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        *,
        backend: Backend = "auto",
        chunk_rows: int = _DEFAULT_CHUNK_ROWS,
    ) -> PackedForest:
        """Rebuild from :meth:`to_state` output; validates every index before use."""
        fmt = state.get("format")
        if fmt != _STATE_FORMAT:
            raise ValueError(f"unsupported PackedForest state format {fmt!r}; expected {_STATE_FORMAT}")
        missing = [k for k in (*_ARRAY_DTYPES, "n_features_in", "denominator", "max_samples") if k not in state]
        if missing:
            raise ValueError(f"PackedForest state is missing keys: {missing}")
        return cls(
            **{name: state[name] for name in _ARRAY_DTYPES},
            n_features_in=state["n_features_in"],
            denominator=state["denominator"],
            max_samples=state["max_samples"],
            backend=backend,
            chunk_rows=chunk_rows,
        )

    def _validate(self) -> None:
        # The kernels do no bounds checking, so a corrupt state must be caught
        # here rather than become an out-of-bounds read.
        n = self._feature.size
        for name in ("threshold", "child", "nan_right", "value"):
            if getattr(self, "_" + name).size != n:
                raise ValueError(f"{name} has {getattr(self, '_' + name).size} entries, expected {n}")
        if self._roots.size != self._tree_depth.size:
            raise ValueError("roots and tree_depth must have the same length")
        if self.n_features_in_ < 1:
            raise ValueError(f"n_features_in must be >= 1, got {self.n_features_in_}")
        if n == 0:
            if self._roots.size:
                raise ValueError("trees without nodes")
            return
        if self._feature.max() >= self.n_features_in_:
            raise ValueError("feature index out of range")
        if self._child.max() >= n:
            raise ValueError("child index out of range")
        # A right step (child + 1) must stay inside the arrays unless the node
        # can never go right (leaf: +inf threshold and NaN goes left).
        last = self._child == n - 1
        never_right = np.isposinf(self._threshold) & (self._nan_right == 0)
        if np.any(last & ~never_right):
            raise ValueError("child index out of range")
        if np.any(self._nan_right > 1):
            raise ValueError("nan_right must be 0 or 1")
        if self._roots.size and self._roots.max() >= n:
            raise ValueError("root index out of range")

    # ------------------------------------------------------------ attributes
    @property
    def n_trees_(self) -> int:
        return int(self._roots.size)

    @property
    def n_nodes_(self) -> int:
        return int(self._feature.size)

    @property
    def max_depth_(self) -> int:
        return int(self._tree_depth.max()) if self._tree_depth.size else 0

    @property
    def backend_(self) -> str:
        """Backend that scoring actually uses ("numba" or "numpy")."""
        if _numba_wanted(self.backend):
            try:
                _load_numba_kernels()
                return "numba"
            except ImportError:
                if self.backend == "numba":
                    raise
        return "numpy"

    def __repr__(self) -> str:
        return (
            f"PackedForest(n_trees_={self.n_trees_}, n_nodes_={self.n_nodes_}, "
            f"max_depth_={self.max_depth_}, n_features_in_={self.n_features_in_}, "
            f"backend={self.backend!r})"
        )

    # --------------------------------------------------------------- scoring
    def _check_2d(self, X: Any) -> Any:
        shape = getattr(X, "shape", None)
        if shape is None:
            X = np.asarray(X)
            shape = X.shape
        if len(shape) != 2:
            raise ValueError(
                f"X must be 2-D (n_rows, {self.n_features_in_}), got shape {tuple(shape)}; "
                "use score_one for a single row"
            )
        if shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {shape[1]} features, but PackedForest was fitted with "
                f"{self.n_features_in_} features"
            )
        return X

    def _depths(self, X: Any, chunk_rows: int | None) -> np.ndarray:
        X = self._check_2d(X)
        if not isinstance(X, np.ndarray):
            # DataFrames etc.: np.asarray(..., float32) casts each column block
            # straight to float32, like sklearn's check_array (no float64 detour).
            with np.errstate(over="ignore"):
                X = np.asarray(X, dtype=np.float32)
        n_rows = X.shape[0]
        chunk = self.chunk_rows if chunk_rows is None else int(chunk_rows)
        if chunk < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk}")
        # The kernel addresses a chunk with uint32 offsets (row * n_features + f).
        chunk = max(1, min(chunk, np.iinfo(np.int32).max // self.n_features_in_))
        depths = np.zeros(n_rows)
        use_numba = self._use_numba(n_rows)
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            # Casting per chunk bounds memory to chunk * n_features * 4 bytes.
            # Values beyond float32 range become +-inf, as in sklearn's own cast.
            with np.errstate(over="ignore"):
                Xc = np.ascontiguousarray(X[start:stop], dtype=np.float32)
            if use_numba:
                self._depths_numba(Xc, depths[start:stop])
            else:
                self._depths_numpy(Xc, depths[start:stop])
        return depths

    def _kernel_args(self) -> tuple[np.ndarray, ...]:
        return (
            self._feature,
            self._threshold,
            self._child,
            self._nan_right,
            self._value,
            self._roots,
            self._tree_depth,
        )

    def _depths_numba(self, Xc: np.ndarray, out: np.ndarray) -> None:
        batch, one = _load_numba_kernels()
        if Xc.shape[0] <= _SERIAL_MAX_ROWS:
            # A parallel launch waits for every worker thread; on a busy machine
            # that can cost milliseconds, far more than a few rows take serially.
            args = self._kernel_args()
            for i in range(Xc.shape[0]):
                out[i] = one(Xc[i], *args)
            return
        with _batch_call_lock:
            batch(Xc, *self._kernel_args(), out)

    def _use_numba(self, n_rows: int) -> bool:
        # A handful of rows costs numpy (rows x trees at once, see _depths_few_numpy) some tens of
        # microseconds, while importing numba and loading its cached kernels costs a fresh
        # process about 0.4 s (scipy comes with it). A service that starts to score one
        # declaration should not pay that: numba is loaded by the first batch, and once
        # loaded it serves single rows too. Same sums in the same order either way.
        if self.backend == "auto" and n_rows <= _SERIAL_MAX_ROWS and _kernels is None:
            return False
        return self.backend_ == "numba"

    def _depths_few_numpy(self, Xc: np.ndarray) -> np.ndarray:
        """Path-length sums of a few float32 rows: every row in every tree at once (a
        rows x trees array of node ids), a few numpy calls per level."""
        feature, threshold, child, nan_right, value, roots, tree_depth = self._kernel_args()
        if not roots.size:
            return np.zeros(Xc.shape[0])
        node = np.broadcast_to(roots.astype(np.intp), (Xc.shape[0], roots.size))
        # Row r's value of feature f sits at flat[r * n_features + f].
        flat, base = Xc.reshape(-1), np.arange(0, Xc.size, Xc.shape[1])[:, None]
        has_nan = bool(np.isnan(flat).any())
        # Leaves point to themselves with a +inf threshold: trees shallower than the
        # deepest stay put on their leaf for the remaining steps.
        for _ in range(int(tree_depth.max())):
            x = flat[base + feature[node]]
            step = x > threshold[node]
            if has_nan:
                step = np.where(np.isnan(x), nan_right[node], step)
            node = child[node] + step
        # In tree order, one addition after the other like the kernel (cumsum is
        # sequential; np.sum is pairwise and could round differently).
        return np.cumsum(value[node], axis=1)[:, -1]

    def _depths_numpy(self, Xc: np.ndarray, out: np.ndarray) -> None:
        if Xc.shape[0] <= _SERIAL_MAX_ROWS:
            out[:] = self._depths_few_numpy(Xc)
            return
        feature, threshold, child, nan_right, value, roots, tree_depth = self._kernel_args()
        n_features = Xc.shape[1]
        flat = Xc.reshape(-1)
        for s in range(0, Xc.shape[0], _NUMPY_SUB_ROWS):
            m = min(_NUMPY_SUB_ROWS, Xc.shape[0] - s)
            rowbase = np.arange(s, s + m, dtype=np.intp) * n_features
            acc = np.zeros(m)
            for t in range(roots.size):
                node = np.full(m, roots[t], dtype=np.intp)
                # Every row takes tree_depth[t] steps (leaves loop on themselves),
                # so all rows advance one level per vectorised step.
                for _ in range(tree_depth[t]):
                    x = flat[rowbase + feature[node]]
                    step = x > threshold[node]
                    isnan = np.isnan(x)
                    if isnan.any():
                        step[isnan] = nan_right[node[isnan]].astype(bool)
                    node = child[node] + step
                # Same per-row, tree-ordered float64 accumulation as the kernel.
                acc += value[node]
            out[s : s + m] = acc

    def score_samples(self, X: Any, *, chunk_rows: int | None = None) -> np.ndarray:
        """Exactly ``IsolationForest.score_samples(X)``: in [-1, 0), lower = more abnormal.

        X: 2-D array-like (numpy float32/float64/int, pandas DataFrame, ...) with
        ``n_features_in_`` columns; NaN follows sklearn's missing-value branches.
        """
        return -_final_scores(self._depths(X, chunk_rows), self.denominator_)

    def anomaly_score(self, X: Any, *, chunk_rows: int | None = None) -> np.ndarray:
        """Anomaly score in (0, 1]; higher = more suspicious.

        This is ``-score_samples(X)`` and the one place in the product where
        sklearn's sign convention is flipped: everything downstream uses this
        direction.
        """
        return _final_scores(self._depths(X, chunk_rows), self.denominator_)

    def warm_up(self) -> None:
        """Load the compiled kernels now rather than in the first batch.

        A fresh process pays ~0.5 s for it (importing numba, loading both cached
        kernels); a batch job can pay it in a thread while its other start-up work (the
        pre-pass, which spends its time in Arrow) runs. A no-op on the numpy path; an
        unusable numba falls back to it as in scoring.
        """
        rows = _SERIAL_MAX_ROWS + 1  # the batch (parallel) kernel, as a chunk uses it
        if self._use_numba(rows):
            self.anomaly_score(np.zeros((rows, self.n_features_in_)))
            self.score_one(np.zeros(self.n_features_in_))

    def score_one(self, x: Sequence[float] | np.ndarray) -> float:
        """Anomaly score of one row (higher = more suspicious), as a Python float.

        Equals ``anomaly_score(np.asarray(x)[None, :])[0]`` exactly; uses a serial
        kernel because a parallel launch costs more than scoring one row.
        """
        row = np.asarray(x)
        if row.ndim != 1:
            raise ValueError(f"score_one expects a 1-D row, got shape {row.shape}")
        if row.shape[0] != self.n_features_in_:
            raise ValueError(
                f"X has {row.shape[0]} features, but PackedForest was fitted with "
                f"{self.n_features_in_} features"
            )
        with np.errstate(over="ignore"):
            row = np.ascontiguousarray(row, dtype=np.float32)
        if self._use_numba(1):
            _, one = _load_numba_kernels()
            depth = one(row, *self._kernel_args())
        else:
            depth = float(self._depths_few_numpy(row.reshape(1, -1))[0])
        # _final_scores, unrolled for one value: a Python float division is the
        # same IEEE operation as np.divide, but pow stays a numpy array call so
        # it takes the same (possibly SIMD) code path as the batch scores.
        den = self.denominator_
        exponent = -(depth / den) if den != 0 else -1.0
        return float((2 ** np.array([exponent]))[0])
