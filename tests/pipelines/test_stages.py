"""Build stages without Ray: declared columns == produced columns, clip planning, listing,
row accounting, shard writer, resume state, config checks.

Legend: ``clip_THWC`` = clip frames (time, height, width, RGB).
"""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS_V1, ERRORS_V1
from datasets_spec.provenance import read_provenance
from pipelines.clips.detect_shots import DetectShots
from pipelines.clips.list_inputs import ListInputs
from pipelines.clips.make_clips import MakeClips, clip_stats, decode_runs, plan_clips
from pipelines.clips.probe_videos import ProbeVideos
from pipelines.clips.recipe import make_stages
from pipelines.clips.write_shards import WriteShards
from pipelines.config import BuildConfig, load_build_config, output_fingerprint
from pipelines.encode.encode_anchors import anchor_indices
from pipelines.engine.resume import BuildState, InputTracker
from pipelines.engine.runner import plan
from pipelines.engine.stage import REQUIRED_CLIP_COLUMNS, Stage, check_batch, check_plan, is_error
from pipelines.engine.writer import ShardWriter
from sama.errors import ConfigError, FatalError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_models(factory) -> Path:
    """One tiny-model bundle per session (shared with test_build.py through the base temp)."""
    from sama.encoders.tiny import make_tiny_models

    root = factory.getbasetemp() / "tiny_models_build"
    if not (root / "TINY_MODELS.json").exists():
        make_tiny_models(root)
    return root


