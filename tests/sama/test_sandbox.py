"""``sama.sandbox``: jobs in a killable child process, with time and memory budgets.

The jobs are in ``tests/sama/sandbox_jobs.py``. Budgets are short (and ``GRACE_S`` shortened)
so the whole module runs in a few seconds.
"""

from __future__ import annotations

import glob
import os
import time

import numpy as np
import pytest

from sama import sandbox
from sama.errors import SampleError
from sama.sandbox import Budget, Sandbox, run_job

JOBS = "tests.sama.sandbox_jobs"
pytestmark = pytest.mark.skipif(sandbox.SHM_DIR is None, reason="needs /dev/shm (Linux)")


@pytest.fixture
def box(monkeypatch):
    monkeypatch.setattr(sandbox, "GRACE_S", 0.5)
    b = Sandbox()
    yield b
    b.stop()


def _shm(pid: int) -> list[str]:
    return glob.glob(f"{sandbox.SHM_DIR}/sama-{pid}-*")


def test_shared_memory_arrays_round_trip_and_leave_no_files(box):
    items = list(box.run(f"{JOBS}:arrays", {"n": 3, "shape": [6, 5, 3]}, Budget(10), "t"))
    assert [it["i"] for it in items] == [0, 1, 2]
    child = items[0]["pid"]
    assert child != os.getpid() and {it["pid"] for it in items} == {child}
    for i, it in enumerate(items):
        assert it["frame"].shape == (6, 5, 3) and it["frame"].dtype == np.uint8
        assert (it["frame"] == i).all() and not it["frame"].flags.writeable
        assert it["first"].shape == (2, 6, 5, 3) and (it["first"] == i + 100).all()
        assert not it["first"].flags.writeable  # a leading slice comes as a map, not a copy
        assert f"sama-{child}-{2 * i}" in it["shm"]  # it did live in /dev/shm
    assert _shm(child) == []  # the parent unlinks what it maps; the child what it never sent


def test_buffers_a_job_lets_go_of_leave_shared_memory_at_once(box):
    """Not only at the end of the job: a video of many short shots would fill /dev/shm."""
    (item,) = box.run(f"{JOBS}:churn", {"n": 20}, Budget(10), "t")
    assert item["files"] == []


def test_a_stalled_job_becomes_timeout_and_keeps_the_items_before_it(box):
    got, t0 = [], time.monotonic()
    with pytest.raises(SampleError) as e:
        for item in box.run(f"{JOBS}:stall", {"before": 2}, Budget(0.5), "cut_clips"):
            got.append(item)
    took = time.monotonic() - t0
    assert (e.value.kind.value, e.value.stage) == ("timeout", "cut_clips")
    assert "stopped after 0.5s" in e.value.message and "max_seconds_per_input" in e.value.message
    assert took < 0.5 + sandbox.GRACE_S + 1.0, took
    assert [it["i"] for it in got] == [0, 1] and (got[1]["arr"] == 1).all()
    assert box.proc is None and _shm(got[0]["pid"]) == []  # killed, and its files gone


def test_a_job_checking_its_deadline_times_out_itself(box):
    t0 = time.monotonic()
    with pytest.raises(SampleError) as e:
        list(box.run(f"{JOBS}:spin", {}, Budget(0.3), "probe"))
    assert e.value.kind.value == "timeout" and e.value.stage == "probe"
    assert "longer than budget.max_seconds_per_input" in e.value.message
    assert time.monotonic() - t0 < 0.3 + sandbox.GRACE_S
    assert box.proc is not None and box.proc.poll() is None  # no kill needed: reused


def test_a_job_that_segfaults_is_a_decode_error_naming_the_signal(box):
    got = []
    with pytest.raises(SampleError) as e:
        for item in box.run(f"{JOBS}:segfault", {}, Budget(10), "probe"):
            got.append(item)
    assert got == [{"i": 0}]
    assert e.value.kind.value == "decode_error" and "signal SIGSEGV" in e.value.message


def test_a_job_over_the_memory_limit_is_too_large(box):
    with pytest.raises(SampleError) as e:
        list(box.run(f"{JOBS}:hog", {"mb": 400}, Budget(20, max_memory_mb=200), "cut_clips"))
    assert e.value.kind.value == "too_large" and "budget.max_memory_mb=200" in e.value.message
    assert box.proc is None  # killed


def test_exceptions_in_the_job(box):
    with pytest.raises(SampleError) as e:
        list(box.run(f"{JOBS}:broken", {}, Budget(10), "make_clips"))
    assert (e.value.kind.value, e.value.stage) == ("internal_error", "make_clips")
    assert e.value.message.startswith("KeyError: 'no such key' (at sandbox_jobs.py:")
    assert e.value.message.endswith(" in broken)")
    with pytest.raises(SampleError) as e:
        list(box.run(f"{JOBS}:refuses", {}, Budget(10), "make_clips"))
    assert (e.value.kind.value, e.value.stage, e.value.message) == ("too_short", "probe",
                                                                     "3 frames")  # fmt: skip


def test_the_child_is_reused_between_jobs_and_restarted_after_a_kill(box):
    (a,) = box.run(f"{JOBS}:pid", {}, Budget(10), "t")
    (b,) = box.run(f"{JOBS}:pid", {}, Budget(10), "t")
    with pytest.raises(SampleError):
        list(box.run(f"{JOBS}:broken", {}, Budget(10), "t"))
    (c,) = box.run(f"{JOBS}:pid", {}, Budget(10), "t")
    assert a["pid"] == b["pid"] == c["pid"] and a["shared"] is True  # errors keep the child
    with pytest.raises(SampleError):
        list(box.run(f"{JOBS}:stall", {"before": 0}, Budget(0.2), "t"))
    (d,) = box.run(f"{JOBS}:pid", {}, Budget(10), "t")
    assert d["pid"] != a["pid"] and not os.path.exists(f"/proc/{a['pid']}/status")
    it = box.run(f"{JOBS}:arrays", {"n": 5, "shape": [4]}, Budget(10), "t")
    next(it)
    it.close()  # the caller gave up mid-job: that child may still be sending, so it goes
    (e,) = box.run(f"{JOBS}:pid", {}, Budget(10), "t")
    assert e["pid"] != d["pid"] and _shm(d["pid"]) == []


def test_inline_mode_runs_in_this_process_with_the_same_contract():
    inline = Budget(10, isolation="inline")
    (p,) = run_job(f"{JOBS}:pid", {}, inline, "t")
    assert p == {"pid": os.getpid(), "shared": False}
    items = list(run_job(f"{JOBS}:arrays", {"n": 2, "shape": [3]}, inline, "t"))
    assert [(it["frame"] == i).all() for i, it in enumerate(items)] == [True, True]
    with pytest.raises(SampleError) as e:
        list(run_job(f"{JOBS}:broken", {}, inline, "make_clips"))
    assert e.value.kind.value == "internal_error" and e.value.message.endswith(" in broken)")
    with pytest.raises(SampleError) as e:
        list(run_job(f"{JOBS}:spin", {}, Budget(0.2, isolation="inline"), "probe"))
    assert e.value.kind.value == "timeout"


def test_run_job_uses_one_child_per_process():
    (a,) = run_job(f"{JOBS}:pid", {}, Budget(10), "t")
    (b,) = run_job(f"{JOBS}:pid", {}, Budget(10), "t")
    assert a["pid"] == b["pid"] != os.getpid()
