"""PackedForest must reproduce IsolationForest.score_samples bit for bit."""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length as sk_average_path_length

from detector.forest import PackedForest, _average_path_length

BACKENDS = ("numba", "numpy")


def _fit(X, **kw) -> IsolationForest:
    kw.setdefault("random_state", 0)
    return IsolationForest(**kw).fit(X)


def _assert_exact(forest: IsolationForest, X, packed: PackedForest | None = None) -> None:
    expected = forest.score_samples(X)
    packed = packed or PackedForest.from_sklearn(forest)
    for backend in BACKENDS:
        packed.backend = backend
        got = packed.score_samples(X)
        assert got.dtype == np.float64
        # Bit-identical, not merely close: same float32 cast, same summation order.
        np.testing.assert_array_equal(got, expected, err_msg=f"backend={backend}")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    train = rng.normal(size=(300, 6))
    train[:, 2] = rng.integers(0, 4, size=300)  # heavy ties on one column
    test = np.vstack([rng.normal(size=(150, 6)), rng.normal(scale=4.0, size=(50, 6))])
    return train, test


@pytest.mark.parametrize(
    ("max_samples", "max_features", "bootstrap", "n_estimators"),
    list(itertools.product(["auto", 64, 0.5], [1.0, 0.5, 3], [False, True], [1, 3, 50])),
)
def test_matches_sklearn_grid(data, max_samples, max_features, bootstrap, n_estimators):
    train, test = data
    forest = _fit(
        train,
        max_samples=max_samples,
        max_features=max_features,
        bootstrap=bootstrap,
        n_estimators=n_estimators,
    )
    _assert_exact(forest, test)
    _assert_exact(forest, train)


@pytest.mark.parametrize("contamination", ["auto", 0.1])
def test_matches_sklearn_contamination(data, contamination):
    train, test = data
    forest = _fit(train, contamination=contamination, n_estimators=20)
    _assert_exact(forest, test)


def test_max_samples_one_gives_sklearn_constant(data):
    # Denominator is 0 here; sklearn's out=ones trick yields 2**-1, not 1.
    train, test = data
    forest = _fit(train, max_samples=1, n_estimators=5)
    _assert_exact(forest, test)
    packed = PackedForest.from_sklearn(forest)
    assert packed.score_one(test[0]) == 0.5


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    n_rows=st.integers(2, 60),
    n_features=st.integers(1, 6),
    n_estimators=st.integers(1, 8),
    max_samples_frac=st.floats(0.05, 1.0),
    max_features_frac=st.floats(0.1, 1.0),
    bootstrap=st.booleans(),
    discrete=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_sklearn_random_shapes(
    n_rows, n_features, n_estimators, max_samples_frac, max_features_frac, bootstrap, discrete, seed
):
    rng = np.random.default_rng(seed)
    if discrete:
        X = rng.integers(-3, 4, size=(n_rows, n_features)).astype(np.float64)
    else:
        X = rng.standard_cauchy(size=(n_rows, n_features))
    forest = _fit(
        X,
        n_estimators=n_estimators,
        max_samples=max(1, int(max_samples_frac * n_rows)),
        max_features=max_features_frac,
        bootstrap=bootstrap,
        random_state=seed,
    )
    test = np.vstack([X, rng.standard_cauchy(size=(7, n_features)) * 3])
    _assert_exact(forest, test)


def test_nan_input_follows_sklearn_missing_branches(data):
    train, test = data
    rng = np.random.default_rng(1)
    test = test.copy()
    test[rng.random(test.shape) < 0.2] = np.nan
    test[0, :] = np.nan
    # NaN only at score time (trees carry an arbitrary missing_go_to_left).
    _assert_exact(_fit(train, n_estimators=30), test)
    # NaN also at fit time: sklearn 1.9 accepts it.
    train_nan = train.copy()
    train_nan[rng.random(train.shape) < 0.1] = np.nan
    forest = _fit(train_nan, n_estimators=30, max_features=0.5)
    _assert_exact(forest, test)
    _assert_exact(forest, train_nan)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_infinities(data):
    train, test = data
    test = test.copy()
    test[0, :] = np.inf
    test[1, :] = -np.inf
    test[2, :3] = 1e300  # overflows to inf in the float32 cast
    _assert_exact(_fit(train, n_estimators=20), test)


