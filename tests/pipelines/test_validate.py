"""``sama validate`` passes on a good build and fails, naming the problem, on each way a build
can go wrong: truncated shard, other schema version, missing column, wrong tensor byte length,
NaN latents, another VAE in provenance, duplicate ids, an input dropped silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS, ERRORS_V1
from datasets_spec.base import SPEC_KEY
from datasets_spec.provenance import with_provenance
from pipelines.cli_tools import validate_main
from pipelines.dataset.validate import validate
from sama.shards import write_shard


def shard(root: Path, kind: str = "clips", i: int = 1) -> Path:
    return root / kind / f"part-{i:05d}.parquet"


def write_raw(table: pa.Table, path: Path, **kw) -> None:
    """Written around ``write_shard`` (which would refuse bad rows), as a buggy writer would;
    dictionary pages only on strings, as sama writes them (a tensor column must have none)."""
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    pq.write_table(table, path, use_dictionary=strings, **kw)


def checks(report) -> set[str]:
    return {p.check for p in report.errors}


def only_error(report, check: str):
    assert not report.ok
    assert checks(report) == {check}, report.format()
    return [p for p in report.errors if p.check == check]


def test_good_dataset_passes(dataset, capsys):
    root, built = dataset
    report = validate(str(root))
    assert report.ok, report.format()
    assert report.problems == []
    assert report.rows == {"clips": 7, "pairs": 3, "errors": 4}
    assert report.num_inputs == 11
    assert {s.spec_id for s in report.shards} == {"clips/v2", "pairs/v2", "errors/v1"}
    assert validate_main([str(root)]) == 0
    assert "OK, 0 warning(s)" in capsys.readouterr().out
    assert validate_main([str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["rows"]["clips"] == 7 and len(data["shards"]) == 4


def test_truncated_shard_is_reported_not_a_crash(dataset, capsys):
    root, _ = dataset
    path = shard(root)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    (p,) = only_error(validate(str(root)), "readable")
    assert p.shard == str(path) and "truncated" in p.message
    assert validate_main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "part-00001.parquet" in out and "INVALID" in out


def test_other_schema_version_is_refused(dataset):
    root, _ = dataset
    path = shard(root)
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[SPEC_KEY] = b"clips/v9"
    write_raw(table.replace_schema_metadata(meta), path)
    (p,) = only_error(validate(str(root)), "schema")
    assert "clips/v9" in p.message and p.shard == str(path)


def test_missing_column_is_named(dataset):
    root, _ = dataset
    path = shard(root)
    table = pq.read_table(path)
    write_raw(table.drop_columns(["caption"]).replace_schema_metadata(table.schema.metadata), path)
    (p,) = only_error(validate(str(root)), "schema")
    assert "'caption'" in p.message


def test_wrong_tensor_byte_length(dataset, fx):
    root, _ = dataset
    rows = [fx.clip_row("v1", 7, 0, np.random.default_rng(1), "/x.mp4")]
    rows[0]["latents"] = rows[0]["latents"][:-2]  # one bf16 value short
    table = pa.Table.from_pylist(rows, schema=with_provenance(CLIPS.schema, fx.provenance("clips")))
    extra = shard(root, i=2)
    write_raw(table, extra)
    problems = only_error(validate(str(root)), "tensor_bytes")
    assert "'latents'" in problems[0].message and "row 0" in problems[0].message
    assert problems[0].shard == str(extra)


def test_nan_latents_are_found(dataset, fx):
    root, _ = dataset
    row = fx.clip_row("v1", 2, 0, np.random.default_rng(1), "/x.mp4")
    from datasets_spec.tensors import encode_array

    bad = np.zeros((16, 3, 8, 12), np.float32)
    bad[3, 1, 2, 2] = np.nan
    row["latents"], row["latents_shape"], row["latents_dtype"] = encode_array(bad, "bfloat16")
    write_shard(str(shard(root, i=2)), CLIPS.from_rows([row]), CLIPS, fx.provenance("clips"))
    (p,) = only_error(validate(str(root)), "finite")
    assert "'latents' row 0" in p.message
    assert validate(str(root), check_finite=False).ok


def test_other_vae_in_provenance(dataset, fx):
    root, _ = dataset
    path = shard(root)
    table = pq.read_table(path)
    write_shard(str(path), table, CLIPS, fx.provenance("clips", vae_id="someone/OtherVAE"))
    (p,) = only_error(validate(str(root)), "provenance")
    assert "VAE model id" in p.message and "someone/OtherVAE" in p.message
    assert p.shard == str(path) and "part-00000" in p.message  # names the reference shard


def test_other_vae_in_another_kind(dataset, fx):
    root, _ = dataset
    path = shard(root, "errors", 0)
    write_shard(str(path), pq.read_table(path), ERRORS_V1, fx.provenance("errors", "x/vae"))
    (p,) = only_error(validate(str(root)), "provenance")
    assert "x/vae" in p.message and p.shard == str(path)


def test_missing_provenance(dataset):
    root, _ = dataset
    path = shard(root)
    table = pq.read_table(path)
    write_raw(table.replace_schema_metadata({SPEC_KEY: b"clips/v2"}), path)
    (p,) = only_error(validate(str(root)), "provenance")
    assert "no `sama.provenance`" in p.message


def test_input_missing_from_clips_and_errors(dataset, fx):
    root, built = dataset
    path = shard(root, "errors", 0)
    kept = [e for e in built["errors"] if e["item_id"] != "v5"]
    write_shard(str(path), ERRORS_V1.from_rows(kept), ERRORS_V1, fx.provenance("errors"))
    (p,) = only_error(validate(str(root)), "inputs")
    assert "'v5'" in p.message and "dropped silently" in p.message


def test_count_only_summary(dataset):
    root, _ = dataset
    (root / "summary.json").write_text(json.dumps({"num_inputs": 12}))
    (p,) = only_error(validate(str(root)), "inputs")
    assert "12 inputs" in p.message and "11" in p.message


def test_duplicate_ids_across_shards(dataset, fx):
    root, built = dataset
    dup = dict(built["clips"][0])
    write_shard(str(shard(root, i=2)), CLIPS.from_rows([dup]), CLIPS, fx.provenance("clips"))
    (p,) = only_error(validate(str(root)), "unique_ids")
    assert dup["clip_id"] in p.message and "part-00000" in p.message


def test_warnings_do_not_fail(dataset):
    root, _ = dataset
    (root / "summary.json").unlink()
    shutil.copy(shard(root), root / "clips" / ".tmp-deadbeef-part-00002.parquet")
    report = validate(str(root))
    assert report.ok, report.format()
    assert {p.check for p in report.warnings} == {"inputs", "layout"}


def test_empty_root_is_invalid(tmp_path):
    report = validate(str(tmp_path))
    assert not report.ok and checks(report) == {"layout"}


def test_any_fsspec_uri(tmp_path, fx):
    import fsspec

    fx.make_dataset(tmp_path / "ds", tmp_path / "media")
    mem = fsspec.filesystem("memory")
    mem.put(str(tmp_path / "ds"), "/valds", recursive=True)
    try:
        report = validate("memory://valds")
        assert report.ok, report.format()
        assert report.rows["clips"] == 7
    finally:
        mem.rm("/valds", recursive=True)


@pytest.mark.parametrize("many", [12])
def test_problem_lists_are_capped(dataset, many, fx):
    root, _ = dataset
    rng = np.random.default_rng(3)
    rows = [fx.clip_row("v1", 10 + i, 0, rng, "/x.mp4") for i in range(many)]
    for r in rows:
        r["latents"] = r["latents"][:-2]
    table = pa.Table.from_pylist(rows, schema=with_provenance(CLIPS.schema, fx.provenance("clips")))
    write_raw(table, shard(root, i=2), row_group_size=1)
    report = validate(str(root))
    msgs = [p.message for p in report.errors]
    assert len(msgs) == 6 and msgs[-1] == f"... and {many - 5} more"


def test_v1_datasets_still_validate_and_a_mix_is_a_warning(tmp_path, fx):
    root = tmp_path / "ds"
    fx.make_dataset(root, tmp_path / "media", version="v1")
    report = validate(str(root))
    assert report.ok and report.problems == [], report.format()
    assert {s.spec_id for s in report.shards} == {"clips/v1", "pairs/v1", "errors/v1"}
    rng = np.random.default_rng(5)
    row = fx.with_previews([fx.clip_row("v9", 0, 0, rng, "/x.mp4")], "v2")
    summary = json.loads((root / "summary.json").read_text())
    summary["inputs"].append({"id": "v9", "uri": "/x.mp4", "kind": "clips"})
    summary["num_inputs"] += 1
    (root / "summary.json").write_text(json.dumps(summary))
    write_shard(str(shard(root, i=2)), CLIPS.from_rows(row), CLIPS, fx.provenance("clips"))
    mixed = validate(str(root))
    assert mixed.ok, mixed.format()
    (w,) = mixed.warnings
    assert w.check == "versions" and "['clips/v1', 'clips/v2']" in w.message


def test_quick_mode_reads_no_tensor_bytes_but_finds_short_cells(dataset, fx):
    root, _ = dataset
    assert validate(str(root), full=False).ok
    rows = [fx.clip_row("v1", 7 + i, 0, np.random.default_rng(i), "/x.mp4") for i in range(3)]
    for r in rows:
        r["latents"] = b""  # every cell empty: the footer shows the column is too small
    table = pa.Table.from_pylist(rows, schema=with_provenance(CLIPS.schema, fx.provenance("clips")))
    write_raw(table, shard(root, i=2))
    (p,) = only_error(validate(str(root), full=False), "tensor_bytes")
    assert "column 'latents': the shapes need 27,648 bytes but the column holds" in p.message
    full = only_error(validate(str(root)), "tensor_bytes")
    assert len(full) == 3 and "row 0: 0 bytes" in full[0].message


def test_row_groups_above_the_viewer_limit_are_warnings(dataset, monkeypatch):
    from datasets_spec import checks

    root, _ = dataset
    monkeypatch.setattr(checks, "VIEWER_ROW_GROUP_BYTES", 10_000)
    report = validate(str(root))
    assert report.ok
    viewer = [w for w in report.warnings if w.check == "viewer"]
    assert viewer and "above the Hub viewer's" in viewer[0].message
    assert "output.row_group_mb" in viewer[0].message


def test_hostile_shards_get_one_line_each_no_traceback_bounded_memory(tmp_path, fx):
    """``sama validate`` in a subprocess on the crafted set (tests/hostile.py): exit 1, a line
    naming the shard per case, no traceback, peak RSS under 2 GiB (the bomb is 4 GiB inside)."""
    import os
    import sys

    from tests.hostile import CASES, run_measured, write_hostile_set

    root = tmp_path / "hostile"
    write_hostile_set(root, fx.provenance("clips"))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    for extra in ([], ["--quick"]):
        cmd = [sys.executable, "-m", "sama.cli", "validate", str(root), *extra]
        rc, text, rss_mb = run_measured(cmd, cwd=repo, env=env, timeout=300)
        assert rc == 1, text
        for case, needle in CASES.items():
            lines = [
                x for x in text.splitlines() if f"clips/{case}.parquet:" in x and "[error" in x
            ]
            assert len(lines) == 1 and needle in lines[0], (case, lines)
        assert "Traceback" not in text and "INVALID: 8 error(s)" in text
        assert rss_mb < 2048, f"peak RSS {rss_mb:.0f} MiB"
