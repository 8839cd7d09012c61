"""``engine/resume.py``: completion from sidecars, the compacted index, cleaning up after killed
writes, the skip set, the fingerprint, and the driver's running tracker (no Ray).

Sidecars are written by the real writer (``write_bundle``) from clip rows, or given as the
small dicts a write task returns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from pipelines.clips.recipe import RECORD
from pipelines.config import load_build_config, output_fingerprint
from pipelines.engine.resume import BuildState, InputTracker, sidecar_tables
from pipelines.engine.writer import write_bundle
from sama.errors import ConfigError
from tests.pipelines.engine.bundles import bundle, clip, error, settings


def _sidecar(name: str, inputs: dict[str, tuple[int, int, int]], data=None, errors=None) -> dict:
    """A sidecar naming ``inputs``: id -> (data rows, error rows, announced)."""
    ids = sorted(inputs)
    return {
        "name": name,
        "data": data if data is not None else [f"clips/part-clips-{name}.parquet"],
        "errors": errors,
        "rows": sum(inputs[i][0] for i in ids),
        "error_rows": sum(inputs[i][1] for i in ids),
        "bytes": 100,
        "inputs": {
            "ids": ids,
            "data_rows": [inputs[i][0] for i in ids],
            "error_rows": [inputs[i][1] for i in ids],
            "announced": [inputs[i][2] for i in ids],
            "seconds": [5.0] * len(ids),
        },
    }


def _per_input(ledger) -> dict[str, tuple]:
    p = ledger.per_input().to_pylist()
    return {
        r["input_id"]: (r["data_rows"], r["error_rows"], r["announced"], r["complete"]) for r in p
    }


# ---- the ledger -----------------------------------------------------------------------------


def test_ledger_from_sidecars_complete_and_partial_inputs():
    ledger = sidecar_tables(
        [
            _sidecar("s1", {"a": (3, 0, 3), "b": (1, 0, 0), "c": (0, 1, 1)}),
            _sidecar("s2", {"b": (1, 0, 3), "d": (1, 2, 3)}),  # d: an error row for 2 clips
            _sidecar("s3", {"e": (2, 0, 0)}),  # e: its announcing row is not written yet
        ]
    )
    assert _per_input(ledger) == {
        "a": (3, 0, 3, True),
        "b": (2, 0, 3, False),  # split over two sidecars, one row still missing
        "c": (0, 1, 1, True),
        "d": (1, 2, 3, True),
        "e": (2, 0, 0, False),
    }
    assert sorted(ledger.done_ids().to_pylist()) == ["a", "c", "d"]
    assert sorted(ledger.partial().column("input_id").to_pylist()) == ["b", "e"]
    b = ledger.partial().filter(pa.compute.equal(ledger.partial().column("input_id"), "b"))
    assert b.column("data_rows").to_pylist() == [2]
    assert ledger.referenced() == {f"clips/part-clips-s{i}.parquet" for i in (1, 2, 3)}
    third = sidecar_tables([_sidecar("s4", {"b": (1, 0, 3)})])
    both = sidecar_tables([_sidecar("s1", {"b": (1, 0, 0)}), _sidecar("s2", {"b": (1, 0, 3)}),
                           _sidecar("s4", {"b": (1, 0, 3)})])  # fmt: skip
    assert _per_input(both)["b"] == (3, 0, 3, True) and third.inputs.num_rows == 1


def _write(root: Path, rows: list[dict], **kw) -> dict:
    return write_bundle(bundle(rows), RECORD, settings(root, **kw))


def _state(root: Path) -> BuildState:
    return BuildState(fsspec.filesystem("file"), str(root), RECORD)


def _three_bundles(root: Path) -> list[dict]:
    """Video a complete in one bundle, b split over two (announced 3), c an error."""
    return [
        _write(root, [clip("a", 0), clip("a", 1, announce=2), clip("b", 0)]),
        _write(root, [clip("b", 1), clip("b", 2, announce=3)]),
        _write(root, [error("c", "probe", "zero_byte")]),
    ]


def test_load_reads_the_index_and_loose_sidecars_and_compact_keeps_the_ledger(tmp_path):
    _three_bundles(tmp_path)
    st = _state(tmp_path)
    loose = st.load()
    assert _per_input(loose) == {"a": (2, 0, 2, True), "b": (3, 0, 3, True), "c": (0, 1, 1, True)}
    st.compact(loose)
    state = tmp_path / "_state" / "clips"
    assert list((state / "sidecars").glob("*.json")) == []  # folded into the index
    assert len(list((state / "index").glob("*.parquet"))) == 2
    again = _state(tmp_path).load()
    assert _per_input(again) == _per_input(loose)
    assert again.referenced() == loose.referenced()
    more = _write(tmp_path, [clip("d", 0, announce=1)])  # a later run: index + a loose sidecar
    both = _state(tmp_path).load()
    assert _per_input(both)["d"] == (1, 0, 1, True) and len(_per_input(both)) == 4
    assert f"clips/part-clips-{more['name']}.parquet" in both.referenced()


def test_an_index_left_by_a_compaction_killed_midway_is_not_counted_twice(tmp_path):
    """compact() writes the new index pair, then deletes the old one; killed in between, both
    are there, and every sidecar they share must still count once."""
    _three_bundles(tmp_path)
    st = _state(tmp_path)
    st.compact(st.load())
    index = tmp_path / "_state" / "clips" / "index"
    saved = tmp_path / "saved"
    shutil.copytree(index, saved)
    _write(tmp_path, [clip("d", 0, announce=1)])
    st2 = _state(tmp_path)
    st2.compact(st2.load())  # the new pair holds everything; the old pair is deleted...
    for p in saved.iterdir():  # ...but say the kill came before that delete
        shutil.copy(p, index / p.name)
    assert len(list(index.glob("*.parquet"))) == 4
    ledger = _state(tmp_path).load()
    assert _per_input(ledger) == {"a": (2, 0, 2, True), "b": (3, 0, 3, True),
                                  "c": (0, 1, 1, True), "d": (1, 0, 1, True)}  # fmt: skip
    assert ledger.shards.num_rows == 4


# ---- cleaning up after killed writes ----------------------------------------------------------


def test_clean_deletes_orphans_and_temp_files_and_drops_sidecars_whose_shards_are_gone(tmp_path):
    first, second, third = _three_bundles(tmp_path)
    orphan = _write(tmp_path, [clip("e", 0, announce=1), error("f", "probe", "not_found")])
    state = tmp_path / "_state" / "clips" / "sidecars"
    (state / f"{orphan['name']}.json").unlink()  # killed before its sidecar: an orphan
    temps = [tmp_path / "clips" / ".tmp-abc-part-clips-x.parquet",
             tmp_path / "errors" / ".tmp-abc-part-clips-y.parquet", state / ".tmp-abc-z.json"]  # fmt: skip
    for p in temps:
        p.write_bytes(b"half")
    (tmp_path / first["data"][0]).unlink()  # someone removed a shard a sidecar names
    other_kind = tmp_path / "errors" / "part-pairs-keep.parquet"
    other_kind.write_bytes(b"a pairs build's error shard")
    st = _state(tmp_path)
    ledger = st.clean(st.load())
    assert not any(p.exists() for p in temps)
    assert (
        not (tmp_path / orphan["data"][0]).exists() and not (tmp_path / orphan["errors"]).exists()
    )
    assert other_kind.exists()  # not this kind's
    # the first bundle's inputs are made again: a has no rows, b only the second bundle's
    assert _per_input(ledger) == {"b": (2, 0, 3, False), "c": (0, 1, 1, True)}
    assert ledger.referenced() == {*second["data"], third["errors"]}
    assert _per_input(_state(tmp_path).load()) == _per_input(ledger)  # and it stays so


def test_written_row_ids_are_those_of_the_given_unfinished_inputs_only(tmp_path):
    _write(tmp_path, [clip("a", 0), clip("a", 1, announce=2), clip("b", 0)])
    _write(tmp_path, [clip("b", 1), error("b", "make_clips", "truncated", announce=4)])
    _write(tmp_path, [clip("c", 0), error("d", "probe", "zero_byte")])
    st = _state(tmp_path)
    ledger = st.load()
    assert sorted(ledger.partial().column("input_id").to_pylist()) == ["b", "c"]
    ids = st.written_row_ids(ledger, pa.array(["b"]))
    assert sorted(ids.to_pylist()) == ["b-s000-c00", "b-s001-c00", "b:make_clips"]
    assert st.written_row_ids(ledger, pa.array(["c"])).to_pylist() == ["c-s000-c00"]
    assert st.written_row_ids(ledger, pa.array([], pa.string())).to_pylist() == []


# ---- start-up: if_exists and the fingerprint -----------------------------------------------


def test_prepare_fingerprint_refusal_overwrite_and_error_modes(tmp_path):
    cfg = load_build_config(None, ["input.uri=x", f"output.uri={tmp_path}"])
    fp = output_fingerprint(cfg)
    assert _state(tmp_path).prepare(fp, "resume", "o") is False  # a new build
    _three_bundles(tmp_path)
    assert _state(tmp_path).prepare(fp, "resume", "o") is True
    runtime = load_build_config(None, ["input.uri=y", f"output.uri={tmp_path}/x",
                                       "engine.num_cpus=7", "output.shard_size_mb=3",
                                       "budget.max_seconds_per_input=5"])  # fmt: skip
    assert output_fingerprint(runtime) == fp  # how it runs is not what it makes
    other = output_fingerprint(load_build_config(None, ["input.uri=x", "output.uri=o",
                                                        "clips.num_frames=33"]))  # fmt: skip
    with pytest.raises(ConfigError, match=r"(?s)clips.num_frames: 81 -> 33.*if_exists=overwrite"):
        _state(tmp_path).prepare(other, "resume", "o")
    with pytest.raises(ConfigError, match="already holds a clips build"):
        _state(tmp_path).prepare(fp, "error", "o")
    (tmp_path / "summary.json").write_text(json.dumps({"by_kind": {"clips": {"num_inputs": 3}}}))
    (tmp_path / "errors" / "part-pairs-x.parquet").write_bytes(b"pairs")
    assert _state(tmp_path).prepare(other, "overwrite", "o") is False
    assert not (tmp_path / "clips").exists() and not (tmp_path / "summary.json").exists()
    assert [p.name for p in (tmp_path / "errors").iterdir()] == ["part-pairs-x.parquet"]
    assert _state(tmp_path).load().inputs.num_rows == 0
    assert _state(tmp_path).prepare(other, "resume", "o") is True  # the new fingerprint


def test_prepare_refuses_shards_it_did_not_write(tmp_path):
    _write(tmp_path, [clip("a", 0, announce=1)])
    with pytest.raises(ConfigError, match="not written by this build"):
        _state(tmp_path).prepare({"x": 1}, "resume", "o")


# ---- the driver's running view ------------------------------------------------------------------


def test_input_tracker_counts_completion_with_prior_partial_counts():
    prior = sidecar_tables([_sidecar("old", {"p": (2, 0, 4), "q": (0, 0, 0)})]).per_input()
    t = InputTracker(prior)
    assert t.add({"ids": ["a"], "data_rows": [2], "error_rows": [0], "announced": [0]}) == 0
    assert t.add({"ids": ["a", "p"], "data_rows": [1, 1], "error_rows": [0, 0],
                  "announced": [3, 0]}) == 1  # fmt: skip
    assert "a" not in t.open and t.completed == 1 and t.failed == 0
    assert t.add({"ids": ["p"], "data_rows": [0], "error_rows": [1], "announced": [0]}) == 1
    assert t.add({"ids": ["z"], "data_rows": [0], "error_rows": [1], "announced": [1]}) == 1
    assert (t.completed, t.failed) == (3, 1)  # z had error rows only
    assert set(t.open) == {"q"}  # only inputs in flight stay
    sc = [{"inputs": {"ids": ["q"], "data_rows": [1], "error_rows": [0], "announced": [1]}}]
    assert t.add_all(sc) == 1 and t.open == {}