def test_ties_at_thresholds(data):
    train, _ = data
    forest = _fit(train, n_estimators=25, max_features=0.5)
    n_features = train.shape[1]
    rows = []
    for est, feats in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = est.tree_
        split = tree.children_left != -1
        for f, t in zip(tree.feature[split], tree.threshold[split], strict=True):
            col = feats[f]
            t32 = np.float32(t)
            for v in (
                t,
                np.nextafter(t, np.inf),
                np.nextafter(t, -np.inf),
                float(t32),
                float(np.nextafter(t32, np.float32(np.inf))),
                float(np.nextafter(t32, np.float32(-np.inf))),
                t + 1e-12 * max(1.0, abs(t)),  # differs only beyond float32 precision
            ):
                row = np.zeros(n_features)
                row[:] = np.median(train, axis=0)
                row[col] = v
                rows.append(row)
    X = np.asarray(rows)
    _assert_exact(forest, X)
    _assert_exact(forest, X.astype(np.float32))


def test_constant_columns():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    X[:, 1] = 7.0
    X[:, 3] = 0.0
    forest = _fit(X, n_estimators=20)
    test = rng.normal(size=(50, 5))
    test[:10, 1] = 7.0
    _assert_exact(forest, np.vstack([X, test]))


def test_all_rows_identical():
    X = np.ones((50, 3))
    forest = _fit(X, n_estimators=5)
    _assert_exact(forest, np.vstack([X[:3], [[0.0, 1.0, 2.0]]]))


@pytest.mark.parametrize("kind", ["float64", "float32", "int64", "int32", "dataframe", "list", "fortran"])
def test_input_types(data, kind):
    train, test = data
    forest = _fit(train, n_estimators=20)
    if kind == "float64":
        X = test
    elif kind == "float32":
        X = test.astype(np.float32)
    elif kind in ("int64", "int32"):
        X = np.round(test * 2).astype(kind)
    elif kind == "dataframe":
        X = pd.DataFrame(test, columns=[f"c{i}" for i in range(test.shape[1])])
        X["c2"] = np.round(test[:, 2] * 3).astype(np.int64)  # mixed dtypes
    elif kind == "list":
        X = test.tolist()
    else:
        X = np.asfortranarray(test)
    with warnings.catch_warnings():
        # sklearn warns that a DataFrame has names the forest was not fitted with.
        warnings.simplefilter("ignore", UserWarning)
        _assert_exact(forest, X)


def test_one_row(data):
    train, test = data
    forest = _fit(train, n_estimators=20)
    _assert_exact(forest, test[:1])


def test_backends_identical_on_large_input(data):
    train, _ = data
    forest = _fit(train, n_estimators=100, max_features=0.5)
    rng = np.random.default_rng(7)
    X = rng.normal(scale=2.0, size=(20_000, 6))
    X[rng.random(X.shape) < 0.01] = np.nan
    packed = PackedForest.from_sklearn(forest)
    a = PackedForest.from_sklearn(forest, backend="numba").anomaly_score(X)
    b = PackedForest.from_sklearn(forest, backend="numpy").anomaly_score(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, -forest.score_samples(X))
    assert packed.backend_ in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunking_does_not_change_scores(data, backend):
    train, test = data
    forest = _fit(train, n_estimators=30)
    X = np.vstack([test] * 3)
    packed = PackedForest.from_sklearn(forest, backend=backend)
    big = packed.score_samples(X, chunk_rows=1_000_000)
    np.testing.assert_array_equal(packed.score_samples(X, chunk_rows=7), big)
    # Tiny batches take the serial one-row kernel; the boundary must not show.
    for n in (1, 15, 16, 17, 300):
        np.testing.assert_array_equal(packed.score_samples(X[:n]), big[:n])
    tiny = PackedForest.from_sklearn(forest, backend=backend, chunk_rows=1)
    np.testing.assert_array_equal(tiny.score_samples(X[:40]), big[:40])
    with pytest.raises(ValueError, match="chunk_rows"):
        packed.score_samples(X, chunk_rows=0)


