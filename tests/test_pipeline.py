"""The score path's plumbing: the read-ahead thread, and row blocks that bound memory."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from detector import engine, jobs, reasons
from detector.errors import InputError
from detector.fastcsv import read_ahead
from detector.validate import IdTracker, validate


def _items(log: list, n: int, fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"bad item {i}")
            log.append(("made", i, threading.current_thread().name))
            yield i
    finally:
        log.append(("closed",))


def test_read_ahead_yields_every_item_in_order_from_another_thread():
    log: list = []
    with read_ahead(_items(log, 50)) as items:
        got = list(items)
    assert got == list(range(50))
    assert {e[2] for e in log if e[0] == "made"} == {"detector-read-ahead"}
    assert log[-1] == ("closed",)


def test_read_ahead_makes_at_most_depth_items_not_yet_taken():
    log: list = []
    with read_ahead(_items(log, 30), depth=1) as items:
        for taken, i in enumerate(items, start=1):
            time.sleep(0.002)  # let the thread run ahead if it could
            made = sum(1 for e in log if e[0] == "made")
            # Taken items, plus at most one made (or being made) ahead of the consumer.
            assert made <= taken + 1, (made, taken)
            assert i == taken - 1


def test_read_ahead_raises_the_producers_error_at_its_item():
    log: list = []
    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        with read_ahead(_items(log, 10, fail_at=3)) as items:
            for i in items:
                got.append(i)
    assert got == [0, 1, 2]  # everything before the error arrives first
    assert log[-1] == ("closed",)


def test_read_ahead_stops_the_thread_when_the_consumer_leaves_early():
    log: list = []
    before = threading.active_count()
    with read_ahead(_items(log, 10_000)) as items:
        for i in items:
            if i == 2:
                break
    # Leaving the block joined the thread and closed the generator, at most a couple of
    # items ahead (depth 1 queued, one being made).
    assert threading.active_count() == before
    assert log[-1] == ("closed",)
    assert sum(1 for e in log if e[0] == "made") <= 5


def test_read_ahead_consumer_error_stops_the_producer():
    log: list = []
    with pytest.raises(KeyError):
        with read_ahead(_items(log, 10_000)) as items:
            next(items)
            raise KeyError("consumer failed")
    assert log[-1] == ("closed",)


def test_counterfactual_in_row_blocks_equals_one_block(model, test_df, monkeypatch):
    valid = validate(test_df, seen_ids=IdTracker()).valid
    X, _ = model.features_.transform_details(valid, None)
    scores = model.forest_.anomaly_score(X)
    whole = reasons.counterfactual_reasons(model.features_, model.forest_, X, scores,
                                           candidates=int(model.candidates))
    assert len(X) > 700 and (whole[0] >= 0).any()
    monkeypatch.setattr(reasons, "_COUNTERFACTUAL_BLOCK", 333)  # blocks of uneven size
    blocked = reasons.counterfactual_reasons(model.features_, model.forest_, X, scores,
                                             candidates=int(model.candidates))
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


def test_validate_leaves_its_input_alone_when_every_row_is_valid(test_df):
    df = test_df.head(200).copy()
    before = df.copy()
    res = validate(df)
    assert len(res.rejects) == 0 and len(res.valid) == len(df)
    # Converted columns are new objects in the result; the caller's frame is unchanged.
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(df, before)
    res.valid.iloc[0, res.valid.columns.get_loc("description")] = "changed"
    pd_testing.assert_frame_equal(df, before)


def test_default_threads_is_one_per_core_at_most_two():
    assert 1 <= engine.default_threads() <= 2


def test_batch_process_settings_take_effect():
    """In a child process (they are process-wide): Arrow on the system allocator, glibc
    (where the C library is glibc) accepting one arena, a 20 ms switch interval."""
    import platform
    import subprocess
    import sys

    code = ("import sys, pyarrow as pa; from detector.jobs import batch_process_settings; "
            "ok = batch_process_settings(); "
            "print(ok, pa.default_memory_pool().backend_name, sys.getswitchinterval())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    glibc = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert res.stdout.split() == [glibc, "system", "0.02"]


@pytest.mark.parametrize("threshold, warmed", [(0, 1), (1 << 40, 0)])
def test_score_file_warms_the_kernels_up_only_for_a_big_enough_input(
        model, test_df, tmp_path, monkeypatch, threshold, warmed):
    """A file from ``engine.WARM_UP_BYTES`` on loads the compiled kernels during the pre-pass
    (in a thread), a smaller one does not; either way the output is the same."""
    src = tmp_path / "in.csv"
    test_df.head(3000).to_csv(src, index=False)
    calls: list[str] = []
    original = engine.warm_up

    def recording(m):
        calls.append(threading.current_thread().name)
        original(m)

    monkeypatch.setattr(engine, "warm_up", recording)
    monkeypatch.setattr(engine, "WARM_UP_BYTES", threshold)
    out = tmp_path / f"out{warmed}.csv"
    jobs.score_file(model, src, out)
    assert calls == ["detector-warm-up"] * warmed
    ref = tmp_path / "ref.csv"
    monkeypatch.setattr(engine, "warm_up", lambda m: None)
    jobs.score_file(model, src, ref)
    assert out.read_bytes() == ref.read_bytes()


def test_a_failed_pre_pass_leaves_no_warm_up_thread_running(model, test_df, tmp_path,
                                                           monkeypatch):
    """The pre-pass fails (bytes that are not UTF-8 in a column it reads) while the
    kernels load in their thread: the error is reported as usual, and only after that
    thread has finished."""
    src = tmp_path / "bad.csv"
    test_df.head(3000).to_csv(src, index=False)
    lines = src.read_bytes().split(b"\n")
    cells = lines[1500].split(b",")
    cells[list(test_df.columns).index("exporter_id")] = b"\xff\xfeE"
    lines[1500] = b",".join(cells)
    src.write_bytes(b"\n".join(lines))
    monkeypatch.setattr(engine, "WARM_UP_BYTES", 0)
    done = threading.Event()

    def slow_warm_up(m):
        time.sleep(0.5)  # still loading when the pre-pass fails
        done.set()

    monkeypatch.setattr(engine, "warm_up", slow_warm_up)
    with pytest.raises(InputError, match="not valid utf-8"):
        jobs.score_file(model, src, tmp_path / "out.csv")
    assert done.is_set(), "score_file returned before its warm-up thread ended"
    assert "detector-warm-up" not in {t.name for t in threading.enumerate()}
    assert not (tmp_path / "out.csv").exists()


def test_lane_counts_keep_the_order_value_counts_gives_batch_by_batch():
    """The summary's lane counts come from the small codes kept per row; their keys are in
    the order pandas' value_counts gives on each output batch (most frequent first, ties
    in order of first appearance), as when the counts were made from the names."""
    import pandas as pd

    rng = np.random.default_rng(5)
    names = ["green", "red", "amber", "blue"]
    for _ in range(30):
        n, batch = int(rng.integers(1, 400)), int(rng.integers(1, 60))
        p = rng.dirichlet(np.ones(len(names)) * rng.choice([0.2, 1.0, 50.0]))
        codes = rng.choice(len(names), size=n, p=p).astype(np.int8)
        if rng.random() < 0.3:  # exact ties within batches
            codes = np.tile(np.arange(len(names), dtype=np.int8), n)[:n]
        want: dict[str, int] = {}
        labels = np.array(names, dtype=object)[codes]
        for start in range(0, n, batch):
            for k, v in pd.Series(labels[start:start + batch], dtype="str").value_counts(
                    ).items():
                want[str(k)] = want.get(str(k), 0) + int(v)
        got = engine.lane_counts(codes, names, range(0, n, batch))
        assert list(got.items()) == list(want.items())


def test_summary_counts_are_the_same_for_every_output_format(model, test_df, tmp_path):
    """Flagged, random selections and lanes (keys in the same order) come from the scored
    chunks, whatever format the output is written in; and they match the output's rows."""
    import pandas as pd

    src = tmp_path / "in.csv"
    test_df.head(2500).to_csv(src, index=False)
    summaries = {ext: jobs.score_file(model, src, tmp_path / f"out_{ext}.{ext}", chunk_rows=700)
                 for ext in ("csv", "parquet", "jsonl")}
    keys = ("scored", "flagged", "random_selected")
    first = summaries["csv"]
    assert first["random_selected"] > 0 and len(first["lanes"]) >= 2
    for s in summaries.values():
        assert [s[k] for k in keys] == [first[k] for k in keys]
        assert list(s["lanes"].items()) == list(first["lanes"].items())
    out = pd.read_parquet(tmp_path / "out_parquet.parquet")
    assert first["flagged"] == int(out["flagged"].sum())
    assert first["lanes"] == out["lane"].value_counts().to_dict()