def demo_config(models: Path, input_uri: str, output_uri: str, *overrides: str) -> BuildConfig:
    return load_build_config(
        CONFIGS / "build_demo.yaml",
        [
            f"models_dir={models}",
            f"input.uri={input_uri}",
            f"output.uri={output_uri}",
            "engine.strict=true",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


def _outputs(result) -> list[dict]:
    return [r for b in ([result] if isinstance(result, list) else result) for r in b]


# ---- every stage produces exactly what it declares -----------------------------------------


@pytest.mark.parametrize("decode", ["single_pass", "two_pass"])
def test_each_stage_produces_exactly_its_declared_columns(decode, shot_video, models, tmp_path):
    manifest = tmp_path / "m.jsonl"
    (tmp_path / "empty.mp4").write_bytes(b"")
    manifest.write_text(
        json.dumps({"id": "v", "video": shot_video["path"], "caption": "a square moves"})
        + "\n"
        + json.dumps({"id": "e", "video": "empty.mp4", "caption": "nothing"})
        + "\n"
    )
    cfg = demo_config(models, str(manifest), str(tmp_path / "out"), "engine.executor=local",
                      f"clips.decode={decode}")  # fmt: skip
    names = [st.name for st in make_stages(cfg)][:3]
    assert names == (["probe", "cut_clips", "caption"] if decode == "single_pass"
                     else ["probe", "detect_shots", "make_clips"])  # fmt: skip
    rows = ListInputs(cfg).process([])
    assert [set(r) for r in rows] == [set(ListInputs.outputs)] * 2
    assert rows[1]["source_uri"] == str(tmp_path / "empty.mp4")  # relative to the manifest
    columns = plan(make_stages(cfg))
    for st, cols in zip(make_stages(cfg), columns, strict=True):
        st.setup()
        out = _outputs(st.process(rows))
        for r_in in rows:
            assert not (set(st.inputs) - set(r_in)) or is_error(r_in), st.name
        good = [r for r in out if not is_error(r)]
        assert good, st.name
        expect = (set(rows[0]) - set(st.drops)) | set(st.outputs)
        for r in good:  # exactly the declared columns, every declared output filled
            assert set(r) == expect == set(cols), (st.name, set(r) ^ expect)
            assert all(r[c] is not None for c in st.outputs), st.name
        check_batch(st.name, out, cols)
        rows = out
    errors = [r for r in rows if is_error(r)]
    assert [(r["video_id"], r["error_stage"], r["error_kind"]) for r in errors] == [
        ("e", "probe", "zero_byte")
    ]
    clips = [r for r in rows if not is_error(r)]
    assert [r["clip_id"] for r in clips] == ["v-s000-c00", "v-s001-c00", "v-s002-c00"]
    announced = [r["input_rows"] for r in clips]  # single pass: the last row announces
    assert announced == ([0, 0, 3] if decode == "single_pass" else [3, 3, 3])
    assert all(r["row_weight"] == 1 for r in clips)
    assert set(REQUIRED_CLIP_COLUMNS) <= set(clips[0])
    table = CLIPS_V1.from_rows([{c: r.get(c) for c in CLIPS_V1.column_names} for r in clips])
    CLIPS_V1.validate(table)
    r = clips[0]
    assert r["latents_shape"] == [16, 5, 10, 10] and r["anchor_tokens_shape"][:2] == [1, 65]
    assert r["text_prompts"][0] == "a square moves" and len(r["text_prompts"]) == 4
    assert sum(r["text_lengths"]) == r["text_embeds_shape"][0]


def test_check_plan_and_check_batch_name_the_problem():
    cfg = BuildConfig()
    with pytest.raises(FatalError, match="make_clips.*shot_starts"):
        check_plan([ProbeVideos(cfg), MakeClips(cfg)], ListInputs.outputs, ())
    with pytest.raises(FatalError, match="writer needs"):
        check_plan([ProbeVideos(cfg), DetectShots(cfg)], ListInputs.outputs, WriteShards.inputs)

    class Bad(Stage):
        name = "bad"
        outputs = ("not_a_column",)

    with pytest.raises(FatalError, match="unknown columns"):
        check_plan([Bad(cfg)], ListInputs.outputs, ())
    with pytest.raises(FatalError, match="undeclared"):
        check_batch("s", [{"video_id": "a", "extra": 1}], ["video_id"])
    with pytest.raises(FatalError, match="missing"):
        check_batch("s", [{"video_id": "a"}], ["video_id", "source_uri"])


# ---- clip planning, anchors, statistics ----------------------------------------------------


def test_plan_clips_policies():
    starts, ends = [0, 30, 50], [30, 50, 150]  # shots of 30, 20, 100 frames
    first = plan_clips(starts, ends, 17)
    assert [(p.shot_index, p.start, p.num_frames) for p in first] == [
        (0, 0, 17),
        (1, 30, 17),
        (2, 50, 17),
    ]
    multi = plan_clips(starts, ends, 33, "multi")
    assert [(p.shot_index, p.clip_index, p.start) for p in multi] == [
        (2, 0, 50),
        (2, 1, 83),
        (2, 2, 116),
    ]
    assert [p.start for p in plan_clips(starts, ends, 33, "multi", max_clips_per_shot=1)] == [50]
    shorter = plan_clips(starts, ends, 33, "first", min_frames=17)
    assert [(p.start, p.num_frames) for p in shorter] == [(0, 29), (30, 17), (50, 33)]
    assert all(
        p.end <= e for p in shorter for s, e in zip(starts, ends, strict=True) if s <= p.start < e
    )
    assert plan_clips([0], [16], 17) == []
    runs = decode_runs(plan_clips([0, 30, 300], [20, 200, 400], 17, "multi"), seek_gap_frames=10)
    assert [[p.start for p in r] for r in runs] == [
        [0],  # 13 frames to the next clip: seek
        list(range(30, 184, 17)),  # back-to-back clips: one stream
        list(range(300, 369, 17)),
    ]


def test_anchor_indices_and_clip_stats():
    assert anchor_indices(17, 1, "first") == [0]
    assert anchor_indices(17, 3, "uniform") == [0, 8, 16]
    clip_THWC = np.zeros((3, 4, 4, 3), np.uint8)
    clip_THWC[1] = 255
    luma, motion = clip_stats(clip_THWC)
    assert luma == pytest.approx(85.0, abs=0.01) and motion == pytest.approx(255.0, abs=0.01)


def test_make_clips_keeps_made_clips_and_accounts_for_the_rest(shot_video, tmp_path):
    """A video that ends before its last planned clip: the clips made stay, one error row with
    the missing clips' weight stands for the rest, so the input is still fully accounted."""
    cfg = load_build_config(
        None,
        [
            f"input.uri={shot_video['path']}",
            f"output.uri={tmp_path}",
            "clips.resolution=64",
            "clips.num_frames=17",
        ],
    )
    row = ProbeVideos(cfg).process(ListInputs(cfg).process([]))[0]
    row |= {"shot_starts": [0, 30, 66, 87], "shot_ends": [30, 66, 87, 120]}  # 87 real frames
    out = _outputs(MakeClips(cfg).process([row]))
    good, bad = [r for r in out if not is_error(r)], [r for r in out if is_error(r)]
    assert len(good) == 3 and len(bad) == 1
    assert bad[0]["error_kind"] == "truncated" and bad[0]["error_stage"] == "make_clips"
    assert bad[0]["row_weight"] == 1 and {r["input_rows"] for r in out} == {4}
    assert sum(r["row_weight"] for r in out) == 4
    clip_THWC = np.frombuffer(good[1]["frames"], np.uint8).reshape(good[1]["frames_shape"])
    assert clip_THWC.shape == (17, 80, 80, 3)  # 64x64 -> the square bucket at 64p


# ---- single-pass cutting ------------------------------------------------------------------


class _LateDetector:
    """Reports each cut ``delay`` frames after it happens (like AdaptiveDetector's window)."""

    def __init__(self, cuts: list[int], delay: int) -> None:
        self.cuts, self.delay = cuts, delay

    def process_frame(self, tc, frame):
        from types import SimpleNamespace

        return [SimpleNamespace(frame_num=c) for c in self.cuts if c + self.delay == tc.frame_num]

    def post_process(self, tc):
        from types import SimpleNamespace

        return [SimpleNamespace(frame_num=c) for c in self.cuts if c + self.delay >= tc.frame_num]


@pytest.mark.parametrize("delay", [0, 2, 9])
def test_shot_cutter_assigns_frames_to_the_right_shot_even_for_late_cuts(delay):
    """Frames are ints here; a shot's kept frames are exactly its first ``window`` frames. A
    cut reported later than ``lag`` leaves the new shot short (CutClips re-decodes that clip),
    never with frames of another shot."""
    from pipelines.clips.cut_clips import ShotCutter

    cuts, n, window, lag = [10, 30, 34], 50, 6, 3
    cutter = ShotCutter(_LateDetector(cuts, delay), 24.0, window, lag, lambda f: f, lambda f: f)
    shots = [s for i in range(n) for s in cutter.push(i, i)] + cutter.finish(n)
    assert [(s.start, s.end) for s in shots] == [(0, 10), (10, 30), (30, 34), (34, 50)]
    for s in shots:
        want = list(range(s.start, min(s.end, s.start + window)))
        assert s.frames == want[: len(s.frames)]  # a prefix of the right frames, never others
        if delay <= lag:
            assert s.frames == want


def test_single_pass_and_two_pass_cut_the_same_clips(sample_set, tmp_path):
    """One decode (CutClips) finds the same shots and clips as DetectShots + MakeClips, decodes
    every frame once, and its clip pixels match the two-pass ones (up to decoder rounding)."""
    from pipelines.clips.cut_clips import CutClips

    vids = [v["path"] for v in sample_set["videos"].values()]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"video": v}) + "\n" for v in vids))
    base = [f"input.uri={tmp_path / 'm.jsonl'}", "output.uri=/unused", "caption.source=none",
            "clips.resolution=64", "clips.num_frames=17", "shots.min_shot_frames=8"]  # fmt: skip
    out = {}
    for decode in ("single_pass", "two_pass"):
        cfg = load_build_config(None, [*base, f"clips.decode={decode}"])
        rows = ListInputs(cfg).process([])
        stages = make_stages(cfg)[: 3 if decode == "two_pass" else 2]
        for st in stages:
            rows = _outputs(st.process(rows))
        out[decode] = ({r["clip_id"]: r for r in rows}, stages[-1])
    (one, cut), (two, make) = out["single_pass"], out["two_pass"]
    assert sorted(one) == sorted(two) and len(one) == 10
    for cid, r in one.items():
        keys = ("shot_start_frame", "shot_end_frame", "start_frame", "num_frames", "bucket_width")
        assert [r[k] for k in keys] == [two[cid][k] for k in keys], cid
        a = np.frombuffer(r["frames"], np.uint8).astype(np.int16)
        b = np.frombuffer(two[cid]["frames"], np.uint8).astype(np.int16)
        assert np.abs(a - b).mean() < 2.0, cid
    total = sum(v["num_frames"] for v in sample_set["videos"].values())
    kept = sum(r["num_frames"] for r in one.values())
    assert isinstance(cut, CutClips) and cut.frames_decoded == total and cut.frames_redecoded == 0
    assert make.frames_decoded >= kept  # two-pass: every kept frame decoded a second time