def test_anomaly_score_is_negated_score_samples(data):
    train, test = data
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=20))
    a = packed.anomaly_score(test)
    np.testing.assert_array_equal(a, -packed.score_samples(test))
    assert np.all((a > 0) & (a <= 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_one_equals_batch(data, backend):
    train, test = data
    test = test.copy()
    test[3, 1] = np.nan
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=50), backend=backend)
    batch = packed.anomaly_score(test)
    for i, row in enumerate(test):
        got = packed.score_one(row)
        assert isinstance(got, float)
        assert got == batch[i]
        assert got == packed.anomaly_score(row[None, :])[0]
    assert packed.score_one(list(test[0])) == batch[0]


def test_state_round_trip(data):
    train, test = data
    forest = _fit(train, n_estimators=20, max_features=0.5)
    packed = PackedForest.from_sklearn(forest)
    state = packed.to_state()
    for key, value in state.items():
        assert isinstance(key, str)
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "iuf", key
        else:
            assert type(value) in (int, float, str), key
    # Survives a trip through np.savez (what an artifact without pickle would do).
    rebuilt = PackedForest.from_state(dict(state))
    np.testing.assert_array_equal(rebuilt.score_samples(test), packed.score_samples(test))
    assert (rebuilt.n_trees_, rebuilt.n_nodes_, rebuilt.max_depth_, rebuilt.n_features_in_) == (
        packed.n_trees_,
        packed.n_nodes_,
        packed.max_depth_,
        packed.n_features_in_,
    )
    # Mutating the caller's state afterwards must not affect the rebuilt forest.
    state["value"][:] = 0.0
    np.testing.assert_array_equal(rebuilt.score_samples(test), forest.score_samples(test))


def test_state_through_npz(tmp_path, data):
    train, test = data
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=10))
    path = tmp_path / "forest.npz"
    np.savez(path, **packed.to_state())
    with np.load(path, allow_pickle=False) as npz:
        state = {k: (npz[k] if npz[k].ndim else npz[k].item()) for k in npz.files}
    np.testing.assert_array_equal(PackedForest.from_state(state).score_samples(test), packed.score_samples(test))


def test_from_state_rejects_corrupt_indices(data):
    train, _ = data
    state = PackedForest.from_sklearn(_fit(train, n_estimators=3)).to_state()
    bad = dict(state, child=state["child"].copy())
    bad["child"][0] = len(bad["child"]) + 5
    with pytest.raises(ValueError, match="child"):
        PackedForest.from_state(bad)
    bad = dict(state, feature=state["feature"].astype(np.int64))
    bad["feature"][0] = -1
    with pytest.raises(ValueError, match="feature"):
        PackedForest.from_state(bad)
    bad = dict(state, feature=state["feature"].copy())
    bad["feature"][0] = 99
    with pytest.raises(ValueError, match="feature"):
        PackedForest.from_state(bad)
    with pytest.raises(ValueError, match="format"):
        PackedForest.from_state(dict(state, format=99))
    with pytest.raises(ValueError, match="missing"):
        PackedForest.from_state({k: v for k, v in state.items() if k != "value"})


def test_pickle_round_trip(data):
    train, test = data
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=20))
    packed.score_samples(test)  # kernels compiled: must not end up on the instance
    clone = pickle.loads(pickle.dumps(packed))
    np.testing.assert_array_equal(clone.score_samples(test), packed.score_samples(test))
    assert clone.score_one(test[0]) == packed.score_one(test[0])


def test_wrong_feature_count_message(data):
    train, test = data
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=5))
    with pytest.raises(ValueError, match=r"^X has 5 features, but PackedForest was fitted with 6 features$"):
        packed.score_samples(test[:, :5])
    with pytest.raises(ValueError, match="X has 7 features"):
        packed.score_one(np.zeros(7))
    with pytest.raises(ValueError, match="2-D"):
        packed.score_samples(test[0])
    with pytest.raises(ValueError, match="backend"):
        PackedForest.from_sklearn(_fit(train, n_estimators=1), backend="gpu")


def test_attributes(data):
    train, _ = data
    forest = _fit(train, n_estimators=7, max_samples=64)
    packed = PackedForest.from_sklearn(forest)
    assert packed.n_features_in_ == 6
    assert packed.n_trees_ == 7
    assert packed.n_nodes_ == sum(e.tree_.node_count for e in forest.estimators_)
    assert packed.max_depth_ == max(e.tree_.max_depth for e in forest.estimators_)
    assert "PackedForest(" in repr(packed)