# ---- listing -------------------------------------------------------------------------------


def _list(uri: str, *overrides: str) -> list[dict]:
    cfg = load_build_config(None, [f"input.uri={uri}", "output.uri=/unused", *overrides])
    return ListInputs(cfg).process([])


def test_list_inputs_dir_glob_and_manifests(tmp_path):
    vids = tmp_path / "v"
    (vids / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.mkv", "notes.txt", ".hidden.mp4"):
        (vids / name).write_bytes(b"x")
    found = _list(str(vids), "caption.source=none")
    assert [Path(r["source_uri"]).name for r in found] == ["a.mp4", "b.mkv"]
    assert len({r["video_id"] for r in found}) == 2
    assert [Path(r["source_uri"]).name for r in _list(f"{vids}/*.mp4")] == ["a.mp4"]
    (tmp_path / "m.csv").write_text(
        "video,caption,id\nv/a.mp4,first,x1\n,no video,x2\nv/a.mp4,dup,x1\n"
    )
    rows = _list(str(tmp_path / "m.csv"))
    assert [(r["video_id"], r["error_kind"]) for r in rows] == [
        ("x1", None),
        ("x2", "bad_manifest_row"),
        ("x1@row2", "bad_manifest_row"),
    ]
    assert rows[0]["source_uri"] == str(vids / "a.mp4") and rows[0]["manifest_caption"] == "first"
    import pyarrow as pa

    pq.write_table(pa.table({"video": [str(vids / "a.mp4")]}), tmp_path / "m.parquet")
    with pytest.raises(ConfigError, match="no 'caption' column"):
        _list(str(tmp_path / "m.parquet"))
    assert _list(str(tmp_path / "m.parquet"), "caption.source=none")[0]["manifest_caption"] is None
    with pytest.raises(ConfigError, match="does not exist"):
        _list(str(tmp_path / "nope"))


def test_list_inputs_remote_filesystem():
    fs = fsspec.filesystem("memory")
    fs.pipe("/listing_test/a.mp4", b"x")
    fs.pipe("/listing_test/b.webm", b"x")
    rows = _list("memory://listing_test", "caption.source=none")
    assert [r["source_uri"] for r in rows] == [
        "memory:///listing_test/a.mp4",
        "memory:///listing_test/b.webm",
    ]
    fs.pipe("/listing_test/m.jsonl", b'{"video": "a.mp4", "caption": "c"}\n')
    rows = _list("memory://listing_test/m.jsonl")
    assert rows[0]["source_uri"] == "memory:///listing_test/a.mp4"


# ---- writer and resume state ---------------------------------------------------------------


def _clip_row(i: int, bucket: tuple[int, int], video: str = "v") -> dict:
    from tests.rows import clip_row

    row = clip_row(i, np.random.default_rng(i))
    row |= {
        "clip_id": f"{video}-c{i}",
        "video_id": video,
        "bucket_width": bucket[0],
        "bucket_height": bucket[1],
    }
    return row


PROV = {
    "spec": "clips/v1",
    "sama_version": "t",
    "vae": {"id": "x"},
    "latent_norm": {},
    "siglip": {},
    "anchor_policy": {},
    "frame_policy": {},
    "resolution_policy": {},
    "build_config": {},
    "black_latent": [0.0] * 16,
}


def test_writer_cuts_byte_sized_shards_of_one_bucket_row_groups(tmp_path):
    fs = fsspec.filesystem("file")
    w = ShardWriter(fs, str(tmp_path), PROV, shard_bytes=3000, row_group_rows=2)
    durable = []
    for i in range(7):
        durable += w.add_clip(_clip_row(i, [(96, 64), (64, 96)][i % 2]))
    durable += w.close()
    assert sorted(durable) == ["v"] * 7
    shards = sorted((tmp_path / "clips").glob("*.parquet"))
    assert len(shards) >= 2 and not list(tmp_path.rglob(".tmp-*"))
    total = 0
    for p in shards:
        f = pq.ParquetFile(p)
        assert read_provenance(f.schema_arrow)["black_latent"] == [0.0] * 16
        for g in range(f.num_row_groups):
            t = f.read_row_group(g, columns=["bucket_width", "bucket_height"])
            assert len(set(zip(*t.to_pydict().values(), strict=True))) == 1  # one bucket
            assert t.num_rows <= 2
            total += t.num_rows
        CLIPS_V1.validate(pq.read_table(p))
    assert total == 7


def test_input_tracker_marks_an_input_done_only_when_all_rows_are_written():
    t = InputTracker()
    assert not t.arrive({"video_id": "a", "input_rows": 3, "row_weight": 1}, buffered=True)
    assert t.arrive({"video_id": "a", "input_rows": 3, "row_weight": 2}, buffered=True)
    assert t.pop_done() == []  # arrived, still buffered
    t.written(["a"])
    assert t.pop_done() == []
    t.written(["a"])
    assert t.pop_done() == ["a"] and t.pop_done() == []
    with pytest.raises(FatalError):
        t.arrive({"video_id": "a", "input_rows": 3, "row_weight": 1}, buffered=False)


def test_build_state_fingerprint_markers_and_leftovers(tmp_path):
    fs = fsspec.filesystem("file")
    cfg = load_build_config(None, ["input.uri=x", f"output.uri={tmp_path}"])
    st = BuildState(fs, str(tmp_path))
    assert st.prepare(output_fingerprint(cfg), "resume", str(tmp_path)) is False
    st.mark_done(["b", "a"])
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / ".tmp-123-part.parquet").write_bytes(b"half")
    again = BuildState(fs, str(tmp_path))
    assert again.prepare(output_fingerprint(cfg), "resume", str(tmp_path)) is True
    assert again.done_inputs() == {"a", "b"}
    assert not list((tmp_path / "clips").iterdir())  # the half-written file is gone
    runtime = load_build_config(
        None,
        ["input.uri=y", f"output.uri={tmp_path}", "engine.num_cpus=7", "output.shard_size_mb=3"],
    )
    assert output_fingerprint(runtime) == output_fingerprint(cfg)
    other = load_build_config(
        None, ["input.uri=x", f"output.uri={tmp_path}", "clips.num_frames=33"]
    )
    with pytest.raises(ConfigError, match=r"clips.num_frames: 81 -> 33"):
        BuildState(fs, str(tmp_path)).prepare(output_fingerprint(other), "resume", "o")
    with pytest.raises(ConfigError, match="already holds a build"):
        BuildState(fs, str(tmp_path)).prepare(output_fingerprint(cfg), "error", "o")
    st3 = BuildState(fs, str(tmp_path))
    assert st3.prepare(output_fingerprint(other), "overwrite", "o") is False
    assert st3.done_inputs() == set()