def test_average_path_length_matches_sklearn():
    n = np.arange(0, 5000)
    np.testing.assert_array_equal(_average_path_length(n), sk_average_path_length(n))
    np.testing.assert_array_equal(_average_path_length([256]), sk_average_path_length([256]))


def test_concurrent_scoring(data):
    train, _ = data
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=30))
    rng = np.random.default_rng(11)
    batches = [rng.normal(size=(3000, 6)) for _ in range(8)]
    expected = [packed.anomaly_score(b) for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(packed.anomaly_score, batches))
        ones = list(pool.map(packed.score_one, batches[0][:200]))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)
    assert ones == list(expected[0][:200])


def _run(code: str, env: dict[str, str] | None = None) -> str:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _state_and_rows(tmp_path, packed: PackedForest, X: np.ndarray) -> str:
    """Save a packed forest and rows; return code that loads them in a fresh process as
    ``p`` (a PackedForest on the default backend) and ``X``."""
    np.savez(tmp_path / "state.npz", **packed.to_state())
    np.save(tmp_path / "X.npy", X)
    return f"""
        import sys
        import numpy as np
        from detector.forest import PackedForest
        with np.load({str(tmp_path / "state.npz")!r}) as z:
            state = {{k: (z[k] if z[k].ndim else z[k].item()) for k in z.files}}
        p = PackedForest.from_state(state)
        X = np.load({str(tmp_path / "X.npy")!r})
        """


def test_import_does_not_load_sklearn_or_numba():
    out = _run(
        """
        import sys
        import detector.forest
        print(sorted(m for m in ("sklearn", "numba", "pandas") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_no_numba_env_in_subprocess(tmp_path, data):
    train, test = data
    test = test.copy()
    test[5, 2] = np.nan
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=40, max_features=0.5), backend="numba")
    out = _run(
        _state_and_rows(tmp_path, packed, test) + f"""
        np.save({str(tmp_path / "out.npy")!r}, p.anomaly_score(X))
        print(p.backend_, "numba" in sys.modules)
        """,
        env={"DETECTOR_NO_NUMBA": "1"},
    )
    assert out.split() == ["numpy", "False"]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), packed.anomaly_score(test))


def test_few_rows_in_a_fresh_process_do_not_load_numba(tmp_path, data):
    """A service that starts and scores one declaration (or a few rows, as counterfactual
    reasons do) must not pay numba's import: numpy across trees gives the same bits; the
    first real batch loads numba."""
    train, test = data
    test = test[:40].copy()
    test[5, 2] = np.nan
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=60, max_features=0.5),
                                       backend="numba")
    out = _run(
        _state_and_rows(tmp_path, packed, test) + f"""
        one = [p.score_one(X[i]) for i in range(8)]
        few = p.anomaly_score(X[:16])
        print("numba" in sys.modules)
        many = p.anomaly_score(X)
        print("numba" in sys.modules, p.backend_)
        np.save({str(tmp_path / "out.npy")!r}, np.concatenate([one, few, many]))
        """
    )
    assert out.split() == ["False", "True", "numba"]
    expected = packed.anomaly_score(test)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                  np.concatenate([expected[:8], expected[:16], expected]))


def test_warm_up_loads_the_kernels_and_changes_no_score(tmp_path, data):
    """warm_up() loads numba in a fresh process (what a batch job does in a thread during
    its pre-pass) and scoring after it gives the same bits; with numba switched off it is
    a no-op that imports nothing."""
    train, test = data
    test = test[:40].copy()
    test[5, 2] = np.nan
    packed = PackedForest.from_sklearn(_fit(train, n_estimators=60, max_features=0.5),
                                       backend="auto")
    script = _state_and_rows(tmp_path, packed, test) + f"""
        import detector.forest as f
        p.warm_up()
        print("numba" in sys.modules, f._kernels is not None, p.backend_)
        np.save({str(tmp_path / "out.npy")!r}, np.concatenate(
            [[p.score_one(X[0])], p.anomaly_score(X[:4]), p.anomaly_score(X)]))
        """
    expected = packed.anomaly_score(test)
    for env, seen in (({}, ["True", "True", "numba"]),
                      ({"DETECTOR_NO_NUMBA": "1"}, ["False", "False", "numpy"])):
        assert _run(script, env=env).split() == seen
        np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                      np.concatenate([expected[:1], expected[:4], expected]))