def test_writer_error_rows_match_errors_spec(tmp_path):
    from datetime import UTC, datetime

    fs = fsspec.filesystem("file")
    w = ShardWriter(fs, str(tmp_path), PROV, shard_bytes=10**9, row_group_rows=4)
    row = {
        "video_id": "v",
        "source_uri": "/x.mp4",
        "error_stage": "probe",
        "error_kind": "zero_byte",
        "error_message": "empty",
        "error_time": datetime.now(UTC),
    }
    assert w.add_error(row) == []
    assert w.close() == ["v"]
    (shard,) = (tmp_path / "errors").glob("*.parquet")
    t = pq.read_table(shard)
    ERRORS_V1.validate(t)
    assert t.column("error_id").to_pylist() == ["v:probe"]
    assert read_provenance(t.schema)["spec"] == "errors/v1"


# ---- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clips.num_frames=16", "4k\\+1"),
        ("anchors.num=2", "anchors.policy=uniform"),
        ("clips.min_frames=90", "min_frames"),
        ("engine.latents.batch_size=0", "batch_size"),
        ("clip.num_frames=17", "Did you mean 'clips'"),
        ("vae.model_id={models_dir}/wan", "models_dir is not set"),
    ],
)
def test_bad_config_fails_at_start_with_a_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_build_config(None, ["input.uri=x", "output.uri=y", override])


def test_shipped_configs_load(models):
    clips = load_build_config(CONFIGS / "build_clips.yaml")
    assert (clips.clips.num_frames, clips.clips.resolution, clips.anchors.num) == (81, 480, 1)
    demo = load_build_config(CONFIGS / "build_demo.yaml", [f"models_dir={models}"])
    assert demo.vae.model_id == f"{models}/wan" and demo.clips.num_frames == 17


def test_vlm_captions_through_the_stage(models, shot_video, tmp_path):
    """caption.source=vlm: sama.captioner with a tiny random Qwen2.5-VL, recorded per row."""
    from pipelines.clips.caption_clips import CaptionClips
    from sama.encoders.tiny_vlm import make_tiny_vlm

    vlm = make_tiny_vlm(tmp_path / "vlm")
    cfg = demo_config(
        models,
        shot_video["path"],
        str(tmp_path / "o"),
        "caption.source=vlm",
        f"caption.vlm.model_id={vlm}",
        "caption.vlm.max_new_tokens=4",
        "caption.vlm.num_frames=2",
        "caption.vlm.device=cpu",
    )
    rows = ListInputs(cfg).process([])
    for st in make_stages(cfg)[:2]:  # probe, cut_clips
        rows = _outputs(st.process(rows))
    cap = CaptionClips(cfg)
    assert cap.uses_actor() and "frames" in cap.inputs
    cap.setup()
    out = cap.process(rows[:2])
    assert all(
        r["caption_source"] == f"vlm:{vlm}" or r["error_kind"] == "encode_error" for r in out
    )
    assert cap.describe()["caption"]["vlm"]["model_id"] == vlm


def test_only_the_runner_imports_ray():
    """CONVENTIONS.md layout: stages are Ray-free; the runner imports Ray inside functions."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2] / "pipelines"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "runner.py"
        and any(
            line.strip().startswith(("import ray", "from ray"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
    code = "import sys, pipelines.clips.recipe, pipelines.clips; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
